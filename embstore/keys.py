"""Key tables: what a collection or a space holds, as sorted 64-bit keys, so that dedupe and lookups by id never hold
the corpus' ids in Python.

A table is a ``(fields, n)`` uint64 array, each field a contiguous row, its columns sorted by the first field:

- a collection's items: ``key`` (64 bits of the id), ``hash`` (the first 64 bits of the content hash), ``values``
  (64 bits of the digest of the item's other values, 0 where it was not recorded), ``loc``, ``check`` (64 more bits
  of the id, from an independent hash);
- a space, by id: ``key``, ``loc``, ``check``; and by content: ``hash``, ``loc``;

where ``loc`` is the shard's part number << 32 | the row in that shard. A lookup is one ``searchsorted`` per sorted
run: on a file opened with ``mmap`` that touches about log2(n) pages, so a CLI call finds an id among 10^8 in
microseconds without reading the table. An ingest adds the records of each committed chunk as a small sorted run in
memory; at its end the runs are merged with the file into a new one (``save``), replaced atomically and listed in
the manifest with the number of shards it covers. Shards committed after it (an interrupted ingest) are read from
Parquet on open. The tables are derived data: a missing one is rebuilt from the shards.

Why not a Python dict or DuckDB: a dict of 10M ids costs about 1.5 GB and minutes to build on every ingest; a DuckDB
anti-join per chunk scans every stored id once per chunk (quadratic in the corpus). 64-bit keys collide with
probability about n^2 / 2^65 (3e-6 at 10M ids, but about 3% at 10^9), so an id is found by its key *and* its
``check``: among the records of a key (usually one), the one whose check matches; two ids would have to agree in 128
bits to be taken for each other. An equal content hash is still required before a row is called a duplicate. The
position keys (a space's id keys in index order) hold the key alone: a search hit whose key has more than one record
(``KeyTable.ambiguous``) is resolved by reading its id from the space's shard. Tables saved before the check field
are of another shape and rebuilt from the shards on first use.
"""
from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .manifest import fsync_dir, temp_file

ITEM_FIELDS = ("key", "hash", "values", "loc", "check")
BY_ID_FIELDS = ("key", "loc", "check")
BY_HASH_FIELDS = ("hash", "loc")
MAX_RUNS = 8  # sorted runs kept apart before they are merged into one (lookups cost one searchsorted a run)


def id_keys(ids: Sequence[Any]) -> np.ndarray:
    """64 bits of blake2b over each id's text (the form ids are stored in)."""
    b2 = hashlib.blake2b
    return np.frombuffer(b"".join(b2(str(i).encode("utf-8"), digest_size=8).digest() for i in ids) or b"",
                         dtype="<u8").copy()


def id_checks(ids: Sequence[Any]) -> np.ndarray:
    """64 other bits of each id: blake2b personalised apart from ``id_keys``'s, so independent of the key."""
    b2 = hashlib.blake2b
    return np.frombuffer(b"".join(b2(str(i).encode("utf-8"), digest_size=8, person=b"embstore.check").digest()
                                  for i in ids) or b"", dtype="<u8").copy()


def hash_key(digest: str) -> int:
    """The first 64 bits of a hex content hash (sha256 hex, as items store it): what the tables hold of it."""
    return int(digest[:16], 16)


def hash_keys(hashes: Sequence[str]) -> np.ndarray:
    """``hash_key`` of each hash, as an array."""
    return np.fromiter((hash_key(h) for h in hashes), dtype=np.uint64, count=len(hashes))


def value_keys(digests: Sequence[str] | None, n: int) -> np.ndarray:
    """64 bits of each row's values digest (hex), or zeros (not recorded) when there are none."""
    return np.zeros(n, np.uint64) if digests is None else hash_keys(digests)


def locations(part: int, rows: int | np.ndarray) -> np.ndarray:
    """``loc`` of rows 0..rows-1 (or the given rows) of shard ``part``."""
    r = np.arange(rows, dtype=np.uint64) if np.isscalar(rows) else np.asarray(rows, np.uint64)
    return (np.uint64(part) << np.uint64(32)) | r


