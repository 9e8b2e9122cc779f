"""A store that scales, at test size: dedupe and lookups by id go through sorted 64-bit key tables saved beside the
shards, which stay correct when the saved table lags the manifest (an interrupted ingest) or is missing (an older
store); chunks gathered from many pieces keep each row's file and row number; globs and fsspec URLs stream in; an
index too large for its memory budget is built on disk; predict over a collection goes a shard at a time."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from conftest import HASH, write_csv
from embstore import InputError, Store
from embstore import keys as kt
from embstore.config import Settings
from embstore.ingest.chunks import Chunk, chunks


def _rows(n, start=0):
    return [{"id": f"d{i}", "text": f"text number {i} about things", "label": "ab"[i % 2]} for i in range(start, start + n)]


def test_key_table_finds_what_was_added_in_runs_and_the_base(tmp_path):
    ids = [f"id{i}" for i in range(1000)]
    keys, checks = kt.id_keys(ids), kt.id_checks(ids)
    assert len(np.unique(keys)) == 1000 and keys.dtype == np.uint64
    table = kt.KeyTable(kt.BY_ID_FIELDS)
    for start in range(0, 1000, 100):  # 10 runs: more than MAX_RUNS, so they are merged on the way
        table.add(keys[start:start + 100], np.arange(start, start + 100, dtype=np.uint64), checks[start:start + 100])
    assert len(table.runs) <= kt.MAX_RUNS + 1 and len(table) == 1000
    table.save(tmp_path / "k.npy")
    saved = kt.KeyTable(kt.BY_ID_FIELDS, kt.load_table(tmp_path / "k.npy", kt.BY_ID_FIELDS))
    assert isinstance(saved.base, np.memmap)
    saved.add(kt.id_keys(["new"]), np.array([5000], np.uint64), kt.id_checks(["new"]))
    probe = [ids[3], ids[999], ids[500], "new", "absent"]
    found, rec = saved.find_ids(probe)
    assert found.tolist() == [True, True, True, True, False]
    assert rec[1].tolist() == [3, 999, 500, 5000, 0]
    # a key alone finds the same; a key with another id's check finds nothing
    assert saved.find(kt.id_keys(probe))[0].tolist() == [True, True, True, True, False]
    assert not saved.find(kt.id_keys(probe[:1]), kt.id_checks(["other"]))[0].any()


def test_locations_round_trip():
    loc = kt.locations(42, np.array([0, 7, 2**31]))
    parts, rows = kt.split_loc(loc)
    assert parts.tolist() == [42, 42, 42] and rows.tolist() == [0, 7, 2**31]
    assert kt.part_of({"file": "collections/c/items/part-000042.parquet"}) == 42
    assert kt.part_of({"file": "collections/c/items/part-run1-000003.parquet", "part": 9}) == 9


def test_ingests_save_key_tables_and_dedupe_through_them(tmp_path):
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=300))
    first = store.ingest(write_csv(tmp_path / "a.csv", _rows(1000)), "c", encoder=HASH)
    manifest = json.loads((store.root / "embstore.json").read_text())
    coll = manifest["collections"]["c"]
    assert coll["keys"]["rows"] == 1000 and coll["keys"]["shards"] == len(coll["item_shards"]) > 1
    assert (store.root / coll["keys"]["file"]).exists()
    assert set(coll["spaces"]["hash64"]["keys"]) == {"by_id", "by_hash", "by_position"}
    assert coll["spaces"]["hash64"]["keys"]["by_position"]["rows"] == 1000
    # again, plus 500 new rows and one row whose id is stored with other content
    rows = _rows(1500)
    rows[10]["text"] = "a changed text"
    again = store.ingest(write_csv(tmp_path / "b.csv", rows), "c", encoder=HASH)
    assert (first.added, again.added, again.duplicates, again.quarantined) == (1000, 500, 999, 1)
    assert "different content" in next(iter(again.reasons))
    assert store.refresh().known_ids("c", ["d0", "d1499", "nope"]) == {"d0", "d1499"}


def test_a_lagging_or_missing_key_table_is_completed_from_the_shards(tmp_path):
    """What an interrupted ingest leaves (shards listed after the saved table) and what an older embstore left (no
    table at all): dedupe still sees every committed row."""
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=300))
    store.ingest(write_csv(tmp_path / "a.csv", _rows(600)), "c", encoder=HASH)
    with store.writing():  # the key tables as they were before the second half: they cover the first shard only
        coll = store.manifest["collections"]["c"]
        coll["keys"] = {"file": coll["keys"]["file"], "shards": 0, "rows": 0}
        del coll["spaces"]["hash64"]["keys"]
        store.commit()
    (store.root / coll["keys"]["file"]).unlink()
    rep = store.ingest(write_csv(tmp_path / "b.csv", _rows(700)), "c", encoder=HASH)
    assert (rep.added, rep.duplicates) == (100, 600)
    assert store.sql("SELECT count(*), count(DISTINCT id) FROM c").fetchall() == [(700, 700)]


def test_values_changed_under_a_stored_id_are_found_with_and_without_recorded_digests(tmp_path):
    store = Store.open(tmp_path / "s")
    store.ingest(write_csv(tmp_path / "a.csv", _rows(20)), "c", encoder=HASH)
    rows = _rows(20)
    rows[3]["label"] = "zz"
    rep = store.ingest(write_csv(tmp_path / "b.csv", rows), "c", encoder=HASH)
    assert (rep.duplicates, rep.quarantined) == (19, 1) and "other values in label" in next(iter(rep.reasons))


def test_search_results_and_like_come_from_the_shards_that_hold_them(tmp_path):
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=300))
    store.ingest(write_csv(tmp_path / "a.csv", _rows(1000)), "c", encoder=HASH)
    reader = Store.open(store.root)
    ids, X = reader.embeddings("c")
    for n in (0, 777, 999):
        hits = reader.search("c", vector=X[ids.index(f"d{n}")], k=3)
        text = f"text number {n} about things"
        exact = {h["id"]: h for h in hits if h["score"] == pytest.approx(1.0)}  # (the hash encoder has twins)
        assert f"d{n}" in exact or len(exact) == 3
        if f"d{n}" in exact:
            assert (exact[f"d{n}"]["text"], exact[f"d{n}"]["label"]) == (text, "ab"[n % 2])
    from embstore.search import items_by_id

    got = items_by_id(reader, "c", ["d777", "d3", "nope"])
    assert got == {"d777": {"text": "text number 777 about things", "label": "b"},
                   "d3": {"text": "text number 3 about things", "label": "b"}}
    like = reader.search("c", item_id="d777", k=3)
    assert "d777" not in [h["id"] for h in like] and len(like) == 3
    from embstore.lookup import positions_of, vectors_at

    pos = positions_of(reader, "c", "hash64", ["d5", "d999", "missing"])
    assert pos[2] == -1 and [ids[p] for p in pos[:2]] == ["d5", "d999"]
    assert np.allclose(vectors_at(reader, "c", "hash64", pos[:2]), X[pos[:2]])


class _Piece:
    def __init__(self, table, file, first_row, bad=()):
        self.table, self.file, self.first_row, self.bad = table, file, first_row, list(bad)


def test_chunks_gather_pieces_of_several_files_and_keep_each_rows_origin():
    pieces = [_Piece(pa.table({"text": [f"{f}-{i}" for i in range(n)]}), f, first)
              for f, n, first in [("a.csv", 5, 1), ("a.csv", 4, 6), ("b.csv", 7, 1), ("c.csv", 0, 1), ("c.csv", 3, 1)]]
    got = list(chunks(pieces, lambda: 4, lambda t, f: t, lambda p: None))
    assert [c.table.num_rows for c in got] == [4, 4, 4, 4, 3] and max(c.table.num_rows for c in got) <= 4
    flat = [(c.table.column("text")[i].as_py(), c.origin(i)) for c in got for i in range(c.table.num_rows)]
    assert len(flat) == 19
    assert [f for _, (f, _) in flat] == [t.rsplit("-", 1)[0] for t, _ in flat]  # each row names its own file
    by_file = {}
    for text, (file, row) in flat:
        by_file.setdefault(file, []).append(row)
    assert by_file == {"a.csv": list(range(1, 10)), "b.csv": list(range(1, 8)), "c.csv": [1, 2, 3]}
    assert Chunk(pa.table({"x": [1, 2, 3]}), [(0, "f", 10), (2, "g", 1)]).origin(2) == ("g", 1)


@pytest.mark.parametrize("n", [1, 2500])
def test_id_keys_are_stable_across_calls(n):
    ids = [f"item-{i}" for i in range(n)]
    assert np.array_equal(kt.id_keys(ids), kt.id_keys(list(ids)))


def test_ingest_streams_a_glob_and_an_fsspec_url_into_one_collection(tmp_path):
    """Many files at once (a glob, then a memory:// URL): pieces of several files in one run, rows and quarantine
    records traced to their own file, and a re-run adds nothing."""
    import fsspec

    from conftest import write_jsonl

    for k in range(3):
        write_jsonl(tmp_path / f"part{k}.jsonl", [{"id": f"g{k}-{i}", "text": f"glob text {k} {i}"} for i in range(40)]
                    + ([{"id": "", "text": "no id"}] if k == 1 else []))
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=50))
    rep = store.ingest(str(tmp_path / "part*.jsonl"), "c", encoder=HASH)
    assert (rep.read, rep.added, rep.quarantined, rep.files) == (121, 120, 1, 3)
    record = json.loads((store.root / rep.quarantine_file).read_text().splitlines()[0])
    assert record["source"].endswith("part1.jsonl") and record["row"] == 41
    fs = fsspec.filesystem("memory")
    with fs.open("/embstore-test/more.csv", "w") as f:
        f.write("id,text\n" + "".join(f"m{i},memory text {i}\n" for i in range(30)))
    more = store.ingest("memory://embstore-test/more.csv", "c")
    assert (more.added, more.source) == (30, "memory://embstore-test/more.csv")
    assert store.ingest(str(tmp_path / "part*.jsonl"), "c").duplicates == 120
    assert store.sql("SELECT count(*) FROM c").fetchall() == [(150,)]
    fs.rm("/embstore-test", recursive=True)


def test_a_space_too_large_for_the_index_memory_is_indexed_on_disk_and_searched_mapped(tmp_path):
    """An IVF space whose lists would take more than a quarter of EMBSTORE_INDEX_MEMORY is built shard by shard
    into lists on disk (a folder per build), searched by a fresh reader through a mapping; the next ingest builds
    a new folder and retires the old one."""
    settings = Settings.resolve(device="cpu", commit_rows=500, index_memory=1 << 20)
    store = Store.open(tmp_path / "s", settings=settings)
    store.ingest(write_csv(tmp_path / "a.csv", _rows(3000)), "c", encoder=HASH, index="IVF16,Flat")
    entry = store.space("c")["index"]
    assert "/b" in entry["file"] and (store.root / entry["file"]).with_suffix(".ivfdata").exists()
    assert entry["ntotal"] == 3000 and entry["recall_at_10"] is not None  # (ties among the hash twins: < 1)
    reader = Store.open(store.root, settings=settings)
    ids, X = reader.embeddings("c")
    assert all(reader.search("c", vector=X[r], k=1)[0]["score"] == pytest.approx(1.0) for r in range(0, 3000, 300))
    import faiss

    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(reader.sync_index("c", "hash64")[0]).invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists) and lists.prefetch_nthread == 0  # (faiss: 32 threads a query)
    first = entry["file"]
    store.ingest(write_csv(tmp_path / "b.csv", _rows(500, start=3000)), "c")
    again = store.space("c")["index"]
    assert again["file"] != first and again["ntotal"] == 3500
    assert first in [r["file"] for r in store.manifest["retired"]]
    assert len(reader.search("c", vector=X[0], k=5)) == 5  # the older snapshot's reader keeps its build


def test_predict_over_a_collection_goes_a_shard_at_a_time(tmp_path):
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=300))
    store.ingest(write_csv(tmp_path / "a.csv", _rows(1000)), "c", encoder=HASH)
    store.fit("c", "label", "ab", model="centroid")
    seen = []
    out = store.predict("ab", "c", progress=lambda stage, done, total: seen.append((stage, done, total)))
    shards = store.collection("c")["spaces"]["hash64"]["shards"]
    assert out["predicted"] == 1000 and sum(out["labels"].values()) == 1000
    assert len(store.collection("c")["predictions"]["ab"]["shards"]) == len(shards) > 1
    assert [d for _, d, _ in seen] == [0, *np.cumsum([s["rows"] for s in shards]).tolist()]
    assert {t for _, _, t in seen} == {1000}
    assert store.sql("SELECT count(*), count(DISTINCT id) FROM predictions").fetchall() == [(1000, 1000)]


def test_runs_merge_by_size_and_a_table_saves_merged_block_by_block(tmp_path, monkeypatch):
    monkeypatch.setattr(kt, "MERGE_BLOCK", 37)  # many merge steps over few records
    rng = np.random.default_rng(0)
    width = len(kt.ITEM_FIELDS)
    table = kt.KeyTable(kt.ITEM_FIELDS, kt._merge([rng.integers(0, 2**63, (width, 500), dtype=np.uint64)]))
    added = []
    for size in [100] * 20 + [7, 3, 1]:
        cols = rng.integers(0, 2**63, (width, size), dtype=np.uint64)
        added.append(cols)
        table.add(*cols)
    assert len(table.runs) <= 2 + int(np.log2(2100))  # size-tiered: O(log n) runs, not one per add
    assert all(a.shape[1] >= b.shape[1] for a, b in zip(table.runs, table.runs[1:]))
    assert table.save(tmp_path / "t.npy") == 500 + 2011
    saved = kt.load_table(tmp_path / "t.npy", kt.ITEM_FIELDS)
    assert np.array_equal(saved, table.merged()) and np.all(np.diff(saved[0].astype(np.float64)) >= 0)
    found, rec = kt.KeyTable(kt.ITEM_FIELDS, saved).find(added[5][0])
    assert found.all() and np.array_equal(rec, kt._merge([added[5]])[:, np.argsort(np.argsort(added[5][0]))])


def test_position_keys_follow_the_index_and_a_lagging_file_falls_back_to_the_ids(tmp_path):
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=300))
    store.ingest(write_csv(tmp_path / "a.csv", _rows(700)), "c", encoder=HASH)
    store.ingest(write_csv(tmp_path / "b.csv", _rows(300, start=700)), "c")
    reader = Store.open(store.root)
    _, ids = reader.sync_index("c", "hash64")
    assert np.array_equal(ids.keys_at(range(1000)), kt.id_keys(list(ids.all())))
    with store.writing():  # as an interrupted ingest leaves it: shards past the saved position keys
        sp = store.manifest["collections"]["c"]["spaces"]["hash64"]
        sp["keys"]["by_position"] = {"file": sp["keys"]["by_position"]["file"], "shards": 1,
                                     "rows": sp["shards"][0]["rows"]}
        store.commit()
    lagging = Store.open(store.root)
    _, ids = lagging.sync_index("c", "hash64")
    assert ids.keys is None and ids.keys_at([0]) is None  # the file holds more rows than the entry says: unused
    X = lagging.embeddings("c")[1]
    assert lagging.search("c", vector=X[999], k=1)[0]["score"] == pytest.approx(1.0)


def test_an_on_disk_index_is_tuned_on_itself_a_few_queries_to_a_mapping(tmp_path, monkeypatch):
    """An index with its lists on disk is tuned on the whole space (the exact top-k gathered on the build's own
    passes), each batch of queries searching a mapping of its own (so resident memory holds a batch's lists, not
    all of them): the same setting and recall as one search of all queries a step on the index in memory."""
    from embstore import index as ix

    monkeypatch.setattr(ix, "LIST_BUDGET", 64 << 10)  # a few queries a mapping
    real, mapped = ix.load_index, []
    monkeypatch.setattr(ix, "load_index", lambda path, mmap=False: mapped.append(mmap) or real(path, mmap=mmap))
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=300, index_memory=1 << 20))
    store.ingest(write_csv(tmp_path / "a.csv", _rows(3000)), "c", encoder=HASH, index="IVF16,Flat")
    entry = store.space("c")["index"]
    assert entry["param"] == "nprobe" and entry["value"] >= 16 and entry["recall_queries"] == 200
    assert mapped.count(True) > 20
    in_memory = real(store.root / entry["file"])
    assert not ix.is_mapped(in_memory)
    again = ix.tune_streaming(in_memory, "IVF16,Flat", store.vector_blocks("c", "hash64"), 3000, 64)
    assert (again["value"], again["recall_at_10"]) == (entry["value"], entry["recall_at_10"])
    X = store.embeddings("c")[1]
    assert Store.open(store.root).search("c", vector=X[2999], k=1)[0]["score"] == pytest.approx(1.0)


def test_large_runs_spill_to_mapped_files_and_dedupe_still_sees_them(tmp_path, monkeypatch):
    monkeypatch.setattr(kt, "SPILL_ROWS", 120)
    monkeypatch.setattr(kt, "MERGE_BLOCK", 50)
    table = kt.KeyTable(kt.BY_ID_FIELDS, spill=tmp_path / "spill")
    ids = [f"k{i}" for i in range(1000)]
    keys, checks = kt.id_keys(ids), kt.id_checks(ids)
    for start in range(0, 1000, 40):
        table.add(keys[start:start + 40], np.arange(start, start + 40, dtype=np.uint64), checks[start:start + 40])
    assert any(isinstance(r, np.memmap) for r in table.runs)
    assert len(list((tmp_path / "spill").iterdir())) == sum(isinstance(r, np.memmap) for r in table.runs)
    found, rec = table.find_ids(ids[::7])
    assert found.all() and rec[1].tolist() == list(range(0, 1000, 7))
    table.save(tmp_path / "t.npy")
    assert np.array_equal(kt.load_table(tmp_path / "t.npy", kt.BY_ID_FIELDS), table.merged())

    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=50))
    store.ingest(write_csv(tmp_path / "a.csv", _rows(600)), "c", encoder=HASH)
    rows = _rows(800)
    rows[123]["text"] = "changed"
    rep = store.ingest(write_csv(tmp_path / "b.csv", rows), "c")
    assert (rep.added, rep.duplicates, rep.quarantined) == (200, 599, 1)
    assert not any((store.root / ".tmp").iterdir())  # the spilled runs went with the ingest


def test_a_collection_deleted_and_made_again_is_searched_through_its_new_key_tables(tmp_path):
    store = Store.open(tmp_path / "s")
    src = write_csv(tmp_path / "a.csv", _rows(50))
    store.ingest(src, "c", encoder=HASH)
    X = store.embeddings("c")[1]
    assert store.search("c", vector=X[7], k=3)  # the key tables are now cached in this process
    store.delete_collection("c")
    store.ingest(src, "c", encoder=HASH)
    assert len(store.search("c", vector=X[7], k=3)) == 3 and len(store.search("c", item_id="d7", k=3)) == 3


def test_an_ingest_with_nothing_new_keeps_an_on_disk_index(tmp_path):
    settings = Settings.resolve(device="cpu", commit_rows=500, index_memory=1 << 20)
    store = Store.open(tmp_path / "s", settings=settings)
    src = write_csv(tmp_path / "a.csv", _rows(3000))
    store.ingest(src, "c", encoder=HASH, index="IVF16,Flat")
    built = store.space("c")["index"]
    assert store.ingest(src, "c").duplicates == 3000
    assert store.space("c")["index"] == built  # not rebuilt, not re-tuned


def test_reindex_reports_each_pass_over_the_space(tmp_path):
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=300))
    store.ingest(write_csv(tmp_path / "a.csv", _rows(1200)), "c", encoder=HASH)
    seen = []
    out = store.reindex("c", factory="IVF8,Flat", progress=lambda stage, done, total: seen.append((done, total)))
    assert out["factory"] == "IVF8,Flat" and seen and {t for _, t in seen} == {1200}
    ends = [d for d, _ in seen if d == 1200]
    assert len(ends) >= 2  # at least a pass to add the vectors and one to tune against exact search


def test_broken_streamed_inputs_are_one_line_errors_and_keep_what_was_committed(tmp_path, monkeypatch):
    """Through the CLI: a glob that matches nothing and a URL whose filesystem is not installed are refused at
    once; a CSV whose column changes type after its first block stops the ingest with one line, and the chunks
    committed before it stay (a fixed re-run adds the rest)."""
    from click.testing import CliRunner

    from embstore.ingest import csv_stream
    from embstore_cli.main import cli

    store = str(tmp_path / "s")
    for source, message in [(str(tmp_path / "none*.csv"), "none*.csv"), ("s3://bucket/x.csv", "pip install s3fs")]:
        r = CliRunner().invoke(cli, ["ingest", source, "--store", store, "--collection", "c", "--encoder", HASH])
        assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    monkeypatch.setattr(csv_stream, "BLOCK_BYTES", 1024)
    src = tmp_path / "t.csv"
    rows = "".join(f"text number {i},{i}\n" for i in range(600))
    src.write_text("text,n\n" + rows + "a late row,not a number\n", encoding="utf-8")
    s = Store.open(tmp_path / "s2", settings=Settings.resolve(device="cpu", commit_rows=50))
    with pytest.raises(InputError) as e:
        s.ingest(src, "c", encoder=HASH)
    assert "\n" not in str(e.value) and "'n'" in str(e.value) and "t.csv" in str(e.value)
    kept = Store.open(s.root).sql("SELECT count(*) FROM c").fetchall()[0][0]
    assert 0 < kept <= 600
    src.write_text("text,n\n" + rows, encoding="utf-8")
    again = Store.open(s.root).ingest(src, "c")
    assert (again.added, again.duplicates) == (600 - kept, kept)


def test_shards_carry_an_id_bloom_filter_and_point_queries_use_it(tmp_path):
    import pyarrow.parquet as pq

    from embstore.storage import _writes_bloom_filters

    if not _writes_bloom_filters():
        pytest.skip("this pyarrow writes no Bloom filters")
    store = Store.open(tmp_path / "s.store")
    rows = [{"text": f"note {i}", "label": str(i % 3)} for i in range(3000)]
    store.ingest(write_csv(tmp_path / "a.csv", rows), "docs", encoder=HASH)
    coll = store.collection("docs")
    for shard in coll["item_shards"] + coll["spaces"]["hash64"]["shards"]:
        meta = pq.ParquetFile(store.root / shard["file"]).metadata
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            col = [rg.column(c) for c in range(rg.num_columns) if rg.column(c).path_in_schema == "id"][0]
            assert col.bloom_filter_offset is not None  # every row group's ids
    some = store.sql("SELECT id FROM docs WHERE text = 'note 1234'").fetchall()[0][0]
    assert store.sql(f"SELECT text FROM docs WHERE id = '{some}'").fetchall() == [("note 1234",)]
    assert store.sql("SELECT count(*) FROM docs WHERE id = 'no such id'").fetchall() == [(0,)]


def test_search_shows_its_hits_rows_from_the_row_copies_as_the_shards_hold_them(tmp_path, monkeypatch):
    """Item shards are written with an Arrow IPC copy of their rows beside them (row_copies.py): a search reads its
    hits' rows from the copies, decoding no Parquet row group, and shows exactly what the shards hold, every type
    alike; a store without copies (written before them), or a copy cut short or gone, is read from the shards with
    the same results."""
    import datetime

    from embstore import lookup, row_copies
    from embstore.manifest import read_manifest, write_manifest

    n, rng = 2600, np.random.default_rng(0)
    X = rng.standard_normal((n, 16)).astype(np.float32)
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    meta = pa.table({"title": [f"title {i}" if i % 7 else None for i in range(n)], "n": list(range(n)),
                     "x": [i / 3 for i in range(n)], "ok": [i % 2 == 0 for i in range(n)],
                     "tags": [[f"a{i % 3}", "b"] if i % 5 else [] for i in range(n)],
                     "at": pa.array([start + datetime.timedelta(minutes=i) for i in range(n)],
                                    pa.timestamp("us", "UTC")),
                     "blob": [bytes([i % 256]) * 3 for i in range(n)]})
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=1300))
    store.ingest_vectors("v", X, [f"i{i}" for i in range(n)], metadata=meta)
    shards = store.collection("v")["item_shards"]
    assert len(shards) == 2 and all(s["rows_copy"]["rows"] == s["rows"] == 1300 for s in shards)
    for s in shards:
        copy = store.root / s["rows_copy"]["file"]
        assert copy.name == s["file"].rsplit("/", 1)[1].replace(".parquet", ".arrow")
        assert copy.stat().st_size == s["rows_copy"]["bytes"]
    queries = [X[r] + 0.1 for r in (3, 1299, 1300, 2599)]

    def searches(root):
        reader = Store.open(root)
        return [reader.search("v", vector=q, k=10) for q in queries] + [reader.search("v", item_id="i1301", k=5)]

    read_rows = lookup.read_rows

    def no_item_parquet(path, *a, **k):
        assert "/items/" not in str(path), f"read a row group of {path}"
        return read_rows(path, *a, **k)  # (a vector, for the --like search)

    with monkeypatch.context() as m:
        m.setattr(lookup, "read_rows", no_item_parquet)
        with_copies = searches(store.root)
    assert all(len(r) in (5, 10) for r in with_copies)
    row = next(h for r in with_copies for h in r if h["id"] == "i1300")
    assert (row["title"], row["n"], row["ok"], row["tags"], row["blob"]) == ("title 1300", 1300, True, [],
                                                                            b"\x14" * 3)
    assert row["at"] == start + datetime.timedelta(minutes=1300) and "content_hash" not in row

    listed = read_manifest(store.root)
    m = read_manifest(store.root)
    for s in m["collections"]["v"]["item_shards"]:
        s.pop("rows_copy")  # as in a store written before copies were: the shards are read
    write_manifest(store.root, m)
    row_copies.opened.cache_clear()  # (what a new process sees)
    assert searches(store.root) == with_copies

    write_manifest(store.root, listed)
    first, second = (store.root / s["rows_copy"]["file"] for s in shards)
    first.write_bytes(first.read_bytes()[:1000])  # cut short, and gone: their shards are read
    second.unlink()
    row_copies.opened.cache_clear()
    assert searches(store.root) == with_copies
