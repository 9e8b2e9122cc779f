"""Sources: what an ingest reads, streamed as Arrow tables of bounded size.

``open_source(spec)`` takes a local file or folder, a glob, an fsspec URL (``memory://``, ``s3://``, ``hf://``...) or
a list of those (see ``locations`` for how they resolve). Opening reads only what tells the schema: the first block
of the first CSV, the first chunk of the first JSONL file, every Parquet footer, a folder's walk up to its first
image. So a missing file, an unknown type or a wrong column is an error before any model loads; the rest of the data
is read by ``Source.pieces()``, one ``Piece`` (at most ``batch_rows`` rows of one file) at a time. Errors found on the
way (a CSV column that changes type after its first block, a quote that never closes) are InputErrors raised there.

Readers by kind: ``csv_stream`` (CSV, TSV), ``json_stream`` (JSONL, NDJSON, JSON arrays), ``parquet_stream``
(Parquet, with Hive partition folders); a folder of images is walked here, one row per image: ``path`` (relative to
the folder on the local disk, a full URL on fsspec) and ``folder`` (the name of the image's folder).
"""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import pyarrow as pa

from ..errors import InputError
from .locations import IMAGE_EXTENSIONS, TABLE_EXTENSIONS, Found, Loc, resolve, url_to_fs

__all__ = ["IMAGE_EXTENSIONS", "TABLE_EXTENSIONS", "MAX_COLUMNS", "ROW_BYTES", "Piece", "Source", "open_source"]

# A CSV/TSV row or a JSON line larger than this is quarantined, with its size and first bytes, and the rest of the
# file read on: not truncated, since a text cut short would be stored and embedded as if it were the item, and its
# id (a hash of the row) would change with the limit. 8 MiB is half the CSV block (a row up to a block always parses)
# and far more than any model reads: a text encoder sees its first few hundred words.
ROW_BYTES = 8 << 20
# A table with more columns is refused in one line: pyarrow takes minutes to read a header of a million columns,
# and an item's metadata of thousands of columns is no use to a head, a search or SQL.
MAX_COLUMNS = 10_000


def too_many_columns(shown: str, columns: int) -> InputError:
    return InputError(f"{shown} has {columns:,} columns; embstore reads at most {MAX_COLUMNS:,}: keep the columns "
                      "you need (the text or image, an id, labels and metadata) and ingest that")


@dataclass
class Piece:
    """At most ``batch_rows`` rows, all from one file, and the rows of that file met meanwhile that did not parse."""

    table: pa.Table
    file: str  # that file: an absolute local path or a URL (for a folder of images: the folder)
    first_row: int  # 1-based data row, within ``file``, of the table's first row
    bad: list[dict[str, Any]] = field(default_factory=list)  # {"row": line in the file, "reason", "data"}


class Source:
    """An opened input: its kind and columns are known, its rows are streamed by ``pieces()`` (once)."""

    def __init__(self, name: str, kind: str, base_dir: str, stream: Any, size_hint: int | None = None,
                 unlisted: list[dict[str, Any]] | None = None):
        self.name = name  # recorded as the ingest's source: absolute local path, URL, or the glob
        self.kind = kind  # csv | tsv | parquet | jsonl | folder
        self.base_dir = base_dir  # where relative image paths in a table resolve
        self.size_hint = size_hint  # bytes of the tables on a local disk (for estimates of the rows to come), or None
        self._stream = stream
        self._unlisted = [] if unlisted is None else unlisted  # folders a walk could not list (it appends as it goes)
        self._started = False

    @property
    def columns(self) -> list[str]:
        return list(self._stream.columns)

    @property
    def rows_hint(self) -> int | None:
        """Total data rows when known without reading the data (Parquet metadata), else None."""
        return self._stream.rows_hint

    @property
    def files(self) -> int:
        """Tables of the source, or images found so far in a folder of images."""
        return self._stream.files

    @property
    def ignored_files(self) -> int:
        """Files that are neither images nor tables of the source (a folder's), met so far."""
        return self._stream.ignored_files

    def pieces(self) -> Iterator[Piece]:
        """The rows, streamed: at most ``batch_rows`` per piece, each piece from one file, in file order."""
        if self._started:
            raise RuntimeError(f"the pieces of {self.name} were already read; open the source again to reread it")
        self._started = True
        return self._with_unlisted(self._stream.pieces())

    def _with_unlisted(self, pieces: Iterator[Piece]) -> Iterator[Piece]:
        """The pieces, each with the folders that could not be listed since the last one among its bad rows."""
        told = 0
        piece = None
        for piece in pieces:
            piece.bad[:0], told = self._unlisted[told:], len(self._unlisted)
            yield piece
        if told < len(self._unlisted):
            empty = pa.table({c: pa.array([], pa.string()) for c in self.columns})
            yield Piece(empty, piece.file if piece is not None else self.name, 1, self._unlisted[told:])

    def open_file(self, path: str) -> bytes:
        """The bytes of a file a row names: a URL, an absolute local path, or a path relative to ``base_dir``."""
        if "://" not in path and "::" not in path:
            if os.path.isabs(path):
                with open(path, "rb") as f:
                    return f.read()
            if "://" not in self.base_dir:
                with open(os.path.join(self.base_dir, path), "rb") as f:
                    return f.read()
            path = posixpath.join(self.base_dir, path)
        fs, inner = url_to_fs(path)
        with fs.open(inner, "rb") as f:
            return f.read()

    def __repr__(self) -> str:
        return f"Source({self.name!r}, kind={self.kind!r}, columns={self.columns!r}, files={self.files})"


