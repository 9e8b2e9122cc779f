"""The store: opening, the writer lock, crash safety (manifest is the truth), embeddings and the index, search, SQL,
info."""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embstore import (InputError, NotFoundError, ReadOnlyError, Store, StoreLockedError)
from embstore.encoders import get_encoder
from embstore.manifest import MANIFEST, read_manifest, write_manifest, writer_lock

from conftest import HASH, make_png, write_csv


PREDICTION_COLUMNS = ["collection", "id", "head", "version", "label", "confidence"]


def texts_by_id(store: Store, collection: str) -> dict[str, str]:
    return dict(store.sql(f'SELECT id, text FROM "{collection}"').fetchall())


# ------------------------------------------------------------------------------------------------ opening
def test_open_creates_an_empty_store(tmp_path):
    s = Store.open(tmp_path / "new")
    m = json.loads((tmp_path / "new" / MANIFEST).read_text())
    assert m["format_version"] == 1 and m["collections"] == {} and m["heads"] == {} and m["next_part"] == 0
    assert s.info()["collections"] == {}


def test_open_without_create_on_a_missing_store(tmp_path):
    with pytest.raises(NotFoundError, match="no store at"):
        Store.open(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()


def test_open_refuses_a_non_empty_folder_without_manifest(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "file.txt").write_text("mine")
    with pytest.raises(InputError, match="non-empty directory"):
        Store.open(tmp_path / "stuff")


def test_a_corrupt_manifest_is_a_clear_error(tmp_path):
    Store.open(tmp_path / "s")
    (tmp_path / "s" / MANIFEST).write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        Store.open(tmp_path / "s")


def test_unknown_collection_names_the_existing_ones(topic_store):
    with pytest.raises(NotFoundError, match=r"no collection 'nope'.*collections: docs"):
        topic_store.embeddings("nope")


# ------------------------------------------------------------------------------------------------ the writer lock
def test_writer_lock_blocks_a_second_writer(store, topics_csv):
    with writer_lock(store.root):
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}") as e:
            store.ingest(topics_csv, "docs", encoder=HASH)
        assert isinstance(e.value, RuntimeError)
        assert "one writer at a time" in str(e.value)
        with pytest.raises(StoreLockedError):
            with writer_lock(store.root):
                pass
    # released: writing works again, and nothing was half-written while locked
    assert store.refresh().manifest["collections"] == {}
    assert store.ingest(topics_csv, "docs", encoder=HASH).added == 36


def test_readers_do_not_need_the_lock(topic_store):
    with writer_lock(topic_store.root):
        assert len(topic_store.search("docs", "cat dog", k=3)) == 3
        assert topic_store.sql("SELECT count(*) FROM docs").fetchall() == [(36,)]
        assert Store.open(topic_store.root).info()["collections"]["docs"]["items"] == 36


