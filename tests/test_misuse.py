"""What a new user gets wrong, driven through the CLI: each gives one line that names the problem and what to do,
never a traceback; and outputs that used to say too little (multi-label predictions, unlabelled items, eval runs
that cannot differ, labels with no test items)."""
from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from embstore import InputError
from conftest import HASH, topic_rows, write_csv
from test_cli import assert_one_line_error, run, run_json


@pytest.fixture()
def docs(tmp_path):
    store = tmp_path / "store"
    run("ingest", write_csv(tmp_path / "t.csv", topic_rows()), "--store", store, "-c", "docs", "--encoder", HASH)
    return store


# ------------------------------------------------------------------------------------------------ names in SQL
def test_a_collection_or_space_that_would_hide_another_sql_view_is_refused(docs, tmp_path):
    from embstore.manifest import read_manifest, write_manifest

    src = write_csv(tmp_path / "more.csv", [{"text": "a cow"}, {"text": "a bond"}])
    for name, words in (("DOCS", "is taken in SQL by collection 'docs' (SQL names ignore case)"),
                        ("Predictions", "is taken in SQL by the predictions view"),
                        ("docs__hash64", "holds '__', which in SQL separates a collection from its space")):
        assert_one_line_error(run("ingest", src, "--store", docs, "-c", name, "--encoder", HASH, ok=False),
                              f"collection name {name!r} {words}")
    # an older store could hold a collection named like a space view: a new space must not take its name, and SQL
    # still reaches both
    run("ingest", src, "--store", docs, "-c", "docsx", "--encoder", HASH)
    manifest = read_manifest(docs)
    manifest["collections"]["docs__x"] = manifest["collections"].pop("docsx")
    write_manifest(docs, manifest)
    refused = run("ingest", src, "--store", docs, "-c", "docs", "--encoder", "hash:32", "--space", "x", ok=False)
    assert_one_line_error(refused, "space 'x' of 'docs' would be the SQL view 'docs__x', which is taken by "
                          "collection 'docs__x'", "--space")
    out = run("sql", "--store", docs, "--format", "csv",
              "SELECT (SELECT count(*) FROM docs), (SELECT count(*) FROM docs__hash64), (SELECT count(*) FROM docs__x), "
              "(SELECT count(*) FROM docs__x_nearest('a cow', 1)), len(embed('docs__x', 'a cow'))")
    assert out.stdout.splitlines()[1] == "36,36,2,1,64"
    bad = run("sql", "--store", docs, "SELECT embed('docs', 'a cat'), embed('nope', 'x')", ok=False)
    assert_one_line_error(bad, "SQL error", "no collection 'nope'")


def test_a_new_collection_named_like_a_table_of_the_user_s_is_refused(docs, tmp_path):
    run("sql", "--store", docs, "--write", "CREATE TABLE Labels AS SELECT 1 AS x")
    src = write_csv(tmp_path / "more.csv", [{"text": "a cow"}])
    assert_one_line_error(run("ingest", src, "--store", docs, "-c", "labels", "--encoder", HASH, ok=False),
                          "your SQL table 'Labels' (in STORE/sql.duckdb) has the name of the new view 'labels'",
                          "ALTER TABLE Labels RENAME TO")
    run("ingest", src, "--store", docs, "-c", "labels2", "--encoder", HASH)
    assert run("sql", "--store", docs, "--format", "csv", "SELECT x FROM Labels").stdout == "x\n1\n"


