"""SQL confined to the store: no statement writes without --write, only harmless settings, no file outside the
store's shards without --allow-files, and one damaged collection does not stop queries over the others."""
from __future__ import annotations

import json

import duckdb
import pytest
from click.testing import CliRunner

from embstore import InputError, ReadOnlyError, Store
from embstore_cli.main import cli

from conftest import HASH, topic_rows, write_csv


def store_of_two(tmp_path) -> Store:
    """A store with two collections, docs and more."""
    s = Store.open(tmp_path / "store")
    s.ingest(write_csv(tmp_path / "t.csv", topic_rows()), "docs", encoder=HASH)
    s.ingest(write_csv(tmp_path / "m.csv", topic_rows()[:5]), "more", encoder=HASH)
    return s


@pytest.fixture(params=["per query", "shared"])
def two(tmp_path, request):
    """``store_of_two``, its read-only queries on a connection each (the CLI's way) or on its shared database
    (``Store.share_sql``: embstore serve's way)."""
    s = store_of_two(tmp_path)
    if request.param == "shared":
        s.share_sql()
    return s


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def one_line_error(res, *words: str) -> None:
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("Error: ") and "\n" not in err and "Traceback" not in res.output, err
    for w in words:
        assert w in err, err


def test_a_table_that_does_not_exist_is_named_with_the_views_there_are(two):
    with pytest.raises(InputError, match=r"Table with name doks does not exist!; the store's views: predictions, "
                                         r"docs, docs__hash64, more, more__hash64$"):
        two.sql("SELECT count(*) FROM doks")


def test_set_log_query_path_cannot_overwrite_the_manifest(two):
    manifest = (two.root / "embstore.json").read_bytes()
    q = f"SET log_query_path='{two.root / 'embstore.json'}'; SELECT 1"
    with pytest.raises(ReadOnlyError, match="SET log_query_path is not allowed.*--allow-files"):
        two.sql(q)
    res = run("sql", q, "--store", two.root)
    one_line_error(res, "log_query_path", "--allow-files")
    with pytest.raises(ReadOnlyError, match="--allow-files"):  # --write changes data, not settings
        two.sql(q, write=True)
    for q in ("PRAGMA enable_profiling", f"PRAGMA profiling_output='{two.root / 'x'}'", "RESET allowed_paths; SELECT 1",
              "SET temp_directory='/tmp'", "SET enable_external_access=true", "SET lock_configuration=false"):
        with pytest.raises(ReadOnlyError, match="not allowed"):
            two.sql(q)
    assert (two.root / "embstore.json").read_bytes() == manifest
    Store.open(two.root)  # still opens


def test_harmless_settings_and_pragmas_still_work(two):
    assert two.sql("SET threads = 1; SELECT count(*) FROM docs").fetchall() == [(36,)]
    assert two.sql("SET memory_limit = '1GB'") is None
    assert two.sql("SET VARIABLE x = 2; SELECT getvariable('x')").fetchall() == [(2,)]
    assert [r[1] for r in two.sql("PRAGMA table_info('docs')").fetchall()][:2] == ["id", "text"]
    with pytest.raises(InputError, match="put SET threads before"):
        two.sql("SELECT 1; SET threads = 1")


@pytest.mark.parametrize("query", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM glob('/root/*')",
    "SELECT * FROM glob('{root}/*')",
    "SELECT * FROM read_parquet('{root}/../t.csv')",
    "SELECT * FROM read_json_auto('{root}/embstore.json')",
])
def test_no_file_outside_the_shards_is_read_without_allow_files(two, query):
    query = query.format(root=two.root)
    with pytest.raises(InputError, match="disabled by configuration.*pass --allow-files"):
        two.sql(query).fetchall()
    one_line_error(run("sql", query, "--store", two.root), "--allow-files")


def test_allow_files_lets_the_query_read_files(two, tmp_path):
    assert len(two.sql(f"SELECT * FROM read_csv('{tmp_path / 't.csv'}')", allow_files=True).fetchall()) == 36
    res = run("sql", f"SELECT count(*) AS n FROM read_csv('{tmp_path / 't.csv'}')", "--store", two.root,
              "--allow-files", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout) == [{"n": 36}]


@pytest.mark.parametrize("query", [
    "COPY (SELECT 1) TO '{tmp}/out.csv'",
    "COPY docs TO '{root}/collections/docs/items/x.parquet'",
    "ATTACH '{tmp}/x.duckdb' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "EXPORT DATABASE '{tmp}/exp'",
])
def test_file_statements_are_refused_even_with_write(two, tmp_path, query):
    query = query.format(tmp=tmp_path, root=two.root)
    with pytest.raises(ReadOnlyError, match="read-only; pass --write"):
        two.sql(query)
    with pytest.raises(ReadOnlyError, match="files outside the store's tables; pass --allow-files"):
        two.sql(query, write=True)
    one_line_error(run("sql", query, "--store", two.root, "--write"), "--allow-files")
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "x.duckdb").exists()