# ------------------------------------------------------------------------------------------------ crash safety
def test_a_shard_missing_from_the_manifest_is_invisible(store, topics_csv):
    store.ingest(topics_csv, "docs", encoder=HASH)
    ids_before, X_before = store.embeddings("docs")
    coll = store.root / "collections" / "docs"
    # what a writer that crashed before its manifest commit leaves behind: shards nobody listed
    stray_ids = [f"stray{i}" for i in range(5)]
    vec = get_encoder(HASH).encode_text(["the cat and the dog near the cow sheep"] * 5)
    pq.write_table(pa.table({"id": stray_ids, "content_hash": ["x"] * 5,
                             "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), 64)}),
                   coll / "spaces" / "hash64" / "part-999999.parquet")
    pq.write_table(pa.table({"id": stray_ids, "text": ["stray"] * 5, "label": ["animals"] * 5,
                             "split": ["train"] * 5, "content_hash": ["x"] * 5}),
                   coll / "items" / "part-999998.parquet")
    for s in (store, Store.open(store.root)):
        ids, X = s.embeddings("docs")
        assert ids == ids_before
        np.testing.assert_array_equal(X, X_before)
        assert s.sql("SELECT count(*) FROM docs").fetchall() == [(36,)]
        assert s.sql("SELECT count(*) FROM docs__hash64").fetchall() == [(36,)]
        assert s.sql("SELECT count(*) FROM docs WHERE text = 'stray'").fetchall() == [(0,)]
        hits = s.search("docs", "the cat and the dog near the cow sheep", k=36)
        assert len(hits) == 36 and not any(h["id"].startswith("stray") for h in hits)
        assert s.info()["collections"]["docs"]["items"] == 36
    # and a later ingest neither adopts nor trips over them
    r = store.ingest(write_csv(store.root.parent / "more.csv", [{"text": "a brand new row", "label": "x", "split": "train"}]),
                     "docs")
    assert r.added == 1
    assert len(store.embeddings("docs")[0]) == 37
    assert store.sql("SELECT count(*) FROM docs").fetchall() == [(37,)]


def test_manifest_replace_leaves_no_temporary_files(store, topics_csv, tmp_path):
    store.ingest(topics_csv, "docs", encoder=HASH)
    make_png(tmp_path / "imgs" / "a.png", 1)
    store.ingest(tmp_path / "imgs", "imgs", encoder=HASH)
    store.fit("docs", "label", "topic", model="knn")
    store.predict("topic", "docs")
    store.predict("topic", "docs")
    leftovers = [p for p in store.root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(f".{MANIFEST}")]
    assert leftovers == []
    # every file the manifest lists exists
    m = read_manifest(store.root)
    listed = [s["file"] for c in m["collections"].values() for s in c["item_shards"]]
    listed += [s["file"] for c in m["collections"].values() for sp in c["spaces"].values() for s in sp["shards"]]
    listed += [s["file"] for c in m["collections"].values() for p in c["predictions"].values() for s in p["shards"]]
    assert listed and all((store.root / f).is_file() for f in listed)
    assert len(set(listed)) == len(listed)


def test_a_leftover_temp_manifest_from_a_crash_is_ignored(store, topics_csv):
    store.ingest(topics_csv, "docs", encoder=HASH)
    (store.root / f".{MANIFEST}.12345.tmp").write_text('{"format_version": 1, "collec')  # a write cut short
    s = Store.open(store.root)
    assert s.info()["collections"]["docs"]["items"] == 36


def test_readers_keep_their_snapshot_until_refresh(store, topics_csv, tmp_path):
    store.ingest(topics_csv, "docs", encoder=HASH)
    reader = Store.open(store.root)
    store.ingest(write_csv(tmp_path / "more.csv", [{"text": "one more", "label": "x", "split": "test"}]), "docs")
    assert len(reader.embeddings("docs")[0]) == 36
    assert len(reader.search("docs", "one more", k=100)) == 36  # the index on disk has 37 rows; the snapshot 36
    assert reader.sql("SELECT count(*) FROM docs").fetchall() == [(36,)]
    reader.refresh()
    assert len(reader.embeddings("docs")[0]) == 37
    assert reader.search("docs", "one more", k=1)[0]["text"] == "one more"


def test_write_manifest_is_atomic_and_stamps_updated(tmp_path):
    Store.open(tmp_path / "s")
    m = read_manifest(tmp_path / "s")
    m["next_part"] = 41
    write_manifest(tmp_path / "s", m)
    assert read_manifest(tmp_path / "s")["next_part"] == 41
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [".writer.lock", MANIFEST]


# ------------------------------------------------------------------------------------------------ embeddings + index
def test_embeddings_are_float32_in_index_order(store, topics_csv, tmp_path):
    import faiss

    store.ingest(topics_csv, "docs", encoder=HASH)
    store.ingest(write_csv(tmp_path / "more.csv", [{"text": f"extra row number {i}", "label": "x", "split": "t"}
                                                   for i in range(4)]), "docs")
    ids, X = store.embeddings("docs")
    assert isinstance(ids, list) and all(isinstance(i, str) for i in ids)
    assert X.dtype == np.float32 and X.shape == (40, 64) and X.flags["C_CONTIGUOUS"]
    texts = texts_by_id(store, "docs")
    # row i of the array is the encoder's vector of item ids[i] ...
    np.testing.assert_allclose(X, get_encoder(HASH).encode_text([texts[i] for i in ids]), atol=1e-6)
    # ... and row i of the FAISS index
    sp = store.space("docs")
    assert sp["index"]["ntotal"] == 40
    index = faiss.read_index(str(store.root / sp["index"]["file"]))
    assert index.ntotal == 40
    norm = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(index.reconstruct_n(0, 40), norm, atol=1e-6)
    # the later ingest's rows come after the first's
    assert [texts[i] for i in ids[36:]] == [f"extra row number {i}" for i in range(4)]


def test_space_view_has_ids_hashes_and_embeddings(topic_store):
    rows = topic_store.sql("SELECT id, content_hash, embedding FROM docs__hash64 ORDER BY id").fetchall()
    assert len(rows) == 36
    ids, X = topic_store.embeddings("docs")
    by_id = dict(zip(ids, X))
    for item_id, digest, emb in rows[:5]:
        assert len(digest) == 64
        np.testing.assert_allclose(np.asarray(emb, np.float32), by_id[item_id], atol=1e-7)


# ------------------------------------------------------------------------------------------------ search
def test_search_by_text_finds_the_texts_sharing_words(topic_store):
    hits = topic_store.search("docs", "the bond and the bank near the rates yields", k=5)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0]["text"] == "the bond and the bank near the rates yields"
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert all(h["label"] == "finance" for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and scores[1] < 1.0
    assert set(hits[0]) == {"rank", "id", "score", "text", "label", "split"}


def test_search_by_a_few_words(topic_store):
    hits = topic_store.search("docs", "striker referee", k=3)
    assert all(h["label"] == "sports" for h in hits)
    assert "striker" in hits[0]["text"] and "referee" in hits[0]["text"]


def test_search_like_an_item(topic_store):
    item_id, text = topic_store.sql("SELECT id, text FROM docs WHERE label = 'animals' ORDER BY id LIMIT 1").fetchall()[0]
    hits = topic_store.search("docs", item_id=item_id, k=4)  # more like it: itself left out
    ids, X = topic_store.embeddings("docs")
    by_vector = topic_store.search("docs", vector=X[ids.index(item_id)], k=5)
    assert by_vector[0]["id"] == item_id and by_vector[0]["text"] == text
    assert [h["id"] for h in hits] == [h["id"] for h in by_vector[1:]]
    assert [h["label"] for h in hits] == ["animals"] * 4
    filtered = topic_store.search("docs", item_id=item_id, k=2, where="label = 'animals'")
    assert item_id not in [h["id"] for h in filtered] and len(filtered) == 2  # (ties may order the same scores
    assert [h["score"] for h in filtered] == pytest.approx([h["score"] for h in by_vector[1:3]])  # differently)


def test_search_by_vector(topic_store):
    ids, X = topic_store.embeddings("docs")
    hits = topic_store.search("docs", vector=X[7], k=2)
    assert hits[0]["id"] == ids[7]
    hits = topic_store.search("docs", vector=(X[3] * 5.0).tolist(), k=1)  # scale does not matter: cosine
    assert hits[0]["id"] == ids[3] and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_search_k_larger_than_the_collection(topic_store):
    assert len(topic_store.search("docs", "cat", k=1000)) == 36


def test_search_images_by_image(store, tmp_path):
    for i in range(6):
        make_png(tmp_path / "imgs" / f"{i}.png", 100 + i)
    store.ingest(tmp_path / "imgs", "imgs", encoder=HASH)
    hits = store.search("imgs", image=tmp_path / "imgs" / "4.png", k=3)
    assert hits[0]["path"] == str(tmp_path / "imgs" / "4.png")
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5) and hits[1]["score"] < 0.999


@pytest.mark.parametrize("kwargs, error, match", [
    ({}, InputError, "exactly one of"),
    ({"query": "cat", "item_id": "x"}, InputError, r"got a text query, --like"),
    ({"query": "   "}, InputError, "query is empty"),
    ({"item_id": "no-such-id"}, NotFoundError, "no item 'no-such-id'"),
    ({"vector": [0.1, 0.2]}, InputError, "query vector has 2 dimensions; space 'hash64' has 64"),
    ({"query": "cat", "k": 0}, InputError, "k must be at least 1"),
    ({"query": "cat", "space": "nope"}, NotFoundError, "no space 'nope'"),
])
def test_search_errors(topic_store, kwargs, error, match):
    with pytest.raises(error, match=match):
        topic_store.search("docs", **kwargs)


# ------------------------------------------------------------------------------------------------ SQL
def test_sql_is_read_only_by_default(topic_store):
    for stmt in ("CREATE TABLE t AS SELECT 1 AS x", "DROP VIEW docs", "COPY (SELECT 1) TO 'x.csv'",
                 "SELECT 1; CREATE TABLE t (x INT)"):
        with pytest.raises(ReadOnlyError, match="read-only; pass --write") as e:
            topic_store.sql(stmt)
        assert isinstance(e.value, PermissionError)
    assert not (topic_store.root / "sql.duckdb").exists()


def test_sql_write_allows_create_table(store, topics_csv):
    store.ingest(topics_csv, "docs", encoder=HASH)
    store.sql("CREATE TABLE counts AS SELECT label, count(*) AS n FROM docs GROUP BY label", write=True)
    assert sorted(store.sql("SELECT label, n FROM counts", write=True).fetchall()) == [
        ("animals", 12), ("finance", 12), ("sports", 12)]
    assert (store.root / "sql.duckdb").exists()
    # the store's own data is untouched
    assert store.sql("SELECT count(*) FROM docs").fetchall() == [(36,)]


def test_tables_made_with_write_are_readable_read_only(store, topics_csv):
    store.ingest(topics_csv, "docs", encoder=HASH)
    store.sql("CREATE TABLE mine AS SELECT 1 AS x", write=True)
    assert store.sql("SELECT x FROM mine").fetchall() == [(1,)]


def test_sql_errors_are_one_line_input_errors(topic_store):
    with pytest.raises(InputError, match="SQL error") as e:
        topic_store.sql("SELECT nope FROM docs")
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="empty"):
        topic_store.sql("  ")


