"""Chunks: a source's pieces (tables of one file each, of any size) gathered into the ingest's commit chunks, each
row traceable to its file and its row there; pieces are conformed to the collection's types as they come."""
from __future__ import annotations

import bisect
from typing import Any, Callable, Iterable

import pyarrow as pa


class Chunk:
    """Rows gathered from one or more pieces of the source, each row traceable to its file and row there."""

    def __init__(self, table: pa.Table, segments: list[tuple[int, str, int]]):
        self.table = table
        self.segments = segments  # (first index in the chunk, file, that row's 1-based row in the file)
        self.starts = [s[0] for s in segments]

    def origin(self, i: int) -> tuple[str, int]:
        k = bisect.bisect_right(self.starts, i) - 1
        start, file, first = self.segments[k]
        return file, first + i - start

    def file_of(self, i: int) -> str:
        return self.origin(i)[0]


def chunks(pieces: Iterable[Any], size: Callable[[], int], conform: Callable[[pa.Table, str], pa.Table],
           on_bad: Callable[[Any], None]) -> Iterable[Chunk]:
    """Gather pieces into chunks of ``size()`` rows (asked anew before each chunk); pieces are conformed to the
    collection's types as they come, so that they can be concatenated."""
    buffer: list[tuple[pa.Table, str, int]] = []
    held = 0
    for piece in pieces:
        on_bad(piece)
        if piece.table.num_rows == 0:
            continue
        buffer.append((conform(piece.table, piece.file), piece.file, piece.first_row))
        held += piece.table.num_rows
        while held >= size():
            chunk, buffer, held = _take(buffer, size())
            yield chunk
    while held:
        chunk, buffer, held = _take(buffer, min(held, size()))
        yield chunk


def _take(buffer: list[tuple[pa.Table, str, int]], n: int) -> tuple[Chunk, list, int]:
    parts, segments, got, rest = [], [], 0, []
    for k, (table, file, first) in enumerate(buffer):
        if got >= n:
            rest = buffer[k:]
            break
        take = min(n - got, table.num_rows)
        parts.append(table.slice(0, take))
        segments.append((got, file, first))
        got += take
        if take < table.num_rows:
            rest = [(table.slice(take), file, first + take)] + buffer[k + 1:]
            break
    table = parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")
    return Chunk(table, segments), rest, sum(t.num_rows for t, _, _ in rest)