# ------------------------------------------------------------------------------------------------ fit and eval
def test_bad_head_parameters_name_the_parameter_and_the_choices(docs):
    assert_one_line_error(run("fit", "--store", docs, "-c", "docs", "--label-column", "label", "--param", "C=1",
                              ok=False), "auto has no parameter 'C'", "--model logreg")  # the default chooses heads
    fit = ["fit", "--store", docs, "-c", "docs", "--label-column", "label", "--model", "logreg"]
    assert_one_line_error(run(*fit, "--param", "foo=1", ok=False),
                          "logreg has no parameter 'foo'", "its parameters: C, Cs, calibrate")
    assert_one_line_error(run(*fit, "--model", "knn", "--class-weight", "balanced", ok=False),
                          "knn has no parameter 'class_weight' (class weights work with logreg, selftrain and sklearn-logreg)")
    for value, words in (("0", "n_neighbors must be 'auto' or a whole number >= 1, got 0"),
                         ("abc", "n_neighbors must be 'auto' or a whole number >= 1, got 'abc'"),
                         ("2.5", "n_neighbors must be 'auto' or a whole number >= 1, got 2.5"),
                         ("100", "n_neighbors=100 needs more than 100 training items")):
        assert_one_line_error(run(*fit, "--model", "knn", "--param", f"n_neighbors={value}", ok=False),
                              "cannot fit knn: " + words)
    assert_one_line_error(run(*fit, "--model", "centroid", "--param", "temperature=-2", ok=False),
                          "temperature must be 'auto' or a positive number, got -2")
    assert_one_line_error(run(*fit, "--param", "device=gpu", ok=False), "cannot fit logreg: unknown device 'gpu'")
    assert_one_line_error(run(*fit, "--param", "C=true", ok=False), "C must be 'auto' or a positive number, got True")
    # a fixed k and a learning curve: the shares too small for k are left out of the curve, not the fit failed
    plot = run(*fit, "--model", "knn", "--param", "n_neighbors=3", "--plot", docs.parent / "plots")
    assert "learning curve: " in plot.stdout
    assert_one_line_error(run(*fit, "--labels", "x.csv", ok=False), "--label-column", "--labels", "not both")
    typo = run("fit", "--store", docs, "-c", "docs", "--label-column", "label", "--train-where", "split = 'train'",
               "--test-where", "lable = 'x'", ok=False)
    assert_one_line_error(typo, "bad --test-where predicate \"lable = 'x'\"", "lable")


def test_the_fit_table_says_what_was_left_out_and_what_is_unknown(tmp_path):
    rows = topic_rows()
    for r in rows[:5]:
        r["label"] = ""  # five items without a label
    store = tmp_path / "s"
    run("ingest", write_csv(tmp_path / "t.csv", rows), "--store", store, "-c", "docs", "--encoder", HASH)
    out = run("fit", "--store", store, "-c", "docs", "--label-column", "label", "--train-where", "split = 'train'",
              "--test-where", "split = 'test' AND label <> 'sports'").stdout
    head = out.splitlines()[0]
    unlabelled = sum(1 for r in rows if r["split"] == "train" and not r["label"])
    assert f"training items ({unlabelled} without a label left out)" in head  # of the training items only
    sports = next(line for line in out.splitlines() if line.startswith("sports "))
    # no test item and none predicted: precision, recall and F1 blank, not 0.0000
    assert sports.split() == ["sports", "0"]
    fit = run_json("fit", "--store", store, "-c", "docs", "--label-column", "label", "--train-where",
                   "split = 'train'", "--test-where", "split = 'test' AND label <> 'sports'")
    assert fit["metrics"]["per_label"]["sports"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0,
                                                     "predicted": 0}
    assert sum(v["predicted"] for v in fit["metrics"]["per_label"].values()) == fit["metrics"]["n_test"]
    assert "-0.0000" not in out


def test_eval_refuses_test_labels_it_never_trained_on_and_says_when_runs_cannot_differ(docs, tmp_path):
    out = run("eval", "--store", docs, "-c", "docs", "--label-column", "label", "--samples", "2,50",
              "--repeats", "3").stdout
    assert "per_label 50: no label has more than 50 training items, so every run trained on all of them" in out
    data = run_json("eval", "--store", docs, "-c", "docs", "--label-column", "label", "--samples", "2,50",
                    "--repeats", "3")
    assert [r["every_item"] for r in data["results"]] == [False, True]
    rows = [dict(r, label="weather") if r["split"] == "test" and r["label"] == "sports" else r for r in topic_rows()]
    run("ingest", write_csv(tmp_path / "new.csv", rows), "--store", docs, "-c", "shifted", "--encoder", HASH)
    refused = run("eval", "--store", docs, "-c", "shifted", "--label-column", "label", "--train-where",
                  "split = 'train' AND label <> 'weather'", "--test-where", "split = 'test'", ok=False)
    assert_one_line_error(refused, "labels the head never saw in training: ['weather']")


