"""fit --model auto (the default): the choice among logreg, knn, centroid and blend by cross-validation, its record,
the blend head saved and reloaded, and the rule's edges (one item per label, multi-label, bad params)."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from embstore import InputError, Store
from embstore import auto
from embstore.heads import load_head

from conftest import HASH


def rings(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two labels alternating around a circle (12 tight clusters in 2 dims, 4 dims of small noise): no hyperplane
    separates them, neighbours (by cosine) do."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, 12, n)
    angle = which * (2 * np.pi / 12) + rng.normal(0, 0.05, n)
    X = np.column_stack([np.cos(angle), np.sin(angle), rng.normal(0, 0.05, (n, 4))]).astype(np.float32)
    return X, np.asarray([f"l{w % 2}" for w in which])


def blobs(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three labels told apart in 3 of 64 dims, the other 61 loud noise: a linear model learns to ignore the noise,
    cosine neighbours and centroids drown in it."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = np.hstack([np.eye(3)[y] + rng.normal(0, 0.3, (n, 3)), rng.normal(0, 1.0, (n, 61))]).astype(np.float32)
    return X, np.asarray([f"c{v}" for v in y])


def choose(X, y, **kw):
    from embstore.estimators import LinearProbe

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LinearProbe(device="cpu").fit(X, y)
        return auto.choose(X, y, C=lr.C_, temperature=lr.temperature_, device="cpu", **kw)


def test_neighbours_win_where_no_hyperplane_separates_the_labels():
    X, y = rings()
    c = choose(X, y)
    assert set(c["scores"]) == set(auto.CANDIDATES)
    assert c["scores"]["knn"]["accuracy"] > c["scores"]["logreg"]["accuracy"] + 0.2
    assert c["chosen"] in ("knn", "blend") and c["how"].startswith("5-fold stratified CV over 600 items")


def test_logistic_regression_stays_where_nothing_beats_it_clearly():
    X, y = blobs()
    c = choose(X, y)
    assert c["chosen"] == "logreg"
    assert all(s["vs_default"] <= auto.BAND * s["vs_default_se"] for s in c["scores"].values())


def test_the_rule_needs_more_than_the_band():
    table = {"logreg": {"accuracy": 0.80, "vs_default": 0.0, "vs_default_se": 0.0},
             "knn": {"accuracy": 0.83, "vs_default": 0.03, "vs_default_se": 0.02}}
    assert auto.pick(table, band=2.0) == "logreg"  # +0.03 is 1.5 standard errors
    assert auto.pick(table, band=1.0) == "knn"
    table["knn"]["vs_default_se"] = 0.0  # the same items right, but more of them: no luck in it
    assert auto.pick(table, band=2.0) == "knn"


def test_folds_hold_out_only_labels_with_enough_items():
    y = np.asarray(["a"] * 2 + ["b"] * 2 + ["c"] * 1)  # two items per label, one label with one
    splits, how = auto.folds_for(y)
    assert len(splits) == 2 and "1 item of labels with fewer than 2 items trains in every fold" in how
    assert all(4 in tr and 4 not in te for tr, te in splits)
    assert auto.folds_for(np.asarray(["a", "b", "c"]))[0] == []  # one item per label: nothing to hold out
    big = np.repeat(np.arange(4), 10_000).astype(str)
    splits, how = auto.folds_for(big)
    assert len(splits) == 3 and sum(len(te) for _, te in splits) == auto.CV_MAX_ROWS and "sample of 20,000" in how


def test_the_same_seed_gives_the_same_choice_and_scores():
    X, y = rings(300, seed=3)
    assert choose(X, y) == choose(X, y)


# ------------------------------------------------------------------------------------------------ through a store
@pytest.fixture()
def ring_store(store):
    X, y = rings(400)
    split = np.where(np.arange(len(y)) % 5 == 0, "test", "train")
    store.ingest_vectors("v", X, metadata={"label": y.tolist(), "split": split.tolist()})
    return store, X, y


def test_fit_defaults_to_auto_and_keeps_the_evidence(ring_store):
    store, X, y = ring_store
    rec = store.fit("v", "label", "h", test_where="split = 'test'")
    assert rec["model"] == rec["auto"]["chosen"] in ("knn", "blend")
    assert set(rec["auto"]["scores"]) == set(auto.CANDIDATES) and rec["auto"]["margin"]["over"] == "logreg"
    assert rec["accuracy"] >= 0.95
    saved = json.loads((store.root / rec["path"] / "head.json").read_text())
    assert saved["auto"]["chosen"] == rec["model"] and store.manifest["heads"]["h"]["versions"][-1]["model"] == rec["model"]


def test_a_blend_head_is_saved_served_by_the_index_and_reloaded(ring_store):
    store, X, y = ring_store
    rec = store.fit("v", "label", "b", params={"candidates": "blend"}, test_where="split = 'test'")
    assert rec["model"] == "blend" and {"coef", "intercept", "ids", "y"} <= set(rec["arrays"])
    assert "X" not in rec["arrays"]  # the training vectors stay in the space, not copied into the head
    _, est = load_head(Store.open(store.root), "b")
    P = est.predict_proba(X[:50])
    lr, knn = est.logreg_.predict_proba(X[:50]), est.knn_.predict_proba(X[:50])
    assert np.allclose(P, 0.5 * (lr + knn)) and np.allclose(P.sum(1), 1)
    acc = (est.predict(X[::5]) == y[::5]).mean()
    assert abs(acc - rec["accuracy"]) < 1e-9
    out = store.predict("b", collection="v")
    assert out["predicted"] == len(y)


def test_one_item_per_label_falls_back_to_logreg(store):
    X, y = blobs(30)
    keep = [list(y).index(c) for c in ("c0", "c1", "c2")] * 2
    store.ingest_vectors("few", X[keep[:3]], metadata={"label": y[keep[:3]].tolist()})
    store.ingest_vectors("few_test", X[:30], metadata={"label": y[:30].tolist()})
    rec = store.fit("few", "label", "one", test_collection="few_test")
    assert rec["model"] == "logreg" and rec["auto"]["scores"] == {}
    assert rec["auto"]["how"].startswith("none: fewer than two labels have two training items")


def test_multi_label_auto_is_logreg(store):
    X, _ = blobs(90)
    labels = [[["a"], ["b"], ["a", "b"]][i % 3] for i in range(90)]
    store.ingest_vectors("ml", X, metadata={"tags": ["|".join(t) for t in labels]})
    rec = store.fit("ml", "tags", "m", label_sep="|")
    assert rec["model"] == "logreg" and rec["multilabel"] and "multi-label" in rec["auto"]["how"]


def test_bad_auto_params_are_one_line_errors(ring_store):
    store, _, _ = ring_store
    with pytest.raises(InputError, match="auto chooses among logreg, knn, centroid, blend; got 'svm'"):
        store.fit("v", "label", params={"candidates": "svm"})
    with pytest.raises(InputError, match="auto has no parameter 'C'"):
        store.fit("v", "label", params={"C": 1})
    with pytest.raises(InputError, match="band is a number"):
        store.fit("v", "label", params={"band": "wide"})


def test_cli_fit_says_what_auto_chose(tmp_path, topics_csv):
    store = Store.open(tmp_path / "s")
    store.ingest(topics_csv, "docs", encoder=HASH)
    out = subprocess.run([sys.executable, "-m", "embstore_cli.main", "fit", "--store", str(tmp_path / "s"), "-c", "docs",
                          "--label-column", "label", "--name", "t"], capture_output=True, text=True, check=True)
    assert "(chosen by auto)" in out.stdout and "auto chose" in out.stdout
    for name in auto.CANDIDATES:
        assert f"\n{name} " in out.stdout  # its row in the candidates' table
