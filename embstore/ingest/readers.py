"""Readers: a path -> an Arrow table of rows, plus the rows that could not even be parsed (quarantined).

Tables: CSV, TSV, Parquet, JSONL/NDJSON (and JSON arrays). Folders: every image file below it, as a table with a
``path`` column (relative to the folder; the ingest stores it resolved to an absolute path) and a ``folder`` column
(the parent folder's name).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import InputError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
TABLE_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
                    ".ndjson": "jsonl", ".json": "jsonl"}


@dataclass
class ReadResult:
    table: pa.Table
    kind: str  # csv | tsv | parquet | jsonl | folder
    bad_rows: list[dict[str, Any]] = field(default_factory=list)  # {row, reason, data}
    ignored_files: int = 0  # files in a folder that are not images (by extension)


def read_source(path: str | os.PathLike) -> ReadResult:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist; give a CSV, Parquet or JSONL file, or a folder of images")
    if p.is_dir():
        return _read_folder(p)
    kind = TABLE_EXTENSIONS.get(p.suffix.lower())
    if kind is None:
        raise InputError(f"{p.name}: unknown file type {p.suffix!r}; use .csv, .tsv, .parquet, .jsonl or a folder of images")
    return {"csv": _read_csv, "tsv": _read_csv, "parquet": _read_parquet, "jsonl": _read_jsonl}[kind](p, kind)


def _read_csv(p: Path, kind: str) -> ReadResult:
    """Fast path: pyarrow's threaded reader. Only when it meets a malformed row, read again with a handler that
    quarantines such rows, single-threaded (a Python callback inside pyarrow's thread pool can abort the
    interpreter at exit)."""
    from pyarrow import csv

    delimiter = "\t" if kind == "tsv" else ","
    convert = csv.ConvertOptions(strings_can_be_null=True)
    try:
        table = csv.read_csv(p, parse_options=csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                             convert_options=convert)
        if _may_end_in_open_quote(p, table):
            _check_quotes_closed(p, delimiter)
        return ReadResult(table, kind)
    except pa.ArrowInvalid as e:
        if "Empty CSV file" in str(e) and p.stat().st_size == 0:
            raise InputError(f"{p.name} is empty; give a file with a header row, then one row per item") from None
        if "columns" not in str(e):
            _check_quotes_closed(p, delimiter)
            raise InputError(f"cannot read {p.name} as {kind.upper()}: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read {p.name} as {kind.upper()}: {e}") from None
    bad: list[dict[str, Any]] = []

    def on_invalid(row: Any) -> str:
        bad.append({"row": row.number, "reason": f"malformed {kind.upper()} row: expected {row.expected_columns} "
                    f"columns, found {row.actual_columns}", "data": row.text})
        return "skip"

    parse = csv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid)
    try:
        table = csv.read_csv(p, read_options=csv.ReadOptions(use_threads=False), parse_options=parse,
                             convert_options=convert)
    except pa.ArrowInvalid as e:
        _check_quotes_closed(p, delimiter)  # a header whose quote never closes reads as "empty file"
        raise InputError(f"cannot read {p.name} as {kind.upper()}: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read {p.name} as {kind.upper()}: {e}") from None
    if _may_end_in_open_quote(p, table) or (bad and '"' in bad[-1]["data"]):  # or a last record cut short by it
        _check_quotes_closed(p, delimiter)
    return ReadResult(table, kind, bad)


def _may_end_in_open_quote(p: Path, table: pa.Table) -> bool:
    """Whether the file may end inside a quoted field that never closed, which pyarrow accepts: the field then runs to
    the end of the file, so it is the last column of the last row and holds the rest of the file. Normal files pay
    one value's look (no line break in it); a last value with a line break (a multi-line quoted text) is compared
    with the file's last bytes: an open quote leaves exactly '"' and the value, its quotes doubled, at the end."""
    if table.num_rows == 0 or table.num_columns == 0:
        return False
    value = table.column(table.num_columns - 1)[-1].as_py()
    if not isinstance(value, str) or ("\n" not in value and "\r" not in value):
        return False
    tail = b'"' + value.encode("utf-8").replace(b'"', b'""')
    with open(p, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size < len(tail):
            return False
        f.seek(size - len(tail))
        return f.read() == tail


def _check_quotes_closed(p: Path, delimiter: str) -> None:
    """Raise InputError when a quoted field of ``p`` opens and never closes: one pass over the file's quotes, run only
    when the parse hints at it. Follows pyarrow's parser: a quote opens a field only as the field's first character,
    ``""`` inside it is a quote, and the next lone quote closes it (what follows, up to the delimiter, belongs to the
    field, quotes included)."""
    data = p.read_bytes()
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    field_starts = {delimiter.encode()[0], ord("\n"), ord("\r")}
    at = start
    while (q := data.find(b'"', at)) >= 0:
        if q != start and data[q - 1] not in field_starts:
            at = q + 1  # a quote inside an unquoted field is a character
            continue
        end = q + 1
        while (end := data.find(b'"', end)) >= 0 and data[end + 1:end + 2] == b'"':
            end += 2  # "" inside a quoted field
        if end < 0:
            line = data.count(b"\n", 0, q) + data.count(b"\r", 0, q) - data.count(b"\r\n", 0, q) + 1
            raise InputError(f"{p.name}: a quote opened on line {line} is never closed, so the rest of the file "
                             f"would read as one value; close or remove that quote")
        at = end + 1


def _read_parquet(p: Path, kind: str) -> ReadResult:
    import pyarrow.parquet as pq

    try:
        return ReadResult(pq.read_table(p), kind)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"cannot read {p.name} as Parquet: {str(e).splitlines()[0]}") from None