def test_a_multi_label_head_shows_every_label_and_draws_its_learning_curve(tmp_path):
    rows = [{"text": r["text"], "tags": r["label"] + ("|pets" if "cat" in r["text"] or "dog" in r["text"] else "")}
            for r in topic_rows()]
    store = tmp_path / "s"
    run("ingest", write_csv(tmp_path / "t.csv", rows), "--store", store, "-c", "m", "--encoder", HASH)
    fit = run("fit", "--store", store, "-c", "m", "--label-column", "tags", "--label-sep", "|", "--name", "tags",
              "--model", "logreg", "--param", "C=10", "--plot", tmp_path / "plots")
    assert "learning curve: " in fit.stdout and (tmp_path / "plots" / "tags_learning_curve.png").stat().st_size > 5000
    out = run("predict", "--store", store, "--head", "tags", "--text", "the cat and the dog near the barn")
    header, _, row = out.stdout.splitlines()[:3]
    assert header.split() == ["input", "labels", "top", "confidence"] and "animals, pets" in row
    summary = run_json("predict", "--store", store, "--head", "tags", "-c", "m")
    stored = run("sql", "--store", store, "--format", "csv",
                 "SELECT l, count(*) FROM (SELECT unnest(labels) AS l FROM predictions) GROUP BY l ORDER BY l")
    none = run("sql", "--store", store, "--format", "csv", "SELECT count(*) FROM predictions WHERE len(labels) = 0")
    expected = {k: int(v) for k, v in csv.reader(stored.stdout.splitlines()[1:])}  # every label of every item
    expected.update({"(none)": int(none.stdout.split()[-1])} if int(none.stdout.split()[-1]) else {})
    assert summary["labels"] == expected
    assert summary["labels"]["pets"] > 0 and sum(summary["labels"].values()) > summary["predicted"]


# ------------------------------------------------------------------------------------------------ predict
def test_predict_names_the_inputs_a_head_can_take(docs, tmp_path):
    from embstore import Store

    run("fit", "--store", docs, "-c", "docs", "--label-column", "label", "--name", "topic")
    assert_one_line_error(run("predict", "--store", docs, "--head", "topic", "--text", "  ", ok=False),
                          "a text to predict is empty")
    s = Store.open(docs)
    vectors = np.random.default_rng(0).normal(size=(36, 8)).astype(np.float32)
    s.ingest_vectors("ext", vectors, metadata={"label": [r["label"] for r in topic_rows()]})
    run("fit", "--store", docs, "-c", "ext", "--label-column", "label", "--name", "ext_head")
    refused = run("predict", "--store", docs, "--head", "ext_head", "--text", "a cat", ok=False)
    assert_one_line_error(refused, "vectors made outside embstore", "predict that (--collection)")
    both = run("predict", "--store", docs, "--head", "topic", "--text", "a cat", "--image", tmp_path / "x.png", ok=False)
    assert_one_line_error(both, "predict takes texts or images, not both")
    one = s.predict("topic", texts="the cat and the dog")  # one text, not five letters
    assert [r["input"] for r in one["rows"]] == ["the cat and the dog"]
    s.ingest_vectors("rows", vectors[:2], metadata=[{"label": "x"}, {"label": "y"}])
    assert s.sql("SELECT label FROM rows ORDER BY label").fetchall() == [("x",), ("y",)]
    with pytest.raises(InputError, match="metadata must be an Arrow table, a dict of columns, a list of row dicts"):
        s.ingest_vectors("rows2", vectors[:2], metadata=["x", "y"])
    everything_bad = write_csv(tmp_path / "bad.csv", [{"text": " "}])
    out = run("ingest", everything_bad, "--store", docs, "-c", "nothing", "--json", ok=False)
    assert out.exit_code == 1 and json.loads(out.stdout)["quarantined"] == 1
    assert json.loads(out.stdout)["quarantine_file"] is None  # no collection: its rows are in the report instead
    assert json.loads(out.stdout)["quarantined_rows"][0]["reason"] == "empty text in column 'text'"