def test_sql_views(topic_store):
    assert topic_store.sql("SELECT label, count(*) FROM docs GROUP BY label ORDER BY label").fetchall() == [
        ("animals", 12), ("finance", 12), ("sports", 12)]
    cols = topic_store.sql("SELECT * FROM predictions LIMIT 0").columns
    assert set(PREDICTION_COLUMNS) <= set(cols)


def test_predictions_view_is_empty_but_queryable_before_any_predict(store, topics_csv):
    store.ingest(topics_csv, "docs", encoder=HASH)
    rel = store.sql("SELECT * FROM predictions")
    assert rel.fetchall() == []
    assert set(PREDICTION_COLUMNS) <= set(rel.columns)


# ------------------------------------------------------------------------------------------------ info
def test_info(topic_store):
    info = topic_store.info()
    assert info["store"] == str(topic_store.root) and info["format_version"] == 1
    c = info["collections"]["docs"]
    fp = get_encoder(HASH).fingerprint()
    assert {k: c[k] for k in ("modality", "items", "content_column", "quarantined", "predictions")} == {
        "modality": "text", "items": 36, "content_column": "text", "quarantined": 0, "predictions": {"topic": 36}}
    assert list(c["spaces"]) == ["hash64"]
    space = c["spaces"]["hash64"]
    assert {k: space[k] for k in ("encoder", "model", "dim", "rows", "fingerprint", "index")} == {
        "encoder": HASH, "model": "hash", "dim": 64, "rows": 36, "fingerprint": fp, "index": "Flat"}
    h = info["heads"]["topic"]
    assert {k: h[k] for k in ("versions", "version", "model", "collection", "space", "label_column", "n_classes")} == {
        "versions": 1, "version": 1, "model": "logreg", "collection": "docs", "space": "hash64",
        "label_column": "label", "n_classes": 3}
    assert 0.9 <= h["accuracy"] <= 1.0 and 0.9 <= h["macro_f1"] <= 1.0
    assert h["evaluated_on"].startswith("held-out 0.2 of docs")
    json.dumps(info)


