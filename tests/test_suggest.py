"""What to label next: a diverse sample with no head, the head's least sure items (spread out) with one; the CSV it
writes goes back into fit --labels."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from embstore import InputError, Store
from embstore.suggest import k_center_greedy
from embstore_cli.main import cli

from conftest import HASH, TOPICS, topic_rows, write_csv


def test_k_center_greedy_covers_every_cluster_before_repeating_one():
    rng = np.random.default_rng(0)
    centers = np.eye(6, 16)
    X = np.concatenate([centers[k] + rng.standard_normal((50, 16)) * 0.05 for k in range(6)])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    picks = k_center_greedy(X, 6, first=0)
    assert sorted({p // 50 for p in picks}) == list(range(6))  # one from each cluster, not six from one
    assert len(set(k_center_greedy(X, 400))) == 300  # never more than there are, never twice


def test_suggest_without_and_with_a_head(tmp_path):
    store = Store.open(tmp_path / "s")
    rows = topic_rows()
    unlabelled = [dict(r, label="") for r in rows[::2]]  # half the rows have no label yet
    labelled = [r for r in rows[1::2]]
    store.ingest(write_csv(tmp_path / "a.csv", labelled + unlabelled), "docs", encoder=HASH)
    out = store.suggest("docs", 6)
    topic_of = {t: k for k, texts in TOPICS.items() for t in texts}
    assert len(out["rows"]) == 6 and len({r["id"] for r in out["rows"]}) == 6
    assert {topic_of[r["content"]] for r in out["rows"]} == set(TOPICS)  # a diverse sample covers every topic
    assert store.suggest("docs", 6) == out  # the same seed, the same picks
    store.fit("docs", "label", "h", model="centroid")
    got = store.suggest("docs", 5, head="h")
    texts = {r["content"] for r in got["rows"]}
    assert texts <= {r["text"] for r in unlabelled}  # labelled items are not suggested again
    assert all({"guess", "confidence"} <= set(r) for r in got["rows"]) and "smallest margin" in got["how"]
    # the least sure of all unlabelled items is among them
    from embstore.heads import load_head

    _, est = load_head(store, "h")
    ids, X = store.embeddings("docs")
    content = dict(store.sql("SELECT id, text FROM docs").fetchall())
    p = np.sort(est.predict_proba(X), axis=1)
    margin = {content[i]: m for i, m in zip(ids, p[:, -1] - p[:, -2])}
    least = min((t for t in margin if t in {r["text"] for r in unlabelled}), key=margin.get)
    assert least in texts
    with pytest.raises(InputError, match="n must be at least 1"):
        store.suggest("docs", 0)


def test_suggest_writes_a_csv_that_fit_takes_back(tmp_path):
    store = Store.open(tmp_path / "s")
    store.ingest(write_csv(tmp_path / "a.csv", topic_rows()), "docs", encoder=HASH)
    out = tmp_path / "next.csv"
    run = CliRunner().invoke(cli, ["suggest", "--store", str(store.root), "-c", "docs", "-n", "9", "-o", str(out),
                                   "--json"])
    assert run.exit_code == 0, run.output
    assert len(json.loads(run.stdout)["rows"]) == 9
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert list(rows[0]) == ["id", "content", "label"] and len(rows) == 9
    topic_of = {t: k for k, texts in TOPICS.items() for t in texts}
    for r in rows:  # a user fills in the labels
        r["label"] = topic_of[r["content"]]
    write_csv(out, rows)
    rec = Store.open(store.root).fit("docs", labels=out, name="from_suggest", model="centroid", test_size=0.34)
    assert rec["n_train"] + rec["metrics"]["n_test"] == 9
    # the next round, from that head: none of the 9 labelled items comes back, though no column holds their labels
    nxt = Store.open(store.root).suggest("docs", 27, head="from_suggest")
    assert len(nxt["rows"]) == 27 and not {r["id"] for r in nxt["rows"]} & {r["id"] for r in rows}


def test_a_large_space_is_sampled_by_the_seed(tmp_path, monkeypatch):
    from embstore import suggest as sg

    monkeypatch.setattr(sg, "POOL", 12)  # as if the space were far larger than the pool
    store = Store.open(tmp_path / "s")
    store.ingest(write_csv(tmp_path / "a.csv", topic_rows()), "docs", encoder=HASH)
    a, b, c = (store.suggest("docs", 4, seed=s) for s in (0, 0, 1))
    assert a == b and [r["id"] for r in a["rows"]] != [r["id"] for r in c["rows"]]
    assert "a random 12 of 36 items (seed 0)" in a["how"]
