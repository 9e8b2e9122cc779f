"""Property-based fuzzing (hypothesis, derandomized: the same examples every run) of the table readers and of the SQL
guard. Readers: random rows with odd characters (quotes, delimiters, newlines, NULs, empty fields, bytes that are
not UTF-8) in CSV, JSONL and Parquet; every row is ingested exactly or quarantined with a reason, and the counts add
up. SQL: statements mixing what is allowed with file functions, COPY, ATTACH, SET/PRAGMA, INSTALL/LOAD, comments
and string tricks never write a file, change the store, or read a file outside it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from embstore import EmbstoreError, Store  # noqa: E402

from conftest import HASH, quarantine_lines  # noqa: E402

FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

ODD = st.text(alphabet=st.sampled_from(list('ab é"\',;\t\n\r\x00\\|{}[]:') + ["\u2028", "😀", "\ufeff"]),
              max_size=12)
TEXT = st.one_of(ODD, st.binary(max_size=6).map(lambda b: b"caf" + b + b"\xe9"))  # bytes: not UTF-8 (mostly)


def rows_strategy(allow_bytes: bool):
    text = TEXT if allow_bytes else ODD
    return st.lists(st.tuples(st.integers(0, 30), text), min_size=1, max_size=12)


def field(v: str | bytes) -> bytes:
    raw = v if isinstance(v, bytes) else v.encode()
    return b'"' + raw.replace(b'"', b'""') + b'"'


def write(folder: Path, kind: str, rows: list[tuple[int, str | bytes]]) -> Path:
    path = folder / f"in.{kind}"
    if kind == "csv":
        path.write_bytes(b"id,text\n" + b"".join(field(f"i{n}") + b"," + field(t) + b"\n" for n, t in rows))
    elif kind == "jsonl":
        lines = []
        for n, t in rows:
            text = json.dumps(t).encode() if isinstance(t, str) else b'"' + t.translate(None, b'\\"\n\r') + b'"'
            lines.append(b'{"id": "i%d", "text": ' % n + text + b"}\n")
        path.write_bytes(b"".join(lines))
    else:
        pq.write_table(pa.table({"id": [f"i{n}" for n, _ in rows], "text": [t for _, t in rows]}), path)
    return path


def check_ingest(tmp: Path, kind: str, rows: list[tuple[int, str | bytes]]) -> None:
    folder = tmp / "case"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    src = write(folder, kind, rows)
    store = Store.open(folder / "store")
    try:
        r = store.ingest(src, "docs", encoder=HASH)
    except EmbstoreError as e:  # refused as a whole: one line, nothing kept
        assert "\n" not in str(e)
        assert "docs" not in Store.open(folder / "store").manifest["collections"]
        return
    assert r.read == len(rows) == r.added + r.duplicates + r.quarantined
    stored = dict(store.sql("SELECT id, text FROM docs").fetchall()) if r.added else {}
    assert len(stored) == r.added
    # (no collection made: no quarantine file kept, its records in the report)
    quarantined = quarantine_lines(store.root, r.quarantine_file) if r.quarantine_file else r.quarantined_rows
    assert len(quarantined) == r.quarantined and all(q["reason"] for q in quarantined)

    def quarantined_row(i: str) -> bool:  # by the row's values, or its line as read (one that did not decode)
        return any(q["data"].get("id") == i if isinstance(q.get("data"), dict) else f'"{i}"' in str(q.get("data"))
                   for q in quarantined)
    for n, t in rows:  # each row: ingested as written (or a repeat of one that was), else quarantined
        if stored.get(f"i{n}") != t:
            assert quarantined_row(f"i{n}"), (n, t, quarantined)
    given = {f"i{n}": set() for n, _ in rows}
    for n, t in rows:
        given[f"i{n}"].add(t)
    for i, text in stored.items():  # what is stored is a text as given, never bytes' repr
        assert text in given[i], (i, text, given[i])


@FUZZ
@given(rows=rows_strategy(True))
def test_csv_rows_are_ingested_exactly_or_quarantined(tmp_path, rows):
    check_ingest(tmp_path, "csv", rows)


@FUZZ
@given(rows=rows_strategy(True))
def test_jsonl_rows_are_ingested_exactly_or_quarantined(tmp_path, rows):
    check_ingest(tmp_path, "jsonl", rows)


@FUZZ
@given(rows=rows_strategy(False))
def test_parquet_rows_are_ingested_exactly_or_quarantined(tmp_path, rows):
    check_ingest(tmp_path, "parquet", rows)


# ------------------------------------------------------------------------------------------------ SQL guard
SECRET = "TOPSECRET-4242"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guard")
    (tmp / "secret.csv").write_text(f"x\n{SECRET}\n")
    src = tmp / "t.csv"
    src.write_text("id,text\na,the cat\nb,the dog\n")
    s = Store.open(tmp / "store")
    s.ingest(src, "docs", encoder=HASH)
    return s, tmp


def statements(tmp: Path):
    out, secret = tmp / "written", tmp / "secret.csv"
    allowed = ["SELECT count(*) FROM docs", "SELECT id FROM docs WHERE text LIKE '%cat%'", "SET threads = 1",
               "PRAGMA table_info('docs')", "SELECT 'COPY docs TO ''x''' AS s", "SELECT 1 /* ATTACH 'x' */",
               "EXPLAIN SELECT * FROM docs"]
    forbidden = [f"SELECT * FROM read_csv('{secret}')", f"SELECT * FROM read_text('{secret}')",
                 f"SELECT * FROM read_blob('{secret}')", f"SELECT * FROM glob('{tmp}/*')",
                 f"SELECT * FROM '{secret}'", f"COPY docs TO '{out}.csv'", f"COPY (SELECT 1) TO '{out}.parquet'",
                 f"ATTACH '{out}.db' AS x", f"SET log_query_path = '{out}.log'", f"PRAGMA profiling_output='{out}.p'",
                 "PRAGMA enable_profiling", "SET enable_external_access = true", "SET lock_configuration = false",
                 "RESET allowed_paths", f"SET allowed_directories = ['{tmp}']", "INSTALL httpfs", "LOAD httpfs",
                 f"EXPORT DATABASE '{out}'", f"CREATE TABLE t AS SELECT * FROM read_csv('{secret}')",
                 "CREATE TABLE t (x INT)", "INSERT INTO docs VALUES ('z', 'z')", f"SELECT 1; COPY docs TO '{out}.c'",
                 f"SELECT '{secret}' -- ; COPY docs TO '{out}.d'",
                 f"/* x */ copy docs to '{out}.e'", f"sElEcT * FrOm ReAd_CsV_AuTo('{secret}')",
                 f"SELECT * FROM sniff_csv('{secret}')", f"SET temp_directory = '{out}.tmp'"]
    return st.lists(st.sampled_from(allowed + forbidden), min_size=1, max_size=3).map("; ".join)


def files_under(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_sql_never_writes_a_file_or_reads_one_outside_the_store(guarded, data):
    import duckdb

    store, tmp = guarded
    query = data.draw(statements(tmp))
    before = files_under(tmp)
    try:
        rel = store.sql(query)
        rows = rel.fetchall() if rel is not None else []
    except (EmbstoreError, duckdb.Error) as e:
        rows = []
        assert "\n" not in str(e).strip() or isinstance(e, duckdb.Error), str(e)
    assert SECRET not in repr(rows), query
    assert files_under(tmp) == before, query  # nothing written, nothing changed, in the store or beside it
