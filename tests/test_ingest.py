"""Ingest: readers (CSV, TSV, Parquet, JSONL, image folders, tables of image paths), ids, dedupe, quarantine, errors."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embstore import EmbstoreError, InputError, Store
from embstore.config import Settings
from embstore.encoders import get_encoder

from conftest import HASH, make_png, quarantine_lines, topic_rows, write_csv, write_jsonl


def counts_add_up(r) -> bool:
    return r.read == r.added + r.duplicates + r.quarantined


def items(store, collection: str) -> list[dict]:
    return store.sql(f'SELECT * FROM "{collection}" ORDER BY id').to_arrow_table().to_pylist()


# ------------------------------------------------------------------------------------------------ formats
def test_ingest_csv_keeps_every_column_and_embeds_each_row(store, topics_csv):
    r = store.ingest(topics_csv, "docs", encoder=HASH)
    assert (r.read, r.added, r.duplicates, r.quarantined, r.embedded, r.reused) == (36, 36, 0, 0, 36, 0)
    assert r.collection == "docs" and r.space == "hash64" and r.encoder == HASH
    assert r.quarantine_file is None and r.reasons == {}
    rows = items(store, "docs")
    assert len(rows) == 36
    assert set(rows[0]) == {"id", "text", "label", "split", "content_hash"}
    assert sorted(r["text"] for r in rows) == sorted(x["text"] for x in topic_rows())
    ids, X = store.embeddings("docs")
    assert len(ids) == 36 and X.shape == (36, 64)


def test_ingest_tsv_with_commas_and_quotes_in_text(store, tmp_path):
    rows = [{"text": 'a "quoted", comma text', "label": "x"}, {"text": "tab separated, fine", "label": "y"}]
    r = store.ingest(write_csv(tmp_path / "t.tsv", rows, delimiter="\t"), "t", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (2, 2, 0)
    assert sorted(x["text"] for x in items(store, "t")) == sorted(x["text"] for x in rows)


def test_ingest_parquet_uses_the_id_column(store, tmp_path):
    table = pa.table({"id": [10, 20, 30], "text": ["red apple", "green pear", "yellow banana"],
                      "price": [1.5, 2.0, 0.25]})
    pq.write_table(table, tmp_path / "fruit.parquet")
    r = store.ingest(tmp_path / "fruit.parquet", "fruit", encoder=HASH)
    assert (r.read, r.added) == (3, 3)
    got = {row["id"]: row for row in items(store, "fruit")}
    assert set(got) == {"10", "20", "30"}  # the user's ids, as strings
    assert got["20"]["text"] == "green pear" and got["20"]["price"] == 2.0
    assert store.collection("fruit")["id_column"] == "id"


def test_ingest_jsonl_quarantines_a_malformed_line_and_keeps_the_rest(store, tmp_path):
    src = write_jsonl(tmp_path / "q.jsonl", [{"text": "first good line", "n": 1}, '{"text": "broken', "",
                                              {"text": "second good line", "n": 2}, "[1, 2]"])
    r = store.ingest(src, "q", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (4, 2, 2)  # the blank line is not a row
    assert counts_add_up(r)
    assert r.reasons == {"invalid JSON": 1, "not a JSON object": 1}
    lines = quarantine_lines(store.root, r.quarantine_file)
    # rows that do not parse are located by their file line (row is None: they never became data rows)
    assert [(x["row"], x["line"], x["reason"].split(":")[0]) for x in lines] == [
        (None, 2, "invalid JSON"), (None, 5, "not a JSON object")]
    assert lines[0]["data"] == '{"text": "broken'
    assert lines[0]["source"] == str(src.absolute())
    assert sorted(x["text"] for x in items(store, "q")) == ["first good line", "second good line"]


def test_ingest_image_folder_adds_a_folder_column(store, tmp_path):
    for i in range(3):
        make_png(tmp_path / "imgs" / "cats" / f"c{i}.png", i)
        make_png(tmp_path / "imgs" / "dogs" / f"d{i}.png", 10 + i)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    r = store.ingest(tmp_path / "imgs", "pets", encoder=HASH)
    assert (r.read, r.added, r.quarantined, r.embedded, r.ignored_files) == (6, 6, 0, 6, 1)
    assert store.collection("pets")["modality"] == "image"
    rows = items(store, "pets")
    assert sorted((os.path.basename(x["path"]), x["folder"]) for x in rows) == [
        ("c0.png", "cats"), ("c1.png", "cats"), ("c2.png", "cats"),
        ("d0.png", "dogs"), ("d1.png", "dogs"), ("d2.png", "dogs")]
    assert all(os.path.isabs(x["path"]) and os.path.exists(x["path"]) for x in rows)
    # the stored vector is the encoder's vector for that file
    ids, X = store.embeddings("pets")
    by_id = {x["id"]: x["path"] for x in rows}
    enc = get_encoder(HASH)
    np.testing.assert_allclose(X, enc.encode_images([by_id[i] for i in ids]), atol=1e-6)


def test_ingest_table_of_relative_image_paths_quarantines_missing_and_broken_files(store, tmp_path):
    data = tmp_path / "data"
    make_png(data / "imgs" / "a.png", 1)
    make_png(data / "imgs" / "b.png", 2)
    (data / "imgs" / "broken.png").write_bytes(b"this is not a png at all" * 10)
    src = write_csv(data / "labels.csv", [
        {"file": "imgs/a.png", "label": "one"}, {"file": "imgs/b.png", "label": "two"},
        {"file": "imgs/broken.png", "label": "three"}, {"file": "imgs/nowhere.png", "label": "four"}])
    r = store.ingest(src, "pics", image_column="file", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (4, 2, 2)
    assert counts_add_up(r)
    assert r.reasons == {"broken image": 1, "missing file": 1}
    lines = {x["row"]: x for x in quarantine_lines(store.root, r.quarantine_file)}
    assert set(lines) == {3, 4}
    assert lines[3]["reason"].startswith("broken image") and "broken.png" in lines[3]["reason"]
    assert lines[4]["reason"].startswith("missing file") and "nowhere.png" in lines[4]["reason"]
    assert lines[4]["data"]["label"] == "four"
    rows = {x["label"]: x for x in items(store, "pics")}
    assert set(rows) == {"one", "two"}
    assert rows["one"]["file"] == str((data / "imgs" / "a.png").resolve())  # relative to the table's folder


def test_broken_image_in_a_folder_is_quarantined(store, tmp_path):
    make_png(tmp_path / "imgs" / "ok.png", 3)
    (tmp_path / "imgs" / "bad.png").write_bytes(os.urandom(200))
    r = store.ingest(tmp_path / "imgs", "imgs", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (2, 1, 1)
    assert list(r.reasons) == ["broken image"]


@pytest.mark.parametrize("decoders", ["threads", "processes", "processes, chunks of 4 written in the background"])
def test_images_decode_in_batches_with_quarantine_and_reuse(tmp_path, monkeypatch, decoders):
    """Decoding streams into the model a batch at a time, in threads or (for many images) worker processes; either
    way broken files are quarantined (each row naming its own file, also when two rows share the broken bytes),
    the same bytes under two paths are embedded once, and every stored vector is the encoder's own."""
    from embstore.config import Settings
    from embstore.ingest import decode, runner

    monkeypatch.setattr(decode, "PROCESS_MIN", 1 if decoders.startswith("processes") else 10**9)
    chunked = "chunks" in decoders  # as on a GPU: each chunk's decoders fork after the last chunk's write is done
    monkeypatch.setattr(runner, "BACKGROUND", True if chunked else None)
    data = tmp_path / "data"
    rows = []
    for k in range(9):
        make_png(data / f"img{k}.png", k)
        rows.append({"file": f"img{k}.png", "label": str(k)})
    (data / "copy.png").write_bytes((data / "img4.png").read_bytes())
    for name in ("bad1.png", "bad2.png"):
        (data / name).write_bytes(b"not an image, twice" * 20)
    rows[3:3] = [{"file": "bad1.png", "label": "b1"}, {"file": "copy.png", "label": "c"}]
    rows += [{"file": "bad2.png", "label": "b2"}, {"file": "gone.png", "label": "g"}]
    src = write_csv(data / "labels.csv", rows)
    store = Store.open(tmp_path / "store", settings=Settings.resolve(device="cpu", batch_size=3, workers=2,
                                                                     commit_rows=4 if chunked else None))
    r = store.ingest(src, "pics", image_column="file", encoder=HASH)
    assert (r.read, r.added, r.quarantined, r.embedded, r.reused) == (13, 10, 3, 9, 1)
    assert len(store.space("pics")["shards"]) == (3 if chunked else 1)  # chunks of 4: the 4th (1 row) is quarantined
    assert r.reasons == {"broken image": 2, "missing file": 1} and counts_add_up(r)
    reasons = {x["data"]["label"]: x["reason"] for x in quarantine_lines(store.root, r.quarantine_file)}
    assert "bad1.png" in reasons["b1"] and "bad2.png" in reasons["b2"] and "gone.png" in reasons["g"]
    ids, X = store.embeddings("pics")
    path_of = dict(store.sql("SELECT id, file FROM pics").fetchall())
    np.testing.assert_allclose(X, get_encoder(HASH).encode_images([path_of[i] for i in ids]), atol=1e-6)