def test_predict_an_image_with_a_text_head_says_what_the_head_takes(tmp_path):
    pytest.importorskip("sentence_transformers")
    from conftest import make_png

    store = tmp_path / "s"
    run("ingest", write_csv(tmp_path / "t.csv", topic_rows()[:12] + topic_rows()[12:24]), "--store", store,
        "-c", "docs")  # the default text encoder: text only
    run("fit", "--store", store, "-c", "docs", "--label-column", "label", "--name", "topic", "--model", "logreg",
        "--param", "C=1")
    refused = run("predict", "--store", store, "--head", "topic", "--image", make_png(tmp_path / "a.png", 1), ok=False)
    assert_one_line_error(refused, "head 'topic' was trained on 'minilm' (minilm), which embeds texts only, not "
                          "images: predict --text texts with it")


# ------------------------------------------------------------------------------------------------ files and devices
def test_paths_that_cannot_be_written_are_one_line_errors(docs, tmp_path):
    src = write_csv(tmp_path / "t.csv", topic_rows())
    assert_one_line_error(run("ingest", src, "--store", src / "sub", "-c", "x", ok=False),
                          f"cannot create a store at {src / 'sub'}: Not a directory")
    query = "SELECT label, count(*) FROM docs GROUP BY label"
    assert_one_line_error(run("sql", "--store", docs, query, "-o", tmp_path / "no" / "x.csv", ok=False),
                          "does not exist; create it first")
    assert_one_line_error(run("sql", "--store", docs, query, "-o", tmp_path, "--format", "parquet", ok=False),
                          "it is a folder; give a file name")
    run("sql", "--store", docs, query, "-o", tmp_path / "x.csv")
    assert sum(1 for _ in csv.reader(open(tmp_path / "x.csv"))) == 4
    plot = run("fit", "--store", docs, "-c", "docs", "--label-column", "label", "--plot", src / "plots", ok=False)
    assert_one_line_error(plot, f"cannot use {src / 'plots'}: Not a directory; check the path")


