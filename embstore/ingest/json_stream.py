"""JSON lines (.jsonl, .ndjson, .json), streamed a line at a time: a piece is built from up to ``batch_rows`` good
lines, so memory holds one piece, not the file.

A line that is not JSON, or not a JSON object, is quarantined with its line number and the others go on. So is a line
whose field holds another kind of value (text, a number, a boolean, a list, an object) than that field's first
value: the first value is remembered across pieces and files, and the reason names both lines (and the other file).
Blank lines are no rows. A file whose first character is '[' holds one JSON array of objects: it is read whole (JSON
has no way to stream its elements without a streaming parser), then handed out in pieces like the rest.
Lines are decoded strictly in the file's ``encoding`` (UTF-8 by default): a line that does not decode is quarantined
with the byte that failed, never read with U+FFFD in place of its bytes (an array that does not decode is refused).
A line over ``ROW_BYTES`` (8 MiB) is quarantined with its size and first bytes, as a CSV row is: lines are split
from chunks read a megabyte at a time, so memory holds a line up to the limit, never the rest of one longer.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import pyarrow as pa

from ..errors import InputError
from .locations import Loc
from .sources import ROW_BYTES, Piece

CHUNK = 1 << 20  # bytes read at a time


class JsonTables:
    """The JSONL files of one source; the first piece of the first file is read at open to know the columns."""

    rows_hint = None
    ignored_files = 0

    def __init__(self, files: list[Loc], batch_rows: int, encoding: str = "utf-8"):
        self.files, self.encoding = len(files), encoding
        self._locs, self.batch_rows = files, batch_rows
        self._first: dict[str, tuple[str, int, Loc]] = {}  # field -> kind of its first value, its line and file
        self._stream = self._all()
        self._peeked: Piece | None = next(self._stream, None)
        self.columns = self._peeked.table.column_names if self._peeked is not None else []

    def pieces(self) -> Iterator[Piece]:
        if self._peeked is not None:
            piece, self._peeked = self._peeked, None
            yield piece
        yield from self._stream

    def _all(self) -> Iterator[Piece]:
        for loc in self._locs:
            yield from self._file(loc)

    def _file(self, loc: Loc) -> Iterator[Piece]:
        good: list[dict[str, Any]] = []
        bad: list[dict[str, Any]] = []
        rows = pieces = 0
        for number, value, error in _records(loc, self.encoding):
            if error is not None:
                bad.append({"row": number, "reason": error, "data": value[:1000]})
            else:
                reason = self._check(loc, number, value)
                if reason is None:
                    good.append(value)
                else:
                    bad.append({"row": number, "reason": reason, "data": json.dumps(value)[:1000]})
            if len(good) == self.batch_rows or len(bad) == self.batch_rows:
                yield Piece(_table(loc, good), loc.url, rows + 1, bad)
                rows, pieces, good, bad = rows + len(good), pieces + 1, [], []
        if good or bad or not pieces:
            yield Piece(_table(loc, good), loc.url, rows + 1, bad)

    def _check(self, loc: Loc, number: int, obj: Any) -> str | None:
        """Why a parsed line cannot be a row, or None; a good row's fields set the kinds later rows must keep."""
        if not isinstance(obj, dict):
            return "not a JSON object"
        kinds = {k: _kind(v) for k, v in obj.items()}
        clash = next((k for k, kind in kinds.items() if kind and k in self._first and self._first[k][0] != kind), None)
        if clash is not None:  # a column holds one type: the row that breaks it is quarantined, the rest goes on
            kind, line, where = self._first[clash]
            other = "" if where == loc else f" of {where.shown}"
            return (f"field {clash!r} holds {kinds[clash]} here but {kind} on line {line}{other}; "
                    "make each field one type")
        for k, kind in kinds.items():
            if kind:
                self._first.setdefault(k, (kind, number, loc))
        return None