def test_a_file_gone_before_decoding_fails_its_own_row_only(tmp_path, monkeypatch):
    """Two rows share bytes; the first file vanishes between hashing and decoding: that row is quarantined as a
    missing file, and the other row's (intact) file is decoded instead, not quarantined in its name."""
    from embstore.ingest import runner

    data = tmp_path / "data"
    make_png(data / "a.png", 1)
    (data / "b.png").write_bytes((data / "a.png").read_bytes())
    make_png(data / "c.png", 2)
    src = write_csv(data / "t.csv", [{"file": f"{n}.png", "label": n} for n in "abc"])
    original = runner.decode_batches

    def vanish_first(paths, *args, **kwargs):
        if os.path.exists(data / "a.png"):
            os.remove(data / "a.png")
        return original(paths, *args, **kwargs)

    monkeypatch.setattr(runner, "decode_batches", vanish_first)
    store = Store.open(tmp_path / "store")
    r = store.ingest(src, "pics", image_column="file", encoder=HASH)
    assert (r.read, r.added, r.quarantined, r.embedded) == (3, 2, 1, 2) and counts_add_up(r)
    [line] = quarantine_lines(store.root, r.quarantine_file)
    assert line["data"]["label"] == "a" and line["reason"] == f"missing file: {data / 'a.png'}"
    assert sorted(x["label"] for x in items(store, "pics")) == ["b", "c"]


