"""DuckDB over a store's shards by path, for the questions about ids that ``check`` and ``repair`` ask (repeated
ids, items without a vector, vectors without an item): joins that DuckDB runs out of core, spilling to a
temporary folder outside the store, so no Python structure holds a corpus' ids and a read-only store works."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def empty_or(paths: list[Path], columns: str) -> str:
    """A FROM clause over these shards' ``columns`` (no rows when there are none)."""
    if not paths:
        return "(SELECT " + ", ".join(f"NULL::VARCHAR AS {c.strip()}" for c in columns.split(",")) + " WHERE false)"
    return f"(SELECT {columns} FROM read_parquet({sql_list(paths)}, union_by_name = true))"


class Joins:
    """DuckDB over shards (in memory, spilling to a temporary folder outside the store): the id questions."""

    def __init__(self) -> None:
        import duckdb

        self.tmp = tempfile.mkdtemp(prefix="embstore-check-")
        self.con = duckdb.connect()
        self.con.execute(f"SET temp_directory = '{self.tmp}'")
        self.con.execute("SET preserve_insertion_order = false")

    def one(self, sql: str) -> tuple:
        return self.con.execute(sql).fetchone()

    def ids(self, sql: str, limit: int = 3) -> list[str]:
        return [r[0] for r in self.con.execute(f"SELECT * FROM ({sql}) ORDER BY 1 LIMIT {limit}").fetchall()]

    def duplicates(self, paths: list[Path]) -> tuple[int, int, list[str]]:
        """(ids given more than once, the rows they take, a few of them) among these shards, and NULL ids."""
        q = f"SELECT id, count(*) AS n FROM {empty_or(paths, 'id')} GROUP BY id HAVING count(*) > 1"
        n, rows = self.one(f"SELECT count(*), coalesce(sum(n), 0) FROM ({q})")
        return int(n), int(rows), self.ids(f"SELECT id FROM ({q})") if n else []

    def versus(self, items: list[Path], vectors: list[Path]) -> dict[str, tuple[int, list[str]]]:
        """Items without a vector, vectors without an item, and vectors made from other content than their item's:
        each (count, a few ids)."""
        i, v = empty_or(items, "id, content_hash"), empty_or(vectors, "id, content_hash")
        queries = {"missing": f"SELECT i.id FROM {i} i ANTI JOIN {v} v ON i.id = v.id",
                   "orphan": f"SELECT v.id FROM {v} v ANTI JOIN {i} i ON i.id = v.id",
                   "other": f"SELECT v.id FROM {v} v JOIN {i} i ON i.id = v.id "
                            "WHERE i.content_hash IS DISTINCT FROM v.content_hash"}
        return {k: self.counted(q) for k, q in queries.items()}

    def strays(self, items: list[Path], others: list[Path]) -> tuple[int, list[str]]:
        """Rows of ``others`` (predictions) whose id is no item: (count, a few ids)."""
        return self.counted(f"SELECT o.id FROM {empty_or(others, 'id')} o ANTI JOIN {empty_or(items, 'id')} i "
                            "ON i.id = o.id")

    def counted(self, sql: str) -> tuple[int, list[str]]:
        n = int(self.one(f"SELECT count(*) FROM ({sql})")[0])
        return n, self.ids(sql) if n else []

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
