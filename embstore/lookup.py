"""Reading a few rows of a large collection: a space's ids by index position, an id's position and vector, item
rows by id. Through the key tables (``keys.py``) and the shards' row counts in the manifest, so that a search or a
``--like`` on 10^7 items reads the shards its answers are in, not every shard."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import keys as kt
from .storage import damaged, embedding_matrix, read_table


class SpaceIds:
    """The ids of a space in index order (row i of the index is the space's i-th vector), read a shard at a time
    when asked for: ``len``, ``ids[i]``, ``take(rows)``; ``all()`` reads every shard's ids."""

    def __init__(self, root: Path, space_entry: dict[str, Any]):
        self.root = root
        self.shards = list(space_entry["shards"])
        self.offsets = np.cumsum([0] + [s["rows"] for s in self.shards])
        self._cache: dict[int, list[str]] = {}
        self._all: np.ndarray | None = None
        self.keys = kt.load_positions(root, (space_entry.get("keys") or {}).get("by_position"), self.shards)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _shard_ids(self, k: int) -> list[str]:
        if k not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[k] = _parquet_file(self.root / self.shards[k]["file"]).read(columns=["id"]).column("id") \
                .to_pylist()
        return self._cache[k]

    def __getitem__(self, row: int) -> str:
        row = int(row)
        if self._all is not None:
            return str(self._all[row])
        if not 0 <= row < len(self):
            raise IndexError(row)
        k = int(np.searchsorted(self.offsets, row, side="right") - 1)
        return self._shard_ids(k)[row - int(self.offsets[k])]

    def keys_at(self, rows: Sequence[int]) -> np.ndarray | None:
        """The id keys at these positions, from the saved position keys (memory-mapped); None when a row is past
        what they cover (shards committed after them: read the ids instead)."""
        if self.keys is None or (len(rows) and max(rows) >= len(self.keys)):
            return None
        return np.asarray(self.keys[np.asarray(rows, np.int64)], np.uint64)

    def take(self, rows: Sequence[int]) -> list[str]:
        """The ids at these positions, reading only the row groups they are in."""
        if self._all is not None or not len(rows):
            return [self[r] for r in rows]
        rows = np.asarray(rows, np.int64)
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        out: list[str] = [""] * len(rows)
        for k in np.unique(shard):
            mask = np.flatnonzero(shard == k)
            if int(k) in self._cache:
                got = [self._cache[int(k)][int(rows[m] - self.offsets[k])] for m in mask]
            else:
                got = read_rows(self.root / self.shards[k]["file"], rows[mask] - self.offsets[k], ["id"]) \
                    .column("id").to_pylist()
            for m, v in zip(mask, got):
                out[m] = v
        return out

    def all(self) -> np.ndarray:
        if self._all is None:
            t = read_table(self.root, self.shards[0]["file"], ["id"]) if len(self.shards) == 1 else None
            ids: list[str] = t.column("id").to_pylist() if t is not None else []
            if t is None:
                for k in range(len(self.shards)):
                    ids.extend(self._shard_ids(k))
            self._all = np.asarray(ids, dtype=object)
        return self._all


def positions_of(store: Any, collection: str, space: str, ids: Sequence[str]) -> np.ndarray:
    """The index position of each id in the space (-1 where it has no vector there)."""
    ids = [str(i) for i in ids]
    table = store.key_table(collection, space)
    found, rec = table.find_ids(ids)
    parts, rows = kt.split_loc(rec[1])
    sp = store.manifest["collections"][collection]["spaces"][space]
    offset = dict(zip((kt.part_of(s) for s in sp["shards"]), np.cumsum([0] + [s["rows"] for s in sp["shards"]])))
    out = np.full(len(ids), -1, np.int64)
    for n in np.flatnonzero(found):
        if int(parts[n]) in offset:
            out[n] = int(offset[int(parts[n])]) + int(rows[n])
    return out


def vectors_at(store: Any, collection: str, space: str, positions: Sequence[int], *, with_ids: bool = False,
               progress: Any = None) -> Any:
    """The space's vectors at these index positions, reading only the row groups that hold them; with
    ``with_ids``, ``(ids, vectors)``. ``progress(stage, done, total)`` counts the vectors read, shard by shard."""
    sp = store.manifest["collections"][collection]["spaces"][space]
    dim = sp["encoder"]["dim"]
    offsets = np.cumsum([0] + [s["rows"] for s in sp["shards"]])
    positions = np.asarray(positions, np.int64)
    out = np.zeros((len(positions), dim), np.float32)
    ids: list[str] = [""] * len(positions) if with_ids else []
    shard_of = np.searchsorted(offsets, positions, side="right") - 1
    done = 0
    for k in np.unique(shard_of):
        mask = shard_of == k
        t = read_rows(store.root / sp["shards"][k]["file"], positions[mask] - offsets[k],
                      ["id", "embedding"] if with_ids else ["embedding"])
        out[mask] = embedding_matrix(t.column("embedding"), dim)
        if with_ids:
            for n, v in zip(np.flatnonzero(mask), t.column("id").to_pylist()):
                ids[n] = v
        done += int(mask.sum())
        if progress is not None:
            progress("vectors", done, len(positions))
    return (ids, out) if with_ids else out


def located(root: Path, shards: list[dict[str, Any]], found: np.ndarray, loc: np.ndarray,
            skip: Any = ()) -> Iterator[tuple[list[int], Path, list[int]]]:
    """Records a key table found (``found``, their ``loc``), grouped by the shard that holds them: per shard, the
    records' indices, the shard's path and their rows in it. Shards not in ``shards`` (another snapshot's) and
    part numbers in ``skip`` are left out."""
    for ns, entry, at in located_entries(shards, found, loc, skip):
        yield ns, root / entry["file"], at


def located_entries(shards: list[dict[str, Any]], found: np.ndarray, loc: np.ndarray,
                    skip: Any = ()) -> Iterator[tuple[list[int], dict[str, Any], list[int]]]:
    """``located``, with each shard's manifest entry where it gives the path."""
    parts, rows = kt.split_loc(loc)
    entries = {kt.part_of(s): s for s in shards}
    wanted: dict[int, list[int]] = {}
    for n in np.flatnonzero(found):
        part = int(parts[n])
        if part in entries and part not in skip:
            wanted.setdefault(part, []).append(int(n))
    for part, ns in wanted.items():
        yield ns, entries[part], [int(rows[n]) for n in ns]


def shard_columns(path: Path) -> list[str]:
    """The columns of a shard (its footer, read once)."""
    return _parquet_file(path).schema_arrow.names


def item_rows_by_key(store: Any, collection: str, keys: np.ndarray,
                     checks: np.ndarray | None = None) -> list[dict[str, Any] | None]:
    """The items' rows (all columns but the content hash, the id included) for these id keys (and their ``checks``,
    when known: else, of a key several ids share, any one), in their order; None where there is no such item. From
    the shards' row copies (``row_copies.py``) where they have one, else from the row groups of the Parquet shards."""
    from .row_copies import HIDDEN, rows_from_copy

    found, rec = store.key_table(collection).find(np.asarray(keys, np.uint64), checks)
    out: list[dict[str, Any] | None] = [None] * len(keys)
    where = []
    for ns, entry, rows in located_entries(store.collection(collection)["item_shards"], found, rec[3]):
        copied = rows_from_copy(store.root, entry, rows)  # a slice of a mapped file a row
        if copied is None:
            where.append((ns, store.root / entry["file"], rows))
        for n, row in zip(ns, copied or ()):
            out[n] = row

    def read(path: Path, rows: list[int]) -> list[dict[str, Any]]:
        columns = [c for c in shard_columns(path) if c not in HIDDEN]
        return read_rows(path, rows, columns).to_pylist()

    # shards without a row copy: the top-k of a search lie in ~k shards, read side by side (Arrow's decoding lets
    # go of the GIL)
    got = _readers().map(read, *zip(*[(path, rows) for _, path, rows in where])) if len(where) > 2 else \
        (read(path, rows) for _, path, rows in where)
    for (ns, _, _), rows in zip(where, got):
        for n, row in zip(ns, rows):
            out[n] = row
    return out


@functools.lru_cache(maxsize=1)
def _readers() -> Any:
    """The threads a lookup reads its shards' row groups with (made on first use, kept)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="embstore-read")


def item_rows(store: Any, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The items' rows (all columns but the content hash) for these ids, read from the shards they are in."""
    ids = [str(i) for i in ids]
    if not ids:
        return {}
    rows = item_rows_by_key(store, collection, kt.id_keys(ids), kt.id_checks(ids))
    return {i: {c: v for c, v in row.items() if c != "id"} for i, row in zip(ids, rows)
            if row is not None and row["id"] == i}  # (the id itself, not only its 64 bits)


@functools.lru_cache(maxsize=4096)
def _parquet_file(path: Path) -> pq.ParquetFile:
    """An opened shard (its footer parsed once; a few KB each, so a 10^7-item store's ~500 shards all stay open):
    shards never change once written, and a retired one is only deleted after the retention time, so a long-lived
    process may keep it. No pre-buffering: a lookup reads one row group of a few columns, and coalescing its
    ranges first costs more than it saves (0.35 -> 0.23 ms a row group, measured on the 1M-row scale store)."""
    with damaged(str(path)):
        return pq.ParquetFile(path, pre_buffer=False)


def read_rows(path: Path, rows: Sequence[int], columns: list[str] | None = None, fresh: bool = False) -> pa.Table:
    """Rows of one Parquet file, in the order given, reading only the row groups they are in (shards are written
    in groups of ``storage.ROW_GROUP`` rows, so a lookup reads a few KB, not the shard). ``fresh``: open the file
    anew, not through the footers kept open (what ``check`` reads: the file as it is on disk now)."""
    with damaged(str(path)):  # (truncated after its footer was read: one line too)
        return _read_rows(pq.ParquetFile(path, pre_buffer=False) if fresh else _parquet_file(path), rows, columns)


def _read_rows(f: pq.ParquetFile, rows: Sequence[int], columns: list[str] | None) -> pa.Table:
    meta = f.metadata
    if meta.num_row_groups == 1:
        return f.read(columns=columns).take(indices(rows))
    starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
    rows = np.asarray(rows, np.int64)
    group = np.searchsorted(starts, rows, side="right") - 1
    groups = sorted(set(group.tolist()))
    t = f.read_row_groups(groups, columns=columns, use_threads=False)  # a few KB: no thread pool
    at = dict(zip(groups, np.cumsum([0] + [meta.row_group(g).num_rows for g in groups])))
    take = [int(at[g]) + int(r - starts[g]) for g, r in zip(group, rows)]
    return t.take(indices(take))


def indices(rows: Sequence[int]) -> pa.Array:
    """Row numbers as an Arrow int64 array, built from its buffer: ``pa.array`` imports pandas (0.5 s of a cold
    CLI call) to ask whether its input is a DataFrame."""
    data = np.ascontiguousarray(rows, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data.tobytes())])