def test_only_the_kept_copy_of_a_repeated_id_is_embedded(tmp_path, monkeypatch):
    """An id twice in the input with different images: the second copy is quarantined before any model runs on it,
    so `embedded` is what the encoder computed."""
    from embstore.encoders.hashing import HashEncoder

    seen = []
    original = HashEncoder.encode_preprocessed
    monkeypatch.setattr(HashEncoder, "encode_preprocessed", lambda self, batch: seen.append(len(batch)) or
                        original(self, batch))
    make_png(tmp_path / "a.png", 1)
    make_png(tmp_path / "b.png", 2)
    src = write_csv(tmp_path / "t.csv", [{"id": "x", "file": "a.png"}, {"id": "x", "file": "b.png"}])
    r = Store.open(tmp_path / "store").ingest(src, "pics", image_column="file", encoder=HASH)
    assert (r.added, r.quarantined, r.embedded, sum(seen)) == (1, 1, 1, 1)
    assert r.reasons == {"id repeated in input with different content": 1}


def test_a_stored_item_whose_image_changed_is_not_added_to_a_new_space(tmp_path):
    """The item exists (embedded in one space) and its file's bytes have changed: ingesting into a second space
    quarantines the row instead of storing a vector of the new bytes under the item's old content."""
    make_png(tmp_path / "a.png", 1)
    src = write_csv(tmp_path / "t.csv", [{"id": "x", "file": "a.png"}])
    store = Store.open(tmp_path / "store")
    store.ingest(src, "pics", image_column="file", encoder=HASH)
    make_png(tmp_path / "a.png", 2)
    r = store.ingest(src, "pics", image_column="file", encoder="hash:32")
    assert (r.read, r.added, r.duplicates, r.quarantined, r.embedded) == (1, 0, 0, 1, 0)
    assert list(r.reasons) == ["id already in collection with different content"]
    make_png(tmp_path / "a.png", 1)  # the bytes the item has: the new space gets its vector
    r = store.ingest(src, "pics", image_column="file", encoder="hash:32")
    assert (r.duplicates, r.quarantined, r.embedded) == (1, 0, 1)


def test_a_stored_item_whose_text_changed_is_not_added_to_a_new_space(tmp_path):
    src = write_csv(tmp_path / "t.csv", [{"id": "x", "text": "the first words"}])
    store = Store.open(tmp_path / "store")
    store.ingest(src, "docs", encoder=HASH)
    changed = write_csv(tmp_path / "u.csv", [{"id": "x", "text": "other words now"}])
    r = store.ingest(changed, "docs", encoder="hash:32")
    assert (r.added, r.duplicates, r.quarantined, r.embedded) == (0, 0, 1, 0)
    assert list(r.reasons) == ["id already in collection with different content"]
    assert (store.ingest(src, "docs", encoder="hash:32").embedded, len(store.embeddings("docs", "hash32")[0])) == (1, 1)


def _ingest_in_a_pool_worker(args):
    store_path, src = args
    r = Store.open(store_path).ingest(src, "pics", image_column="file", encoder=HASH)
    return r.added, r.quarantined


def test_ingest_inside_a_daemonic_pool_worker_decodes_in_threads(tmp_path, monkeypatch):
    """A multiprocessing.Pool worker may not start processes: there the many-images path falls back to threads."""
    import multiprocessing

    from embstore.ingest import decode

    monkeypatch.setattr(decode, "PROCESS_MIN", 1)  # inherited by the forked pool worker (workers: the default, >= 2)
    monkeypatch.setenv("EMBSTORE_WORKERS", "2")
    rows = [{"file": f"{k}.png"} for k in range(6)]
    for k in range(6):
        make_png(tmp_path / f"{k}.png", k)
    src = write_csv(tmp_path / "t.csv", rows)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.map(_ingest_in_a_pool_worker, [(str(tmp_path / "store"), str(src))]) == [(6, 0)]


def test_decoding_runs_only_a_few_batches_ahead_of_the_model(tmp_path):
    """Memory holds a few decoded batches, never a whole chunk: after the first batch is taken, at most
    workers + 1 batches have been decoded."""
    from embstore.ingest.runner import decode_batches
    from embstore.ingest.hashing import content_hash

    paths = [str(make_png(tmp_path / f"{k}.png", k)) for k in range(40)]
    digests = [content_hash(open(p, "rb").read()) for p in paths]
    decoded = []

    def preprocess(image):
        decoded.append(1)
        return np.zeros(4, np.float32)

    batches = decode_batches(paths, digests, preprocess, batch_size=2, workers=2)
    ks, batch, errors = next(batches)
    assert ks == [0, 1] and batch.shape == (2, 4) and errors == []
    assert len(decoded) <= 3 * 2
    assert sum(len(b[0]) for b in batches) == 38 and len(decoded) == 40


def test_a_file_changed_between_hashing_and_decoding_is_an_error_not_a_wrong_vector(tmp_path):
    from embstore.ingest.runner import decode_batches

    path = str(make_png(tmp_path / "a.png", 1))
    [(ks, batch, errors)] = decode_batches([path], ["the hash of other bytes"], lambda im: np.zeros(2), 4, 1)
    assert ks == [] and batch is None
    assert errors == [(0, ("file", f"file changed while it was being ingested: {path}; ingest it again"))]