def test_a_gpu_asked_for_by_name_that_is_not_there(docs, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = run("ingest", write_csv(tmp_path / "t.csv", [{"text": "a cat"}]), "--store", docs, "-c", "more",
              "--device", "cuda", ok=False)
    assert_one_line_error(out, "device 'cuda' was asked for", "torch sees no CUDA GPU here", "--device cpu")
    assert_one_line_error(run("search", "--store", docs, "-c", "docs", "cat", "--device", "cuda:x", ok=False),
                          "unknown device 'cuda:x'")


def test_search_and_info_say_what_an_empty_or_stale_answer_means(docs):
    out = run("search", "--store", docs, "-c", "docs", "cat", "--where", "label = 'nothing'")
    assert out.stdout.strip() == "no results: no item matches --where"
    run("fit", "--store", docs, "-c", "docs", "--label-column", "label", "--model", "knn", "--name", "near")
    run("predict", "--store", docs, "--head", "near", "-c", "docs")
    info = run("info", "--store", docs).stdout
    assert "predicted items (SQL view: predictions)" in info and "docs        near" in info
    run("delete", "--store", docs, "-c", "docs", "--yes")
    assert "head near: its training collection docs was deleted" in run("info", "--store", docs).stdout


def test_a_hub_model_that_cannot_be_had_offline_fails_at_once(docs, tmp_path, monkeypatch):
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without network: no download is tried
    out = run("ingest", write_csv(tmp_path / "t.csv", [{"text": "a cat"}]), "--store", docs, "-c", "more",
              "--encoder", "st:no-such-model-anywhere", ok=False)
    assert_one_line_error(out, "'no-such-model-anywhere': it is not a local folder, it does not load from the Hugging "
                          "Face cache, and huggingface.co cannot be reached from here; give a local model folder")


def test_a_held_out_split_keeps_every_label_in_training(tmp_path):
    rows = [{"text": f"the {w} {w} and the {w}", "label": f"l{n}"} for n, w in
            enumerate(["cat", "dog", "bond", "bank", "goal", "team", "cow", "rates", "race", "mouse"]) for _ in (0, 1)]
    for n, r in enumerate(rows):
        r["text"] += f" {n}"  # two different items per label, ten labels: too few to stratify a 0.2 split
    store = tmp_path / "s"
    run("ingest", write_csv(tmp_path / "t.csv", rows), "--store", store, "-c", "few", "--encoder", HASH)
    for seed in range(5):
        rec = run_json("fit", "--store", store, "-c", "few", "--label-column", "label", "--seed", seed)
        assert rec["n_train"] + rec["metrics"]["n_test"] == 20 and rec["n_classes"] == 10
        ev = run_json("eval", "--store", store, "-c", "few", "--label-column", "label", "--samples", "1",
                      "--repeats", "2", "--test-size", "0.2")
        assert ev["n_train"] >= 10 and ev["results"][0]["runs"] == 2


def test_multi_label_predictions_count_items_with_no_label(tmp_path):
    from embstore import Store

    rows = [{"text": r["text"], "tags": r["label"]} for r in topic_rows()]
    s = Store.open(tmp_path / "s")
    s.ingest(write_csv(tmp_path / "t.csv", rows), "m", encoder=HASH)
    s.fit("m", "tags", "tags", label_sep="|", model="logreg", params={"C": 0.01})  # so weak that no label reaches 0.5
    out = s.predict("tags", "m")
    assert out["labels"].get("(none)", 0) > 0 and sum(out["labels"].values()) >= out["predicted"]


def test_usage_errors_are_one_line_too(docs):
    for args, words in ((("fit", "--store", docs, "-c", "docs", "--param", "C"),
                         "Invalid value for --param: 'C' is not KEY=VALUE (see: "),
                        (("fit", "--store", docs), "Missing option '--collection' / '-c'. (see: "),
                        (("search", "--store", docs, "-c", "docs", "--vector", "[1,2,"), "give a JSON list of numbers"),
                        (("sql", "--store", docs, "SELECT 1", "--format", "parquet"), "--format parquet needs --output"),
                        (("nope",), "No such command 'nope'")):
        assert_one_line_error(run(*args, ok=False), words)
    assert run().stdout.startswith("Usage: ")  # bare: the help, exit 0


def test_sql_and_search_inputs_a_user_gets_wrong(docs, tmp_path):
    both = run("sql", "--store", docs, "--format", "csv", "SELECT 1 AS a; SELECT 2 AS b")
    assert both.stdout == "b\n2\n"  # the last statement's rows, plain newlines (as -o writes them)
    hidden = run("sql", "--store", docs, "--write", "CREATE TABLE docs AS SELECT 1 AS x", ok=False)
    assert_one_line_error(hidden, "your table 'docs' is hidden in SQL by collection 'docs'", "ALTER TABLE")
    run("sql", "--store", docs, "--write", "ALTER TABLE sql.main.docs RENAME TO mine")
    assert run("sql", "--store", docs, "--format", "csv", "SELECT x FROM mine").stdout == "x\n1\n"
    assert_one_line_error(run("search", "--store", docs, "-c", "docs", "cat", "--where", "true; DROP TABLE mine",
                              ok=False), "give one SQL condition over the collection's columns, not statements")
    np.save(tmp_path / "two.npy", np.ones((2, 64), np.float32))
    np.save(tmp_path / "zero.npy", np.zeros(64, np.float32))
    for f, words in (("two.npy", "the query holds 2 vectors (shape (2, 64)); give one"), ("zero.npy", "all zeros")):
        assert_one_line_error(run("search", "--store", docs, "-c", "docs", "--vector", tmp_path / f, ok=False), words)
    assert_one_line_error(run("delete", "--store", docs, "--version", "3", "--yes", ok=False), "--version goes with --head")
    header_only = run("ingest", write_csv(tmp_path / "h.csv", [], columns=["text"]), "--store", docs, "-c", "docs")
    assert "nothing to ingest: the input has no data rows" in header_only.stdout
    assert_one_line_error(run("fit", "--store", docs, "-c", "docs", "--label-column", "label", "--label-sep", "",
                              ok=False), "--label-sep is empty")
    ev = run_json("eval", "--store", docs, "-c", "docs", "--label-column", "label", "--samples", "1,1,all,all",
                  "--repeats", "2")
    assert [r["samples_per_label"] for r in ev["results"]] == [1, "all"]


# ------------------------------------------------------------------------------------------------ inputs that add nothing
def test_an_ingest_that_adds_nothing_says_why_and_leaves_no_empty_collection(docs, tmp_path):
    header_only = run("ingest", write_csv(tmp_path / "h.csv", [], columns=["text", "label"]), "--store", docs,
                      "-c", "fresh", "--encoder", HASH)
    assert "nothing to ingest: the input has no data rows" in header_only.stdout
    broken = run("ingest", write_csv(tmp_path / "b.csv", [{"text": " ", "label": "x"}] * 3), "--store", docs, "-c",
                 "fresh", "--encoder", HASH, ok=False)
    assert broken.exit_code == 1 and "Traceback" not in broken.output
    assert broken.stderr.strip() == "Error: no row was added: all 3 rows were quarantined (reasons above); fix them " \
                                    "and ingest again"
    assert "quarantined 3: empty text in column 'text'" in broken.stdout and "quarantine/fresh/" not in broken.stdout
    assert f"{tmp_path / 'b.csv'} row 3: empty text in column 'text'" in broken.stdout
    assert "fresh" not in run_json("info", "--store", docs)["collections"]  # neither left an empty collection
    again = run("ingest", write_csv(tmp_path / "t.csv", topic_rows()), "--store", docs, "-c", "docs")
    assert "nothing new: 36 rows are already in the collection" in again.stdout


def test_predict_and_fit_on_a_collection_with_no_items_are_one_line_errors(docs, tmp_path):
    from embstore import Store

    store = Store.open(docs)
    store.ingest_vectors("empty", np.ones((1, 64), np.float32), ["only"], name="v")
    with store.writing():  # what an older embstore left: a collection with no items
        store.manifest["collections"]["empty"]["item_shards"] = []
        store.manifest["collections"]["empty"]["spaces"]["v"].update(shards=[], rows=0, index=None)
        store.commit()
    vec = np.ones((1, 64), np.float32)
    store.ingest_vectors("filled", np.vstack([vec, vec * 2, -vec, -vec * 2]), list("abcd"),
                         metadata={"label": ["x", "x", "y", "y"]}, name="v")
    run("fit", "--store", docs, "-c", "filled", "--label-column", "label", "--name", "vh", "--model", "centroid",
        "--test-size", "0.5")
    for args in (("predict", "--head", "vh", "-c", "empty"), ("fit", "-c", "empty", "--label-column", "label")):
        assert_one_line_error(run(*args, "--store", docs, ok=False), "collection 'empty' has no items yet")


def test_an_interrupted_ingest_says_what_it_kept_and_a_rerun_adds_the_rest(tmp_path, monkeypatch):
    from embstore.encoders import get_encoder

    rows = [{"text": f"row number {i} of many", "n": i} for i in range(600)]
    source = write_csv(tmp_path / "t.csv", rows)
    encoder = get_encoder(HASH)
    real = type(encoder).encode_text
    calls = []

    def interrupted(self, texts, batch_size=64):
        calls.append(len(texts))
        if len(calls) == 2:  # Ctrl-C in the second chunk: the first (256 rows) is committed by then
            raise KeyboardInterrupt
        return real(self, texts, batch_size)

    monkeypatch.setattr(type(encoder), "encode_text", interrupted)
    stopped = run("ingest", source, "--store", tmp_path / "s", "-c", "c", "--encoder", HASH, ok=False)
    assert stopped.exit_code == 130 and "Traceback" not in stopped.output
    assert "interrupted: what was committed stays (256 items now in 'c'); run the same ingest again to add the rest" \
        in stopped.stderr
    monkeypatch.setattr(type(encoder), "encode_text", real)
    again = run_json("ingest", source, "--store", tmp_path / "s", "-c", "c")
    assert (again["read"], again["added"], again["duplicates"]) == (600, 344, 256)


def test_names_columns_and_files_a_user_gets_wrong(docs, tmp_path):
    assert_one_line_error(run("ingest", write_csv(tmp_path / "k.csv", topic_rows()), "--store", docs, "-c", "full",
                              ok=False), "collection name 'full' is a SQL keyword")
    (tmp_path / "empty.csv").write_text("")
    assert_one_line_error(run("ingest", tmp_path / "empty.csv", "--store", docs, "-c", "e", ok=False),
                          "empty.csv is empty; give a file with a header row")
    assert_one_line_error(run("search", "--store", docs, "-c", "docs", "cat", "--where", "labl = 'x'", ok=False),
                          "the columns of 'docs' are: id, text, label, split")
    assert_one_line_error(run("search", "--store", docs, "-c", "docs", "cat", "--like", "abc", ok=False),
                          "(got a text query, --like)")


def test_a_C_at_the_end_of_the_grid_is_pointed_out(tmp_path):
    """scikit-learn's wine data, L2-normalised: the held-out loss keeps falling as C weakens, up to the grid's end;
    the fit says the best may lie beyond."""
    from sklearn.datasets import load_wine

    from embstore import Store

    X, y = load_wine(return_X_y=True)
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)

    Store.open(tmp_path / "s").ingest_vectors("sep", X, metadata={"label": [str(v) for v in y]}, name="v")
    out = run("fit", "--store", tmp_path / "s", "-c", "sep", "--label-column", "label").stdout
    assert "C=1000 is the weakest regularisation tried: a weaker one may do better (--param C=3000 to try one)" in out


