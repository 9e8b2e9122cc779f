"""The CLI, driven the way a user drives it (click's CliRunner, real temporary stores, the hash encoder)."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embstore_cli.main import cli

from conftest import HASH, make_png, topic_rows, write_csv


def run(*args: str, env: dict | None = None, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=True)
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def run_json(*args: str, env: dict | None = None):
    return json.loads(run(*args, "--json", env=env).stdout)


def assert_one_line_error(result, *fragments: str) -> None:
    """Bad input: exit 2, `Error: <one line>` on stderr, no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert result.stdout == ""


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A store built through the CLI: ingest, fit, predict. Returns (store path, csv path, fit JSON)."""
    tmp = tmp_path_factory.mktemp("cli")
    src = write_csv(tmp / "topics.csv", topic_rows())
    store = tmp / "store"
    run("ingest", src, "--store", store, "-c", "docs", "--encoder", HASH)
    fit = run_json("fit", "--store", store, "-c", "docs", "--label-column", "label", "--name", "topic",
                   "--model", "logreg", "--param", "C=10")
    run("predict", "--store", store, "--head", "topic", "-c", "docs")
    return store, src, fit


# ------------------------------------------------------------------------------------------------ ingest
def test_ingest_prints_a_table_then_reports_nothing_new(tmp_path):
    src = write_csv(tmp_path / "t.csv", topic_rows())
    store = tmp_path / "s"
    first = run("ingest", src, "--store", store, "-c", "docs", "--encoder", HASH)
    lines = first.stdout.splitlines()
    assert lines[0] == f"docs.hash64 ({HASH}) from {src}"
    assert lines[1].split() == ["read", "added", "duplicates", "quarantined", "embedded", "reused"]
    assert lines[3].split() == ["36", "36", "0", "0", "36", "0"]
    assert "nothing new" not in first.stdout
    again = run("ingest", src, "--store", store, "-c", "docs")
    assert again.stdout.splitlines()[3].split() == ["36", "0", "36", "0", "0", "0"]
    assert "nothing new" in again.stdout


def test_ingest_json_and_quarantine(tmp_path):
    src = write_csv(tmp_path / "q.csv", [{"text": "fine"}, {"text": ""}])
    out = run_json("ingest", src, "--store", tmp_path / "s", "-c", "q", "--encoder", HASH)
    assert (out["read"], out["added"], out["quarantined"]) == (2, 1, 1)
    assert out["reasons"] == {"empty text in column 'text'": 1}
    assert (tmp_path / "s" / out["quarantine_file"]).is_file()
    human = run("ingest", src, "--store", tmp_path / "s", "-c", "q")
    assert "quarantined 1: empty text in column 'text'" in human.stdout
    assert "quarantined rows and reasons: " in human.stdout


def test_ingest_images_with_options(tmp_path):
    for i in range(3):
        make_png(tmp_path / "imgs" / "x" / f"{i}.png", i)
    (tmp_path / "imgs" / "readme.txt").write_text("hi")
    out = run_json("ingest", tmp_path / "imgs", "--store", tmp_path / "s", "-c", "pics", "--encoder", HASH,
                   "--space", "thumbs", "--batch-size", "2", "--device", "cpu")
    assert (out["added"], out["space"], out["ignored_files"]) == (3, "thumbs", 1)
    hits = run_json("search", "--store", tmp_path / "s", "-c", "pics", "--image", tmp_path / "imgs" / "x" / "1.png",
                    "-k", "1")
    assert hits["results"][0]["path"].endswith("1.png") and hits["results"][0]["folder"] == "x"


def test_env_var_instead_of_store(tmp_path):
    env = {"EMBSTORE_STORE": str(tmp_path / "envstore")}
    src = write_csv(tmp_path / "t.csv", topic_rows())
    assert run_json("ingest", src, "-c", "docs", "--encoder", HASH, env=env)["added"] == 36
    assert (tmp_path / "envstore" / "embstore.json").is_file()
    info = run_json("info", env=env)
    assert info["store"] == str(tmp_path / "envstore") and info["collections"]["docs"]["items"] == 36
    assert run("sql", "SELECT count(*) AS n FROM docs", "--format", "csv", env=env).stdout.split() == ["n", "36"]
    # --store wins over the environment
    other = tmp_path / "other"
    run("ingest", src, "--store", other, "-c", "elsewhere", "--encoder", HASH, env=env)
    assert list(run_json("info", "--store", other, env=env)["collections"]) == ["elsewhere"]


# ------------------------------------------------------------------------------------------------ fit / predict
def test_fit_json_has_metrics(session):
    _, _, fit = session
    assert fit["name"] == "topic" and fit["model"] == "logreg" and fit["version"] == 1
    assert isinstance(fit["accuracy"], float) and isinstance(fit["macro_f1"], float)
    assert 0.9 <= fit["accuracy"] <= 1.0 and 0.9 <= fit["macro_f1"] <= 1.0
    assert fit["metrics"]["n_test"] + fit["n_train"] == 36
    assert fit["encoder"]["spec"] == HASH  # the whole record


def test_fit_human_output_and_options(tmp_path):
    store = tmp_path / "s"
    run("ingest", write_csv(tmp_path / "t.csv", topic_rows()), "--store", store, "-c", "docs", "--encoder", HASH)
    out = run("fit", "--store", store, "-c", "docs", "--label-column", "label", "--model", "knn",
              "--param", "n_neighbors=3", "--train-where", "split = 'train'", "--test-where", "split = 'test'").stdout
    assert out.startswith("head docs_label_knn v1: knn on docs.hash64, 27 training items, 3 labels; "
                          "scored on collection docs where split = 'test'")
    assert "accuracy" in out and "macro_f1" in out and "precision" in out
    for label in ("animals", "finance", "sports"):
        assert label in out
    rec = run_json("fit", "--store", store, "-c", "docs", "--label-column", "label", "--test-size", "0.3",
                   "--seed", "2", "--name", "h", "--model", "logreg", "--param", "C=0.5")
    assert rec["params"] == {"C": 0.5} and rec["evaluated_on"] == "held-out 0.3 of docs (seed 2)"


def test_fit_with_a_test_collection(tmp_path):
    store = tmp_path / "s"
    rows = topic_rows()
    run("ingest", write_csv(tmp_path / "train.csv", [r for r in rows if r["split"] == "train"]), "--store", store,
        "-c", "train", "--encoder", HASH)
    run("ingest", write_csv(tmp_path / "test.csv", [r for r in rows if r["split"] == "test"]), "--store", store,
        "-c", "test", "--encoder", HASH)
    rec = run_json("fit", "--store", store, "-c", "train", "--label-column", "label", "--test-collection", "test",
                   "--model", "knn")
    assert rec["n_train"] == 27 and rec["metrics"]["n_test"] == 9 and rec["evaluated_on"] == "collection test"


def test_predict_collection_then_sql_join(session):
    store, _, _ = session
    out = run_json("predict", "--store", store, "--head", "topic", "-c", "docs")
    assert out["predicted"] == 36 and sum(out["labels"].values()) == 36
    human = run("predict", "--store", store, "--head", "topic", "-c", "docs").stdout
    assert human.startswith("head topic v1 predicted 36 items of docs.hash64 (SQL view: predictions)")
    q = "SELECT count(*) AS n, sum(CAST(p.label = d.label AS INT)) AS correct FROM predictions p JOIN docs d USING (id)"
    rows = json.loads(run("sql", q, "--store", store, "--format", "json").stdout)
    assert rows[0]["n"] == 36 and rows[0]["correct"] >= 34


def test_predict_new_texts(session):
    store, _, _ = session
    out = run_json("predict", "--store", store, "--head", "topic", "--text", "the cat and the goat",
                   "--text", "bond yields and bank shares")
    assert [(r["input"], r["label"]) for r in out["rows"]] == [("the cat and the goat", "animals"),
                                                              ("bond yields and bank shares", "finance")]
    assert all(0 < r["confidence"] <= 1 for r in out["rows"])
    table = run("predict", "--store", store, "--text", "the striker scored a goal").stdout  # latest head
    assert table.splitlines()[0].split() == ["input", "label", "confidence"]
    assert "sports" in table.splitlines()[2]


# ------------------------------------------------------------------------------------------------ search
def test_search_text_like_and_k(session):
    store, _, _ = session
    res = run_json("search", "the bond and the bank near the rates yields", "--store", store, "-c", "docs", "-k", "3")
    assert res["k"] == 3 and len(res["results"]) == 3
    top = res["results"][0]
    assert top["text"] == "the bond and the bank near the rates yields" and top["score"] == pytest.approx(1, abs=1e-5)
    assert [r["rank"] for r in res["results"]] == [1, 2, 3]
    like = run_json("search", "--like", top["id"], "--store", store, "-c", "docs", "-k", "2")
    assert [r["id"] for r in like["results"]] == [r["id"] for r in res["results"][1:]]  # all but the item itself
    assert {r["label"] for r in like["results"]} == {"finance"}
    assert run_json("search", "--text", "the bond and the bank near the rates yields", "--store", store, "-c", "docs",
                    "-k", "3") == res
    assert_one_line_error(run("search", "a", "--text", "b", "--store", store, "-c", "docs", ok=False),
                          "give the text query once")
    human = run("search", "striker referee", "--store", store, "-c", "docs", "-k", "2").stdout.splitlines()
    assert human[0].split()[:3] == ["rank", "id", "score"] and len(human) == 4
    assert "sports" in human[2]


# ------------------------------------------------------------------------------------------------ sql
QUERY = "SELECT label, count(*) AS n FROM docs GROUP BY label ORDER BY label"


def test_sql_formats(session):
    store, _, _ = session
    table = run("sql", QUERY, "--store", store).stdout.splitlines()
    assert table[0].split() == ["label", "n"] and table[2].split() == ["animals", "12"] and len(table) == 5
    rows = list(csv.reader(io.StringIO(run("sql", QUERY, "--store", store, "--format", "csv").stdout)))
    assert rows == [["label", "n"], ["animals", "12"], ["finance", "12"], ["sports", "12"]]
    data = json.loads(run("sql", QUERY, "--store", store, "--format", "json").stdout)
    assert data == [{"label": "animals", "n": 12}, {"label": "finance", "n": 12}, {"label": "sports", "n": 12}]


def test_sql_limit_in_table_format(session):
    store, _, _ = session
    out = run("sql", "SELECT id FROM docs", "--store", store, "--limit", "5").stdout.splitlines()
    assert len(out) == 2 + 5 + 1 and out[-1].startswith("(showing the first 5 rows")


def test_sql_output_parquet(session, tmp_path):
    store, _, _ = session
    out = tmp_path / "result.parquet"
    res = run("sql", "SELECT p.id, p.label AS predicted, d.text FROM predictions p JOIN docs d USING (id)",
              "--store", store, "--output", out)
    assert res.stdout.strip() == f"wrote {out}"
    t = pq.read_table(out)
    assert t.num_rows == 36 and t.column_names == ["id", "predicted", "text"]
    out2 = tmp_path / "counts.parquet"
    run("sql", QUERY, "--store", store, "--format", "parquet", "--output", out2)
    assert pq.read_table(out2).to_pydict() == {"label": ["animals", "finance", "sports"], "n": [12, 12, 12]}
    out3 = tmp_path / "counts.csv"
    run("sql", QUERY, "--store", store, "--output", out3)
    assert out3.read_text().splitlines()[0] == "label,n"


def test_sql_parquet_needs_output(session):
    store, _, _ = session
    res = run("sql", QUERY, "--store", store, "--format", "parquet", ok=False)
    assert res.exit_code == 2 and "--format parquet needs --output FILE" in res.stderr


def test_sql_write(tmp_path):
    store = tmp_path / "s"
    run("ingest", write_csv(tmp_path / "t.csv", topic_rows()), "--store", store, "-c", "docs", "--encoder", HASH)
    assert_one_line_error(run("sql", "CREATE TABLE t AS SELECT 1 AS x", "--store", store, ok=False),
                          "read-only", "--write")
    run("sql", "CREATE TABLE t AS SELECT 1 AS x", "--store", store, "--write")
    out = run("sql", "SELECT x FROM t", "--store", store, "--write", "--format", "csv").stdout
    assert out.split() == ["x", "1"]


# ------------------------------------------------------------------------------------------------ info
def test_info_json_and_table(session):
    store, _, _ = session
    info = run_json("info", "--store", store)
    assert info["collections"]["docs"]["items"] == 36
    assert info["collections"]["docs"]["spaces"]["hash64"]["dim"] == 64
    assert info["collections"]["docs"]["predictions"] == {"topic": 36}
    assert info["heads"]["topic"]["model"] == "logreg" and info["heads"]["topic"]["accuracy"] >= 0.9
    table = run("info", "--store", store).stdout
    assert table.startswith(f"store {store}")
    assert "docs" in table and "hash64" in table and "topic" in table and "logreg" in table


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_input_exits_2_with_one_line(session, tmp_path):
    store, src, _ = session
    assert_one_line_error(run("ingest", tmp_path / "nope.csv", "--store", tmp_path / "s", "-c", "x",
                              "--encoder", HASH, ok=False), "nope.csv", "does not exist")
    assert_one_line_error(run("ingest", src, "--store", tmp_path / "s", "-c", "x", "--text-column", "body",
                              "--encoder", HASH, ok=False), "'body'", "text, label, split")
    assert_one_line_error(run("ingest", src, "--store", tmp_path / "s", "-c", "x", "--encoder", "bogus:1", ok=False),
                          "unknown encoder spec 'bogus:1'")
    assert_one_line_error(run("fit", "--store", store, "-c", "docs", "--label-column", "nope", ok=False),
                          "'nope'", "text, label, split")
    assert_one_line_error(run("fit", "--store", store, "-c", "nodocs", "--label-column", "label", ok=False),
                          "no collection 'nodocs'")
    assert_one_line_error(run("info", "--store", tmp_path / "missing", ok=False), "no store at")
    assert not (tmp_path / "missing").exists()  # reading commands do not create stores
    assert_one_line_error(run("search", "--store", store, "-c", "docs", ok=False), "exactly one of")
    assert_one_line_error(run("search", "--like", "nope", "--store", store, "-c", "docs", ok=False), "no item 'nope'")
    assert_one_line_error(run("predict", "--store", store, "--head", "nope", "-c", "docs", ok=False),
                          "no head 'nope'")
    assert_one_line_error(run("sql", "SELECT nope FROM docs", "--store", store, ok=False), "SQL error")
    assert_one_line_error(run("ingest", src, "--store", tmp_path / "s", "-c", "x", "--device", "tpu", ok=False),
                          "unknown device 'tpu'")


def test_single_class_fit_is_a_one_line_error(tmp_path):
    store = tmp_path / "s"
    run("ingest", write_csv(tmp_path / "one.csv", [{"text": f"t {i}", "label": "a"} for i in range(4)]),
        "--store", store, "-c", "one", "--encoder", HASH)
    assert_one_line_error(run("fit", "--store", store, "-c", "one", "--label-column", "label", ok=False),
                          "at least 2 labels")


def test_store_is_required(tmp_path):
    res = CliRunner().invoke(cli, ["info"], env={"EMBSTORE_STORE": None})
    assert res.exit_code == 2 and "--store" in res.stderr


def test_help_lists_the_commands_and_imports_nothing_heavy():
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from embstore_cli.main import cli\n"
            "r = CliRunner().invoke(cli, ['--help'])\n"
            "assert r.exit_code == 0, r.output\n"
            "heavy = [m for m in ('torch', 'faiss', 'open_clip', 'sentence_transformers', 'timm', 'ray', 'sklearn', "
            "'duckdb') if m in sys.modules]\n"
            "print(r.output)\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    for name in ("ingest", "fit", "eval", "predict", "search", "sql", "info", "index", "delete"):
        assert name in out.stdout


def test_batch_size_zero_is_refused(tmp_path):
    src = write_csv(tmp_path / "t.csv", [{"text": "x"}])
    assert_one_line_error(run("ingest", src, "--store", tmp_path / "s", "-c", "c", "--encoder", HASH,
                              "--batch-size", "0", ok=False), "batch_size")


def test_a_bad_environment_value_is_a_one_line_error(tmp_path):
    src = write_csv(tmp_path / "t.csv", [{"text": "x"}])
    assert_one_line_error(run("ingest", src, "--store", tmp_path / "s", "-c", "c", "--encoder", HASH, ok=False,
                              env={"EMBSTORE_BATCH_SIZE": "lots"}), "EMBSTORE_BATCH_SIZE")


def test_a_refused_ingest_creates_no_store(tmp_path):
    target = tmp_path / "never.store"
    for args in (["ingest", str(tmp_path / "missing.csv"), "--store", str(target), "-c", "x"],
                 ["ingest", str(write_csv(tmp_path / "t.csv", [{"text": "x"}])), "--store", str(target), "-c", "1bad"]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2 and "Traceback" not in r.output
    assert not target.exists()


def test_retention_comes_from_the_environment_and_may_be_zero(tmp_path, monkeypatch):
    from embstore.config import Settings

    monkeypatch.setenv("EMBSTORE_RETENTION_SECONDS", "0")
    assert Settings.resolve(device="cpu").retention_s == 0
    monkeypatch.delenv("EMBSTORE_RETENTION_SECONDS")
    assert Settings.resolve(device="cpu").retention_s == 3600
    src = write_csv(tmp_path / "t.csv", [{"text": "x"}])
    assert_one_line_error(run("ingest", src, "--store", tmp_path / "s", "-c", "c", "--encoder", HASH, ok=False,
                              env={"EMBSTORE_RETENTION_SECONDS": "-5"}), "EMBSTORE_RETENTION_SECONDS must be a non-negative integer, got -5")


# ------------------------------------------------------------------------------------------------ delete
def count_predictions(store) -> int:
    out = run("sql", "--store", store, "--format", "csv", "SELECT count(*) AS n FROM predictions").stdout
    return int(out.split()[-1])


def test_delete_a_head_version_a_head_and_a_collection(tmp_path, monkeypatch):
    store = tmp_path / "store"
    run("ingest", write_csv(tmp_path / "t.csv", topic_rows()), "--store", store, "-c", "docs", "--encoder", HASH)
    for c in ("1", "10"):
        run("fit", "--store", store, "-c", "docs", "--label-column", "label", "--name", "topic", "--model", "logreg",
            "--param", f"C={c}")
    run("predict", "--store", store, "--head", "topic", "-c", "docs")  # by v2, the latest
    refused = run("delete", "--store", store, "--head", "topic", ok=False)  # no terminal, no --yes
    assert_one_line_error(refused, "without confirmation", "--yes")
    import embstore_cli.main as main_module

    monkeypatch.setattr(main_module, "interactive", lambda: True)  # as at a terminal: asked, and the answer is no
    no = CliRunner().invoke(cli, ["delete", "--store", str(store), "--head", "topic", "--version", "0"], input="n\n")
    assert no.exit_code == 0 and "delete head 'topic' version 0 from" in no.output and "nothing deleted" in no.output
    assert (store / "heads" / "topic" / "v1").is_dir()
    out = run("delete", "--store", store, "--head", "topic", "--version", "1", "--yes")
    assert out.stdout.strip() == "deleted head topic version 1"  # v2 made the predictions: they stay
    assert run("delete", "--store", store, "--head", "topic", "--version", "3", "--yes", ok=False).exit_code == 2
    assert [v["version"] for v in run_json("info", "--store", store, "--head", "topic")["versions"]] == [2]
    assert (store / "heads" / "topic" / "v1" / "head.json").is_file()  # retired: kept for readers of older snapshots
    assert count_predictions(store) == 36
    gone = run_json("delete", "--store", store, "--head", "topic", "--yes")
    assert gone == {"head": "topic", "versions": [2], "predictions": {"docs": 36}}
    assert count_predictions(store) == 0
    assert run_json("info", "--store", store)["heads"] == {}
    assert_one_line_error(run("delete", "--store", store, "--head", "topic", "--yes", ok=False), "no head 'topic'")
    again = run_json("fit", "--store", store, "-c", "docs", "--label-column", "label", "--name", "topic")
    # a new head, compared with nothing of the old one; numbered past the old versions' folders, which are retired
    assert again["version"] == 3 and "vs_previous" not in again
    out = run("delete", "--store", store, "-c", "docs", "--yes")
    assert out.stdout.startswith("deleted collection docs: 36 items, spaces hash64")
    assert run_json("info", "--store", store)["collections"] == {}
    assert "topic" in run_json("info", "--store", store)["heads"]  # a head outlives its training collection
    for args, words in ((("-c", "docs", "--head", "topic"), "one of them"), (("--version", "1"), "--head"),
                        (("-c", "nope"), "no collection 'nope'")):
        assert_one_line_error(run("delete", "--store", store, *args, "--yes", ok=False), words)


def test_calibrate_param_as_typed_in_a_shell(tmp_path):
    store = tmp_path / "store"
    run("ingest", write_csv(tmp_path / "t.csv", topic_rows()), "--store", store, "-c", "docs", "--encoder", HASH)
    fit = ["fit", "--store", store, "-c", "docs", "--label-column", "label", "--model", "logreg", "--param", "C=1"]
    for value in ("False", "false", "FALSE"):
        rec = run_json(*fit, "--param", f"calibrate={value}")
        assert rec["params"]["calibrate"] is False and rec["learned"]["temperature_"] == 1.0
    assert run_json(*fit)["learned"]["temperature_"] != 1.0  # calibrated by default, at a fixed C too
    assert_one_line_error(run(*fit, "--param", "calibrate=no", ok=False), "calibrate must be true or false")


def test_info_lists_the_versions_of_a_head(tmp_path):
    store = tmp_path / "store"
    run("ingest", write_csv(tmp_path / "t.csv", topic_rows()), "--store", store, "-c", "docs", "--encoder", HASH)
    for model in ("centroid", "knn"):
        run("fit", "--store", store, "-c", "docs", "--label-column", "label", "--name", "topic", "--model", model)
    versions = run_json("info", "--store", store, "--head", "topic")["versions"]
    assert [(v["version"], v["model"]) for v in versions] == [(1, "centroid"), (2, "knn")]
    assert all(v["evaluated_on"] == "held-out 0.2 of docs (seed 0)" and 0 <= v["accuracy"] <= 1 for v in versions)
    table = run("info", "--store", store, "--head", "topic").stdout.splitlines()
    assert table[0].split()[:3] == ["version", "model", "collection"] and len(table) == 4
    assert_one_line_error(run("info", "--store", store, "--head", "nope", ok=False), "no head 'nope'", "topic")


def test_fit_and_eval_take_device(tmp_path):
    store = tmp_path / "s"
    run("ingest", write_csv(tmp_path / "t.csv", topic_rows()), "--store", store, "-c", "docs", "--encoder", HASH)
    env = {"EMBSTORE_DEVICE": "no-such-device"}  # --device wins over the environment
    assert_one_line_error(run("fit", "--store", store, "-c", "docs", "--label-column", "label", env=env, ok=False),
                          "no-such-device")
    assert run_json("fit", "--store", store, "-c", "docs", "--label-column", "label", "--device", "cpu", env=env)["n_train"]
    assert run_json("eval", "--store", store, "-c", "docs", "--label-column", "label", "--samples", "2",
                    "--repeats", "2", "--device", "cpu", env=env)["results"]