# ------------------------------------------------------------------------------------------------ ids and dedupe
def test_row_hash_ids_and_reingest_adds_nothing(store, topics_csv):
    first = store.ingest(topics_csv, "docs", encoder=HASH)
    ids_before, X_before = store.embeddings("docs")
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids_before)  # a hash of the row, not a row number
    again = store.ingest(topics_csv, "docs")  # the collection's one space: its encoder is reused
    assert (again.read, again.added, again.duplicates, again.quarantined) == (36, 0, 36, 0)
    assert (again.embedded, again.reused) == (0, 0)
    assert again.encoder == HASH and first.space == again.space
    ids_after, X_after = store.embeddings("docs")
    assert ids_after == ids_before
    np.testing.assert_array_equal(X_after, X_before)
    assert store.sql("SELECT count(*) FROM docs").fetchall()[0][0] == 36
    assert [i["added"] for i in store.manifest["collections"]["docs"]["ingests"]] == [36, 0]


@pytest.fixture()
def count_loads(monkeypatch):
    """Counts encoder builds (the model loads) from here on; the process-wide encoder cache starts empty."""
    from embstore import encoders

    built: list[str] = []
    real = encoders._build
    monkeypatch.setattr(encoders, "_cache", {})
    monkeypatch.setattr(encoders, "_build", lambda spec, device, *rest: built.append(spec) or real(spec, device, *rest))
    return built


@pytest.mark.parametrize("kind", ["text", "image"])
def test_a_reingest_with_nothing_new_does_not_load_the_model(store, tmp_path, count_loads, kind):
    if kind == "text":
        src = write_csv(tmp_path / "t.csv", topic_rows())
        more = write_csv(tmp_path / "more.csv", topic_rows() + [{"text": "a brand new sentence", "label": "x"}])
    else:
        for i in range(4):
            make_png(tmp_path / "imgs" / f"{i}.png", i)
        src = more = tmp_path / "imgs"
    store.ingest(src, "c", encoder=HASH)
    assert count_loads == [HASH]
    from embstore import encoders

    encoders._cache.clear()  # as in a new process
    again = Store.open(store.root).ingest(src, "c")  # same file, same space: nothing to embed
    assert again.added == 0 and again.duplicates == again.read and count_loads == [HASH]
    if kind == "image":
        make_png(tmp_path / "imgs" / "new.png", 99)
    count_loads.clear()
    grown = Store.open(store.root).ingest(more, "c")  # something new: the model loads, once
    assert grown.added == 1 and grown.embedded == 1 and count_loads == [HASH]
    assert len(store.collection("c")["spaces"]) == 1


def test_a_space_whose_encoder_changed_refuses_new_items_and_commits_nothing(store, tmp_path, monkeypatch):
    from embstore import encoders
    from embstore.errors import SpaceMismatchError

    src = write_csv(tmp_path / "t.csv", topic_rows())
    store.ingest(src, "c", encoder=HASH)
    other = get_encoder("hash:32")  # stands in for the same spec whose weights changed on disk
    monkeypatch.setattr(encoders, "_cache", {(HASH, store.settings.device, store.settings.runtime): other})
    store.ingest(src, "c")  # nothing new: fine without the model
    more = write_csv(tmp_path / "more.csv", topic_rows() + [{"text": "a brand new sentence", "label": "x"}])
    with pytest.raises(SpaceMismatchError, match="its weights changed"):
        store.ingest(more, "c")
    assert Store.open(store.root).sql("SELECT count(*) FROM c").fetchall()[0][0] == 36


def test_a_reingest_finds_the_collection_s_one_space_by_its_name(store, topics_csv, count_loads):
    store.ingest(topics_csv, "docs", encoder=HASH, space="mine")
    from embstore import encoders

    for kwargs in ({}, {"encoder": HASH}):  # no encoder named, or the space's own
        encoders._cache.clear()
        count_loads.clear()
        again = store.ingest(topics_csv, "docs", **kwargs)
        assert again.space == "mine" and list(store.collection("docs")["spaces"]) == ["mine"]
        assert count_loads == []  # nothing new: the model never loaded
    other = store.ingest(topics_csv, "docs", encoder="hash:32")  # another encoder: a second space, by its name
    assert other.space == "hash32" and list(store.collection("docs")["spaces"]) == ["mine", "hash32"]


def test_row_ids_do_not_depend_on_column_order(store, tmp_path):
    a = write_csv(tmp_path / "a.csv", [{"text": "same row", "label": "x"}])
    b = write_csv(tmp_path / "b.csv", [{"label": "x", "text": "same row"}])
    store.ingest(a, "c", encoder=HASH)
    r = store.ingest(b, "c")
    assert (r.added, r.duplicates) == (0, 1)


def test_same_text_different_labels_both_stay_and_are_embedded_once(store, tmp_path):
    src = write_csv(tmp_path / "s.csv", [{"text": "the very same words", "label": "a"},
                                         {"text": "the very same words", "label": "b"},
                                         {"text": "something else", "label": "a"}])
    r = store.ingest(src, "s", encoder=HASH)
    assert (r.read, r.added, r.duplicates, r.embedded, r.reused) == (3, 3, 0, 2, 1)
    rows = store.sql("SELECT id, label FROM s WHERE text = 'the very same words' ORDER BY label").fetchall()
    assert [x[1] for x in rows] == ["a", "b"] and rows[0][0] != rows[1][0]
    ids, X = store.embeddings("s")
    np.testing.assert_array_equal(X[ids.index(rows[0][0])], X[ids.index(rows[1][0])])


