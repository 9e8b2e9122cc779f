"""Read a whole source into one Arrow table: ``read_source(path)`` is ``open_source(path)`` with every piece read and
concatenated (types promoted permissively across pieces and files: int64 with double is double, a column missing
from some pieces is null there). For inputs that fit in memory (the vector-file ingest, tests); anything larger
streams with ``embstore.ingest.sources.open_source``.

Tables: CSV, TSV, Parquet, JSONL/NDJSON (and JSON arrays), one file, a folder of them, a glob or a URL. Folders of
images: every image file below it, as a table with a ``path`` column (relative to the folder; the ingest stores it
resolved to an absolute path) and a ``folder`` column (the parent folder's name).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import pyarrow as pa

from ..errors import InputError
from .sources import IMAGE_EXTENSIONS, TABLE_EXTENSIONS, open_source

__all__ = ["IMAGE_EXTENSIONS", "TABLE_EXTENSIONS", "ReadResult", "read_source"]


@dataclass
class ReadResult:
    table: pa.Table
    kind: str  # csv | tsv | parquet | jsonl | folder
    bad_rows: list[dict[str, Any]] = field(default_factory=list)  # {row, reason, data, file}
    ignored_files: int = 0  # files in a folder that are not images (by extension), or not tables of its kind


def read_source(path: str | os.PathLike | Sequence[str | os.PathLike]) -> ReadResult:
    source = open_source(path)
    tables: list[pa.Table] = []
    bad: list[dict[str, Any]] = []
    for piece in source.pieces():
        tables.append(piece.table)
        bad.extend(row | {"file": piece.file} for row in piece.bad)
    try:
        table = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(f"{source.name}: a column holds values of other types in different files or parts "
                         f"({str(e).splitlines()[0]}); make each column one type") from None
    return ReadResult(table, source.kind, bad, source.ignored_files)