def test_copy_works_with_allow_files(two, tmp_path):
    two.sql(f"COPY (SELECT id FROM docs) TO '{tmp_path / 'ids.csv'}'", write=True, allow_files=True)
    assert len((tmp_path / "ids.csv").read_text().split()) == 37


def test_output_file_is_still_written_and_macros_still_work(two, tmp_path):
    out = tmp_path / "sub" / "r.parquet"
    out.parent.mkdir()
    res = run("sql", "SELECT label, count(*) AS n FROM docs GROUP BY label", "--store", two.root, "-o", out)
    assert res.exit_code == 0, res.output
    assert out.exists()
    got = two.sql("SELECT id, score FROM docs_nearest('the cat and the dog', 3)").fetchall()
    assert len(got) == 3 and got[0][1] >= got[1][1]
    assert two.sql("SELECT count(*) FROM docs__hash64").fetchall() == [(36,)]


def test_one_damaged_collection_does_not_stop_queries_over_the_others(tmp_path):
    # (a connection each: a shared database made its views before the second damage, so it reports DuckDB's reason)
    two = store_of_two(tmp_path)
    shard = two.root / two.manifest["collections"]["more"]["item_shards"][0]["file"]
    shard.unlink()
    assert two.sql("SELECT count(*) FROM docs").fetchall() == [(36,)]
    assert two.sql("SELECT count(*) FROM more__hash64").fetchall() == [(5,)]  # its vectors are still there
    with pytest.raises(duckdb.Error, match="view \"more\" cannot be read.*ingest it again"):
        two.sql("SELECT count(*) FROM more").fetchall()
    res = run("sql", "SELECT * FROM more", "--store", two.root)
    one_line_error(res, "more", "cannot be read")
    vec = two.root / two.manifest["collections"]["docs"]["spaces"]["hash64"]["shards"][0]["file"]
    vec.write_bytes(vec.read_bytes()[:100])  # truncated
    assert two.sql("SELECT count(*) FROM docs").fetchall() == [(36,)]
    with pytest.raises(duckdb.Error, match="docs__hash64\" cannot be read"):
        two.sql("SELECT * FROM docs__hash64").fetchall()
    with pytest.raises(duckdb.Error, match="cannot be read"):
        two.sql("SELECT * FROM docs_nearest('cat', 3)").fetchall()


def test_a_shared_database_keeps_nothing_a_query_makes(tmp_path):
    """The shared database is read-only and each query runs on a cursor of its own: not even a statement past the
    guard (here straight on a cursor) changes what the next query sees, and settings get a connection of their own."""
    s = store_of_two(tmp_path)
    s.share_sql()
    db = s.shared_sql()
    threads = s.sql("SELECT current_setting('threads')").fetchall()
    cur = s.connect()
    for stmt in ("CREATE VIEW v AS SELECT 1", "CREATE MACRO m(x) AS x", "CREATE TABLE t AS SELECT 1",
                 "CREATE OR REPLACE VIEW docs AS SELECT 1 AS id", "DROP VIEW docs"):
        with pytest.raises(duckdb.Error, match="read-only mode"):
            cur.execute(stmt)
    cur.execute("CREATE TEMP VIEW docs AS SELECT 'x' AS id")  # shadows the store's view, in this cursor only
    cur.execute("SET VARIABLE secret = 42")
    assert cur.execute("SELECT count(*) FROM docs").fetchall() == [(1,)]
    cur.close()
    assert s.sql("SELECT count(*) FROM docs").fetchall() == [(36,)]
    assert s.sql("SELECT getvariable('secret')").fetchall() == [(None,)]
    with pytest.raises(ReadOnlyError, match="CREATE is not allowed"):
        s.sql("CREATE TEMP TABLE t AS SELECT 1")
    assert s.sql("SET threads = 1; SELECT current_setting('threads')").fetchall() == [(1,)]
    assert s.sql("SELECT current_setting('threads')").fetchall() == threads  # (that SET was elsewhere)
    with pytest.raises(duckdb.Error, match="configuration has been locked"):
        s.connect().execute("SET threads = 1")  # straight on a cursor: the shared database's settings are locked
    assert s.shared_sql() is db  # nothing above made it again


def test_a_store_with_your_tables_is_not_shared(tmp_path):
    """STORE/sql.duckdb held open by a long-running reader would lock `embstore sql --write` out: while it exists,
    queries get a connection each, and writes still work beside a sharing store."""
    s = store_of_two(tmp_path)
    s.share_sql()
    assert s.shared_sql() is not None
    assert s.sql("SELECT count(*) FROM more").fetchall() == [(5,)]
    s.sql("CREATE TABLE mine AS SELECT 7 AS x", write=True)
    assert s.shared_sql() is None
    assert s.sql("SELECT x FROM mine").fetchall() == [(7,)]
    res = run("sql", "INSERT INTO mine VALUES (8)", "--store", s.root, "--write")
    assert res.exit_code == 0, res.output
    assert s.sql("SELECT sum(x) FROM mine").fetchall() == [(15,)]