def test_the_store_s_views_cannot_be_dropped_in_sql(docs):
    for statement in ("DROP VIEW docs", 'DROP VIEW IF EXISTS "Predictions"', "ALTER VIEW docs__hash64 RENAME TO x"):
        assert_one_line_error(run("sql", "--store", docs, "--write", statement, ok=False),
                              "which embstore makes anew for every query: it cannot be dropped or changed in SQL")
    run("sql", "--store", docs, "--write", "CREATE VIEW mine AS SELECT 1 AS x")
    run("sql", "--store", docs, "--write", "DROP VIEW mine")  # the user's own views are theirs


def test_a_later_file_with_a_new_column_says_so(docs, tmp_path):
    typo = write_csv(tmp_path / "typo.csv", [{"text": "a new cow in the barn", "lab": "animals", "split": "train"}])
    out = run("ingest", typo, "--store", docs, "-c", "docs").stdout
    assert "new columns: lab (the collection's earlier items have no values in them" in out
    assert run_json("ingest", typo, "--store", docs, "-c", "docs")["new_columns"] == []  # nothing added this time


def test_info_says_when_a_space_has_no_saved_index(docs):
    from embstore import Store

    store = Store.open(docs)
    with store.writing():  # what an ingest interrupted after its commits and before its index leaves
        store.manifest["collections"]["docs"]["spaces"]["hash64"]["index"] = None
        store.commit()
    assert "none saved: run embstore index" in run("info", "--store", docs).stdout
    run("index", "--store", docs, "-c", "docs")
    assert "none saved" not in run("info", "--store", docs).stdout