def _records(loc: Loc, encoding: str = "utf-8") -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed value, None) for each non-blank line, or (line number, the line, why it is no row); for
    a JSON array, (position in it, element, None)."""
    import codecs

    from .csv_stream import is_utf8, too_long

    utf8 = is_utf8(encoding)
    encoding = "utf-8" if utf8 else codecs.lookup(encoding).name
    if not utf8 and codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        yield from _records_wide(loc, encoding)
        return
    with loc.open() as f:
        head = f.read(4096)
        while head.strip() == b"" and (more := f.read(4096)):
            head = more
        if head.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"["):
            f.seek(0)
            try:
                rows = json.loads(f.read().decode("utf-8-sig" if utf8 else encoding))
            except UnicodeDecodeError as e:
                raise InputError(f"{loc.shown} is not {encoding} text (byte 0x{e.object[e.start]:02x} at offset "
                                 f"{e.start}); pass --encoding with the file's encoding, or save it as UTF-8") from None
            except json.JSONDecodeError as e:
                raise InputError(f"{loc.shown} is not valid JSON: {e}") from None
            for i, row in enumerate(rows if isinstance(rows, list) else [rows]):
                yield i + 1, row, None
            return
        f.seek(0)
        for number, (raw, size, first) in enumerate(_lines(f, ROW_BYTES), start=1):
            if raw is None:
                yield number, first.decode(encoding, errors="backslashreplace")[:997] + "...", too_long(size)
                continue
            try:
                line = raw.decode(encoding).rstrip("\r\n")
            except UnicodeDecodeError as e:
                yield number, raw.decode(encoding, errors="backslashreplace").rstrip("\r\n"), (
                    f"not {encoding} text: byte 0x{raw[e.start]:02x} at position {e.start} of the line; pass "
                    "--encoding with the file's encoding (e.g. --encoding latin-1), or save it as UTF-8")
                continue
            if number == 1:
                line = line.removeprefix("\ufeff")
            yield from _parsed(number, line)


def _lines(f: Any, limit: int) -> Iterator[tuple[bytes | None, int, bytes]]:
    """Each line of a binary file as (its bytes with the line break, its size, b""), or, for a line over ``limit``
    bytes, (None, its size, its first 1000 bytes): its bytes past the limit are read and let go."""
    held: list[bytes] = []  # the line so far, while it is within the limit
    size, first, over = 0, b"", False
    while chunk := f.read(CHUNK):
        at = 0
        while (end := chunk.find(b"\n", at)) >= 0:
            part = chunk[at:end + 1]
            size += len(part)
            if over or size > limit:
                yield None, size, first if over else _first(held, part)
            else:
                yield (b"".join(held) + part if held else part), size, b""
            held, size, first, over, at = [], 0, b"", False, end + 1
        rest = chunk[at:]
        size += len(rest)
        if rest and not over:
            if size > limit:
                first, held, over = _first(held, rest), [], True
            else:
                held.append(rest)
    if over:
        yield None, size, first
    elif size:
        yield b"".join(held), size, b""


def _first(held: list[bytes], more: bytes, n: int = 1000) -> bytes:
    """The first ``n`` bytes of ``held`` and then ``more``, without joining them."""
    out = b""
    for part in (*held, more):
        out += part[:n - len(out)]
        if len(out) >= n:
            break
    return out


def _parsed(number: int, line: str) -> Iterator[tuple[int, Any, str | None]]:
    if not line.strip():
        return
    try:
        yield number, json.loads(line), None
    except json.JSONDecodeError as e:
        yield number, line, f"invalid JSON: {e.msg}"


def _records_wide(loc: Loc, encoding: str) -> Iterator[tuple[int, Any, str | None]]:
    """UTF-16/32 lines (a byte split at b'\\n' would cut a character): decoded as a text stream."""
    import io

    from .csv_stream import too_long

    unit = "utf-16-le" if "16" in encoding else "utf-32-le"  # (the same bytes per character as BE and with a BOM)
    limit = ROW_BYTES // (2 if "16" in encoding else 4)  # characters: a line over it is over ROW_BYTES
    with loc.open() as f:
        text = io.TextIOWrapper(f, encoding=encoding, errors="strict", newline="")
        number = 0
        try:
            while line := text.readline(limit + 1):
                number += 1
                if len(line) > limit and not line.endswith(("\n", "\r")):  # over the limit: read on and let go
                    size, first = len(line.encode(unit)), line[:997]
                    while more := text.readline(limit):
                        size += len(more.encode(unit))
                        if more.endswith(("\n", "\r")):
                            break
                    yield number, first + "...", too_long(size)
                    continue
                yield from _parsed(number, line.rstrip("\r\n").removeprefix("\ufeff"))
        except UnicodeDecodeError as e:
            raise InputError(f"{loc.shown} is not {encoding} text after line {number} ({e.reason}); pass --encoding "
                             "with the file's encoding") from None


def _table(loc: Loc, rows: list[dict[str, Any]]) -> pa.Table:
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(f"{loc.shown}: a column mixes types ({str(e).splitlines()[0]}); make each field one type"
                         ) from None


def _kind(value: Any) -> str | None:
    """A JSON value's kind as a column sees it (int and float are both numbers); None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "text", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