def test_info_counts_quarantined_rows(store, tmp_path):
    src = write_csv(tmp_path / "q.csv", [{"text": "fine"}, {"text": ""}, {"text": "  "}])
    store.ingest(src, "q", encoder=HASH)
    assert store.info()["collections"]["q"]["quarantined"] == 2
    assert store.info()["collections"]["q"]["items"] == 1
    store.ingest(src, "q")  # the same file again: its two bad rows are still the same two
    assert store.info()["collections"]["q"]["quarantined"] == 2
    assert [i["quarantined"] for i in store.manifest["collections"]["q"]["ingests"]] == [2, 2]
    other = write_csv(tmp_path / "r.csv", [{"text": ""}, {"text": "also fine"}])
    store.ingest(other, "q")  # another file adds its own
    assert store.info()["collections"]["q"]["quarantined"] == 3
    write_csv(src, [{"text": "fine"}, {"text": "mended"}, {"text": "  "}])
    store.ingest(src, "q")  # the first file, one row mended: its latest ingest counts
    assert store.info()["collections"]["q"]["quarantined"] == 2 and store.info()["collections"]["q"]["items"] == 3


def test_delete_collection(store, topics_csv):
    from embstore.config import Settings

    store.ingest(topics_csv, "docs", encoder=HASH)
    reader = Store.open(store.root, create=False)
    store.delete_collection("docs")
    assert store.info()["collections"] == {}
    assert len(store.manifest["retired"]) == 3  # its item shard, its row copy and its space shard, kept for older
    # snapshots
    assert reader.sql("SELECT count(*) FROM docs").fetchall() == [(36,)]
    assert len(reader.search("docs", "cat", k=100)) == 36  # its index is gone: rebuilt exactly from the shards
    assert store.ingest(topics_csv, "docs", encoder=HASH).added == 36  # the same name again: new shards
    assert len(store.search("docs", "cat", k=100)) == 36
    later = Store.open(store.root, settings=Settings.resolve(device="cpu", retention_s=0))
    later.delete_collection("docs")  # past the retention: both deletions' shards go
    assert later.manifest["retired"] == [] and not (store.root / "collections" / "docs").exists()


