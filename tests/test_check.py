"""``embstore check [--repair]`` on deliberately damaged stores (hash encoder): each damage is found (exit 1, the
message names it), and ``--repair`` leaves a store that passes the check with nothing lost that could be kept
(vectors that could be made again are, and equal the originals)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from embstore import Store
from embstore.check import check_store
from embstore.manifest import read_manifest, write_manifest, writer_lock
from embstore_cli.main import cli

from conftest import HASH, topic_rows, write_csv

QUERY = "the cat and the dog near the barn"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """docs: 36 topic rows in two ingests of 18 (two item shards, two vector shards of equal rows), a logreg head
    and its predictions."""
    tmp = tmp_path_factory.mktemp("check")
    rows = topic_rows()
    s = Store.open(tmp / "store")
    s.ingest(write_csv(tmp / "a.csv", rows[:18]), "docs", encoder=HASH)
    s.ingest(write_csv(tmp / "b.csv", rows[18:]), "docs")
    s.fit("docs", "label", "topic", model="logreg", params={"C": 10.0})
    s.predict("topic", "docs")
    return tmp / "store"


@pytest.fixture()
def store(pristine, tmp_path) -> Store:
    shutil.copytree(pristine, tmp_path / "store")
    return Store.open(tmp_path / "store")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def vectors(store: Store) -> dict[str, np.ndarray]:
    ids, X = Store.open(store.root).embeddings("docs")
    return dict(zip(ids, X))


def hits(store: Store) -> list[tuple[str, float]]:
    """Every item's score for one query, best first (ties by id: their order in the index may change)."""
    found = [(h["id"], round(h["score"], 5)) for h in Store.open(store.root).search("docs", QUERY, k=36)]
    return sorted(found, key=lambda h: (-h[1], h[0]))


def space(m: dict) -> dict:
    return m["collections"]["docs"]["spaces"]["hash64"]


def shard(m: dict, kind: str, n: int = 0) -> str:
    coll = m["collections"]["docs"]
    return {"items": coll["item_shards"], "vectors": space(m)["shards"],
            "predictions": coll["predictions"]["topic"]["shards"]}[kind][n]["file"]


def row_copy(m: dict, n: int = 0) -> str:
    return m["collections"]["docs"]["item_shards"][n]["rows_copy"]["file"]


