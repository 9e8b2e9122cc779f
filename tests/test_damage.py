"""Damage and failed writes: the index gets a new name per build (manifest and index never disagree), a corrupt
index is rebuilt from the shards, a missing or truncated shard is one line, a write that fails (disk full) leaves
no temporary file, and a killed writer's leftovers are swept by the next writer."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embstore import Store, row_copies
from embstore.errors import DamagedStoreError, StoreWriteError
from embstore.manifest import read_manifest
from embstore_cli.main import cli

from conftest import HASH, topic_rows, write_csv


@pytest.fixture()
def docs(tmp_path):
    s = Store.open(tmp_path / "store")
    s.ingest(write_csv(tmp_path / "t.csv", topic_rows()), "docs", encoder=HASH)
    return s


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def one_line_error(res, *words):
    assert res.exit_code == 2, (res.output, __import__("traceback").format_exception(*res.exc_info) if res.exc_info else None)
    err = res.stderr.strip()
    assert err.startswith("Error: ") and "\n" not in err and "Traceback" not in res.output, res.output
    for w in words:
        assert w in err, err


def temp_files(root):
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def index_entry(store):
    return read_manifest(store.root)["collections"]["docs"]["spaces"]["hash64"]["index"]


def index_kind(path) -> str:
    import faiss

    return type(faiss.downcast_index(faiss.read_index(str(path)))).__name__


# ------------------------------------------------------------------------------------------------ index naming
def test_every_index_build_gets_a_new_name_and_the_old_one_is_retired(docs, tmp_path):
    first = index_entry(docs)["file"]
    docs.ingest(write_csv(tmp_path / "more.csv", [{"text": "a brand new cat text", "label": "animals"}]), "docs")
    second = index_entry(docs)["file"]
    docs.reindex("docs", factory="HNSW8")
    third = index_entry(docs)["file"]
    assert len({first, second, third}) == 3
    retired = [r["file"] for r in read_manifest(docs.root)["retired"]]
    assert first in retired and second in retired  # kept for readers of older snapshots
    assert (docs.root / first).exists() and index_kind(docs.root / third) == "IndexHNSWFlat"
    assert index_kind(docs.root / first) == "IndexFlatIP" and index_entry(docs)["ntotal"] == 37


def test_a_crash_between_saving_the_index_and_the_manifest_leaves_them_agreeing(docs, monkeypatch):
    import embstore.store as store_module

    before = index_entry(docs)

    def crash(*a, **k):
        raise KeyboardInterrupt  # the process dies after the index file is written, before the manifest is

    monkeypatch.setattr(store_module, "write_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        docs.reindex("docs", factory="HNSW8")
    monkeypatch.undo()
    entry = index_entry(Store.open(docs.root))
    assert entry == before and entry["factory"] == "Flat"
    assert index_kind(docs.root / entry["file"]) == "IndexFlatIP"  # the file the manifest names is what it says
    fresh = Store.open(docs.root)
    hits = fresh.search("docs", "the cat and the dog", k=36)
    assert len(hits) == 36
    with fresh.writing():  # the next writer sweeps the new index that was never committed
        pass
    assert sorted(p.name for p in (docs.root / entry["file"]).parent.iterdir()) == [os.path.basename(entry["file"])]


# ------------------------------------------------------------------------------------------------ damage
def test_a_truncated_index_is_rebuilt_from_the_shards(docs, tmp_path):
    exact = [h["id"] for h in docs.search("docs", "the cat and the dog", k=10)]
    path = docs.root / index_entry(docs)["file"]
    path.write_bytes(path.read_bytes()[:100])
    reader = Store.open(docs.root)
    assert [h["id"] for h in reader.search("docs", "the cat and the dog", k=10)] == exact
    res = run("search", "--store", docs.root, "-c", "docs", "the cat and the dog", "-k", 3)
    assert res.exit_code == 0, res.output
    docs.ingest(write_csv(tmp_path / "more.csv", [{"text": "a brand new cat text", "label": "animals"}]), "docs")
    entry = index_entry(docs)
    assert entry["file"] != str(path.relative_to(docs.root)) and entry["ntotal"] == 37
    assert index_kind(docs.root / entry["file"]) == "IndexFlatIP"


def test_a_missing_or_truncated_shard_is_one_line_not_a_traceback(docs):
    m = read_manifest(docs.root)["collections"]["docs"]
    vectors = docs.root / m["spaces"]["hash64"]["shards"][0]["file"]
    vectors.unlink()
    with pytest.raises(DamagedStoreError, match="part-.*parquet, a file of the store, is missing"):
        Store.open(docs.root).embeddings("docs")
    one_line_error(run("fit", "--store", docs.root, "-c", "docs", "--label-column", "label", "--name", "t"),
                   "is missing", "restore it")
    items = docs.root / m["item_shards"][0]["file"]
    items.write_bytes(items.read_bytes()[:200])
    assert run("search", "--store", docs.root, "-c", "docs", "the cat", "-k", 3).exit_code == 0  # (its row copy)
    (docs.root / m["item_shards"][0]["rows_copy"]["file"]).unlink()
    row_copies.opened.cache_clear()  # (a new process: the copy this one mapped is gone)
    one_line_error(run("search", "--store", docs.root, "-c", "docs", "the cat", "-k", 3), "cannot be read")


# ------------------------------------------------------------------------------------------------ failed writes
def enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_writing_a_shard_is_one_line_and_leaves_no_temp_file(docs, tmp_path, monkeypatch):
    real = pq.write_table
    manifest = (docs.root / "embstore.json").read_bytes()

    def half_then_full(table, where, **kw):
        real(table.slice(0, 1), where, **kw)  # a part of the file is on disk when the disk fills
        enospc()

    monkeypatch.setattr(pq, "write_table", half_then_full)
    src = write_csv(tmp_path / "more.csv", [{"text": "a brand new cat text", "label": "animals"}])
    with pytest.raises(StoreWriteError, match="No space left on device.*free some disk space"):
        docs.ingest(src, "docs")
    assert temp_files(docs.root) == []
    assert (docs.root / "embstore.json").read_bytes() == manifest
    one_line_error(run("ingest", src, "--store", docs.root, "-c", "docs"), "No space left on device")
    assert temp_files(docs.root) == []
    monkeypatch.undo()
    assert docs.ingest(src, "docs").added == 1  # and the same command works once there is room


def test_disk_full_while_saving_the_index_or_the_manifest(docs, monkeypatch):
    import faiss

    real = faiss.write_index

    def full(index, where):
        real(index, where)
        raise RuntimeError("Error in faiss::FileIOWriter: fwrite failed: No space left on device")

    monkeypatch.setattr(faiss, "write_index", full)
    with pytest.raises(StoreWriteError, match="index-.*faiss: .*No space left"):
        docs.reindex("docs", factory="HNSW8")
    assert temp_files(docs.root) == []
    monkeypatch.undo()
    real_fsync = os.fsync

    def full_for_manifest(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".embstore.json"):
            enospc()
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_for_manifest)
    with pytest.raises(StoreWriteError, match="embstore.json: No space left"):
        docs.reindex("docs", factory="HNSW8")
    monkeypatch.undo()
    assert [p.name for p in temp_files(docs.root)] == []
    assert index_entry(Store.open(docs.root))["factory"] == "Flat"  # the store is as it was


# ------------------------------------------------------------------------------------------------ sweep
def test_a_killed_writers_leftovers_are_swept_by_the_next_writer(docs, tmp_path):
    from embstore.sweep import reserve

    root, coll = docs.root, "collections/docs"
    listed = sorted(str(p.relative_to(root)) for p in (root / "collections").rglob("*") if p.is_file())
    left = [f"{coll}/items/.part-000090.parquet.tmp", f"{coll}/items/part-000090.parquet",
            f"{coll}/spaces/hash64/part-000091.parquet", f"{coll}/spaces/hash64/index/index-000092.faiss",
            f"{coll}/spaces/hash64/index/.index-000093.faiss.tmp", ".embstore.json.4242.tmp",
            "heads/t/v1/head.json", f"{coll}/predictions/t/part-000095.parquet"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with docs.writing() as m:  # a predict of this process (alive) and one of a process that is gone
        reserve(m, 97, 1)
        reserve(m, 95, 1)
        m["reserved"][-1]["pid"] = int(dead.stdout)
        docs.commit()
    for rel in left:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"left by a killed writer")
    (root / ".tmp" / "keys-1-abc").mkdir(parents=True)
    (root / ".tmp" / "keys-1-abc" / "run.npy").write_bytes(b"x")
    alive_file = f"{coll}/predictions/u/part-000097.parquet"
    (root / alive_file).parent.mkdir(parents=True)
    (root / alive_file).write_bytes(b"being written by a live predict")
    with docs.writing():
        docs.commit()  # (the dead process's reservation is dropped with it)
    assert sorted(docs.swept) == sorted(left + [".tmp"])
    now = sorted(str(p.relative_to(root)) for p in (root / "collections").rglob("*") if p.is_file())
    assert now == sorted(listed + [alive_file])
    assert [r["first"] for r in read_manifest(root).get("reserved", [])] == [97]
    assert Store.open(root).sql("SELECT count(*) FROM docs").fetchall() == [(36,)]


def test_predict_keeps_its_shards_while_another_writer_sweeps(docs):
    docs.fit("docs", "label", "topic", model="logreg", params={"C": 10.0})
    out = docs.predict("topic", "docs")
    assert out["predicted"] == 36
    m = read_manifest(docs.root)
    assert "reserved" not in m
    assert docs.sql("SELECT count(*) FROM predictions").fetchall() == [(36,)]
    assert json.loads((docs.root / "embstore.json").read_text())["collections"]["docs"]["predictions"]["topic"]
