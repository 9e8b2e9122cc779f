"""DuckDB over the store: a view per collection (its items), per space (``<collection>__<space>``: id, content_hash,
embedding) and ``predictions`` (every head's predictions: collection, id, head, version, label, confidence, labels). Read-only unless asked."""
from __future__ import annotations

from typing import Any

from .errors import InputError, ReadOnlyError

READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA", "SET", "VARIABLE_SET"}
PREDICTION_COLUMNS = "NULL::VARCHAR AS collection, NULL::VARCHAR AS id, NULL::VARCHAR AS head, NULL::INTEGER AS " \
                     "version, NULL::VARCHAR AS label, NULL::FLOAT AS confidence, NULL::VARCHAR[] AS labels"


def _files(store: Any, shards: list[dict]) -> str:
    return "[" + ", ".join(_quote(str(store.root / s["file"])) for s in shards) + "]"


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def view_statements(store: Any) -> list[str]:
    out = []
    preds = []
    for name, c in sorted(store.manifest["collections"].items()):
        if c["item_shards"]:
            out.append(f'CREATE OR REPLACE TEMP VIEW "{name}" AS SELECT * FROM read_parquet({_files(store, c["item_shards"])}, '
                       "union_by_name = true)")
        for space, sp in sorted(c["spaces"].items()):
            if sp["shards"]:
                out.append(f'CREATE OR REPLACE TEMP VIEW "{name}__{space}" AS SELECT * FROM '
                           f'read_parquet({_files(store, sp["shards"])})')
        for head, p in sorted(c["predictions"].items()):
            preds.append(f"SELECT {_quote(name)} AS collection, id, head, version, label, confidence, labels "
                         f"FROM read_parquet({_files(store, p['shards'])})")
    body = " UNION ALL ".join(preds) if preds else f"SELECT {PREDICTION_COLUMNS} WHERE false"
    out.append(f"CREATE OR REPLACE TEMP VIEW predictions AS {body}")
    return out


def connect(store: Any, *, write: bool = False) -> Any:
    import duckdb

    # write mode keeps the user's own tables in STORE/sql.duckdb; read-only works in memory
    con = duckdb.connect(str(store.root / "sql.duckdb") if write else ":memory:")
    for stmt in view_statements(store):
        con.execute(stmt)
    return con


def run_sql(store: Any, query: str, *, write: bool = False) -> Any:
    import duckdb

    if not query or not query.strip():
        raise InputError("the SQL query is empty")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise InputError(f"SQL error: {str(e).splitlines()[0]}") from None
    if not write:
        for st in statements:
            kind = st.type.name
            if kind not in READ_ONLY_STATEMENTS:
                raise ReadOnlyError(f"{kind} is not allowed: embstore sql is read-only; pass --write to change data "
                                    "(your tables are kept in STORE/sql.duckdb)")
    con = connect(store, write=write)
    try:
        rel = None
        for st in statements[:-1]:
            con.execute(st.query)
        rel = con.sql(statements[-1].query)
        return rel
    except duckdb.Error as e:
        raise InputError(f"SQL error: {str(e).splitlines()[0]}") from None