def cut(path: Path, keep: int = 300) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def kill_a_writer(root: Path) -> None:
    """A process that takes the writer lock and is killed (SIGKILL) while it holds it."""
    code = ("import os, signal, sys; from embstore.manifest import writer_lock\n"
            f"with writer_lock(__import__('pathlib').Path({str(root)!r})): os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ})
    assert done.returncode == -signal.SIGKILL


def edit(root: Path, change) -> None:
    m = read_manifest(root)
    change(m)
    write_manifest(root, m)


def swap_vector_shards(m: dict) -> None:
    shards = space(m)["shards"]
    assert shards[0]["rows"] == shards[1]["rows"] == 18
    shards[0], shards[1] = shards[1], shards[0]


# (what is done to the store, what the check's message names, its kind, whether items are lost)
DAMAGE = {
    "deleted vector shard": (lambda r, m: (r / shard(m, "vectors")).unlink(), "is missing", "lost-vectors", False),
    "truncated vector shard": (lambda r, m: cut(r / shard(m, "vectors", 1)), "cut short", "lost-vectors", False),
    "truncated index": (lambda r, m: cut(r / space(m)["index"]["file"], 100), "cannot be read", "index", False),
    "index of another kind": (lambda r, m: edit(r, lambda m: space(m)["index"].update(factory="HNSW32")),
                              "IndexFlatIP", "index", False),
    "wrong row count": (lambda r, m: edit(r, lambda m: m["collections"]["docs"]["item_shards"][0].update(rows=20)),
                        "holds 18 rows where the manifest says 20", "rows", False),
    "swapped vector shards": (lambda r, m: edit(r, swap_vector_shards), "holds other vectors", "index", False),
    "stray file": (lambda r, m: (r / "collections/docs/items/part-000090.parquet").write_bytes(b"half a shard"),
                   "part-000090.parquet is named by no commit", "stray", False),
    "stale temporary": (lambda r, m: (r / "collections/docs/items/.part-000091.parquet.tmp").write_bytes(b"x"),
                        ".part-000091.parquet.tmp is a temporary file", "temporary", False),
    "stale lock": (lambda r, m: kill_a_writer(r), "a writer that was killed", "stale-lock", False),
    "deleted prediction shard": (lambda r, m: (r / shard(m, "predictions")).unlink(), "predictions of head topic",
                                 "predictions", False),
    "deleted item shard": (lambda r, m: (r / shard(m, "items")).unlink(), "its 18 items", "lost-items", True),
    "truncated row copy": (lambda r, m: cut(r / row_copy(m)), "bytes, not the", "rows-copy", False),
    "deleted row copy": (lambda r, m: (r / row_copy(m, 1)).unlink(), "is missing; searches read the shard",
                         "rows-copy", False),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_check_finds_each_damage_and_repair_leaves_a_store_that_passes(store, damage):
    do, words, kind, loses_items = DAMAGE[damage]
    before_vectors, before_hits = vectors(store), hits(store)
    m = read_manifest(store.root)
    do(store.root, m)

    res = run("check", "--store", store.root)
    assert res.exit_code == 1, res.output
    assert words in res.output and "problem:" in res.output and "Traceback" not in res.output
    found = json.loads(run("check", "--store", store.root, "--json").output)
    assert found["ok"] is False and kind in {p["kind"] for p in found["problems"]}

    res = run("check", "--store", store.root, "--repair")
    assert res.exit_code == 0, res.output
    assert "repaired: " in res.output and res.output.strip().splitlines()[-1].startswith("store OK: 1 collection")
    report = check_store(store.root)
    assert report.ok, [p.message for p in report.problems]

    after = vectors(store)
    if loses_items:  # only what could not be kept: the 18 items whose rows are gone, their vectors with them
        lost = set(before_vectors) - set(after)
        assert len(lost) == 18 and len(after) == 18
        records = [json.loads(line) for f in (store.root / "quarantine" / "docs").glob("*.jsonl")
                   for line in f.read_text().splitlines()]
        assert {r["data"]["id"] for r in records} == lost and all("embstore check --repair" == r["source"]
                                                                   for r in records)
    else:  # every item still there and searchable, with the very vectors it had
        assert set(after) == set(before_vectors)
        assert all(np.array_equal(after[i], before_vectors[i]) for i in after)
        assert hits(store) == before_hits
    assert {h for h, _ in hits(store)} == set(after)
    assert Store.open(store.root).sql("SELECT count(*) FROM predictions").fetchall() == [(len(after),)]


def test_a_healthy_store_is_ok_and_every_shard_records_its_checksum(store):
    res = run("check", "--store", store.root)
    assert res.exit_code == 0, res.output
    assert res.output.strip() == ("store OK: 1 collection, 36 items, 1 space (36 vectors), 1 head version, "
                                  "1 prediction set; shards checksummed")
    report = store.check()
    assert report.ok and report.problems == [] and report.counts["items"] == 36
    m = read_manifest(store.root)
    entries = m["collections"]["docs"]["item_shards"] + space(m)["shards"] + \
        m["collections"]["docs"]["predictions"]["topic"]["shards"]
    for e in entries:
        path = store.root / e["file"]
        assert e["bytes"] == path.stat().st_size and len(e["blake2b"]) == 32
    repaired = check_store(store.root, repair=True)
    assert repaired.ok and repaired.found == [] and repaired.repairs == []


def test_a_changed_byte_is_found_by_its_checksum_and_quick_compares_sizes_only(store):
    m = read_manifest(store.root)
    path = store.root / shard(m, "vectors", 1)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # same size, one byte of a data page changed
    path.write_bytes(bytes(data))
    report = check_store(store.root)
    assert [p.kind for p in report.problems if p.where == shard(m, "vectors", 1)] == ["lost-vectors"]
    assert "does not match the checksum" in report.problems[0].message
    quick = check_store(store.root, quick=True)
    assert not any("checksum" in p.message for p in quick.problems) and quick.quick
    assert "sizes, not checksums" in quick.summary()
    assert check_store(store.root, repair=True).ok


def index_matches_the_shards(store: Store) -> bool:
    """Whether row i of the saved index is the space's i-th vector (manifest order), as every reader assumes."""
    import faiss

    from embstore.index import normalize

    fresh = Store.open(store.root)
    _, X = fresh.embeddings("docs")
    index = faiss.read_index(str(store.root / space(fresh.manifest)["index"]["file"]))
    return np.allclose(index.reconstruct_n(0, index.ntotal), normalize(X), atol=1e-6)


def test_quick_still_finds_swapped_shards_through_the_index(store):
    """Issue #16's defect 4: two vector shards of the same size swapped in the manifest, and nothing said so."""
    right = hits(store)
    assert index_matches_the_shards(store)
    edit(store.root, swap_vector_shards)
    assert not index_matches_the_shards(store)  # the index's rows no longer follow the space's shards
    report = check_store(store.root, quick=True)
    assert "index" in {p.kind for p in report.problems} and not report.ok
    repaired = check_store(store.root, repair=True, quick=True)
    assert repaired.ok and index_matches_the_shards(store) and hits(store) == right


def test_lost_vectors_that_nothing_can_make_again_take_only_their_items(tmp_path):
    s = Store.open(tmp_path / "s")
    rng = np.random.default_rng(0)
    first, second = rng.standard_normal((20, 8)).astype(np.float32), rng.standard_normal((20, 8)).astype(np.float32)
    s.ingest_vectors("vecs", first, [f"a{i}" for i in range(20)], metadata={"g": ["x", "y"] * 10})
    s.ingest_vectors("vecs", second, [f"b{i}" for i in range(20)], metadata={"g": ["x", "y"] * 10})
    m = read_manifest(s.root)
    (s.root / m["collections"]["vecs"]["spaces"]["external"]["shards"][0]["file"]).unlink()
    report = check_store(s.root)
    lost = next(p for p in report.problems if p.kind == "lost-vectors")
    assert not lost.fixable and "made outside embstore" in lost.message and "quarantine/vecs/" in lost.message
    res = run("check", "--store", s.root, "--repair")
    assert res.exit_code == 0, res.output
    assert "removed 20 items" in res.output and "nothing here can make them again" in res.output
    ids, X = Store.open(s.root).embeddings("vecs")
    assert sorted(ids) == sorted(f"b{i}" for i in range(20))
    assert np.array_equal(X[np.argsort(ids)], second[np.argsort([f"b{i}" for i in range(20)])])
    records = [json.loads(line) for f in (s.root / "quarantine" / "vecs").glob("*.jsonl")
               for line in f.read_text().splitlines()]
    assert sorted(r["data"]["id"] for r in records) == sorted(f"a{i}" for i in range(20))
    assert all(r["data"]["g"] in ("x", "y") for r in records)  # the items' own rows, to ingest again


def test_a_head_that_cannot_be_loaded_leaves_with_its_predictions(store):
    (store.root / "heads/topic/v1/coef.npy").unlink()
    report = check_store(store.root)
    assert [p.kind for p in report.problems] == ["head"] and "coef.npy" in report.problems[0].message
    repaired = check_store(store.root, repair=True)
    assert repaired.ok and any("removed head topic version 1" in r for r in repaired.repairs)
    fresh = Store.open(store.root)
    assert fresh.manifest["heads"] == {} and fresh.manifest["collections"]["docs"]["predictions"] == {}


def test_a_listed_twice_shard_is_listed_once(store):
    edit(store.root, lambda m: m["collections"]["docs"]["item_shards"].append(
        dict(m["collections"]["docs"]["item_shards"][0])))
    assert "listed-twice" in {p.kind for p in check_store(store.root).problems}
    assert check_store(store.root, repair=True).ok
    assert Store.open(store.root).sql("SELECT count(*) FROM docs").fetchall() == [(36,)]


def test_plain_check_writes_nothing_and_works_on_a_read_only_folder(store):
    m = read_manifest(store.root)
    (store.root / shard(m, "vectors")).unlink()
    (store.root / ".writer.lock").unlink()

    def tree():
        return sorted((str(p.relative_to(store.root)), p.stat().st_size, p.stat().st_mtime_ns)
                      for p in store.root.rglob("*"))

    before = tree()
    modes = {p: p.stat().st_mode for p in [store.root, *store.root.rglob("*")]}
    for p in modes:
        p.chmod(modes[p] & ~0o222)
    try:
        res = run("check", "--store", store.root)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert res.exit_code == 1 and "is missing" in res.output
    assert tree() == before  # not even a lock file


def test_a_writer_at_work_is_not_reported_as_leftovers(store):
    (store.root / "collections/docs/items/part-000090.parquet").write_bytes(b"being written")
    with writer_lock(store.root):
        report = check_store(store.root)
    assert report.ok and f"a writer is at work (pid {os.getpid()} on host {socket.gethostname()} since" in report.notes[0]
    assert [p.kind for p in check_store(store.root).problems] == ["stray"]


def test_image_vectors_are_embedded_again_from_their_files_unless_a_file_changed(tmp_path):
    from conftest import make_png

    for i in range(6):
        make_png(tmp_path / "imgs" / "ab"[i % 2] / f"{i}.png", i)
    s = Store.open(tmp_path / "s")
    s.ingest(tmp_path / "imgs", "imgs", encoder=HASH)
    ids, X = s.embeddings("imgs")
    before = dict(zip(ids, X))
    m = read_manifest(s.root)
    (s.root / m["collections"]["imgs"]["spaces"]["hash64"]["shards"][0]["file"]).unlink()
    make_png(tmp_path / "imgs" / "a" / "0.png", 99)  # changed since it was ingested: not the item's image any more
    report = check_store(s.root, repair=True)
    assert report.ok, [p.message for p in report.problems]
    assert any("embedded 5 items of imgs again" in r for r in report.repairs)
    assert any(r.startswith("removed 1 item ") and "changed image file" in r for r in report.repairs)
    after = dict(zip(*Store.open(s.root).embeddings("imgs")))
    # the same vectors, up to float32 rounding (a batch of 5 is multiplied in another order than one of 6)
    assert len(after) == 5 and all(np.allclose(after[i], before[i], rtol=0, atol=1e-6) for i in after)
    [record] = [json.loads(line) for f in (s.root / "quarantine" / "imgs").glob("*.jsonl")
                for line in f.read_text().splitlines()]
    assert record["data"]["path"].endswith("0.png")


def test_a_store_of_an_older_embstore_is_ok_with_notes(store):
    """Before this check existed, shards recorded no size nor checksum and the lock kept the last writer's pid."""
    edit(store.root, lambda m: [e.pop(k) for e in m["collections"]["docs"]["item_shards"] for k in ("bytes", "blake2b")])
    (store.root / ".writer.lock").write_text("pid 12345")
    report = check_store(store.root)
    assert report.ok and len(report.notes) == 2
    assert "as an older embstore left it" in report.notes[0] and "2 shards" in report.notes[1]


def test_a_store_an_older_embstore_wrote_is_brought_up_to_date_by_repair(store, monkeypatch):
    """Older stores have item shards without row copies and key tables without the check field: check names both,
    repair writes them from the shards once, and lookups then use them instead of reading every shard."""
    from embstore import keys as kt
    from embstore.row_copies import copy_status

    before = hits(store)

    def older(m):
        coll = m["collections"]["docs"]
        for entry in coll["item_shards"]:
            (store.root / entry.pop("rows_copy")["file"]).unlink()
        old = np.zeros((len(kt.ITEM_FIELDS) - 1, coll["keys"]["rows"]), np.uint64)  # (key, hash, loc): no check
        np.save(store.root / coll["keys"]["file"], old)
    edit(store.root, older)

    found = json.loads(run("check", "--store", store.root, "--json").output)
    said = {(p["kind"], p["where"]) for p in found["problems"]}
    assert found["ok"] is False and ("keys", "docs") in said, said
    assert {w for k, w in said if k == "rows-copy"} == {e["file"] for e in read_manifest(store.root)
                                                         ["collections"]["docs"]["item_shards"]}
    res = run("check", "--store", store.root, "--repair")
    assert res.exit_code == 0 and "wrote the row copy" in res.output, res.output
    assert json.loads(run("check", "--store", store.root, "--json").output)["ok"] is True

    m = read_manifest(store.root)["collections"]["docs"]
    assert all(copy_status(store.root, e, quick=False) is None and e.get("rows_copy") for e in m["item_shards"])
    monkeypatch.setattr(kt, "shard_records", lambda *a: pytest.fail("a shard was read for its keys"))
    s = Store.open(store.root)
    assert len(s.key_table("docs")) == 36 and s.known_ids("docs", ["nope"]) == set()
    assert hits(s) == before