def test_known_content_is_reused_across_ingests(store, tmp_path):
    store.ingest(write_csv(tmp_path / "1.csv", [{"text": "alpha beta", "label": "x"}]), "c", encoder=HASH)
    r = store.ingest(write_csv(tmp_path / "2.csv", [{"text": "alpha beta", "label": "y"},
                                                    {"text": "gamma delta", "label": "y"}]), "c")
    assert (r.added, r.embedded, r.reused) == (2, 1, 1)


def test_identical_rows_in_one_input_are_duplicates(store, tmp_path):
    row = {"text": "twice in the file", "label": "x"}
    r = store.ingest(write_csv(tmp_path / "d.csv", [row, row, {"text": "once", "label": "x"}]), "d", encoder=HASH)
    assert (r.read, r.added, r.duplicates, r.quarantined) == (3, 2, 1, 0)
    assert store.sql("SELECT count(*) FROM d").fetchall()[0][0] == 2


def test_user_ids_repeated_or_changed_are_quarantined(store, tmp_path):
    src = write_csv(tmp_path / "u.csv", [{"id": "a", "text": "first"}, {"id": "b", "text": "second"},
                                         {"id": "a", "text": "first"}, {"id": "b", "text": "changed"},
                                         {"id": "", "text": "no id"}])
    r = store.ingest(src, "u", encoder=HASH)
    assert (r.read, r.added, r.duplicates, r.quarantined) == (5, 2, 1, 2)
    assert counts_add_up(r)
    reasons = {x["row"]: x["reason"] for x in quarantine_lines(store.root, r.quarantine_file)}
    assert reasons[4].startswith("id repeated in input with different content")
    assert reasons[5].startswith("missing id in column 'id'")
    # later, the same id with other content is refused as well
    r2 = store.ingest(write_csv(tmp_path / "u2.csv", [{"id": "a", "text": "rewritten"}, {"id": "c", "text": "new"}]), "u")
    assert (r2.added, r2.quarantined) == (1, 1)
    assert list(r2.reasons) == ["id already in collection with different content"]
    assert dict(store.sql("SELECT id, text FROM u").fetchall()) == {"a": "first", "b": "second", "c": "new"}


def test_a_known_id_with_the_same_content_but_other_values_is_quarantined_naming_them(store, tmp_path, monkeypatch):
    """Items are not updated in place: a re-ingest that changes an item's label (same id, same text) must not read
    as a duplicate and drop the new label unseen."""
    rows = [{"id": 1, "text": "Where is Paris ?", "label": "LOC", "score": 1},
            {"id": 2, "text": "Who wrote Hamlet ?", "label": "HUM", "score": 2}]
    store.ingest(write_csv(tmp_path / "a.csv", rows), "q", encoder=HASH)
    again = [dict(rows[0], label="HUM"), dict(rows[1], score=2.0), {"id": 3, "text": "new one", "label": "x", "score": 3}]
    r = store.ingest(write_csv(tmp_path / "b.csv", again), "q")
    assert (r.read, r.added, r.duplicates, r.quarantined) == (3, 1, 1, 1)  # 2.0 is the stored 2: a duplicate
    [line] = quarantine_lines(store.root, r.quarantine_file)
    assert line["row"] == 1 and line["reason"].startswith("id already in collection with other values in label: 1;")
    assert store.sql("SELECT label FROM q WHERE id = '1'").fetchall() == [("LOC",)]
    # the same file again, now that the score column is int64 in one shard and double in the other
    r = store.ingest(tmp_path / "b.csv", "q")
    assert (r.added, r.duplicates, r.quarantined) == (0, 2, 1)
    # within one input: the first row of an id is kept, a later one with other values is quarantined, not dropped
    inner = [{"id": 7, "text": "t", "label": "a", "score": 0}, {"id": 7, "text": "t", "label": "b", "score": 0},
             {"id": 7, "text": "t", "label": "a", "score": 0}]
    r = store.ingest(write_csv(tmp_path / "c.csv", inner), "q")
    assert (r.added, r.duplicates, r.quarantined) == (1, 1, 1)
    assert list(r.reasons) == ["id repeated in input with other values"]
    # and across chunks of one ingest, with the first chunk still being written
    from embstore.ingest import runner

    monkeypatch.setattr(runner, "BACKGROUND", True)
    small = Store.open(store.root, settings=Settings.resolve(device="cpu", commit_rows=1))
    r = small.ingest(write_csv(tmp_path / "d.csv", [{"id": 8, "text": "u", "label": "a", "score": 0},
                                                    {"id": 8, "text": "u", "label": "c", "score": 0}]), "q")
    assert (r.added, r.duplicates, r.quarantined) == (1, 0, 1)


def test_id_column_option(store, tmp_path):
    src = write_csv(tmp_path / "k.csv", [{"key": "k1", "text": "one"}, {"key": "k2", "text": "two"}])
    store.ingest(src, "k", id_column="key", encoder=HASH)
    assert sorted(store.embeddings("k")[0]) == ["k1", "k2"]
    assert store.sql("SELECT key FROM k WHERE id = 'k2'").fetchall()[0] == ("k2",)