def test_delete_head_retires_its_files_and_predictions_for_readers_of_older_snapshots(store, topics_csv):
    from embstore.config import Settings

    store.ingest(topics_csv, "docs", encoder=HASH)
    store.fit("docs", "label", "topic")
    store.predict("topic", "docs")
    shard = store.manifest["collections"]["docs"]["predictions"]["topic"]["shards"][0]["file"]
    reader = Store.open(store.root, create=False)
    assert store.delete_head("topic") == {"head": "topic", "versions": [1], "predictions": {"docs": 36}}
    assert store.sql("SELECT count(*) FROM predictions").fetchall() == [(0,)]
    assert reader.sql("SELECT count(*) FROM predictions").fetchall() == [(36,)]  # its snapshot still reads
    retired = [r["file"] for r in store.manifest["retired"]]
    assert retired[0] == shard and all((store.root / f).is_file() for f in retired)
    kept = sorted(f"heads/topic/v1/{f.name}" for f in (store.root / "heads" / "topic" / "v1").iterdir())
    assert sorted(retired[1:]) == kept and "heads/topic/v1/head.json" in kept  # every file of the version
    assert "topic" not in store.info()["heads"]
    with pytest.raises(NotFoundError, match="no head 'topic'"):
        store.delete_head("topic")
    assert reader.predict("topic", texts=["a cat"])["version"] == 1  # the old snapshot still loads the deleted head
    assert store.fit("docs", "label", "topic")["version"] == 2  # v1's folder is still kept: not written over
    later = Store.open(store.root, settings=Settings.resolve(device="cpu", retention_s=0))
    later.delete_head("topic", version=2)  # past the retention: v1's and now v2's files go, folders too
    assert later.manifest["retired"] == [] and not (store.root / "heads" / "topic").exists()
    with pytest.raises(NotFoundError, match="version 1 was deleted"):
        reader.predict("topic", texts=["a cat"])


