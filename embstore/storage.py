"""Parquet shards: written to a temporary name, fsynced, renamed; they exist once the manifest lists them."""
from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DamagedStoreError, InputError
from .manifest import fsync_dir, temp_file

ROW_GROUP = 1024  # rows per Parquet row group: a lookup of one row reads one group (0.3 ms here; 2048: 0.8; a
# whole 20k-row shard: 4 ms), and full scans stay fast enough (measured on this CPU: bench/RESULTS.md)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InputError(f"{kind} name {name!r} is not valid; use letters, digits and _ (not starting with a digit), "
                         "so it can be a SQL name")
    if kind == "collection":  # (a space's view is <collection>__<space>: any other name is fine there)
        if "__" in name:
            raise InputError(f"collection name {name!r} holds '__', which in SQL separates a collection from its "
                             "space (<collection>__<space>); use single underscores")
        import duckdb

        try:  # a SQL keyword (full, left, order, ...) would need quotes in every query
            duckdb.extract_statements(f"SELECT * FROM {name} WHERE {name}.id = 1")
        except duckdb.Error:
            raise InputError(f"{kind} name {name!r} is a SQL keyword, so every query would have to quote it; "
                             "choose another name") from None
    return name


def write_shard(root: Path, rel: str, table: pa.Table, rows_copy: bool = False) -> dict[str, Any]:
    """Write a shard; its manifest entry. ``rows_copy`` (item shards): with its row copy beside it
    (``row_copies.py``), named in the entry."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    copy = None
    with temp_file(tmp, path):  # a failed write leaves no temporary file
        pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP, **id_bloom_filter(table))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        size, digest = os.path.getsize(tmp), checksum(tmp)  # (just written: read back from the page cache)
        if rows_copy:
            from .row_copies import write_copy

            copy = write_copy(root, rel, tmp)
        os.replace(tmp, path)
    fsync_dir(path.parent)
    return {"file": rel, "rows": table.num_rows, "bytes": size, "blake2b": digest,
            **({"rows_copy": copy} if copy else {})}


def checksum(path: Path, block: int = 1 << 20) -> str:
    """blake2b (128 bits) of a file, read a block at a time: what a shard's manifest entry records at commit and
    ``embstore check`` compares (about 1 GB/s on one core; ``check --quick`` compares the size only)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def id_bloom_filter(table: pa.Table) -> dict[str, Any]:
    """A Parquet Bloom filter on the ``id`` column of each row group (1% false positives, ~3% more bytes): DuckDB
    checks it for ``WHERE id = ...``, so a point query opens each shard's footer and reads one row group, not
    every shard's ids (1M items: 0.10 -> 0.024 s, measured on this CPU). Left out where pyarrow cannot write one
    (before pyarrow 22)."""
    if "id" not in table.column_names or not _writes_bloom_filters():
        return {}
    return {"bloom_filter_options": {"id": {"ndv": ROW_GROUP, "fpp": 0.01}}}


@functools.lru_cache(maxsize=1)
def _writes_bloom_filters() -> bool:
    import inspect

    return "bloom_filter_options" in inspect.signature(pq.ParquetWriter.__init__).parameters or \
        "bloom_filter_options" in (pq.ParquetWriter.__doc__ or "")


def shard_paths(root: Path, shards: Iterable[dict[str, Any]]) -> list[str]:
    return [str(root / s["file"]) for s in shards]


def read_shards(root: Path, shards: list[dict[str, Any]], columns: list[str] | None = None) -> pa.Table | None:
    if not shards:
        return None
    tables = [read_table(root, s["file"], columns) for s in shards]
    return pa.concat_tables(tables, promote_options="permissive")


def read_table(root: Path, rel: str, columns: list[str] | None = None) -> pa.Table:
    """One committed shard; a missing or damaged one is a one-line DamagedStoreError naming it."""
    with damaged(rel):
        return pq.read_table(root / rel, columns=columns)


class damaged:
    """Around reading a file the manifest names (``rel``): a missing or unreadable one raises DamagedStoreError."""

    def __init__(self, rel: str):
        self.rel = rel

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, e: Any, tb: Any) -> bool:
        if e is None or not isinstance(e, (OSError, pa.ArrowInvalid)) or isinstance(e, DamagedStoreError):
            return False
        what = "is missing" if isinstance(e, FileNotFoundError) else f"cannot be read ({str(e).splitlines()[0][:160]})"
        raise DamagedStoreError(f"{self.rel}, a file of the store, {what}; restore it from a backup, or delete the "
                                "collection and ingest it again") from None


def conform(table: pa.Table, stored: pa.Schema | None, source: str, collection: str) -> pa.Table:
    """The input's columns in types the collection's earlier shards can be read with: unchanged where the two
    types merge (int and float, a column empty in one of them), else cast to the stored type (to text, anything);
    a column that cannot be is refused, naming it, before anything is written."""
    if stored is None:
        return table
    import pyarrow.compute as pc

    for name in table.column_names:
        if name not in stored.names or table.schema.field(name).type == stored.field(name).type:
            continue
        old, new = stored.field(name).type, table.schema.field(name).type
        try:
            pa.unify_schemas([pa.schema([(name, old)]), pa.schema([(name, new)])], promote_options="permissive")
            continue
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            pass
        try:
            cast = pc.cast(table.column(name), old)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            sample = next((v for v in table.column(name).to_pylist() if v is not None), None)
            raise InputError(f"column {name!r} of collection {collection!r} holds {old} values, but {source} has "
                             f"{new} ones that do not convert (e.g. {sample!r}); make the column one type, or ingest "
                             "into another collection") from None
        table = table.set_column(table.column_names.index(name), name, cast)
    return table


def stored_schema(root: Path, shards: list[dict[str, Any]]) -> pa.Schema | None:
    """The schema the collection's item shards read with (their columns' types merged)."""
    if not shards:
        return None
    return pa.unify_schemas([pq.read_schema(root / s["file"]) for s in shards], promote_options="permissive")


def embedding_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1])


def embedding_matrix(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], pa.list_(pa.float32(), dim))
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(-1, dim), dtype=np.float32)
