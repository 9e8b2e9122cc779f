"""64-bit id keys collide with probability about n^2 / 2^65 (a few percent at 10^9 ids). With keys cut to 2 bits,
so that almost every id collides with others, nothing may be lost, doubled or mixed up: ingest, dedupe, re-ingest,
lookups by id (search by item, fit on labelled items, predict) must all come out as with full keys."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from embstore import Store
from embstore import keys as kt

from conftest import HASH, write_csv


def texts(start: int, stop: int) -> list[dict]:
    return [{"id": f"doc{i}", "text": f"note {i} about {'cats' if i % 2 else 'bonds'} and item {i * 7919 % 1000}",
             "label": "odd" if i % 2 else "even"} for i in range(start, stop)]


def two_bit_keys(ids):
    return np.asarray([hashlib.blake2b(str(i).encode(), digest_size=8).digest()[0] & 3 for i in ids], np.uint64)


def build(root, tmp_path, colliding: bool, monkeypatch) -> tuple[Store, list]:
    if colliding:
        monkeypatch.setattr(kt, "id_keys", two_bit_keys)
    s = Store.open(root)
    reports = [s.ingest(write_csv(tmp_path / "a.csv", texts(0, 120)), "docs", encoder=HASH),
               s.ingest(write_csv(tmp_path / "b.csv", texts(60, 200)), "docs", encoder=HASH),  # 60 again, 80 new
               s.ingest(tmp_path / "a.csv", "docs", encoder=HASH)]  # all again
    return Store.open(root), reports


@pytest.mark.parametrize("colliding", [False, True], ids=["full-keys", "2-bit-keys"])
def test_colliding_id_keys_lose_and_mix_nothing(tmp_path, monkeypatch, colliding):
    s, reports = build(tmp_path / "s", tmp_path, colliding, monkeypatch)
    assert [(r.read, r.added, r.duplicates, r.quarantined) for r in reports] == [(120, 120, 0, 0), (140, 80, 60, 0),
                                                                                   (120, 0, 120, 0)]
    ids, X = s.embeddings("docs")
    assert sorted(ids) == sorted(f"doc{i}" for i in range(200))
    by_id = dict(zip(ids, X))
    from embstore.lookup import positions_of, vectors_at

    some = [f"doc{i}" for i in (0, 3, 77, 130, 199)]
    pos = positions_of(s, "docs", "hash64", some)
    assert (pos >= 0).all() and np.allclose(vectors_at(s, "docs", "hash64", pos), np.stack([by_id[i] for i in some]))
    text = {r["id"]: r["text"] for r in texts(0, 200)}
    for probe in ("doc77", "doc130"):  # more like an item: its neighbours, each with its own row
        hits = s.search("docs", item_id=probe, k=5)
        assert len(hits) == 5 and probe not in [h["id"] for h in hits]
        assert all(h["text"] == text[h["id"]] for h in hits)
        assert np.isclose(hits[0]["score"], float(X[ids.index(hits[0]["id"])] @ X[ids.index(probe)]
                                                   / np.linalg.norm(X[ids.index(hits[0]["id"])])
                                                   / np.linalg.norm(X[ids.index(probe)])), atol=1e-5)
    odd = s.search("docs", vector=X[ids.index("doc77")], k=10, where="label = 'odd'")
    assert len(odd) == 10 and all(h["label"] == "odd" and h["text"] == text[h["id"]] for h in odd)
    assert odd[0]["id"] == "doc77" or np.isclose(odd[0]["score"], 1.0)
    from embstore.lookup import item_rows

    got = item_rows(s, "docs", ["doc5", "doc150", "nope"])
    assert {i: r["text"] for i, r in got.items()} == {"doc5": text["doc5"], "doc150": text["doc150"]}
    rec = s.fit("docs", "label", "h", model="centroid")
    assert rec["n_train"] + rec["metrics"]["n_test"] == 200
    out = s.predict("h", "docs")
    assert out["predicted"] == 200
    rows = dict(s.sql("SELECT id, label FROM predictions WHERE head = 'h'").fetchall())
    assert sorted(rows) == sorted(ids)