# ------------------------------------------------------------------------------------------------ counts and quarantine
def test_counts_invariant_on_a_messy_file(store, tmp_path):
    src = tmp_path / "messy.csv"
    src.write_text("text,label\n"
                   "good one,a\n"
                   ",a\n"                       # empty text
                   "   ,b\n"                    # blank text
                   "good one,a\n"               # repeat of row 1
                   "too,many,fields,here\n"     # malformed CSV row
                   "good two,b\n", encoding="utf-8")
    r = store.ingest(src, "m", encoder=HASH)
    assert (r.read, r.added, r.duplicates, r.quarantined) == (6, 2, 1, 3)
    assert counts_add_up(r)
    assert r.reasons == {"empty text in column 'text'": 2, "malformed CSV row": 1}
    lines = quarantine_lines(store.root, r.quarantine_file)
    assert len(lines) == 3 and all({"source", "row", "reason", "data"} <= set(x) for x in lines)
    assert store.info()["collections"]["m"]["quarantined"] == 3


def test_empty_text_reason_names_the_column(store, tmp_path):
    src = write_jsonl(tmp_path / "e.jsonl", [{"body": "words"}, {"body": ""}, {"body": None}])
    r = store.ingest(src, "e", text_column="body", encoder=HASH)
    assert (r.added, r.quarantined) == (1, 2)
    assert r.reasons == {"empty text in column 'body'": 2}


# ------------------------------------------------------------------------------------------------ errors
def test_missing_column_is_a_one_line_input_error_naming_the_columns(store, topics_csv):
    with pytest.raises(InputError) as e:
        store.ingest(topics_csv, "docs", text_column="body", encoder=HASH)
    msg = str(e.value)
    assert "\n" not in msg
    assert "'body'" in msg and "text, label, split" in msg
    assert isinstance(e.value, ValueError) and isinstance(e.value, EmbstoreError)
    assert store.manifest["collections"] == {}  # nothing was created


def test_default_text_column_missing(store, tmp_path):
    src = write_csv(tmp_path / "n.csv", [{"body": "x"}])
    with pytest.raises(InputError, match=r"column 'text' is not in n.csv; its columns are: body"):
        store.ingest(src, "n", encoder=HASH)


def test_missing_input_file(store, tmp_path):
    with pytest.raises(InputError, match="does not exist") as e:
        store.ingest(tmp_path / "nope.csv", "x", encoder=HASH)
    assert "nope.csv" in str(e.value) and "\n" not in str(e.value)


def test_unknown_file_type(store, tmp_path):
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match=r"unknown file type '.xlsx'"):
        store.ingest(tmp_path / "data.xlsx", "x", encoder=HASH)


def test_reserved_column_is_refused(store, tmp_path):
    src = write_csv(tmp_path / "r.csv", [{"text": "x", "content_hash": "y"}])
    with pytest.raises(InputError, match="'content_hash'.*reserved"):
        store.ingest(src, "r", encoder=HASH)


def test_invalid_collection_name(store, topics_csv):
    with pytest.raises(InputError, match="collection name"):
        store.ingest(topics_csv, "1bad-name", encoder=HASH)


def test_unknown_encoder_spec(store, topics_csv):
    from embstore import EncoderError

    with pytest.raises(EncoderError, match="unknown encoder spec 'nope:1'"):
        store.ingest(topics_csv, "docs", encoder="nope:1")


def test_images_into_a_text_collection_are_refused(store, topics_csv, tmp_path):
    store.ingest(topics_csv, "docs", encoder=HASH)
    make_png(tmp_path / "imgs" / "a.png", 1)
    with pytest.raises(InputError, match="holds text items"):
        store.ingest(tmp_path / "imgs", "docs", encoder=HASH)


def test_an_existing_space_refuses_another_encoder(store, topics_csv):
    from embstore import SpaceMismatchError

    store.ingest(topics_csv, "docs", encoder=HASH)
    with pytest.raises(SpaceMismatchError, match="pass --space"):
        store.ingest(topics_csv, "docs", encoder="hash:32", space="hash64")


def test_a_second_encoder_makes_a_second_space(store, topics_csv):
    store.ingest(topics_csv, "docs", encoder=HASH)
    r = store.ingest(topics_csv, "docs", encoder="hash:32")
    assert (r.space, r.added, r.duplicates, r.embedded) == ("hash32", 0, 36, 36)
    assert sorted(store.collection("docs")["spaces"]) == ["hash32", "hash64"]
    assert store.embeddings("docs", "hash32")[1].shape == (36, 32)
    with pytest.raises(InputError, match="pass --space"):
        store.embeddings("docs")


def test_ingest_report_is_json_serialisable(store, topics_csv):
    r = store.ingest(topics_csv, "docs", encoder=HASH)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["added"] == 36 and d["collection"] == "docs"


def test_a_changed_image_under_a_known_id_is_not_a_silent_duplicate(store, tmp_path):
    make_png(tmp_path / "imgs" / "a.png", 1)
    src = write_csv(tmp_path / "t.csv", [{"id": "a", "file": "imgs/a.png"}])
    store.ingest(src, "c", image_column="file", encoder=HASH)
    make_png(tmp_path / "imgs" / "a.png", 2)  # other pixels, same path, same id
    r = store.ingest(src, "c", image_column="file")
    assert (r.duplicates, r.quarantined) == (0, 1)
    assert list(r.reasons) == ["id already in collection with different content"]
    assert quarantine_lines(store.root, r.quarantine_file)[0]["reason"].endswith("give the new content a new id")
    # a folder gives no ids: a changed file is told to take a new name
    make_png(tmp_path / "folder" / "x" / "b.png", 3)
    store.ingest(tmp_path / "folder", "f", encoder=HASH)
    make_png(tmp_path / "folder" / "x" / "b.png", 4)
    r = store.ingest(tmp_path / "folder", "f")
    assert quarantine_lines(store.root, r.quarantine_file)[0]["reason"].endswith(
        "items are not updated in place: rename the file, and its new path is a new item")


