"""Row copies: an item shard's rows as a search shows them, in an uncompressed Arrow IPC file beside the shard.

A search shows each hit's item row (every column but the content hash). Read from the Parquet shard, a hit costs a
row group decoded (1,024 rows of each column, zstd): 0.3-0.4 ms on the 2-core VM of bench/RESULTS.md, 5-8 ms for
ten hits in ten shards, most of a search at 10^6-10^7 items. From the copy, mapped once and kept, it is a slice of
the mapped buffers (about 0.01 ms): nothing to decompress or decode.

An item shard ``part-NNNNNN.parquet`` is written with its copy ``part-NNNNNN.arrow``, listed in the shard's manifest
entry as ``rows_copy`` ({file, rows, bytes, blake2b}). The copy is made from the shard as it reads back, so its
values are those of the Parquet path, types included. It is derived data: a lookup uses it when it is listed and
opens with the shard's row count, else reads the shard (a store written before copies existed, a copy lost or
cut short). ``embstore check`` compares it as it does a shard (size, checksum) and names a shard that has none;
``--repair`` writes a bad or missing one anew from the shard, under a new name (``copy_name``: a long-lived reader
keeps the copies it mapped by name). Cost: the display columns once more, uncompressed (at 10^7 short
texts, bench/scale.py: see bench/RESULTS.md), written in the ingest's writer thread.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Sequence

SUFFIX = ".arrow"
HIDDEN = ("content_hash",)  # columns a search does not show


def copy_name(rel: str, again: int | None = None) -> str:
    """The copy's store-relative name: the shard's, with ``.arrow`` for ``.parquet``; a copy written again (by a
    repair) is ``part-NNNNNN.rK.arrow``, a name no process has mapped."""
    path = Path(rel).with_suffix(SUFFIX)
    return str((path if again is None else path.with_suffix(f".r{again}{SUFFIX}")).as_posix())


def write_copy(root: Path, rel: str, written: Path, again: int | None = None) -> dict[str, Any]:
    """Write the copy of the shard ``rel`` from ``written`` (the shard's file, maybe still under its temporary
    name): to a temporary name, synced, renamed; returns its manifest entry. ``again``: see ``copy_name``."""
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    from .manifest import temp_file
    from .storage import checksum

    columns = [c for c in pq.read_schema(written).names if c not in HIDDEN]
    table = pq.read_table(written, columns=columns)  # (just written: from the page cache)
    copy_rel = copy_name(rel, again)
    path = root / copy_rel
    tmp = path.with_name(f".{path.name}.tmp")
    with temp_file(tmp, path):
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as out:
            out.write_table(table)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        size, digest = os.path.getsize(tmp), checksum(tmp)
        os.replace(tmp, path)
    return {"file": copy_rel, "rows": table.num_rows, "bytes": size, "blake2b": digest}


def copy_files(entry: dict[str, Any]) -> list[str]:
    """The files of a shard's manifest entry: the shard, and its row copy when it has one."""
    return [entry["file"]] + ([entry["rows_copy"]["file"]] if entry.get("rows_copy") else [])


def rows_from_copy(root: Path, entry: dict[str, Any], rows: Sequence[int]) -> list[dict[str, Any]] | None:
    """The shard's rows at ``rows`` (every column but the hidden ones), from its copy; None when it has none that
    opens with the shard's row count (then read the shard)."""
    copy = entry.get("rows_copy")
    if not copy:
        return None
    table = opened(str(root / copy["file"]), int(entry["rows"]))
    if table is None:
        return None
    return [table.slice(int(r), 1).to_pylist()[0] for r in rows]


@functools.lru_cache(maxsize=4096)
def opened(path: str, rows: int) -> Any:
    """``open_copy``, kept: copies never change once written (a new shard is a new name), so a long-lived process
    keeps them mapped."""
    return open_copy(path, rows)


def open_copy(path: str, rows: int) -> Any:
    """A copy, mapped read-only (its descriptor closed: a 10^7-item store has ~500 of them), as an Arrow table over
    the mapped buffers; None when it is missing, does not read as Arrow IPC, or holds another row count."""
    import mmap

    import pyarrow as pa
    import pyarrow.ipc as ipc

    try:
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        table = ipc.open_file(pa.py_buffer(mapped)).read_all()
    except (OSError, ValueError, pa.ArrowException):
        return None
    return table if table.num_rows == rows else None


def copy_status(root: Path, entry: dict[str, Any], quick: bool) -> str | None:
    """What is wrong with a shard's row copy in words (``embstore check``), or None when it is whole or absent."""
    from .storage import checksum

    copy = entry.get("rows_copy")
    if not copy:
        return None
    path = root / copy["file"]
    if not path.is_file():
        return "is missing"
    size = path.stat().st_size
    if size != copy.get("bytes", size):
        return f"has {size:,} bytes, not the {copy['bytes']:,} it had when committed"
    if not quick and "blake2b" in copy and checksum(path) != copy["blake2b"]:
        return "does not match the checksum recorded when it was committed"
    if open_copy(str(path), int(entry["rows"])) is None:  # (the file as it is now, not a kept one)
        return f"does not read as {entry['rows']:,} rows of Arrow IPC"
    return None
