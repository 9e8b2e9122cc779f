"""Near-duplicates through the space's index, and the fit's warning when test items have near-copies among the
training items."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from embstore import InputError, Store
from embstore.duplicates import leakage
from embstore_cli.main import cli

from conftest import HASH, topic_rows, write_csv


def test_groups_of_near_duplicates_are_found(tmp_path):
    rows = topic_rows()
    # the same words in another order embed identically with the bag-of-words hash encoder: near-copies
    copies = [dict(rows[0], text=" ".join(reversed(rows[0]["text"].split()))),
              dict(rows[0], text=" ".join(sorted(rows[0]["text"].split()))),
              dict(rows[20], text=" ".join(reversed(rows[20]["text"].split())))]
    store = Store.open(tmp_path / "s")
    store.ingest(write_csv(tmp_path / "t.csv", rows + copies), "docs", encoder=HASH)
    out = store.duplicates("docs", threshold=0.999)
    texts = [sorted(g["contents"]) for g in out["groups"]]
    assert out["groups_found"] == 2 and [g["size"] for g in out["groups"]] == [3, 2]
    assert texts[0] == sorted([rows[0]["text"], copies[0]["text"], copies[1]["text"]])
    assert texts[1] == sorted([rows[20]["text"], copies[2]["text"]]) and out["items_in_groups"] == 5
    assert out["groups"][0]["min_score"] >= 0.999
    with pytest.raises(InputError, match=r"threshold is a cosine in \(0, 1\]"):
        store.duplicates("docs", threshold=1.5)
    run = CliRunner().invoke(cli, ["duplicates", "--store", str(store.root), "-c", "docs", "--threshold", "0.999",
                                   "--json"])
    assert run.exit_code == 0 and json.loads(run.stdout)["groups_found"] == 2
    clean = Store.open(tmp_path / "clean")
    clean.ingest(write_csv(tmp_path / "c.csv", rows), "docs", encoder=HASH)
    run = CliRunner().invoke(cli, ["duplicates", "--store", str(clean.root), "-c", "docs", "--threshold", "0.999"])
    assert run.exit_code == 0 and run.stdout.strip().startswith("0 groups of near-duplicates")
    assert run.stdout.strip().endswith(").") and "the largest" not in run.stdout  # no empty table under it


def test_fit_warns_of_test_items_with_a_copy_in_training(tmp_path):
    rows = topic_rows()
    copies = [dict(r, text=" ".join(reversed(r["text"].split())), split="test") for r in rows[:12]]
    for r in rows[:12]:
        r["split"] = "train"
    store = Store.open(tmp_path / "s")
    store.ingest(write_csv(tmp_path / "t.csv", rows + copies), "docs", encoder=HASH)
    rec = store.fit("docs", "label", "h", model="centroid", test_where="split = 'test'")
    leak = rec["leakage"]
    assert leak["test_items_checked"] == rec["metrics"]["n_test"] and leak["near_duplicates"] >= 12
    run = CliRunner().invoke(cli, ["fit", "--store", str(store.root), "-c", "docs", "--label-column", "label",
                                   "--model", "centroid", "--test-where", "split = 'test'"])
    assert run.exit_code == 0 and "test items have a near-duplicate among the training items" in run.output


def test_leakage_samples_when_the_check_would_cost_too_much(monkeypatch):
    from embstore import duplicates as dup

    rng = np.random.default_rng(0)
    A = rng.standard_normal((500, 64)).astype(np.float32)  # (random 64-d vectors are never at cosine 0.95)
    B = np.concatenate([A[:50], rng.standard_normal((950, 64)).astype(np.float32)])
    assert leakage(A, B) == {"threshold": 0.99, "test_items_checked": 1000, "near_duplicates": 50}
    monkeypatch.setattr(dup, "LEAKAGE_WORK", 500 * 64 * 300)
    got = leakage(A, B)
    assert got["test_items_checked"] == 300 and 0 < got["near_duplicates"] < 50