def test_row_ids_of_an_image_table_do_not_depend_on_where_it_lies(store, tmp_path):
    import shutil

    make_png(tmp_path / "data" / "imgs" / "a.png", 1)
    write_csv(tmp_path / "data" / "t.csv", [{"file": "imgs/a.png", "label": "x"}])
    store.ingest(tmp_path / "data" / "t.csv", "c", image_column="file", encoder=HASH)
    shutil.copytree(tmp_path / "data", tmp_path / "copy")
    r = store.ingest(tmp_path / "copy" / "t.csv", "c", image_column="file")
    assert (r.added, r.duplicates) == (0, 1)


# ------------------------------------------------------------------------------------------------ background writes
def _numbered_rows(n: int, repeats: bool = False) -> list[dict]:
    """n texts, each its own words (so the hash encoder spreads them); with ``repeats``, rows 10, 20, 30, ...
    repeat the text of rows 5, 15, 25, ... (under other ids: their rows differ by ``n``)."""
    return [{"text": f"w{j} x{j % 7} y{j % 11} z{j % 13}", "n": i}
            for i in range(n) for j in [i - 5 if repeats and i and i % 10 == 0 else i]]


@pytest.mark.parametrize("background", [True, False], ids=["background", "in-turn"])
def test_chunks_are_written_and_indexed_into_the_right_index(tmp_path, monkeypatch, background):
    """Commit chunks of 60 rows: each is written and added to an index grown chunk by chunk, of the kind the whole
    ingest needs (HNSW here, as the thresholds are lowered); in the background (as on a GPU) while the next chunk
    is encoded, or in turn (as on the CPU). The result is the index a rebuild gives: every item finds itself, in
    the manifest's row order."""
    from embstore import index as ix
    from embstore.ingest import runner

    monkeypatch.setattr(runner, "BACKGROUND", background)
    monkeypatch.setattr(ix, "FLAT_MAX", 100)
    built = []
    real_build = ix.build
    monkeypatch.setattr(ix, "build", lambda vectors, factory: (built.append((len(vectors), factory)),
                                                                real_build(vectors, factory))[1])
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=60))
    rep = store.ingest(write_csv(tmp_path / "t.csv", _numbered_rows(250)), "t", encoder=HASH)
    assert rep.added == 250 and rep.seconds["index"] > 0
    assert built == [(0, "HNSW32")]  # grown from empty, never rebuilt at the end
    entry = store.space("t")["index"]
    assert entry["factory"] == "HNSW32" and entry["ntotal"] == 250 and entry["recall_queries"] == 200  # tuned
    ids, X = store.embeddings("t")
    for s in (store, Store.open(store.root)):  # in memory, and as saved
        assert [s.search("t", vector=X[r], k=1)[0]["id"] for r in range(0, 250, 10)] == ids[::10]
    # a second ingest extends the saved index instead of building another
    built.clear()
    rep = store.ingest(write_csv(tmp_path / "more.csv", _numbered_rows(320)[250:]), "t")
    assert rep.added == 70 and built == [] and store.space("t")["index"]["ntotal"] == 320
    ids, X = store.embeddings("t")
    assert store.search("t", vector=X[300], k=1)[0]["id"] == ids[300]


def test_a_chunk_repeating_the_chunk_being_written_reuses_its_vectors(tmp_path, monkeypatch):
    """The vectors of the chunk still being written are found for the next chunk's repeats: each content is
    embedded once, across the chunk boundary."""
    from embstore.ingest import runner

    monkeypatch.setattr(runner, "BACKGROUND", True)
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=50))
    encoder = get_encoder(HASH)
    embedded = []
    real = type(encoder).encode_text
    monkeypatch.setattr(type(encoder), "encode_text", lambda self, texts, batch_size=64: (
        embedded.extend(texts), real(self, texts, batch_size))[1])
    from embstore.writer import SpaceWriter

    commit = SpaceWriter.commit  # a slow disk: each chunk is still being written when the next one is encoded
    monkeypatch.setattr(SpaceWriter, "commit", lambda self, *args: (time.sleep(0.3), commit(self, *args))[1])
    rows = _numbered_rows(150, repeats=True)  # rows 50 and 100 repeat rows 45 and 95: across chunks
    rep = store.ingest(write_csv(tmp_path / "t.csv", rows), "t", encoder=HASH)
    distinct = {r["text"] for r in rows}
    assert rep.added == 150 and rep.embedded == len(distinct) and rep.reused == 150 - len(distinct)
    assert sorted(embedded) == sorted(distinct)


@pytest.mark.parametrize("background", [True, False], ids=["background", "in-turn"])
def test_a_failed_write_stops_the_ingest_and_loses_no_committed_chunk(tmp_path, monkeypatch, background):
    from embstore.ingest import runner

    monkeypatch.setattr(runner, "BACKGROUND", background)
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=40))
    source = write_csv(tmp_path / "t.csv", _numbered_rows(200))
    from embstore.writer import SpaceWriter

    real = SpaceWriter.commit
    calls = []

    def flaky(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, *args)

    monkeypatch.setattr(SpaceWriter, "commit", flaky)
    with pytest.raises(OSError, match="No space left"):
        store.ingest(source, "t", encoder=HASH)
    assert len(calls) == 3  # the error stopped the ingest at the next chunk, not at the end
    monkeypatch.setattr(SpaceWriter, "commit", real)
    again = Store.open(store.root)
    assert again.sql("SELECT count(*) FROM t").fetchall() == [(80,)]  # the two chunks committed before it
    ids, X = again.embeddings("t")
    assert len(ids) == 80 and again.search("t", vector=X[79], k=1)[0]["id"] == ids[79]
    rep = again.ingest(source, "t")
    assert (rep.added, rep.duplicates, rep.read) == (120, 80, 200)
    assert again.space("t")["index"]["ntotal"] == 200