def test_predict_takes_a_folder_of_images(tmp_path):
    from conftest import make_png

    for n in range(6):
        make_png(tmp_path / "imgs" / ("a" if n % 2 else "b") / f"{n}.png", n)
    (tmp_path / "new" / "deeper").mkdir(parents=True)
    make_png(tmp_path / "new" / "x.png", 1)
    make_png(tmp_path / "new" / "deeper" / "y.png", 2)
    (tmp_path / "new" / "notes.txt").write_text("not an image")
    store = tmp_path / "s"
    run("ingest", tmp_path / "imgs", "--store", store, "-c", "imgs", "--encoder", HASH)
    run("fit", "--store", store, "-c", "imgs", "--label-column", "folder", "--name", "h", "--model", "knn",
        "--param", "n_neighbors=1", "--test-size", "0.34")
    out = run_json("predict", "--store", store, "--head", "h", "--image", tmp_path / "new")
    assert [r["input"] for r in out["rows"]] == [str(tmp_path / "new" / "deeper" / "y.png"), str(tmp_path / "new" / "x.png")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run("predict", "--store", store, "--head", "h", "--image", empty, ok=False),
                          "no image files")


def test_encoders_that_cannot_be_had_say_so_at_once(tmp_path, monkeypatch):
    """open_clip with no weights named is refused (it used to build a random model under a warning); an unknown
    tag lists the model's tags; pretrained timm weights with the hub out of reach fail at once, not after a minute
    of retries."""
    import time

    from conftest import make_png

    from embstore.encoders import base

    make_png(tmp_path / "imgs" / "a.png", 1)
    for spec, words in (("open_clip:ViT-B-32", "open_clip:ViT-B-32 names no weights: give @TAG"),
                        ("open_clip:ViT-B-32@nosuchtag", "'nosuchtag' is neither a weights file nor a pretrained tag "
                                                         "of open_clip ViT-B-32; its tags: openai")):
        out = run("ingest", tmp_path / "imgs", "--store", tmp_path / "s", "-c", "i", "--encoder", spec, ok=False)
        assert_one_line_error(out, words)
    monkeypatch.setattr(base, "hub_reachable", lambda timeout=3.0: False)
    t = time.perf_counter()
    out = run("ingest", tmp_path / "imgs", "--store", tmp_path / "s", "-c", "i", "--encoder",
              "timm:mobilenetv3_small_050", ok=False)
    assert_one_line_error(out, "cannot fetch pretrained weights for timm:mobilenetv3_small_050 (they are not in the "
                               "Hugging Face cache, and huggingface.co cannot be reached from here)")
    assert time.perf_counter() - t < 20


