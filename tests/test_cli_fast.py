"""The CLI answers fast and works for scripts: what needs no model imports no torch, bad input is refused before a
model loads, errors are JSON with --json, and progress lines show count, rate and ETA (on a terminal only)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from embstore import encoders
from embstore_cli.main import cli, json_requested
from embstore_cli.progress import Progress, spinner

from conftest import HASH, make_png, topic_rows, write_csv

HEAVY = ("torch", "sentence_transformers", "open_clip", "timm")
ERROR_SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "error.schema.json").read_text())


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store built through the CLI (hash encoder): a text collection, a head, its predictions."""
    tmp = tmp_path_factory.mktemp("fast")
    path = tmp / "store"
    for args in (("ingest", write_csv(tmp / "topics.csv", topic_rows()), "-c", "docs", "--encoder", HASH),
                 ("fit", "-c", "docs", "--label-column", "label", "--name", "topic"),
                 ("predict", "--head", "topic", "-c", "docs")):
        res = run(*args, "--store", path)
        assert res.exit_code == 0, res.output
    return path


def imported_by(*commands: list[str], env: dict | None = None) -> list[list[str]]:
    """Run each command in a fresh interpreter; the heavy modules each one left in sys.modules."""
    code = ("import sys\n"
            "from embstore_cli.main import cli\n"
            "try:\n"
            "    cli(sys.argv[1:])\n"
            "except SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])\n")
    out = []
    for command in commands:
        res = subprocess.run([sys.executable, "-c", code, *map(str, command)], capture_output=True, text=True,
                             timeout=120, env={**os.environ, **(env or {})})
        assert res.returncode == 0, (command, res.stdout, res.stderr)
        out.append(json.loads(res.stdout.strip().splitlines()[-1].removeprefix("HEAVY ").replace("'", '"')))
    return out


# ------------------------------------------------------------------------------------------------ no torch
def test_commands_that_need_no_model_do_not_import_torch(store):
    """info and sql never need a device, whatever the machine ('auto' is resolved only when something needs it)."""
    env = {"EMBSTORE_DEVICE": ""}  # auto
    assert imported_by(["info", "--store", store], ["info", "--store", store, "--head", "topic", "--json"],
                       ["sql", "SELECT 1", "--store", store],
                       ["sql", "SELECT label, count(*) FROM predictions GROUP BY ALL", "--store", store, "--json"],
                       env=env) == [[]] * 4


def test_vector_search_index_and_delete_on_a_cpu_do_not_import_torch(store, tmp_path):
    vector = json.dumps([1.0] + [0.0] * 63)
    copy = tmp_path / "copy"
    res = run("ingest", write_csv(tmp_path / "t.csv", topic_rows()), "--store", copy, "-c", "docs", "--encoder", HASH)
    assert res.exit_code == 0
    assert imported_by(["search", "--store", store, "-c", "docs", "--vector", vector, "-k", "3"],
                       ["index", "--store", copy, "-c", "docs"],
                       ["delete", "--store", copy, "--collection", "docs", "--yes"],
                       env={"EMBSTORE_DEVICE": "cpu"}) == [[]] * 3