def split_loc(loc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(part numbers, rows) of locations."""
    loc = np.asarray(loc, np.uint64)
    return (loc >> np.uint64(32)).astype(np.int64), (loc & np.uint64(0xFFFFFFFF)).astype(np.int64)


def part_of(shard: dict[str, Any]) -> int:
    """A shard's part number: recorded in the manifest entry, or read from its name (``part-000042.parquet``)."""
    if "part" in shard:
        return int(shard["part"])
    stem = Path(shard["file"]).stem
    return int(stem.rsplit("-", 1)[-1])


class KeyTable:
    """A sorted table (a saved base, maybe memory-mapped) plus sorted runs added since; looked up by its first field."""

    def __init__(self, fields: tuple[str, ...], base: np.ndarray | None = None, spill: Path | None = None):
        self.fields = fields
        self.base = base if base is not None else np.zeros((len(fields), 0), np.uint64)
        self.runs: list[np.ndarray] = []
        self.spill = spill  # a folder for runs of SPILL_ROWS or more, memory-mapped: memory stays flat in n

    def __len__(self) -> int:
        return self.base.shape[1] + sum(r.shape[1] for r in self.runs)

    def add(self, *columns: np.ndarray) -> None:
        """Add records, one array per field (in ``fields`` order), as a sorted run. Runs are merged by size, as a
        log-structured merge does (a run is merged into the one before it while that one is at most twice its
        size), so each record is re-sorted O(log n) times and there are O(log n) runs to search."""
        if len(columns) != len(self.fields):
            raise ValueError(f"a record of {self.fields} has {len(self.fields)} fields, got {len(columns)}")
        if not len(columns[0]):
            return
        self.runs.append(_merge([np.stack([np.asarray(c, np.uint64) for c in columns])]))
        while len(self.runs) > 1 and (self.runs[-2].shape[1] <= 2 * self.runs[-1].shape[1]
                                      or len(self.runs) > MAX_RUNS):
            last = self.runs.pop()
            if self.spill is not None and self.runs[-1].shape[1] + last.shape[1] >= SPILL_ROWS:
                self.runs[-1] = self._spilled([self.runs[-1], last])
            else:
                self.runs[-1] = _merge([self.runs[-1], last])

    def _spilled(self, tables: list[np.ndarray]) -> np.ndarray:
        """Runs merged into a file of the spill folder, block by block, and mapped: a lookup touches a few pages
        of it, and the merge reads its inputs with plain reads (no mapped pages held); spilled inputs are deleted."""
        assert self.spill is not None
        self.spill.mkdir(parents=True, exist_ok=True)
        path = self.spill / f"run-{os.getpid()}-{next(_SPILLS)}.npy"
        _write_merged(path, tables, len(self.fields))
        for t in tables:
            if isinstance(t, np.memmap):
                Path(t.filename).unlink(missing_ok=True)  # (still mapped until dropped: Linux keeps it till then)
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def find(self, keys: np.ndarray, checks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, the records found: a (fields, len(keys)) array, zeros where not found). With ``checks`` (a
        table with a check field), a record counts only when its check matches too, whichever of a key's records it
        is; without, where a key is in the table more than once (a content hash in ``by_hash``), any one of its
        records is returned."""
        keys = np.asarray(keys, np.uint64)
        c = self.fields.index("check") if checks is not None and "check" in self.fields else None
        found = np.zeros(len(keys), bool)
        out = np.zeros((len(self.fields), len(keys)), np.uint64)
        for table in [self.base, *self.runs]:
            n = table.shape[1]
            if n == 0 or not len(keys):
                continue
            column = table[0]
            pos = np.searchsorted(column, keys)
            inside = pos < n
            hit = np.zeros(len(keys), bool)
            hit[inside] = column[pos[inside]] == keys[inside]
            if c is not None and hit.any():
                end = np.searchsorted(column, keys, side="right")
                hit &= np.asarray(table[c, np.minimum(pos, n - 1)] == checks)  # the first record of the key
                for k in np.flatnonzero((end - pos > 1) & ~hit & inside):  # a key of several ids: find its own
                    same = np.flatnonzero(np.asarray(table[c, pos[k]:end[k]]) == checks[k])
                    if len(same):
                        pos[k], hit[k] = pos[k] + same[0], True
            if hit.any():
                out[:, hit] = table[:, pos[hit]]
                found |= hit
        return found, out

    def find_ids(self, ids: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """``find`` for these ids, by key and check."""
        return self.find(id_keys(ids), id_checks(ids) if "check" in self.fields else None)

    def ambiguous(self, keys: np.ndarray) -> np.ndarray:
        """Which of these keys have more than one record here (ids whose 64-bit keys collide)."""
        keys = np.asarray(keys, np.uint64)
        count = np.zeros(len(keys), np.int64)
        for table in [self.base, *self.runs]:
            if table.shape[1] and len(keys):
                count += np.searchsorted(table[0], keys, side="right") - np.searchsorted(table[0], keys)
        return count > 1

    def tables(self) -> list[np.ndarray]:
        """The saved base and the runs added since, each sorted, not merged: every record once, for a caller that
        reads all of them in any order."""
        return [t for t in [self.base, *self.runs] if t.shape[1]]

    def merged(self) -> np.ndarray:
        """Base and runs as one sorted array (in memory: ``save`` writes the same without holding it)."""
        if not self.runs:
            return np.asarray(self.base)
        return _merge([np.asarray(self.base), *self.runs])

    def save(self, path: Path) -> int:
        """Write base and runs, merged, to ``path`` atomically, a block at a time, one field after the other with
        plain writes (so memory holds one block, never a second copy of the table, and no mapped pages); returns
        the rows written."""
        tables = [t for t in [self.base, *self.runs] if t.shape[1]]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with temp_file(tmp, path):
            n = _write_merged(tmp, tables, len(self.fields))
            os.replace(tmp, path)
        fsync_dir(path.parent)
        return n


def _write_merged(path: Path, tables: list[np.ndarray], fields: int) -> int:
    """The k-way merge of sorted tables written to ``path`` as a (fields, n) .npy, field by field, synced."""
    tables = [t for t in tables if t.shape[1]]
    n = sum(t.shape[1] for t in tables)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<u8", "fortran_order": False, "shape": (fields, n)})
        for field in range(fields):
            for block in _merged_blocks(tables, field):
                f.write(np.ascontiguousarray(block).tobytes())
        f.flush()
        os.fsync(f.fileno())
    return n


def _merge(tables: list[np.ndarray]) -> np.ndarray:
    """Sorted tables (by their first row) as one: a stable sort of the concatenation, which for sorted runs is a
    merge (timsort finds the runs)."""
    both = np.concatenate(tables, axis=1)
    return np.ascontiguousarray(both[:, np.argsort(both[0], kind="stable")])


MERGE_BLOCK = 1 << 20  # records per step of a k-way merge to disk
SPILL_ROWS = 1 << 20  # a run this large goes to a file of the spill folder (when the table has one)
_SPILLS = itertools.count()


def _window(table: np.ndarray, field: int, start: int, count: int) -> np.ndarray:
    """``table[field, start:start + count]``; from a mapped file with a plain read (the pages are not kept)."""
    if isinstance(table, np.memmap) and table.filename:
        offset = table.offset + (field * table.shape[1] + start) * 8
        return np.fromfile(table.filename, dtype=np.uint64, count=count, offset=offset)
    return np.asarray(table[field, start:start + count])


def _merged_blocks(tables: list[np.ndarray], field: int) -> Iterator[np.ndarray]:
    """One ``field`` of the k-way merge of sorted tables, a block at a time: each step reads the next
    ``MERGE_BLOCK`` keys of every table, takes from each the records up to the smallest of those windows' last keys
    (all of them, in every table, lie in its window), and sorts just those, reading the keys and that field only.
    The sort is stable, so every field's pass puts the records in the same order."""
    pos = [0] * len(tables)
    while True:
        live = [k for k, t in enumerate(tables) if pos[k] < t.shape[1]]
        if not live:
            return
        heads = {k: _window(tables[k], 0, pos[k], min(MERGE_BLOCK, tables[k].shape[1] - pos[k])) for k in live}
        pivot = min(h[-1] for h in heads.values())
        parts = []
        for k in live:
            end = int(np.searchsorted(heads[k], pivot, side="right"))
            if end:
                keys = heads[k][:end]
                parts.append(np.stack([keys, keys if field == 0 else _window(tables[k], field, pos[k], end)]))
                pos[k] += end
        yield (_merge(parts) if len(parts) > 1 else parts[0])[1]


def load_table(path: Path, fields: tuple[str, ...]) -> np.ndarray | None:
    """The saved table, memory-mapped; None when missing or of another shape (then it is rebuilt)."""
    try:
        table = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if table.ndim != 2 or table.shape[0] != len(fields) or table.dtype != np.uint64:
        return None
    return table


def shard_records(root: Path, shard: dict[str, Any], fields: tuple[str, ...]) -> list[np.ndarray]:
    """The records of one committed shard (id and content_hash columns read from Parquet), in ``fields`` order."""
    from .storage import read_table

    t = read_table(root, shard["file"], ["id", "content_hash"])
    n = t.num_rows
    have = {"loc": locations(part_of(shard), n), "values": np.zeros(n, np.uint64)}
    if "key" in fields:
        have["key"] = id_keys(t.column("id").to_pylist())
    if "check" in fields:
        have["check"] = id_checks(t.column("id").to_pylist())
    if "hash" in fields:
        have["hash"] = hash_keys(t.column("content_hash").to_pylist())
    return [have[f] for f in fields]


def open_table(root: Path, entry: dict[str, Any] | None, shards: list[dict[str, Any]],
               fields: tuple[str, ...], spill: Path | None = None) -> KeyTable:
    """The key table of these shards: the saved file (``entry``: ``{"file", "shards"}`` from the manifest) when it
    covers a prefix of them, plus the shards after it read from Parquet; else rebuilt from all of them."""
    base, covered = None, 0
    if entry and entry.get("shards", 0) <= len(shards):
        base = load_table(root / entry["file"], fields)
        if base is not None and base.shape[1] != entry.get("rows"):
            base = None  # a file of another snapshot (saved by a later ingest): rebuilt from this one's shards
        covered = entry["shards"] if base is not None else 0
    table = KeyTable(fields, base, spill)
    for shard in shards[covered:]:
        table.add(*shard_records(root, shard, fields))
    return table


def save_positions(root: Path, rel: str, entry: dict[str, Any] | None, shards: list[dict[str, Any]], first: int,
                   added: list[np.ndarray]) -> dict[str, Any]:
    """A space's id keys in index order (row i: the key of the space's i-th vector), so a search goes from the
    index's rows to the items' rows without reading the ids: the saved file's prefix, the ids of shards after it
    and before this ingest's (``first``) read from Parquet, then this ingest's ``added`` keys; written a block at a
    time, appended to a copy of the old file."""
    path = root / rel
    old = load_positions(root, entry, shards)
    covered = entry["shards"] if old is not None else 0
    n = sum(s["rows"] for s in shards)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with temp_file(tmp, path):  # a failed write (disk full) leaves no temporary file
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<u8", "fortran_order": False, "shape": (n,)})
            if old is not None:
                for start in range(0, len(old), MERGE_BLOCK):
                    f.write(np.ascontiguousarray(old[start:start + MERGE_BLOCK]).tobytes())
            for shard in shards[covered:first]:
                f.write(shard_records(root, shard, ("key",))[0].tobytes())
            written = sum(s["rows"] for s in shards[:first])
            for keys in added:
                f.write(np.ascontiguousarray(keys, np.uint64).tobytes())
                written += len(keys)
            for shard in shards[first:] if written < n else []:  # (shards listed by another path: read back)
                f.write(shard_records(root, shard, ("key",))[0].tobytes())
                written += shard["rows"]
            f.flush()
            os.fsync(f.fileno())
    if written != n:  # never a file that disagrees with the shards: rebuilt from them next time
        tmp.unlink()
        return {"file": rel, "shards": 0, "rows": 0}
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return {"file": rel, "shards": len(shards), "rows": n}


def load_positions(root: Path, entry: dict[str, Any] | None, shards: list[dict[str, Any]]) -> np.ndarray | None:
    """The saved position keys, memory-mapped, when they cover a prefix of ``shards`` exactly; else None."""
    if not entry or not entry.get("shards") or entry["shards"] > len(shards):
        return None
    try:
        keys = np.load(root / entry["file"], mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    rows = sum(s["rows"] for s in shards[:entry["shards"]])
    return keys if keys.ndim == 1 and keys.dtype == np.uint64 and len(keys) == rows == entry["rows"] else None
