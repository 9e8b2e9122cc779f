"""Heads: fit (logreg, kNN, centroid), evaluation sets, errors, saving without pickle, predict into the store and on new
inputs, and refusing a space made by another encoder."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from embstore import InputError, LabelError, NotFoundError, SpaceMismatchError, Store
from embstore.encoders import get_encoder

from conftest import HASH, TOPICS, topic_rows, write_csv

NEW_TEXTS = ["the cat and the goat in the barn", "bond yields and bank shares", "the striker and the referee at the match"]
NEW_LABELS = ["animals", "finance", "sports"]


@pytest.fixture()
def docs(store, topics_csv) -> Store:
    store.ingest(topics_csv, "docs", encoder=HASH)
    return store


def fit_quietly(store: Store, *args, **kwargs) -> dict:
    with warnings.catch_warnings():  # estimators may warn about features that are 0 in every hash vector
        warnings.simplefilter("ignore")
        return store.fit(*args, **kwargs)


# ------------------------------------------------------------------------------------------------ fit
@pytest.mark.parametrize("model, arrays", [("logreg", {"coef", "intercept"}), ("knn", {"ids", "y"}),
                                           ("centroid", {"centroids"})])
def test_fit_each_model(docs, model, arrays):
    rec = fit_quietly(docs, "docs", "label", "h", model=model)
    assert rec["model"] == model and rec["name"] == "h" and rec["version"] == 1
    assert rec["classes"] == ["animals", "finance", "sports"] and rec["n_classes"] == 3
    assert rec["accuracy"] >= 0.9 and rec["macro_f1"] >= 0.9
    assert rec["metrics"]["accuracy"] == rec["accuracy"] and rec["metrics"]["macro_f1"] == rec["macro_f1"]
    n_test = rec["metrics"]["n_test"]
    assert rec["n_train"] + n_test == 36 and 5 <= n_test <= 9  # held-out 0.2, stratified
    assert sum(v["support"] for v in rec["metrics"]["per_label"].values()) == n_test
    assert np.asarray(rec["metrics"]["confusion"]["matrix"]).sum() == n_test
    assert rec["evaluated_on"] == "held-out 0.2 of docs (seed 0)"
    assert rec["space_fingerprint"] == get_encoder(HASH).fingerprint()
    assert set(rec["arrays"]) == arrays
    folder = docs.root / rec["path"]
    assert folder == docs.root / "heads" / "h" / "v1"
    for f in rec["arrays"].values():
        np.load(folder / f, allow_pickle=False)  # never pickle
    assert not list(folder.glob("*.pkl")) and not list(folder.glob("*.pickle"))
    assert json.loads((folder / "head.json").read_text())["name"] == "h"


def test_fit_default_name_and_versions(docs):
    a = docs.fit("docs", "label", model="knn")
    assert a["name"] == "docs_label_knn" and a["version"] == 1
    b = docs.fit("docs", "label", model="knn", seed=1)
    assert b["version"] == 2 and b["path"] == "heads/docs_label_knn/v2"
    assert [v["version"] for v in docs.manifest["heads"]["docs_label_knn"]["versions"]] == [1, 2]
    assert docs.info()["heads"]["docs_label_knn"]["versions"] == 2


def test_fit_params_reach_the_estimator(docs):
    rec = docs.fit("docs", "label", "k3", model="knn", params={"n_neighbors": 3})
    assert rec["params"] == {"n_neighbors": 3}
    from embstore.heads import load_head

    _, est = load_head(Store.open(docs.root), "k3")
    assert est.get_params()["n_neighbors"] == 3


def test_fit_with_train_where_and_test_where(docs):
    rec = docs.fit("docs", "label", "split", model="knn", train_where="split = 'train'", test_where="split = 'test'")
    assert rec["n_train"] == 27 and rec["metrics"]["n_test"] == 9
    assert rec["evaluated_on"] == "collection docs where split = 'test'"
    assert rec["accuracy"] == 1.0


def test_test_where_alone_trains_on_the_other_items(docs):
    alone = docs.fit("docs", "label", "alone", model="logreg", test_where="split = 'test'")
    both = docs.fit("docs", "label", "both", model="logreg", test_where="split = 'test'",
                    train_where="split = 'train'")
    assert alone["n_train"] == both["n_train"] == 27 and alone["metrics"]["n_test"] == 9
    assert alone["train_data_sha256"] == both["train_data_sha256"]  # the very same training items
    assert alone["metrics"]["accuracy"] == both["metrics"]["accuracy"]
    with pytest.raises(InputError, match="--train-where and --test-where share 9 items; make them disjoint"):
        docs.fit("docs", "label", test_where="split = 'test'", train_where="true")
    with pytest.raises(InputError, match="--test-collection is the training collection 'docs': pick its test items"):
        docs.fit("docs", "label", test_collection="docs")
    with pytest.raises(LabelError, match="every labelled item of 'docs' matches --test-where"):
        docs.fit("docs", "label", test_where="true")


def test_train_where_matching_nothing(docs):
    with pytest.raises(LabelError, match="no item of 'docs' matches"):
        docs.fit("docs", "label", model="knn", train_where="split = 'nowhere'")


def test_fit_with_a_test_collection(docs, tmp_path):
    test_rows = [{"text": t, "label": lab, "split": "x"} for t, lab in zip(NEW_TEXTS, NEW_LABELS)]
    docs.ingest(write_csv(tmp_path / "held.csv", test_rows), "held", encoder=HASH)
    rec = docs.fit("docs", "label", "h", model="knn", test_collection="held")
    assert rec["n_train"] == 36 and rec["metrics"]["n_test"] == 3
    assert rec["evaluated_on"] == "collection held"
    assert rec["accuracy"] == 1.0


def test_test_collection_from_another_encoder_is_refused(docs, tmp_path):
    docs.ingest(write_csv(tmp_path / "held.csv", [{"text": "cat", "label": "animals"}]), "held", encoder="hash:32")
    with pytest.raises(SpaceMismatchError, match="same --encoder"):
        docs.fit("docs", "label", model="knn", test_collection="held")


def test_test_labels_unseen_in_training(docs, tmp_path):
    docs.ingest(write_csv(tmp_path / "held.csv", [{"text": "cat dog", "label": "animals"},
                                                  {"text": "rain", "label": "weather"}]), "held", encoder=HASH)
    with pytest.raises(LabelError, match=r"never saw in training: \['weather'\]"):
        docs.fit("docs", "label", model="knn", test_collection="held")


def test_labels_file_instead_of_a_column(docs, tmp_path):
    ids = docs.sql("SELECT id, label FROM docs ORDER BY id").fetchall()
    labels = write_csv(tmp_path / "labels.csv", [{"id": i, "label": lab} for i, lab in ids[:30]])
    rec = docs.fit("docs", labels=labels, name="from_file", model="knn")
    assert rec["label_column"] is None and rec["n_classes"] == 3
    assert rec["n_train"] + rec["metrics"]["n_test"] == 30 and rec["n_unlabelled"] == 6
    repeated = [{"id": i, "label": lab} for i, lab in ids[:30]] + [{"id": ids[0][0], "label": ids[0][1]}]
    assert docs.fit("docs", labels=write_csv(tmp_path / "same.csv", repeated), model="knn")["n_train"] == \
        rec["n_train"]  # the same label twice is one label
    assert rec["labels_file_unmatched"] == 0
    strays = docs.fit("docs", labels=write_csv(tmp_path / "strays.csv", repeated + [{"id": "nope", "label": "x"}]),
                      model="knn")
    assert strays["labels_file_unmatched"] == 1 and strays["n_train"] == rec["n_train"]
    assert "labels_file_unmatched" not in docs.fit("docs", "label", model="knn")  # no labels file, no count
    clash = repeated + [{"id": ids[0][0], "label": "other"}]
    with pytest.raises(LabelError, match=f"gives id '{ids[0][0]}' two labels \\('{ids[0][1]}' on line 2, 'other' "
                                         "on line 33\\); keep one"):
        docs.fit("docs", labels=write_csv(tmp_path / "clash.csv", clash), model="knn")


def test_several_labels_files_are_taken_together(docs, tmp_path):
    """One file per suggest round (their columns differ: the second has the head's guess): --labels twice."""
    from click.testing import CliRunner

    from embstore_cli.main import cli

    ids = docs.sql("SELECT id, label FROM docs ORDER BY id").fetchall()
    one = write_csv(tmp_path / "round1.csv", [{"id": i, "content": "x", "label": lab} for i, lab in ids[:15]])
    two = write_csv(tmp_path / "round2.csv", [{"id": i, "content": "x", "guess": "g", "confidence": 0.5, "label": lab}
                                              for i, lab in ids[15:30]])
    rec = docs.fit("docs", labels=[one, two], model="knn")
    assert rec["n_train"] + rec["metrics"]["n_test"] == 30 and rec["n_unlabelled"] == 6
    res = CliRunner().invoke(cli, ["fit", "--store", str(docs.root), "-c", "docs", "--labels", str(one), "--labels",
                                   str(two), "--model", "knn", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_train"] == rec["n_train"]
    clash = write_csv(tmp_path / "clash.csv", [{"id": ids[3][0], "label": "other"}])
    with pytest.raises(LabelError, match=f"give id '{ids[3][0]}' two labels .*round1.csv line 5, 'other' on "
                                         r".*clash.csv line 2\); keep one"):
        docs.fit("docs", labels=[one, clash], model="knn")
    from embstore.labelled import labels_from_file

    ints = write_csv(tmp_path / "ints.csv", [{"id": "a", "label": 3}, {"id": "b", "label": 4}])
    mixed = write_csv(tmp_path / "mixed.csv", [{"id": "a", "label": 3}, {"id": "c", "label": "cat"}])
    assert labels_from_file([ints, mixed], None) == {"a": "3", "b": "4", "c": "cat"}  # one type over the files
    res = CliRunner().invoke(cli, ["fit", "--store", str(docs.root), "-c", "docs", "--labels", str(tmp_path / "no.csv")])
    assert res.exit_code == 2 and res.stderr.strip().splitlines() == [f"Error: labels file {tmp_path / 'no.csv'} "
                                                                       "does not exist"]


def test_integer_labels_stay_integers(store, tmp_path):
    rows = [{"text": t, "label": n} for n, texts in enumerate(TOPICS.values()) for t in texts]
    store.ingest(write_csv(tmp_path / "ints.csv", rows), "ints", encoder=HASH)
    rec = store.fit("ints", "label", "h", model="knn")
    assert rec["classes"] == [0, 1, 2]
    out = store.predict("h", texts=NEW_TEXTS)
    assert [r["label"] for r in out["rows"]] == [0, 1, 2]


# ------------------------------------------------------------------------------------------------ fit errors
def test_a_single_class_is_refused(store, tmp_path):
    store.ingest(write_csv(tmp_path / "one.csv", [{"text": f"text {i}", "label": "only"} for i in range(5)]), "one",
                 encoder=HASH)
    with pytest.raises(LabelError, match="all 5 labelled items have the label 'only'; a head needs at least 2") as e:
        store.fit("one", "label")
    assert isinstance(e.value, ValueError)


def test_no_labels_is_refused(store, tmp_path):
    store.ingest(write_csv(tmp_path / "nol.csv", [{"text": f"text {i}", "label": ""} for i in range(5)]), "nol",
                 encoder=HASH)
    with pytest.raises(LabelError, match="no item of 'nol' has a label in 'label'"):
        store.fit("nol", "label")


def test_unlabelled_items_are_left_out_and_counted(store, tmp_path):
    rows = topic_rows() + [{"text": f"unlabelled text {i}", "label": "", "split": "x"} for i in range(4)]
    store.ingest(write_csv(tmp_path / "some.csv", rows), "partly", encoder=HASH)
    rec = store.fit("partly", "label", model="knn")
    assert rec["n_unlabelled"] == 4 and rec["n_train"] + rec["metrics"]["n_test"] == 36


def test_a_missing_label_column_names_the_columns(docs):
    with pytest.raises(InputError) as e:
        docs.fit("docs", "topic")
    assert str(e.value) == "column 'topic' is not in collection 'docs'; its columns are: text, label, split"


def test_no_label_column_nor_file(docs):
    with pytest.raises(InputError, match="--label-column"):
        docs.fit("docs")


def test_unknown_model(docs):
    with pytest.raises(InputError, match="unknown head model 'svm'; choose one of: auto, logreg, knn, centroid, blend"):
        docs.fit("docs", "label", model="svm")


def test_unknown_collection(docs):
    with pytest.raises(NotFoundError, match="no collection 'nope'"):
        docs.fit("nope", "label")


# ------------------------------------------------------------------------------------------------ predict
@pytest.mark.parametrize("model", ["logreg", "knn", "centroid"])
def test_predict_new_texts_with_a_reloaded_head(docs, model):
    fit_quietly(docs, "docs", "label", "h", model=model, params={"C": 10.0} if model == "logreg" else {})
    fresh = Store.open(docs.root)  # loads the head from disk: .npy arrays + head.json
    out = fresh.predict("h", texts=NEW_TEXTS)
    assert out["head"] == "h" and out["version"] == 1
    assert [r["input"] for r in out["rows"]] == NEW_TEXTS
    assert [r["label"] for r in out["rows"]] == NEW_LABELS
    for r in out["rows"]:
        if model == "centroid" and r["confidence"] is None:  # a nearest centroid need not give a probability
            continue
        assert 1 / 3 < r["confidence"] <= 1.0


def test_reloaded_head_predicts_like_the_fitted_one(docs):
    from sklearn.linear_model import LogisticRegression

    docs.fit("docs", "label", "h", model="logreg", params={"C": 10.0})
    ids, X = docs.embeddings("docs")
    labels = dict(docs.sql("SELECT id, label FROM docs").fetchall())
    stock = LogisticRegression(max_iter=1000).fit(X, [labels[i] for i in ids])
    out = Store.open(docs.root).predict("h", "docs")
    assert out["predicted"] == 36
    predicted = dict(docs.refresh().sql("SELECT id, label FROM predictions WHERE head = 'h'").fetchall())
    assert np.mean([predicted[i] == p for i, p in zip(ids, stock.predict(X))]) >= 0.95


def test_predict_into_the_store_joins_in_sql(docs):
    docs.fit("docs", "label", "topic", model="knn")
    out = docs.predict("topic", "docs")
    assert out["predicted"] == 36 and out["collection"] == "docs" and out["space"] == "hash64"
    assert sum(out["labels"].values()) == 36
    rows = docs.sql("SELECT d.label AS truth, p.label AS predicted, p.confidence, p.head, p.version, p.collection "
                    "FROM predictions p JOIN docs d USING (id)").fetchall()
    assert len(rows) == 36
    assert sum(t == p for t, p, *_ in rows) >= 34
    assert all(0 < c <= 1 and h == "topic" and v == 1 and coll == "docs" for _, _, c, h, v, coll in rows)
    assert docs.info()["collections"]["docs"]["predictions"] == {"topic": 36}


def test_predict_again_replaces_the_predictions_and_retires_the_old_ones(docs):
    from embstore.config import Settings

    docs.fit("docs", "label", "topic", model="knn")
    docs.predict("topic", "docs")
    first = docs.collection("docs")["predictions"]["topic"]["shards"][0]["file"]
    reader = Store.open(docs.root, create=False)  # holds the snapshot with version 1's predictions
    reader.sql("SELECT 1").fetchall()
    docs.fit("docs", "label", "topic", model="knn", seed=3)
    out = docs.predict("topic", "docs")
    assert out["version"] == 2
    assert docs.sql("SELECT count(*), min(version), max(version) FROM predictions").fetchall() == [(36, 2, 2)]
    # the older snapshot still reads what it listed: the replaced shard is retired, not deleted
    assert reader.sql("SELECT count(*), max(version) FROM predictions").fetchall() == [(36, 1)]
    assert [r["file"] for r in docs.manifest["retired"]] == [first] and (docs.root / first).exists()
    # a commit after the retention (here 0 s) deletes it, and its emptied folder stays only if still used
    later = Store.open(docs.root, create=False, settings=Settings.resolve(device="cpu", retention_s=0))
    later.fit("docs", "label", "other", model="centroid")
    assert not (docs.root / first).exists() and later.manifest["retired"] == []
    assert later.sql("SELECT count(*), max(version) FROM predictions").fetchall() == [(36, 2)]


def test_predict_an_older_version(docs):
    docs.fit("docs", "label", "topic", model="knn")
    docs.fit("docs", "label", "topic", model="knn", params={"n_neighbors": 3})
    assert docs.predict("topic", texts=["cat"], version=1)["version"] == 1
    with pytest.raises(NotFoundError, match="has no version 7"):
        docs.predict("topic", texts=["cat"], version=7)


def test_predict_defaults_to_the_latest_head(docs):
    docs.fit("docs", "label", "first", model="knn")
    docs.fit("docs", "label", "second", model="knn")
    assert docs.predict(texts=["cat"])["head"] == "second"


def test_predict_needs_a_collection_or_inputs(docs):
    docs.fit("docs", "label", "topic", model="knn")
    with pytest.raises(InputError, match="predict needs a collection"):
        docs.predict("topic")
    with pytest.raises(InputError, match="not both"):
        docs.predict("topic", "docs", texts=["cat"])


def test_predict_unknown_head(docs):
    with pytest.raises(NotFoundError, match="no heads in"):
        docs.predict(None, "docs")
    with pytest.raises(NotFoundError, match=r"no head 'nope'.*heads: none"):
        docs.predict("nope", "docs")
    docs.fit("docs", "label", "topic", model="knn")
    with pytest.raises(NotFoundError, match=r"no head 'nope'.*heads: topic"):
        docs.predict("nope", "docs")


def test_a_head_refuses_a_space_from_another_encoder(docs, tmp_path):
    docs.fit("docs", "label", "topic", model="knn")
    docs.ingest(write_csv(tmp_path / "other.csv", [{"text": t} for t in NEW_TEXTS]), "other", encoder="hash:32")
    with pytest.raises(SpaceMismatchError) as e:
        docs.predict("topic", "other")
    msg = str(e.value)
    assert "topic" in msg and get_encoder(HASH).fingerprint() in msg and "hash:32" in msg
    assert "same --encoder" in msg and "\n" not in msg
    assert isinstance(e.value, ValueError)
    assert docs.sql("SELECT count(*) FROM predictions").fetchall() == [(0,)]
    # the same texts embedded by the head's own encoder are fine
    docs.ingest(tmp_path / "other.csv", "other", encoder=HASH)
    out = docs.predict("topic", "other")
    assert out["space"] == "hash64" and out["labels"] == {"animals": 1, "finance": 1, "sports": 1}


def test_macro_f1_ignores_labels_absent_from_the_test_set(store, tmp_path):
    rows = topic_rows() + [{"text": "a lonely rare example", "label": "rare", "split": "train"}]
    store.ingest(write_csv(tmp_path / "rare.csv", rows), "rare", encoder=HASH)
    rec = store.fit("rare", "label", model="knn")
    # the single 'rare' example stays in training, so the test set has no 'rare' item
    assert rec["metrics"]["per_label"]["rare"]["support"] == 0
    assert rec["accuracy"] == 1.0
    assert rec["macro_f1"] == 1.0


def test_log_loss_is_never_negative(docs):
    rec = docs.fit("docs", "label", "h", model="knn")  # separable data: every neighbour agrees, p = 1.0
    assert rec["accuracy"] == 1.0
    assert rec["metrics"]["calibration"]["log_loss"] >= 0


# ------------------------------------------------------------------------------------------------ kNN served by the index
@pytest.fixture()
def clusters(store):
    """3,000 vectors in 40 clusters; the label is the cluster mod 5; 10% are the test split."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((40, 32)).astype(np.float32)
    which = rng.integers(0, 40, 3_000)
    X = centers[which] + rng.standard_normal((3_000, 32), dtype=np.float32) * 0.6
    labels = np.asarray([f"c{w % 5}" for w in which])
    split = np.where(np.arange(3_000) % 10 == 0, "test", "train")
    store.ingest_vectors("v", X, metadata={"label": labels.tolist(), "split": split.tolist()})
    return store, X, labels, split


@pytest.mark.parametrize("factory, exact_subset", [("Flat", 20_000), ("HNSW32", 20_000), ("HNSW32", 0),
                                                    ("IVF16,Flat", 0)],
                         ids=["flat", "hnsw-small-subset-exact", "hnsw-idselector", "ivf-idselector"])
def test_knn_head_is_served_by_the_space_index(clusters, monkeypatch, factory, exact_subset):
    from embstore import search
    from embstore.estimators import KNNHead

    store, X, labels, split = clusters
    monkeypatch.setattr(search, "EXACT_SUBSET", exact_subset)
    if not exact_subset:  # and never judge the exact search cheaper: this test wants the index's own search
        monkeypatch.setattr(search, "HNSW_STEP", 0)
    store.reindex("v", factory=factory)
    rec = store.fit("v", "label", "nn", model="knn", params={"n_neighbors": 5},
                    train_where="split = 'train'", test_where="split = 'test'")
    assert set(rec["arrays"]) == {"ids", "y"}  # the training items by id: no copy of their vectors
    if exact_subset:  # 2,700 training items: few enough for an exact search over their vectors
        assert rec["served_by"] == ("exact search over the 2700 training items' vectors in v.external "
                                    f"(cheaper here than the space's {factory} index)")
    else:
        assert rec["served_by"] == f"the index of v.external ({factory}), restricted to the training items"
    ids = np.load(store.root / rec["path"] / "ids.npy", allow_pickle=False)
    assert len(ids) == rec["n_train"] == (split == "train").sum()

    tr, te = split == "train", split == "test"
    stock = KNNHead(n_neighbors=5).fit(X[tr], labels[tr]).predict(X[te])
    assert rec["accuracy"] == pytest.approx((stock == labels[te]).mean(), abs=0.02)
    store.predict("nn", "v")
    again = Store.open(store.root, create=False)  # a fresh reader: the head is rebuilt from ids.npy + the index
    got = dict(again.sql("SELECT id, label FROM predictions WHERE head = 'nn'").fetchall())
    ours = np.asarray([got[str(i)] for i in np.flatnonzero(te)])
    agree = (ours == stock).mean()
    assert agree == 1.0 if factory == "Flat" or exact_subset else agree >= 0.97
    # a training item's nearest neighbour is itself, so the head reproduces the training labels
    assert np.mean([got[str(i)] == labels[i] for i in np.flatnonzero(tr)[:300]]) > 0.97


def test_knn_head_on_a_whole_collection_and_its_errors(clusters, monkeypatch):
    from embstore import search

    store, X, labels, split = clusters
    monkeypatch.setattr(search, "HNSW_STEP", 0)  # 3,000 x 32 would be cheaper exact; this test wants the index
    store.ingest_vectors("held", X[:100] + 0.01, metadata={"label": labels[:100].tolist()})
    store.reindex("v", factory="HNSW32")
    rec = store.fit("v", "label", "all", model="knn", test_collection="held")  # trains on every item of v
    assert rec["n_train"] == 3_000 and rec["learned"]["n_neighbors_"] >= 1 and rec["accuracy"] > 0.95
    assert rec["served_by"] == "the index of v.external (HNSW32)"
    out = Store.open(store.root, create=False).predict("all", "held")
    assert out["predicted"] == 100
    store.delete_collection("v")
    with pytest.raises(NotFoundError, match="collection 'v', which is no longer in the store; fit it again"):
        Store.open(store.root, create=False).predict("all", "held")


def test_knn_search_goes_exact_when_the_hnsw_graph_would_cost_more(clusters, monkeypatch):
    """An HNSW search costs ~efSearch steps a query: when the tuned efSearch is high (data the graph finds hard)
    and the training set not large, an exact batch search over its vectors is cheaper, and exact."""
    from embstore import search

    store, X, labels, split = clusters
    monkeypatch.setattr(search, "EXACT_SUBSET", 0)
    store.reindex("v", factory="HNSW32")
    ef = store.space("v")["index"]["value"]
    even = -(-2_700 * 32 // ef)  # 2,700 training items x 32 dims = efSearch x HNSW_STEP
    split = {"train_where": "split = 'train'", "test_where": "split = 'test'"}
    monkeypatch.setattr(search, "HNSW_STEP", even)  # at the break-even point: exact
    assert store.fit("v", "label", "a", model="knn", **split)["served_by"].startswith("exact search over the 2700")
    monkeypatch.setattr(search, "HNSW_STEP", even - 1)  # one below: the index
    assert store.fit("v", "label", "b", model="knn", **split)["served_by"] == (
        "the index of v.external (HNSW32), restricted to the training items")


def test_knn_head_saved_with_its_vectors_still_loads(clusters):
    """Heads written before kNN was served by the index kept the training vectors (X.npy); they still predict."""
    from embstore.heads import save_head
    from embstore.estimators import KNNHead

    store, X, labels, split = clusters
    rec = store.fit("v", "label", "nn", model="knn", params={"n_neighbors": 3}, test_where="split = 'test'",
                    train_where="split = 'train'")
    tr = split == "train"
    old = {k: v for k, v in rec.items() if k not in ("version", "path", "arrays", "format_version", "served_by")}
    est = KNNHead(n_neighbors=3).fit(X[tr], labels[tr])
    save_head(store, old, {"X": est.fit_X_, "y": est.fit_y_})
    out = store.predict("nn", texts=None, collection="v")
    assert out["version"] == 2 and out["predicted"] == 3_000
    got = dict(store.sql("SELECT id, label FROM predictions WHERE head = 'nn'").fetchall())
    assert [got[str(i)] for i in range(50)] == est.predict(X[:50]).tolist()


def test_fit_reads_only_the_labelled_vectors_and_counts_its_steps(store, tmp_path):
    filler = [{"text": f"unlabelled note number {i} about things", "label": "", "split": "train"} for i in range(3000)]
    store.ingest(write_csv(tmp_path / "a.csv", filler[:1500]), "docs", encoder=HASH)
    store.ingest(write_csv(tmp_path / "b.csv", topic_rows()), "docs", encoder=HASH)
    store.ingest(write_csv(tmp_path / "c.csv", filler[1500:]), "docs", encoder=HASH)
    calls: list[tuple[str, int, int]] = []
    rec = fit_quietly(store, "docs", "label", "h", progress=lambda *a: calls.append(a))
    assert rec["n_train"] + rec["metrics"]["n_test"] == 36 and rec["n_unlabelled"] == 3000
    assert rec["accuracy"] >= 0.9
    vectors = [c for c in calls if c[0] == "vectors"]
    assert vectors and vectors[-1][1:] == (36, 36)  # the 36 labelled vectors of 3,036, nothing more
    fit = [c for c in calls if c[0] == "fit"]
    assert len(fit) >= 3 and fit[-1][1] == fit[-1][2]  # each solve of the C search, then the final fit
    assert all(a[1] <= b[1] for a, b in zip(fit, fit[1:])) and all(c[1] <= c[2] for c in fit)
    # the same head from a labels file naming a third of them: only those are read
    some = [r for r in store.sql("SELECT id, label FROM docs WHERE label IS NOT NULL AND label <> '' ORDER BY id").fetchall()][::3]
    write_csv(tmp_path / "labels.csv", [{"id": i, "label": lab} for i, lab in some])
    calls.clear()
    rec = fit_quietly(store, "docs", labels=tmp_path / "labels.csv", name="h2", model="centroid",
                      progress=lambda *a: calls.append(a))
    assert rec["n_train"] + rec["metrics"]["n_test"] == len(some) == 12
    assert [c for c in calls if c[0] == "vectors"][-1][1:] == (12, 12)
    assert [c for c in calls if c[0] == "fit"][-1][1:] == (1, 1)


def test_eval_counts_its_runs(docs):
    calls: list[tuple[str, int, int]] = []
    out = docs.eval("docs", "label", samples=(1, 2, "all"), repeats=3, progress=lambda *a: calls.append(a))
    runs = [c for c in calls if c[0] == "runs"]
    assert runs[0] == ("runs", 0, 7) and runs[-1] == ("runs", 7, 7)  # 3 + 3 + 1
    assert [r["samples_per_label"] for r in out["results"]] == [1, 2, "all"]


# ------------------------------------------------------------------------------------------------ selftrain
def test_selftrain_learns_from_the_unlabelled_items_and_reloads_as_a_linear_head(store, tmp_path):
    """Three labelled items per topic (the least it guesses from), a quarter held out as test, the rest unlabelled:
    the self-training head labels the unlabelled items it is sure of and learns from them (never from the test
    items), and saves and reloads as a linear head."""
    rows = []
    for topic, texts in TOPICS.items():
        for i, text in enumerate(texts):
            split = "test" if i % 4 == 0 else "train"
            rows.append({"text": text, "label": topic if split == "test" or i in (1, 2, 3) else "", "split": split})
    store.ingest(write_csv(tmp_path / "items.csv", rows), "t", encoder=HASH)
    n_test, n_train = sum(r["split"] == "test" for r in rows), sum(r["split"] == "train" and r["label"] != "" for r in rows)
    rec = fit_quietly(store, "t", "label", "st", model="selftrain", test_where="split = 'test'")
    st = rec["self_training"]
    assert rec["model"] == "selftrain" and rec["n_train"] == n_train and rec["metrics"]["n_test"] == n_test
    assert st["unlabelled"] == len(rows) - n_train - n_test  # every item that is neither training nor test
    assert st["pseudo_labelled"] and 0 < st["pseudo_labelled"][-1] <= st["unlabelled"]
    assert set(rec["arrays"]) == {"coef", "intercept"} and rec["selection"]["parameter"] == "C"
    loose = fit_quietly(store, "t", "label", "st", model="selftrain", test_where="split = 'test'",
                        params={"threshold": 0.34})
    assert loose["self_training"]["pseudo_labelled"][0] >= st["pseudo_labelled"][0]
    fresh = Store.open(store.root)
    out = fresh.predict("st", version=1, texts=NEW_TEXTS)
    assert [r["label"] for r in out["rows"]] == NEW_LABELS


def test_selftrain_with_nothing_unlabelled_is_logreg(docs):
    a = fit_quietly(docs, "docs", "label", "a", model="selftrain")
    b = fit_quietly(docs, "docs", "label", "b", model="logreg")
    assert a["self_training"]["unlabelled"] == 0 and a["self_training"]["pseudo_labelled"] == []
    assert a["accuracy"] == b["accuracy"] and a["learned"] == b["learned"]


@pytest.mark.parametrize("params, word", [({"threshold": 0}, "threshold"), ({"rounds": 1.5}, "rounds"),
                                          ({"weight": "heavy"}, "weight"), ({"max_unlabelled": -1}, "max_unlabelled"),
                                          ({"min_per_label": 0}, "min_per_label")])
def test_selftrain_refuses_bad_params_in_one_line(docs, params, word):
    with pytest.raises(InputError, match=f"cannot fit selftrain: {word}"):
        docs.fit("docs", "label", "x", model="selftrain", params=params)


def test_the_unlabelled_sample_skips_labelled_items_and_stays_bounded_where_most_are_labelled(store):
    """What selftrain (and auto) learn from: never a training or test item; where nearly every item is labelled it
    returns what it found among at most 4n + 64 drawn positions, not the whole space; with none left, nothing; and
    from a large space its positions lie in a few blocks of row groups, not spread over all of them."""
    from embstore.labelled import unlabelled_sample
    from embstore.storage import ROW_GROUP

    X = np.zeros((20_000, 8), np.float32)
    X[:, 0] = np.arange(len(X))  # each vector names its item
    ids = [f"i{n}" for n in range(len(X))]
    store.ingest_vectors("u", X, ids=ids)
    space = store.space_name("u", None)
    free = set(range(0, len(X), 30))  # 667 unlabelled items, spread over the space
    labelled = [i for n, i in enumerate(ids) if n not in free]
    got = unlabelled_sample(store, "u", space, labelled, 50, seed=0)
    assert 0 < len(got) <= 50 and set(got[:, 0].astype(int)) <= free
    assert len(got) < 30  # 1 in 30 of the 264 positions drawn
    some = unlabelled_sample(store, "u", space, ids[:1000], 500, seed=0)
    assert len(some) == 500 and some[:, 0].min() >= 1000  # plenty free: all 500
    assert len(np.unique(some[:, 0].astype(int) // ROW_GROUP)) <= 3  # 643 drawn, at most a quarter of each block: 3 blocks
    assert not np.array_equal(some, unlabelled_sample(store, "u", space, ids[:1000], 500, seed=1))
    assert np.array_equal(some, unlabelled_sample(store, "u", space, ids[:1000], 500, seed=0))
    assert len(unlabelled_sample(store, "u", space, ids, 50, seed=0)) == 0