def test_auto_is_resolved_on_first_use_and_a_bad_device_at_once():
    code = ("import sys\n"
            "from embstore.config import Settings, resolve_device\n"
            "s = Settings.resolve()\n"
            "assert s.requested_device == 'auto'\n"
            "print('torch' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "EMBSTORE_DEVICE": ""})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
    from embstore.config import Settings
    from embstore.errors import InputError

    with pytest.raises(InputError, match="unknown device 'tpu'"):
        Settings.resolve(device="tpu")
    assert Settings.resolve(device="cpu").device == "cpu"


def test_auto_is_cpu_without_torch_where_no_gpu_can_be(monkeypatch):
    from embstore import config

    monkeypatch.setattr(config, "_gpu_possible", lambda: False)
    monkeypatch.setitem(sys.modules, "torch", None)  # an import of torch would fail
    assert config.resolve_device("auto") == "cpu"
    assert config.Settings.resolve(device="auto").device == "cpu"


# ------------------------------------------------------------------------------------------------ before a model
@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """The encoders built (models loaded) while a test runs."""
    built: list[str] = []
    real = encoders._build
    monkeypatch.setattr(encoders, "_cache", {})
    monkeypatch.setattr(encoders, "_build", lambda spec, device, *rest: built.append(spec) or real(spec, device, *rest))
    return built


def one_line(res, *fragments):
    assert res.exit_code == 2, (res.output, res.exception)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_bad_input_is_refused_before_the_model_loads(store, tmp_path, builds):
    missing = tmp_path / "missing.png"
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    s = ("--store", store)
    one_line(run("search", *s, "-c", "docs", "--image", missing), "image", "missing.png", "does not exist")
    one_line(run("search", *s, "-c", "docs", "--image", not_image), "cannot read image", "notes.png")
    one_line(run("search", *s, "-c", "docs", "cat", "--where", "nope = 1"), "bad --where predicate", "label")
    one_line(run("search", *s, "-c", "docs", "cat", "--where", "true; DROP TABLE x"), "not statements")
    one_line(run("search", *s, "-c", "docs", "cat", "--where", "label = 1"), "bad --where predicate", "Conversion")
    one_line(run("search", *s, "-c", "docs", "cat", "--space", "nope"), "no space 'nope'", "hash64")
    one_line(run("search", *s, "-c", "nope", "cat"), "no collection 'nope'", "docs")
    one_line(run("predict", *s, "--head", "topic", "--image", missing), "missing.png", "does not exist")
    one_line(run("predict", *s, "--head", "nope", "--text", "cat"), "no head 'nope'", "topic")
    one_line(run("predict", *s, "--head", "topic", "--version", "7", "--text", "cat"), "no version 7", "[1]")
    one_line(run("predict", *s, "--head", "topic", "-c", "nope"), "no collection 'nope'")
    one_line(run("predict", *s, "--head", "topic", "--text", " "), "a text to predict is empty")
    assert builds == []
    assert run("search", *s, "-c", "docs", "the cat", "-k", "2").exit_code == 0  # and a good one loads it, once
    assert run("predict", *s, "--head", "topic", "--text", "the cat").exit_code == 0
    assert builds == [HASH]


def test_an_image_query_is_checked_then_embedded(tmp_path, builds):
    for i in range(4):
        make_png(tmp_path / "imgs" / ("a" if i < 2 else "b") / f"{i}.png", i)
    s = ("--store", tmp_path / "s")
    assert run("ingest", tmp_path / "imgs", *s, "-c", "imgs", "--encoder", HASH).exit_code == 0
    res = run("search", *s, "-c", "imgs", "--image", tmp_path / "imgs" / "a" / "0.png", "-k", "1", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["results"][0]["path"].endswith("0.png")


# ------------------------------------------------------------------------------------------------ JSON errors
def json_error(res, code: int, *fragments: str) -> dict:
    """A failed --json run: its exit code, the one line on stderr, and one JSON object on stdout saying the same."""
    assert res.exit_code == code, (res.output, res.exception)
    err = json.loads(res.stdout)
    assert list(Draft202012Validator(ERROR_SCHEMA).iter_errors(err)) == []
    assert err["exit_code"] == code
    assert res.stderr.strip() == f"Error: {err['error']}"
    for f in fragments:
        assert f in err["error"], (f, err)
    return err


def test_errors_are_json_with_json(store, tmp_path):
    Draft202012Validator.check_schema(ERROR_SCHEMA)
    s = ("--store", store)
    assert json_error(run("info", *s, "--head", "nope", "--json"), 2, "no head 'nope'")["type"] == "NotFoundError"
    assert json_error(run("search", *s, "-c", "docs", "--image", tmp_path / "x.png", "--json"), 2,
                      "does not exist")["type"] == "InputError"
    assert json_error(run("fit", *s, "-c", "docs", "--json"), 2, "label")["type"] in ("InputError", "LabelError")
    usage = json_error(run("info", "--json", env={"EMBSTORE_STORE": None}), 2, "--store", "EMBSTORE_STORE")
    assert usage["type"] == "UsageError"
    assert json_error(run("search", *s, "-c", "docs", "-k", "many", "--json"), 2, "-k")["type"] == "UsageError"
    assert json_error(run("delete", *s, "--head", "topic", "--json"), 2, "--yes")["type"] == "InputError"
    sql = json_error(run("sql", "SELECT nope FROM docs", *s, "--json"), 2, "SQL error")
    assert sql == json_error(run("sql", "SELECT nope FROM docs", *s, "--format", "json"), 2)
    assert json_error(run("sql", "SELECT error('boom')", *s, "--json"), 2, "boom")  # raised while rows are computed
    plain = run("info", *s, "--head", "nope")  # without --json: the one line, nothing on stdout
    assert plain.exit_code == 2 and plain.stdout == ""


def test_an_ingest_that_refuses_every_row_says_so_in_its_json(tmp_path):
    res = run("ingest", write_csv(tmp_path / "bad.csv", [{"text": " "}]), "--store", tmp_path / "s", "-c", "x",
              "--encoder", HASH, "--json")
    out = json.loads(res.stdout)
    assert res.exit_code == 1 and out["exit_code"] == 1 and out["quarantined"] == 1
    assert out["error"].startswith("no row was added: all 1 rows were quarantined")


def test_json_requested_reads_the_words_as_typed():
    assert json_requested(["info", "--json"]) and json_requested(["sql", "q", "--format", "json"])
    assert json_requested(["sql", "q", "--format=json"])
    assert not json_requested(["sql", "q", "--format", "csv"]) and not json_requested(["search", "--", "--json"])


# ------------------------------------------------------------------------------------------------ sql --json
def test_sql_json_is_format_json(store, tmp_path):
    s = ("--store", store)
    q = "SELECT label, count(*) AS n FROM docs GROUP BY label ORDER BY label"
    rows = json.loads(run("sql", q, *s, "--json").stdout)
    assert rows == json.loads(run("sql", q, *s, "--format", "json").stdout)
    assert rows == [{"label": "animals", "n": 12}, {"label": "finance", "n": 12}, {"label": "sports", "n": 12}]
    assert json.loads(run("sql", "SELECT 1 AS x WHERE false", *s, "--json").stdout) == []
    out = tmp_path / "rows.json"
    res = run("sql", q, *s, "--json", "-o", out)
    assert res.exit_code == 0 and json.loads(res.stdout) == {"wrote": str(out)} and json.loads(out.read_text()) == rows
    assert json.loads(run("sql", "SET threads = 1", *s, "--json").stdout) == {"ok": True}
    assert json_error(run("sql", q, *s, "--json", "--format", "csv"), 2, "--json is --format json")


# ------------------------------------------------------------------------------------------------ progress
class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_count_rate_and_eta_on_a_terminal():
    now = [0.0]
    term = Terminal()
    bar = Progress("ingest", waiting="loading", stream=term, tick_s=3600, clock=lambda: now[0])
    with bar:
        assert bar.line(0.0).startswith("ingest  loading ")  # before the first count: what it waits for
        now[0] = 5.0
        bar("ingest", 0, 400)  # counts begin after 5 s of loading: the rate leaves those out
        for t, done in ((6.0, 100), (7.0, 200)):
            now[0] = t
            bar("ingest", done, 400)
        assert bar.line(7.0).split("  ")[2:] == ["200/400", "100/s", "ETA 0:02"]
        assert "[" + "#" * 12 + "." * 12 + "]" in bar.line(7.0)
        now[0] = 9.0
        bar("ingest", 400, 400)
    assert term.getvalue().split("\r")[-1] == "ingest  400/400 in 9.0 s (100/s)\n"  # the rate of the counted part


def test_a_step_of_several_stages_names_the_stage_and_restarts_the_rate():
    now = [0.0]
    bar = Progress("fit logreg", stream=Terminal(), tick_s=3600, clock=lambda: now[0])
    with bar:
        for t, stage, done, total in ((1.0, "vectors", 0, 100), (2.0, "vectors", 100, 100)):
            now[0] = t
            bar(stage, done, total)
        assert bar.line(2.0).split("  ")[0] == "fit logreg (vectors)"
        for t, stage, done, total in ((3.0, "fit", 0, 10), (4.0, "fit", 2, 10)):
            now[0] = t
            bar(stage, done, total)
        assert bar.line(4.0).split("  ")[0] == "fit logreg"  # the stage is the label's own word
        assert bar.line(4.0).split("  ")[2:] == ["2/10", "2/s", "ETA 0:04"]  # the rate of this stage only


def test_a_step_without_counts_shows_what_it_waits_for():
    term = Terminal()
    with spinner("loading minilm", stream=term):
        pass
    assert term.getvalue().rstrip("\n").split("\r")[-1].startswith("loading minilm  done in ")
    quiet = io.StringIO()  # not a terminal: nothing at all
    with Progress("ingest", stream=quiet) as bar:
        bar("ingest", 1, 2)
    assert quiet.getvalue() == ""
