"""Wrong labels by confident learning (cleanlab's default filter on out-of-fold probabilities): the ranking is
cleanlab's own on the same probabilities, and planted label errors are found through the store."""
from __future__ import annotations

import numpy as np
import pytest

from embstore import InputError, Store
from embstore.label_issues import out_of_fold, ranked_issues

from conftest import HASH, topic_rows, write_csv


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_same_issues_as_cleanlab_default(seed):
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    n, k = 600, 5
    X = rng.standard_normal((n, 8)) + np.repeat(np.eye(k, 8) * 2.5, n // k, axis=0)
    truth = np.repeat(np.arange(k), n // k)
    labels = truth.copy()
    flip = rng.choice(n, 60, replace=False)
    labels[flip] = (labels[flip] + 1 + rng.integers(0, k - 1, 60)) % k
    proba = out_of_fold(lambda: LogisticRegression(max_iter=1000), X, labels, seed=seed)
    got = ranked_issues(labels, proba)
    assert got.tolist() == find_label_issues(labels, proba, return_indices_ranked_by="self_confidence").tolist()
    assert len(set(got[:60].tolist()) & set(flip.tolist())) >= 40  # most of the top 60 are flipped ones


def test_planted_wrong_labels_come_first(tmp_path):
    rows = topic_rows()
    wrong = {1: "finance", 14: "sports", 27: "animals"}  # an animal text called finance, and so on
    for i, label in wrong.items():
        assert rows[i]["label"] != label
        rows[i] = dict(rows[i], label=label)
    store = Store.open(tmp_path / "s")
    store.ingest(write_csv(tmp_path / "t.csv", rows), "docs", encoder=HASH)
    out = store.label_issues("docs", "label", model="centroid")
    planted = {rows[i]["text"] for i in wrong}
    top = {r["content"] for r in out["rows"][:3]}
    assert top == planted, out["rows"][:5]
    truth = {r["text"]: r for r in topic_rows()}
    for r in out["rows"][:3]:
        assert r["suggested"] == truth[r["content"]]["label"] and r["label"] != r["suggested"]
    assert out["labelled"] == 36 and out["issues"] >= 3
    with pytest.raises(InputError, match="at least 2 labels"):
        store.label_issues("docs", labels=write_csv(tmp_path / "l.csv", [{"id": "x", "label": "a"}]))


def test_label_issues_from_the_command_line(tmp_path):
    import json

    from click.testing import CliRunner

    from embstore_cli.main import cli

    rows = topic_rows()
    rows[1] = dict(rows[1], label="finance")
    store = Store.open(tmp_path / "s")
    store.ingest(write_csv(tmp_path / "t.csv", rows), "docs", encoder=HASH)
    run = CliRunner().invoke(cli, ["label-issues", "--store", str(store.root), "-c", "docs", "--label-column",
                                   "label", "--model", "centroid", "--json"])
    assert run.exit_code == 0, run.output
    out = json.loads(run.stdout)
    assert out["rows"][0]["content"] == rows[1]["text"] and out["rows"][0]["suggested"] == "animals"
