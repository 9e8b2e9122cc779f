"""Text that is not UTF-8: CSV and JSONL rows that do not decode are quarantined with the reason (the rest ingested,
counts adding up), ``--encoding`` reads other encodings, and bytes are never embedded as their repr."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embstore import InputError, Store
from embstore.encoders import get_encoder
from embstore_cli.main import cli

from conftest import HASH, quarantine_lines

LATIN1_CSV = "text,label\nplain ascii,a\ncafé noir,b\nanother one,a\n".encode("latin-1")


def counts_add_up(r) -> bool:
    return r.read == r.added + r.duplicates + r.quarantined


def texts_and_vectors(store: Store, collection: str) -> dict[str, np.ndarray]:
    rows = store.sql(f'SELECT i.text, typeof(i.text) AS t, s.embedding FROM "{collection}" i '
                     f'JOIN "{collection}__hash64" s USING (id)').fetchall()
    assert {r[1] for r in rows} == {"VARCHAR"}
    return {r[0]: np.asarray(r[2], np.float32) for r in rows}


def assert_embedded_as_text(store: Store, collection: str, expected: set[str]) -> None:
    got = texts_and_vectors(store, collection)
    assert set(got) == expected
    enc = get_encoder(HASH, "cpu")
    for text, vec in got.items():
        assert not text.startswith("b'") and "\ufffd" not in text
        np.testing.assert_allclose(vec, enc.encode_text([text])[0], atol=1e-6)


def test_a_latin1_row_of_a_utf8_csv_is_quarantined_and_the_rest_ingested_as_text(tmp_path):
    src = tmp_path / "l1.csv"
    src.write_bytes(LATIN1_CSV)
    store = Store.open(tmp_path / "s")
    r = store.ingest(src, "c", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (3, 2, 1) and counts_add_up(r)
    assert r.reasons == {"not utf-8 text": 1}
    [bad] = quarantine_lines(store.root, r.quarantine_file)
    assert bad["line"] == 3 and "column 'text' has byte 0xe9" in bad["reason"] and "--encoding" in bad["reason"]
    assert json.loads(bad["data"]) == {"text": "caf\\xe9 noir", "label": "b"}
    assert_embedded_as_text(store, "c", {"plain ascii", "another one"})


def test_encoding_latin1_reads_every_row_right(tmp_path):
    src = tmp_path / "l1.csv"
    src.write_bytes(LATIN1_CSV)
    store = Store.open(tmp_path / "s")
    r = store.ingest(src, "c", encoder=HASH, encoding="latin-1")
    assert (r.read, r.added, r.quarantined) == (3, 3, 0)
    assert_embedded_as_text(store, "c", {"plain ascii", "café noir", "another one"})


def test_a_latin1_file_does_not_spoil_a_utf8_collection(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("text,label\ncafé crème,a\nsecond,b\n", encoding="utf-8")
    bad = tmp_path / "l1.csv"
    bad.write_bytes(LATIN1_CSV)
    later = tmp_path / "later.csv"
    later.write_text("text,label\nthé vert,c\n", encoding="utf-8")
    store = Store.open(tmp_path / "s")
    for f in (good, bad, later):
        store.ingest(f, "c", encoder=HASH)
    assert_embedded_as_text(store, "c", {"café crème", "second", "plain ascii", "another one", "thé vert"})


def test_a_bad_row_after_the_first_block_is_quarantined_not_the_whole_file(tmp_path, monkeypatch):
    from embstore.ingest import csv_stream

    monkeypatch.setattr(csv_stream, "BLOCK_BYTES", 1 << 10)  # blocks of 1 KiB: the bad row is in the fifth
    lines = [f"row number {i}".encode() for i in range(300)]
    lines[250] = "row number 250 é".encode("latin-1")
    src = tmp_path / "big.csv"
    src.write_bytes(b"text\n" + b"\n".join(lines) + b"\n")
    store = Store.open(tmp_path / "s")
    r = store.ingest(src, "c", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (300, 299, 1) and counts_add_up(r)
    [bad] = quarantine_lines(store.root, r.quarantine_file)
    assert bad["line"] == 252  # the header is line 1
    got = texts_and_vectors(store, "c")
    assert set(got) == {f"row number {i}" for i in range(300) if i != 250}


def test_jsonl_lines_that_do_not_decode_are_quarantined_not_replaced(tmp_path):
    src = tmp_path / "l1.jsonl"
    src.write_bytes(b'{"text": "plain"}\n' + '{"text": "café noir"}\n'.encode("latin-1") + b'{"text": "ok"}\n')
    store = Store.open(tmp_path / "s")
    r = store.ingest(src, "j", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (3, 2, 1) and counts_add_up(r)
    [bad] = quarantine_lines(store.root, r.quarantine_file)
    assert bad["line"] == 2 and bad["reason"].startswith("not utf-8 text: byte 0xe9") and "\\xe9" in bad["data"]
    assert_embedded_as_text(store, "j", {"plain", "ok"})
    r = store.ingest(src, "j2", encoder=HASH, encoding="latin-1")
    assert r.added == 3
    assert_embedded_as_text(store, "j2", {"plain", "café noir", "ok"})


def test_utf16_jsonl_and_a_json_array_that_does_not_decode(tmp_path):
    src = tmp_path / "w.jsonl"
    src.write_bytes('{"text": "thé"}\n{"text": "naïve"}\n'.encode("utf-16"))
    store = Store.open(tmp_path / "s")
    assert store.ingest(src, "w", encoder=HASH, encoding="utf-16").added == 2
    assert_embedded_as_text(store, "w", {"thé", "naïve"})
    arr = tmp_path / "a.json"
    arr.write_bytes('[{"text": "café"}]'.encode("latin-1"))
    with pytest.raises(InputError, match="is not utf-8 text .*--encoding"):
        store.ingest(arr, "a", encoder=HASH)


def test_binary_text_of_a_parquet_file_is_decoded_never_its_repr(tmp_path):
    src = tmp_path / "b.parquet"
    pq.write_table(pa.table({"text": pa.array([b"caf\xc3\xa9", b"plain", b"bad \xff"], pa.binary())}), src)
    store = Store.open(tmp_path / "s")
    r = store.ingest(src, "b", encoder=HASH)
    assert (r.added, r.quarantined) == (2, 1) and r.reasons == {"not utf-8 text": 1}
    vecs = dict(zip(*store.embeddings("b")))
    enc = get_encoder(HASH, "cpu")
    stored = {v.tobytes() for v in vecs.values()}
    assert stored == {enc.encode_text([t])[0].astype(np.float32).tobytes() for t in ("café", "plain")}


def test_cli_encoding_option(tmp_path):
    src = tmp_path / "l1.csv"
    src.write_bytes(LATIN1_CSV)
    args = ["ingest", str(src), "--store", str(tmp_path / "s"), "-c", "c", "--encoder", HASH]
    res = CliRunner().invoke(cli, args + ["--encoding", "latin-1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["added"] == 3
    res = CliRunner().invoke(cli, args + ["--encoding", "klingon"])
    assert res.exit_code == 2 and "unknown --encoding 'klingon'" in res.stderr and "\n" not in res.stderr.strip()
    src.write_bytes("text\nbad \x81 byte\n".encode("latin-1"))
    res = CliRunner().invoke(cli, args[:5] + ["c2", "--encoder", HASH, "--encoding", "cp1252"])
    assert res.exit_code == 2 and "in cp1252" in res.stderr and "--encoding" in res.stderr