def test_commit_chunks_start_small_and_then_take_about_commit_seconds(tmp_path, monkeypatch):
    from embstore.ingest import runner

    source = write_csv(tmp_path / "t.csv", _numbered_rows(1000))
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", commit_rows=600))
    store.ingest(source, "quick", encoder=HASH)  # a fast model: then chunks of commit_rows, in whole batches of 64
    assert [s["rows"] for s in store.space("quick")["shards"]] == [256, 576, 168]
    monkeypatch.setattr(runner, "COMMIT_SECONDS", 1e-9)  # a slow one: chunks stay at the first size
    store.ingest(source, "slow", encoder=HASH)
    assert [s["rows"] for s in store.space("slow")["shards"]] == [256, 256, 256, 232]
    for k, seconds in enumerate((3e-4, 1e-3, 3e-3)):  # whatever the rate, a chunk ends on a batch's end (but the last)
        monkeypatch.setattr(runner, "COMMIT_SECONDS", seconds)
        store.ingest(source, f"rate{k}", encoder=HASH)
        sizes = [s["rows"] for s in store.space(f"rate{k}")["shards"]]
        assert sum(sizes) == 1000 and all(n % 64 == 0 for n in sizes[:-1]), sizes


def test_progress_moves_within_a_chunk_and_ends_at_the_total(tmp_path):
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu", batch_size=2))
    seen = []
    store.ingest(write_csv(tmp_path / "t.csv", _numbered_rows(300)), "t", encoder=HASH,
                 progress=lambda stage, done, total: seen.append((done, total)))
    done = [d for d, _ in seen]
    # a CSV does not say how many rows it has: the total is estimated from its size after the first chunk (Arrow
    # bytes per row), and exact at the end
    assert seen[-1] == (300, 300) and done[0] == 0 and done == sorted(done)
    assert all(200 <= t <= 450 for _, t in seen[1:])
    assert {64, 128, 192} <= set(done)  # within the first chunk of 256: one update per 64 texts (32 batches of 2)


def test_a_column_whose_type_differs_in_a_later_file_is_conformed_or_refused(store, tmp_path):
    """Shards of one collection must read together: a later file's column is cast to the stored type when it can
    be (numbers to text, text that holds numbers to numbers, empty to anything), and refused, naming the column,
    when it cannot; search, fit and SQL keep working."""
    store.ingest(write_csv(tmp_path / "a.csv", [{"text": "hello there", "label": "A", "n": 1, "note": ""},
                                                {"text": "general kenobi", "label": "B", "n": 2, "note": ""}]),
                 "mx", encoder=HASH)
    r = store.ingest(write_csv(tmp_path / "b.csv", [{"text": "you are a bold one", "label": 7, "n": "3", "note": "x"},
                                                    {"text": "kill him", "label": 8, "n": 4.5, "note": 1.5}]), "mx")
    assert r.added == 2
    assert sorted(store.sql("SELECT label FROM mx").fetchall()) == [("7",), ("8",), ("A",), ("B",)]
    assert len(store.search("mx", "hello", k=4)) == 4
    from embstore.labelled import labelled

    assert sorted(labelled(store, "mx", "hash64", "label", None)[1]) == ["7", "8", "A", "B"]  # what fit reads
    with pytest.raises(InputError, match="column 'n' of collection 'mx' holds double values, but c.csv has string "
                                         "ones that do not convert \\(e.g. 'many'\\)"):
        store.ingest(write_csv(tmp_path / "c.csv", [{"text": "new words", "label": "C", "n": "many", "note": ""}]),
                     "mx")
    assert store.sql("SELECT count(*) FROM mx").fetchall() == [(4,)]  # nothing of it was written


def test_a_later_file_takes_the_collection_s_content_column(store, tmp_path):
    store.ingest(write_csv(tmp_path / "q.csv", [{"question": "where is it", "label": "LOC"}]), "q",
                 text_column="question", encoder=HASH)
    r = store.ingest(write_csv(tmp_path / "q2.csv", [{"question": "who is it", "label": "HUM"}]), "q")
    assert r.added == 1  # no --text-column needed the second time
    both = write_csv(tmp_path / "q3.csv", [{"question": "what", "text": "other", "label": "X"}])
    with pytest.raises(InputError, match="collection 'q' takes its text from column 'question', not 'text'; pass "
                                         "--text-column question"):
        store.ingest(both, "q", text_column="text")


def test_image_paths_are_stored_normalised(store, tmp_path):
    make_png(tmp_path / "imgs" / "a.png", 1)
    (tmp_path / "sub").mkdir()
    store.ingest(write_csv(tmp_path / "t.csv", [{"file": "sub/../imgs/./a.png"}]), "c", image_column="file",
                 encoder=HASH)
    assert store.sql("SELECT file FROM c").fetchall() == [(str(tmp_path / "imgs" / "a.png"),)]