def _read_jsonl(p: Path, kind: str) -> ReadResult:
    """JSON lines; a line that is not a JSON object is quarantined and the others go on."""
    text = p.read_text(encoding="utf-8", errors="replace")
    if text.lstrip().startswith("["):  # one JSON array of objects
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{p.name} is not valid JSON: {e}") from None
        lines = [(i + 1, r) for i, r in enumerate(rows)]
        bad: list[dict[str, Any]] = []
    else:
        lines, bad = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                lines.append((number, json.loads(line)))
            except json.JSONDecodeError as e:
                bad.append({"row": number, "reason": f"invalid JSON: {e.msg}", "data": line[:1000]})
    good = []
    first: dict[str, tuple[str, int]] = {}  # field -> the kind of its first value, and on which line
    for number, obj in lines:
        if not isinstance(obj, dict):
            bad.append({"row": number, "reason": "not a JSON object", "data": json.dumps(obj)[:1000]})
            continue
        kinds = {k: _kind(v) for k, v in obj.items()}
        clash = next((k for k, kind in kinds.items() if kind and k in first and first[k][0] != kind), None)
        if clash is not None:  # a column holds one type: the row that breaks it is quarantined, the rest goes on
            kind, line = first[clash]
            bad.append({"row": number, "reason": f"field {clash!r} holds {kinds[clash]} here but {kind} on line {line}; "
                        "make each field one type", "data": json.dumps(obj)[:1000]})
            continue
        for k, kind in kinds.items():
            if kind:
                first.setdefault(k, (kind, number))
        good.append(obj)
    try:
        table = pa.Table.from_pylist(good)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(f"{p.name}: a column mixes types ({str(e).splitlines()[0]}); make each field one type") from None
    return ReadResult(table, kind, bad)


def _kind(value: Any) -> str | None:
    """A JSON value's kind as a column sees it (int and float are both numbers); None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "text", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _read_folder(root: Path) -> ReadResult:
    paths, folders, ignored = [], [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                # relative to the folder given: ids hash this, so a moved folder keeps its ids; the ingest stores
                # the absolute path
                paths.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
                folders.append(os.path.basename(dirpath))
            else:
                ignored += 1
    if not paths:
        raise InputError(f"folder {root} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return ReadResult(pa.table({"path": paths, "folder": folders}), "folder", ignored_files=ignored)


@dataclass
class Piece:
    table: pa.Table
    file: str
    first_row: int
    bad: list[dict[str, Any]] = field(default_factory=list)


class Source:
    """Interim: one whole file as one piece (to be replaced by the streaming sources)."""

    def __init__(self, path: Path):
        self.path = path
        self.name = str(path)
        self.read = read_source(path)
        self.kind = self.read.kind
        self.columns = self.read.table.column_names
        self.rows_hint = self.read.table.num_rows
        self.base_dir = str(path if path.is_dir() else path.parent)
        self.files = 1
        self.ignored_files = self.read.ignored_files

    def pieces(self):
        yield Piece(self.read.table, self.name, 1, self.read.bad_rows)


def open_source(spec: Any, *, batch_rows: int = 65536) -> Source:
    return Source(Path(os.path.abspath(Path(spec).expanduser())))