def test_weights_files_that_do_not_fit_say_what_is_wrong(tmp_path):
    import timm
    import torch

    from embstore.encoders import EncoderError
    from embstore.encoders.image import TimmEncoder

    torch.save(timm.create_model("mobilenetv3_small_050", pretrained=False), tmp_path / "whole_model.pth")
    (tmp_path / "junk.pth").write_bytes(b"0123456789")
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "resnet.pth")
    for name, words in (("whole_model.pth", "holds pickled Python objects, and embstore loads tensors only"),
                        ("junk.pth", "is not a torch state_dict file (UnpicklingError)"),
                        ("resnet.pth", "do not fit timm:mobilenetv3_small_050: missing 239 (e.g. blocks.0.0.bn1.bias); "
                                       "unexpected 117 (e.g. conv1.weight)")):
        with pytest.raises(EncoderError, match=re.escape(words)):
            TimmEncoder("mobilenetv3_small_050", str(tmp_path / name))


def test_a_first_ingest_refused_leaves_no_empty_store(tmp_path):
    src = write_csv(tmp_path / "t.csv", topic_rows())
    assert_one_line_error(run("ingest", src, "--store", tmp_path / "new", "-c", "c", "--encoder", "nope:1", ok=False),
                          "unknown encoder spec 'nope:1'")
    assert not (tmp_path / "new").exists()
    run("ingest", src, "--store", tmp_path / "new", "-c", "c", "--encoder", HASH)  # and the path is free to use
    assert_one_line_error(run("ingest", src, "--store", tmp_path / "new", "-c", "d", "--encoder", "nope:1", ok=False),
                          "unknown encoder spec")
    assert (tmp_path / "new" / "embstore.json").exists()  # a store that was there stays


def test_a_labels_file_with_ids_of_no_item_says_how_many(docs, tmp_path):
    from embstore import Store

    ids = Store.open(docs).sql("SELECT id, label FROM docs").fetchall()
    labels = write_csv(tmp_path / "l.csv", [{"id": i, "label": lab} for i, lab in ids] +
                       [{"id": "typo1", "label": "x"}, {"id": "typo2", "label": "y"}])
    out = run("fit", "--store", docs, "-c", "docs", "--labels", labels).stdout
    assert "2 ids of the labels file are items of neither collection; they were ignored" in out
