"""What a query may do: the statements allowed without ``write``, an allow-list of harmless SET and PRAGMA
statements, and DuckDB's own confinement of a connection to the store's shards (``enable_external_access=false``
with ``allowed_paths``, then ``lock_configuration``) unless the caller allows files.

Once confined, DuckDB refuses to read or write any other file (``read_csv('/etc/passwd')``, ``glob``, ``COPY``,
``ATTACH``, ``INSTALL``/``LOAD``, ``SET log_query_path``) and to loosen its own settings again.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from .errors import InputError, ReadOnlyError

ALLOW_FILES = "pass --allow-files (in Python: allow_files=True) to let SQL use other files and settings"
READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN"}  # SET, PRAGMA and SET VARIABLE: by the allow-lists below
# statements that read or write files other than the store's shards, or load code: need allow_files, even with write
FILE_STATEMENTS = {"COPY", "EXPORT", "ATTACH", "DETACH", "LOAD", "COPY_DATABASE"}
# settings that change nothing but how this one connection computes and shows its results
HARMLESS_SETTINGS = {"threads", "worker_threads", "memory_limit", "max_memory", "preserve_insertion_order",
                     "default_order", "default_null_order", "timezone", "calendar", "enable_progress_bar",
                     "explain_output", "integer_division", "order_by_non_integer_literal"}
# pragmas that only show something
SHOWING_PRAGMAS = {"table_info", "show", "show_tables", "show_tables_expanded", "show_databases", "database_list",
                   "database_size", "version", "platform", "functions", "collations", "storage_info",
                   "metadata_info", "user_agent"}
_SET = re.compile(r"\s*(?:SET|RESET)\s+(?:(?:SESSION|GLOBAL|LOCAL)\s+)?([A-Za-z_][A-Za-z0-9_]*)", re.I)
_PRAGMA = re.compile(r"\s*PRAGMA\s+([A-Za-z_][A-Za-z0-9_]*)\s*(=)?", re.I)


def setting_of(st: Any) -> str | None:
    """The configuration option a SET/RESET or assigning PRAGMA statement changes (lower case), else None (a
    ``SET VARIABLE``, a showing PRAGMA, any other statement)."""
    kind = st.type.name
    if kind == "SET":
        if re.match(r"\s*SET\s+VARIABLE\s", st.query, re.I):
            return None
        m = _SET.match(st.query)
        return m.group(1).lower() if m else "?"
    if kind == "PRAGMA":
        m = _PRAGMA.match(st.query)
        if m and (m.group(2) or m.group(1).lower() not in SHOWING_PRAGMAS):
            return m.group(1).lower()
    return None


def check_statements(statements: Sequence[Any], *, write: bool, allow_files: bool) -> list[Any]:
    """Refuse what the query may not do, in one line saying how to allow it; return the SET statements to run
    before the connection is locked (they must come first: a locked connection takes no setting)."""
    settings: list[Any] = []
    for n, st in enumerate(statements):
        kind, option = st.type.name, setting_of(st)
        if not write and kind not in READ_ONLY_STATEMENTS | {"SET", "PRAGMA", "VARIABLE_SET"}:
            raise ReadOnlyError(f"{kind} is not allowed: embstore sql is read-only; pass --write to change data "
                                "(your tables are kept in STORE/sql.duckdb)")
        if allow_files:
            continue
        if kind in FILE_STATEMENTS:
            raise ReadOnlyError(f"{kind} reads or writes files outside the store's tables; {ALLOW_FILES}")
        if option is not None:
            if option not in HARMLESS_SETTINGS:
                raise ReadOnlyError(f"{kind} {option} is not allowed: SQL may change only "
                                    f"{', '.join(sorted(HARMLESS_SETTINGS))}; {ALLOW_FILES}")
            if n != len(settings):
                raise InputError(f"put {kind} {option} before the other statements: settings are applied "
                                 "before the query runs")
            settings.append(st)
    return settings


def confine(con: Any, paths: Sequence[str], settings: Sequence[Any]) -> None:
    """Let ``con`` open only ``paths`` (the shards its views read, a result file), apply ``settings`` (checked by
    ``check_statements``), then lock its configuration."""
    con.execute("SET allowed_paths = [" + ", ".join(_quote(p) for p in paths) + "]")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    for st in settings:
        con.execute(st.query)
    con.execute("SET lock_configuration = true")


def error_line(e: Exception) -> str:
    """A DuckDB error as one line; a refused file access says how to allow it."""
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "disabled by configuration" in first or "the configuration has been locked" in first:
        return f"SQL error: {first}: SQL may read only the store's own tables; {ALLOW_FILES}"
    if "Cannot enable external access" in first or "when enable_external_access is disabled" in first:
        return f"SQL error: {first}; {ALLOW_FILES}"
    return f"SQL error: {first}"


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"