def test_a_deleted_version_number_is_not_given_again(store, topics_csv):
    store.ingest(topics_csv, "docs", encoder=HASH)
    store.fit("docs", "label", "topic")
    store.fit("docs", "label", "topic", model="centroid")
    reader = Store.open(store.root, create=False)  # its snapshot still lists v2
    store.delete_head("topic", version=2)
    assert store.fit("docs", "label", "topic", model="knn")["version"] == 3  # not a second, different "v2"
    assert reader.predict("topic", texts=["a cat"], version=2)["version"] == 2  # its files are retired, not gone
    assert [v["version"] for v in store.manifest["heads"]["topic"]["versions"]] == [1, 3]


def test_delete_collection_takes_its_quarantine_records(store, tmp_path):
    rows = [{"text": "a cat"}, {"text": ""}, {"text": "a dog"}]  # the empty text is quarantined
    assert store.ingest(write_csv(tmp_path / "q.csv", rows), "q", encoder=HASH).quarantined == 1
    assert list((store.root / "quarantine" / "q").glob("*.jsonl"))
    assert store.delete_collection("q") == {"collection": "q", "items": 2, "spaces": ["hash64"], "predictions": []}
    assert not (store.root / "quarantine" / "q").exists()


def test_retired_files_outside_the_store_are_never_deleted(store, topics_csv, tmp_path):
    from embstore.config import Settings
    from embstore.manifest import write_manifest

    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    store.ingest(topics_csv, "docs", encoder=HASH)
    store.manifest["retired"] = [{"file": f"collections/../../{outside.name}", "retired": "2020-01-01T00:00:00Z",
                                  "unix": 0.0}, {"file": str(outside), "retired": "2020-01-01T00:00:00Z", "unix": 0.0}]
    write_manifest(store.root, store.manifest)  # as if the manifest came from someone else
    later = Store.open(store.root, settings=Settings.resolve(device="cpu", retention_s=0))
    later.delete_collection("docs")
    assert outside.read_text() == "keep me" and later.manifest["retired"] == []


def test_an_empty_collection_is_an_empty_sql_view(store, tmp_path):
    r = store.ingest(write_csv(tmp_path / "e.csv", [{"text": ""}]), "empty", encoder=HASH)
    assert (r.added, r.quarantined) == (0, 1) and "empty" not in store.info()["collections"]  # not created
    store.ingest(write_csv(tmp_path / "one.csv", [{"text": "one"}]), "empty", encoder=HASH)
    with store.writing():  # what an older embstore left after such an ingest: a collection with no items
        c = store.manifest["collections"]["empty"]
        c["item_shards"] = []
        c["spaces"]["hash64"].update(shards=[], rows=0, index=None)
        store.commit()
    assert store.search("empty", "anything") == []
    assert store.sql("SELECT count(*) FROM empty").fetchall() == [(0,)]
