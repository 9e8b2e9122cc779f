"""One read-only DuckDB database per snapshot of a store, shared by the threads of a long-running reader
(``embstore serve``), so that a query or a ``where`` does not make the store's views again (a view binds every shard's
footer: 0.2-0.7 s on a 1M-item store).

The views and macros (``sql.make_views``, ``sql.create_macros``) are made once, into a small database file in a
temporary folder outside the store, which is then opened read-only and confined like every SQL connection
(``sql_guard.confine``: only the store's shards, settings locked). Each query runs on a cursor of its own (cursors of
one database may run at once in threads; one connection may not), so nothing a query does is seen by the next one:
a view, macro or table cannot be made on a read-only database even by a statement the guard let through, and what a
cursor can make (TEMP objects, variables, registered tables) goes with it.

Since the database answers one set of shards, a result derived from it holds as long as it does: ``memo`` keeps the
latest few (``where`` matches, ``MEMO_BYTES`` and ``MEMO_ENTRIES`` in all, least recently used dropped first), so a
filter that repeats costs its DuckDB scan once per snapshot (a ``LIKE`` over 1M texts: 0.15 s quiet, over 1 s
under load).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from typing import Any

from .sql import create_macros, make_views, register_udfs, shard_files, view_statements
from .sql_guard import confine

MEMO_BYTES = 64 << 20  # results kept per shared database (a result over a quarter of it is not kept)
MEMO_ENTRIES = 4096  # and at most this many (each is charged its key's length and MEMO_OVERHEAD too)
MEMO_OVERHEAD = 256
# what changes between calls (functions, sampling): a predicate naming one is run every time
VOLATILE = re.compile(r"\b(random|setseed|uuid\w*|gen_random_uuid|now|today|current_\w+|get_current_\w+|"
                      r"transaction_timestamp|localtime\w*|nextval|currval|getvariable|tablesample|sample)\b", re.I)


class SharedSql:
    """The shared database of one manifest (``statements``: what made its views); ``cursor()`` for each query."""

    def __init__(self, store: Any, statements: list[str]):
        import duckdb

        self.statements = statements
        tmp = tempfile.mkdtemp(prefix="embstore-sql-")
        weakref.finalize(self, shutil.rmtree, tmp, True)  # (DuckDB spills beside the file, when it must)
        path = os.path.join(tmp, "memory.duckdb")  # named so that it reads as the one-shot path's ":memory:" one
        build = duckdb.connect(path)
        try:
            make_views(store, build, temp=False)
            register_udfs(store, build)  # (the macros name them)
            create_macros(store, build, temp=False)
        finally:
            build.close()
        self._con = duckdb.connect(path, read_only=True)
        with contextlib.suppress(OSError):  # open: nothing is left behind if the process is killed
            os.unlink(path)
        try:
            # the functions hold the store weakly: it holds this database, which holds them (no cycle to leak)
            register_udfs(weakref.proxy(store), self._con)
            confine(self._con, shard_files(store), [])
        except BaseException:
            self._con.close()
            raise
        self._lock = threading.Lock()
        self._memo: OrderedDict[Any, Any] = OrderedDict()
        self._memo_bytes = 0

    def memo(self, key: Any, predicate: str, build: Any) -> Any:
        """``build()`` (a numpy array derived from this database's answer to a query with ``predicate``, which is
        part of ``key``) kept under ``key``: made once while it is among the latest kept, every time when the
        predicate names a volatile function (``random()``, ``now()``, ...) or a sample. Threads asking for one key
        at once may each build it; one is kept."""
        if VOLATILE.search(predicate):
            return build()
        with self._lock:
            hit = self._memo.get(key)
            if hit is not None:
                self._memo.move_to_end(key)
                return hit[0]
        value = build()
        size = int(getattr(value, "nbytes", 0)) + len(repr(key)) + MEMO_OVERHEAD
        if size > MEMO_BYTES // 4:
            return value
        with self._lock:
            if key not in self._memo:
                value.flags.writeable = False  # (shared by the requests that get it)
                self._memo[key] = (value, size)
                self._memo_bytes += size
                while self._memo_bytes > MEMO_BYTES or len(self._memo) > MEMO_ENTRIES:
                    _, (_, old) = self._memo.popitem(last=False)
                    self._memo_bytes -= old
            return self._memo[key][0]

    def cursor(self) -> Any:
        """A connection of its own to the shared database (close it, or drop it, when done)."""
        with self._lock:
            return self._con.cursor()

    def close(self) -> None:
        self._con.close()


class Sharing:
    """What ``Store.share_sql`` keeps: the shared database of the store's manifest as it is now, made at the first
    query and made again when the manifest names other shards (``made`` counts them)."""

    def __init__(self) -> None:
        self._db: SharedSql | None = None
        self._lock = threading.Lock()
        self.made = 0

    def database(self, store: Any) -> SharedSql:
        statements = view_statements(store, temp=False)
        db = self._db
        if db is not None and db.statements == statements:
            return db
        with self._lock:  # concurrent first queries: one of them makes it, the others wait for it
            if self._db is None or self._db.statements != statements:
                self._db = SharedSql(store, statements)
                self.made += 1
            return self._db
