"""Wrong labels by confident learning: the same issues as cleanlab on the same probabilities, and planted label
errors found through the store."""
from __future__ import annotations

import numpy as np
import pytest

from embstore import InputError, Store
from embstore.label_issues import confident_issues

from conftest import HASH, topic_rows, write_csv


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_same_issues_as_cleanlab(seed):
    cleanlab = pytest.importorskip("cleanlab.filter")
    rng = np.random.default_rng(seed)
    n, k = 600, 5
    p = rng.dirichlet(np.ones(k) * 0.4, n)
    labels = np.array([rng.choice(k, p=row) for row in p])
    flip = rng.choice(n, 60, replace=False)
    labels[flip] = (labels[flip] + 1 + rng.integers(0, k - 1, 60)) % k
    want = cleanlab.find_label_issues(labels, p, filter_by="confident_learning")
    got, _ = confident_issues(labels, p)
    assert np.array_equal(got, want)


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