def open_source(spec: str | os.PathLike | Sequence[str | os.PathLike], *, batch_rows: int = 65536,
                encoding: str = "utf-8") -> Source:
    """Open ``spec`` for streaming; reads only what tells the schema. Raises InputError (one line) when it cannot be
    read as given. ``encoding``: the text encoding of CSV, TSV and JSONL files (rows that do not decode are
    quarantined)."""
    if not isinstance(batch_rows, int) or isinstance(batch_rows, bool) or batch_rows < 1:
        raise InputError(f"batch_rows must be a positive whole number, not {batch_rows!r}")
    found = resolve(spec)
    if found.first_image is not None:
        return Source(found.name, "folder", found.base_dir, ImageFolder(found, batch_rows), unlisted=found.unlisted)
    kind = found.kind
    locs = [t.loc for t in found.tables]
    if kind in ("csv", "tsv"):
        from .csv_stream import CsvTables

        stream: Any = CsvTables(locs, kind, batch_rows, encoding)
    elif kind == "jsonl":
        from .json_stream import JsonTables

        stream = JsonTables(locs, batch_rows, encoding)
    else:
        from .parquet_stream import ParquetTables

        stream = ParquetTables([(t.loc, t.root) for t in found.tables], batch_rows)
    stream.ignored_files = found.ignored
    local = all(loc.fs is None for loc in locs)
    return Source(found.name, kind, found.base_dir, stream, sum(loc.size() for loc in locs) if local else None,
                  found.unlisted)


class ImageFolder:
    """A folder of images, walked lazily: rows ``path`` and ``folder``, in the walk's order."""

    columns = ("path", "folder")
    rows_hint = None

    def __init__(self, found: Found, batch_rows: int):
        assert found.first_image is not None and found.walk is not None and found.root is not None
        self.root: Loc = found.root
        self.batch_rows = batch_rows
        self.files = 1  # the first image, found when the folder was opened
        self.ignored_files = found.ignored
        self._first, self._walk = found.first_image, found.walk

    def pieces(self) -> Iterator[Piece]:
        paths: list[str] = []
        folders: list[str] = []
        done = 0
        local = self.root.fs is None
        for loc in _chain(self._first, self._walk):
            if loc is not self._first:
                if loc.ext not in IMAGE_EXTENSIONS:
                    self.ignored_files += 1
                    continue
                self.files += 1
            # relative to the folder given, on the local disk: ids hash this, so a moved folder keeps its ids (the
            # ingest stores the absolute path); on fsspec the full URL, which the ingest opens as it is
            paths.append(loc.shown if local else loc.url)
            folders.append(loc.folder_name)
            if len(paths) == self.batch_rows:
                yield Piece(pa.table({"path": paths, "folder": folders}), self.root.url, done + 1, [])
                done += len(paths)
                paths, folders = [], []
        if paths:
            yield Piece(pa.table({"path": paths, "folder": folders}), self.root.url, done + 1, [])


def _chain(first: Loc, rest: Iterator[Loc]) -> Iterator[Loc]:
    yield first
    yield from rest

