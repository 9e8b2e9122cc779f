"""P2: reports a person reads (plots, calibration), the few-shot protocol, multi-label and unbalanced labels,
through the store and the CLI on real temporary stores (hash encoder)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from embstore import InputError, LabelError, Store
from embstore.config import Settings
from embstore.evaluation import (few_shot, macro_f1_interval, paired_comparison, parse_samples, undersample,
                                 wilson_interval)
from embstore_cli.main import cli

from conftest import HASH, topic_rows, write_csv, write_jsonl


@pytest.fixture()
def docs(tmp_path):
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    store.ingest(write_csv(tmp_path / "t.csv", topic_rows()), "docs", encoder=HASH)
    return store


def test_fit_reports_and_plots(docs, tmp_path):
    rec = docs.fit("docs", "label", "topic", train_where="split = 'train'", test_where="split = 'test'",
                   plot_dir=tmp_path / "plots")
    m = rec["metrics"]
    assert set(m["per_label"]) == {"animals", "finance", "sports"}
    assert all({"precision", "recall", "f1", "support"} <= set(v) for v in m["per_label"].values())
    assert np.asarray(m["confusion"]["matrix"]).sum() == m["n_test"] == 9
    assert 0 <= m["calibration"]["ece"] <= 1 and m["calibration"]["log_loss"] >= 0
    assert rec["learned"]["C_"] > 0 and rec["learned"]["temperature_"] > 0
    sel = rec["selection"]  # what the choice of C rests on: every C tried and its held-out log-loss
    assert sel["parameter"] == "C" and sel["chosen"] == rec["learned"]["C_"] and sel["how"] == "3-fold stratified CV over 27 rows"
    assert min(sel["scores"], key=sel["scores"].get) == f"{sel['chosen']:g}"
    knn = docs.fit("docs", "label", "k", model="knn", train_where="split = 'train'", test_where="split = 'test'")
    assert knn["selection"]["parameter"] == "n_neighbors" and knn["selection"]["chosen"] == knn["learned"]["n_neighbors_"]
    assert "selection" not in docs.fit("docs", "label", "fixed", model="logreg", params={"C": 1.0}, train_where="split = 'train'")
    for kind in ("confusion", "learning_curve"):
        with Image.open(rec["plots"][kind]) as img:  # a real PNG a person can open
            assert img.format == "PNG" and img.size[0] > 300


def test_eval_follows_the_few_shot_protocol(docs, tmp_path):
    out = docs.eval("docs", "label", train_where="split = 'train'", test_where="split = 'test'",
                    samples="1,2,4,all", repeats=5, plot_dir=tmp_path / "p")
    rows = {r["samples_per_label"]: r for r in out["results"]}
    assert rows[1]["train_size"] == 3 and rows[2]["train_size"] == 6 and rows[4]["train_size"] == 12
    assert rows[1]["runs"] == 5 and rows["all"]["runs"] == 1 and rows["all"]["train_size"] == 27
    assert rows["all"]["accuracy_mean"] >= rows[1]["accuracy_mean"]
    assert all(0 <= r["accuracy_mean"] <= 1 and r["accuracy_std"] >= 0 for r in out["results"])
    assert (tmp_path / "p").joinpath(out["plot"].split("/")[-1]).exists()
    again = docs.eval("docs", "label", train_where="split = 'train'", test_where="split = 'test'",
                      samples="1,2,4,all", repeats=5)
    assert again["results"] == out["results"]  # a fixed seed: the same subsets, the same scores


def test_undersample_is_mtebs():
    y = np.array(["a"] * 10 + ["b"] * 3)
    rows = undersample(y, 4, np.random.RandomState(42))
    assert sorted(y[rows].tolist()) == ["a"] * 4 + ["b"] * 3  # at most n per label, all of a rarer one
    X = np.random.default_rng(0).standard_normal((40, 5))
    yy = np.array([0, 1] * 20)
    X[yy == 1] += 3
    res = few_shot(X, yy, X, yy, [2, "all"], repeats=3)
    assert res[0]["runs"] == 3 and res[1]["accuracy_mean"] == 1.0
    with pytest.raises(InputError, match="positive integers"):
        parse_samples("1,zero")


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 10)  # no successes: 0 to z^2 / (n + z^2)
    assert lo == 0 and hi == pytest.approx(1.959964 ** 2 / (10 + 1.959964 ** 2))
    lo, hi = wilson_interval(452, 500)
    assert lo == pytest.approx(0.87501, abs=1e-4) and hi == pytest.approx(0.92683, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(5, 10) == pytest.approx([0.2366, 0.7634], abs=1e-4)


def test_macro_f1_interval_is_the_bootstrap_of_the_test_items():
    from sklearn.metrics import confusion_matrix, f1_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 400)
    pred = np.where(rng.random(400) < 0.85, y, rng.integers(0, 6, 400))
    fast = macro_f1_interval(confusion_matrix(y, pred))
    boot = []
    for _ in range(1000):  # the plain bootstrap: resample the items themselves
        i = rng.integers(0, len(y), len(y))
        boot.append(f1_score(y[i], pred[i], average="macro"))
    assert fast == pytest.approx(np.percentile(boot, [2.5, 97.5]), abs=0.01)
    assert fast[0] < f1_score(y, pred, average="macro") < fast[1]
    # every item right: the bootstrap would say [1, 1] however few the items; the accuracy's interval says more
    assert macro_f1_interval(np.diag([5, 7])) == wilson_interval(12, 12) and wilson_interval(12, 12)[0] < 0.8
    assert macro_f1_interval(np.diag([500, 700]))[0] > 0.99


def test_paired_comparison_is_mcnemars_exact_test():
    this = np.array([True] * 6 + [False] * 0 + [True] * 20 + [False] * 4)
    other = np.array([False] * 6 + [True] * 0 + [True] * 20 + [False] * 4)
    out = paired_comparison(this, other)
    assert out == {"only_this_right": 6, "only_other_right": 0, "p_value": pytest.approx(2 * 0.5 ** 6)}
    assert paired_comparison(this, this)["p_value"] == 1.0


def test_a_refit_on_the_same_test_items_is_compared_with_the_last_version(docs):
    split = {"train_where": "split = 'train'", "test_where": "split = 'test'"}
    v1 = docs.fit("docs", "label", "topic", model="centroid", **split)
    assert "vs_previous" not in v1
    v2 = docs.fit("docs", "label", "topic", model="knn", **split)
    prev, n = v2["vs_previous"], v2["metrics"]["n_test"]
    assert prev["version"] == 1 and prev["accuracy"] == v1["accuracy"]
    assert round((v2["accuracy"] - v1["accuracy"]) * n) == prev["only_this_right"] - prev["only_previous_right"]
    assert 0 <= prev["p_value"] <= 1
    v3 = docs.fit("docs", "label", "topic", model="knn")  # a held-out split: other test items, no comparison
    assert "vs_previous" not in v3 and v3["test_data_sha256"] != v2["test_data_sha256"]
    out = CliRunner().invoke(cli, ["fit", "--store", str(docs.root), "-c", "docs", "--label-column", "label",
                                   "--name", "topic", "--model", "knn", "--train-where", "split = 'train'",
                                   "--test-where", "split = 'test'"])
    assert out.exit_code == 0, out.output
    assert "95% interval" in out.output and "vs v3" not in out.output  # v3 was scored on other items
    assert "not compared with the previous version" in out.output
    again = CliRunner().invoke(cli, ["fit", "--store", str(docs.root), "-c", "docs", "--label-column", "label",
                                     "--name", "topic", "--model", "centroid", "--train-where", "split = 'train'",
                                     "--test-where", "split = 'test'"])
    assert "vs v4 on the same test items" in again.output and "McNemar p =" in again.output


def test_eval_cli_table_and_json(docs):
    runner = CliRunner()
    args = ["eval", "--store", str(docs.root), "-c", "docs", "--label-column", "label", "--samples", "1,all",
            "--repeats", "3", "--train-where", "split = 'train'", "--test-where", "split = 'test'"]
    human = runner.invoke(cli, args)
    assert human.exit_code == 0, human.output
    assert "per_label" in human.output and "accuracy" in human.output
    data = json.loads(runner.invoke(cli, args + ["--json"]).output)
    assert [r["samples_per_label"] for r in data["results"]] == [1, "all"]


def test_multilabel_head_from_lists_and_from_a_separator(tmp_path):
    rows = []
    for topic, extra in (("animals", "pets"), ("finance", "money"), ("sports", None)):
        for r in [r for r in topic_rows() if r["label"] == topic]:
            rows.append({"text": r["text"], "tags": [topic] + ([extra] if extra else []),
                         "joined": "|".join([topic] + ([extra] if extra else []))})
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    store.ingest(write_jsonl(tmp_path / "m.jsonl", rows), "m", encoder=HASH)
    rec = store.fit("m", "tags", "tags_head", model="logreg", params={"C": 10.0})
    assert rec["multilabel"] and set(rec["classes"]) == {"animals", "finance", "money", "pets", "sports"}
    assert rec["accuracy"] >= 0.5 and "micro_f1" in rec["metrics"]
    out = store.predict("tags_head", texts=["the cat and the dog near the barn horse"])
    assert set(out["rows"][0]["labels"]) == {"animals", "pets"}
    store.predict("tags_head", "m")
    share, hit = store.sql(
        "SELECT avg(CAST(len(p.labels) > 0 AS INT)), avg(CAST(list_contains(p.labels, m.tags[1]) AS INT)) "
        "FROM predictions p JOIN m USING (id) WHERE p.head = 'tags_head'").fetchall()[0]
    assert share >= 0.9 and hit >= 0.9  # a list of labels per item, holding the item's first tag
    sep = store.fit("m", "joined", "sep_head", label_sep="|", model="logreg", params={"C": 10.0})
    assert sep["multilabel"] and sep["classes"] == rec["classes"]
    with pytest.raises(InputError, match="multi-label"):
        store.fit("m", "tags", "knn_tags", model="knn")


def test_class_weight_balanced_reaches_the_head(docs):
    rec = docs.fit("docs", "label", "bal", model="logreg", params={"class_weight": "balanced", "C": 1.0})
    assert rec["params"]["class_weight"] == "balanced"
    with pytest.raises(InputError, match="centroid has no parameter .class_weight. .class weights work with logreg"):
        docs.fit("docs", "label", "bad", model="centroid", params={"class_weight": "balanced"})


def test_a_label_seen_only_at_test_time_is_named(docs, tmp_path):
    rows = [{"text": "tennis goal for the team", "label": "space_travel"}]
    docs.ingest(write_csv(tmp_path / "x.csv", rows), "extra", encoder=HASH)
    with pytest.raises(LabelError, match="space_travel"):
        docs.fit("docs", "label", "h", test_collection="extra")


def test_few_shot_runs_that_stop_at_max_iter_are_counted_not_warned():
    import warnings

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    y = [i % 3 for i in range(60)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        short = few_shot(X, y, X, y, samples=(4,), repeats=3, max_iter=1)
        full = few_shot(X, y, X, y, samples=(4,), repeats=3)
    assert short[0]["stopped_at_max_iter"] == 3 and full[0]["stopped_at_max_iter"] == 0
    assert not [w for w in caught if "converge" in str(w.message).lower()]
