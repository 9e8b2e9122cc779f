"""CSV and TSV files, streamed: ``pyarrow.csv.open_csv`` reads one block (``BLOCK_BYTES``) at a time.

- Types are inferred from the first block only, as the streaming reader does. The block is large (16 MiB), so a small
  file is inferred from all of it, as ``read_csv`` would. When a later block holds a value the inferred type cannot
  take (a word in a column of numbers), the read stops with an InputError naming the file, the column and the row:
  move a row with such a value near the top, or convert the file to Parquet with that column's type given.
- A malformed row (too many or too few fields) is quarantined, with its line, by an ``invalid_row_handler``. That is a
  Python callback, and one called from pyarrow's thread pool can abort the interpreter at exit, so the reader runs
  single-threaded (``use_threads=False``): measured as fast as the threaded one for streaming, which parses serially.
- A quote that opens and never closes makes the rest of the file one value, which pyarrow accepts. The file's last
  value (and the last malformed row) are checked for the signs of it at the end of the file, and a parse error also
  sends the file through one streamed pass over its quotes: the error names the line where the quote opened. The last
  block's pieces are held back until that check, so the row holding the rest of the file is never handed out.
- Empty strings read as null (``strings_can_be_null``); an empty file is a one-line error.
- Text is UTF-8 unless ``encoding`` names another codec (pyarrow transcodes it; a byte that codec cannot decode stops
  the read with a one-line error). In UTF-8, a row holding bytes that are not UTF-8 is quarantined with the column
  and the byte, and the others go on: the parser keeps such values as they are (``check_utf8=False``, so a column
  is never read as binary and no value reaches the model as the repr of its bytes), and each block's text columns
  are validated before any of its rows is handed out.
- A row larger than ``ROW_BYTES`` (8 MiB) is quarantined with its size and first bytes, and the file read on. The
  block reader itself stops at a row that does not end in the next block ("straddling object"): the file is then read
  again, from the first row not yet handed out, through ``csv_records.Trimmed``, which stands a short malformed line
  in for each such row (see that module). Rows it reads whole are measured per block.
- A header of more than ``MAX_COLUMNS`` fields (or over ``ROW_BYTES``) is a one-line error, found before pyarrow
  reads it (a million columns took it two minutes).
- Memory: the parser holds about eight times a block while it works (some 130 MB), then one block's rows.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable, Iterator

import pyarrow as pa

from ..errors import InputError
from . import csv_records
from .locations import Loc
from .sources import MAX_COLUMNS, ROW_BYTES, Piece, too_many_columns

BLOCK_BYTES = 16 << 20  # the first block decides the column types
SCAN_BYTES = 1 << 20  # chunk size of the pass over a file's quotes
_CONVERSION = re.compile(r"In CSV column #(\d+): Row #(\d+): CSV conversion error to ([^:]+): (.*)", re.S)


class CsvTables:
    """The CSV (or TSV) files of one source; the first is opened (its first block read) to know the columns."""

    rows_hint = None
    ignored_files = 0

    def __init__(self, files: list[Loc], kind: str, batch_rows: int, encoding: str = "utf-8"):
        self.kind, self.batch_rows, self._locs, self.encoding = kind, batch_rows, files, encoding
        self.files = len(files)
        self._first: CsvFile | None = CsvFile(files[0], kind, encoding)
        self.columns = list(self._first.schema.names)

    def pieces(self) -> Iterator[Piece]:
        for i, loc in enumerate(self._locs):
            file = self._first if i == 0 and self._first is not None else CsvFile(loc, self.kind, self.encoding)
            self._first = None
            yield from file.pieces(self.batch_rows)


class CsvFile:
    """One CSV/TSV file opened for streaming: the constructor reads its first block and infers the schema."""

    def __init__(self, loc: Loc, kind: str, encoding: str = "utf-8"):
        self.loc, self.kind, self.encoding = loc, kind, encoding
        self.utf8 = is_utf8(encoding)
        self.delimiter = "\t" if kind == "tsv" else ","
        self.bad: list[dict[str, Any]] = []  # met since the last piece
        self.last_bad: dict[str, Any] | None = None
        self.bytewise = '",\t\r\n'.encode(encoding, errors="replace") == b'",\t\r\n'  # syntax in ASCII bytes
        self.header_fields = self._check_header() if self.bytewise else 0
        self.trimmed = False  # read through csv_records.Trimmed (a row did not fit the blocks)
        self.line_offset = 0  # records before the reader's first one, when it starts after the header
        self.handed_malformed = 0  # malformed rows in the pieces handed out
        self.oversized: dict[int, tuple[int, bytes]] = {}  # placeholder -> the size and first bytes of its row
        self.input: Any = loc.arrow_input()
        try:
            self.reader = self._reader()
        except pa.ArrowInvalid as e:
            if not self._reopen(e, 0):
                self._close()
                self._fail(e)
        except UnicodeDecodeError as e:
            self._close()
            self._undecodable(e)
        self.schema: pa.Schema = self.reader.schema

    def _reader(self, schema: pa.Schema | None = None) -> Any:
        """pyarrow's block reader of ``self.input``; given the ``schema``, one that starts after the header."""
        from pyarrow import csv

        parse = csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True,
                                 invalid_row_handler=self._on_invalid)
        read = csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False,
                               column_names=None if schema is None else schema.names,
                               **({} if self.utf8 else {"encoding": self.encoding}))
        convert = csv.ConvertOptions(strings_can_be_null=True, check_utf8=False, column_types=None if schema is None
                                     else {f.name: f.type for f in schema})
        return csv.open_csv(self.input, read_options=read, parse_options=parse, convert_options=convert)

    def _check_header(self) -> int:
        """The header's fields, or a one-line error when there are too many for pyarrow (or the row is too long)."""
        with self.loc.open() as f:
            size, fields, whole = csv_records.first_record(f, self.delimiter, ROW_BYTES)
        if fields > MAX_COLUMNS:
            raise too_many_columns(self.loc.shown, fields)
        if not whole:
            raise InputError(f"{self.loc.shown}: its header row is over {ROW_BYTES >> 20} MiB; give a file whose "
                             "first line names its columns")
        return fields

    def _reopen(self, error: Exception, done: int) -> bool:
        """After pyarrow's block reader stopped at a row too long for it: read the file again through ``Trimmed``
        from the record after the first ``done`` (the header and the rows handed out; 0: from the header). False
        when it cannot be (the row fits and something else is wrong; a file read so already; a wide encoding)."""
        if "straddling object" not in str(error) or self.trimmed or not self.bytewise:
            return False
        self._close()
        f = self.loc.open()
        try:
            f.seek(csv_records.skip_records(f, self.delimiter, done) if done else 0)
            self.input = csv_records.Trimmed(f, self.delimiter, ROW_BYTES, self._stand_in)
        except BaseException:
            f.close()
            raise
        self.trimmed, self.line_offset = True, done
        self.bad, self.last_bad = [], None  # those met by the reader that stopped: met again
        self.reader = self._reader(self.schema if done else None)
        return True

    def _stand_in(self, size: int, head: bytes) -> bytes:
        n = len(self.oversized)
        self.oversized[n] = (size, head)
        return csv_records.placeholder(n, self.delimiter, self.header_fields)

    def _on_invalid(self, row: Any) -> str:
        n = csv_records.placeholder_number(row.text) if self.trimmed else None
        if n is not None:  # a row too long for the reader, stood in for
            size, head = self.oversized.pop(n)
            self.bad.append({"row": row.number + self.line_offset, "reason": too_long(size),
                             "data": head.decode("utf-8", errors="backslashreplace") + "..."})
            return "skip"
        self.last_bad = {"row": row.number + self.line_offset, "reason": f"malformed {self.kind.upper()} row: "
                         f"expected {row.expected_columns} columns, found {row.actual_columns}", "data": row.text}
        self.bad.append(self.last_bad)
        return "skip"

    def _take_bad(self) -> list[dict[str, Any]]:
        bad, self.bad = self.bad, []
        return bad

    def _close(self) -> None:
        if not isinstance(self.input, str):
            self.input.close()

    def pieces(self, batch_rows: int) -> Iterator[Piece]:
        """The file's rows in pieces of at most ``batch_rows``; a block's pieces once the next block is read."""
        rows, held, pieces = 0, None, 0  # held: the last block read, and the bad rows met reading it
        try:
            while True:
                try:
                    batch = self.reader.read_next_batch()
                except StopIteration:
                    break
                except pa.ArrowInvalid as e:
                    if self._reopen(e, 1 + rows + self.handed_malformed):
                        held = None  # (read again by the new reader)
                        continue
                    self._fail(e)
                except UnicodeDecodeError as e:
                    self._undecodable(e)
                bad_text = self._unusable(batch, rows + (held[0].num_rows if held is not None else 0))
                if held is not None:
                    for piece in self._slices(*held, rows, batch_rows):
                        pieces += 1
                        yield piece
                    rows += held[0].num_rows
                held = (batch, self._take_bad() + bad_text)
            if (held is not None and self._may_end_in_open_quote(held[0])) or (
                    self.last_bad is not None and '"' in self.last_bad["data"]):  # a last record cut short by it
                self.check_quotes()
            if held is not None:
                for piece in self._slices(held[0], held[1] + self._take_bad(), rows, batch_rows):
                    pieces += 1
                    yield piece
                rows += held[0].num_rows
            if not pieces or self.bad:  # no data row (a header only), or rows quarantined after the last one
                yield Piece(self.schema.empty_table(), self.loc.url, rows + 1, self._take_bad())
        finally:
            self._close()

    def _slices(self, batch: pa.RecordBatch, bad: list[dict[str, Any]], rows: int,
                batch_rows: int) -> Iterator[Piece]:
        """The block's rows in pieces, less the rows that are not UTF-8 (quarantined in ``bad``): a piece never
        spans one, so that each piece's rows keep their numbers in the file."""
        self.handed_malformed += sum(1 for r in bad if not r.get("skip"))
        if batch.num_rows == 0 and bad:  # a block of malformed rows only
            yield Piece(self.schema.empty_table(), self.loc.url, rows + 1, bad)
        skip = sorted(r["row"] - rows - 2 for r in bad if r.get("skip"))  # (the header is row 1)
        for r in bad:
            r.pop("skip", None)
        runs, at = [], 0
        for n in skip + [batch.num_rows]:
            runs += [(start, min(batch_rows, n - start)) for start in range(at, n, batch_rows)]
            at = n + 1
        if not runs and bad and batch.num_rows:  # every row of the block was quarantined
            yield Piece(self.schema.empty_table(), self.loc.url, rows + 1, bad)
        for k, (start, length) in enumerate(runs):
            part = batch.slice(start, length)
            yield Piece(pa.Table.from_batches([part]), self.loc.url, rows + start + 1, bad if k == 0 else [])

    def _unusable(self, batch: pa.RecordBatch, rows: int) -> list[dict[str, Any]]:
        """The block's rows (``rows`` before it in the file) that are too long, or whose text is not valid UTF-8
        (not looked for when the file is transcoded: pyarrow's output is UTF-8 then), as quarantine records."""
        import pyarrow.compute as pc

        found: dict[int, str] = {}
        texts = [c for c in batch.columns if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)]
        if texts:
            sizes = pa.array([0] * batch.num_rows, pa.int64())
            for col in texts:
                sizes = pc.add(sizes, pc.fill_null(pc.binary_length(col), 0).cast(pa.int64()))
            if (pc.max(sizes).as_py() or 0) > ROW_BYTES:
                for n in pc.indices_nonzero(pc.greater(sizes, ROW_BYTES)).to_pylist():
                    found[n] = too_long(sizes[n].as_py())
        for c, name in enumerate(batch.schema.names if self.utf8 else []):
            col = batch.column(c)
            if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
                continue
            try:
                col.validate(full=True)
                continue
            except pa.ArrowInvalid:
                pass
            for n, raw in enumerate(col.cast(pa.binary() if pa.types.is_string(col.type) else pa.large_binary())
                                    .to_pylist()):
                if raw is None or n in found:
                    continue
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    near = raw[max(0, e.start - 20):e.start + 20].decode("utf-8", errors="backslashreplace")
                    found[n] = (f"not utf-8 text: column {name!r} has byte 0x{raw[e.start]:02x} at position "
                                f"{e.start} (in {near!r}); pass --encoding with the file's encoding (e.g. --encoding "
                                "latin-1), or save it as UTF-8")
        out = []
        for n, reason in sorted(found.items()):
            values = {name: _shown(batch.column(c), n) for c, name in enumerate(batch.schema.names)}
            values = {k: v[:1000] + "..." if isinstance(v, str) and len(v) > 1000 else v for k, v in values.items()}
            out.append({"row": rows + n + 2, "reason": reason, "data": json.dumps(values, ensure_ascii=False),
                        "skip": True})
        return out

    def _undecodable(self, e: UnicodeDecodeError) -> None:
        raise InputError(f"cannot read {self.loc.shown} as {self.kind.upper()} in {self.encoding}: {e}; pass "
                         "--encoding with the file's encoding") from None

    def _fail(self, e: Exception) -> None:
        """Raise the InputError a parse or conversion error of pyarrow's stands for."""
        message = str(e)
        first = message.splitlines()[0] if message else type(e).__name__
        shown, kind = self.loc.shown, self.kind.upper()
        if "Empty CSV file" in first and self.loc.size() == 0:
            raise InputError(f"{shown} is empty; give a file with a header row, then one row per item") from None
        conversion = _CONVERSION.match(message)
        if conversion:
            number, row, to, what = conversion.groups()
            if "\n" in what or "\r" in what:
                self.check_quotes()  # a value running over lines: maybe a quote that never closed
            column = self.schema.names[int(number)] if hasattr(self, "schema") else f"#{number}"
            what = (what.splitlines() or [""])[0][:200].removeprefix("invalid value ")
            if "UTF8" in what:
                raise InputError(f"{shown}: column {column!r} holds text that is not UTF-8 on row {row} of the file "
                                 "(the header is row 1); save the file as UTF-8") from None
            raise InputError(f"{shown}: column {column!r} was read as {to} from the file's first "
                             f"{BLOCK_BYTES >> 20} MiB, but row {row} of the file (the header is row 1) holds "
                             f"{what}; move a row with such a value near the top, or convert the file to Parquet "
                             "with that column's type given") from None
        self.check_quotes()  # a header whose quote never closes reads as "empty file"
        raise InputError(f"cannot read {shown} as {kind}: {first}") from None

    def _may_end_in_open_quote(self, last: pa.RecordBatch) -> bool:
        """Whether the file may end inside a quoted field that never closed, which pyarrow accepts: the field then runs
        to the end of the file, so it is the last column of the last row and holds the rest of the file. Normal files
        pay one value's look (no line break in it); a last value with a line break (a multi-line quoted text) is
        compared with the file's last bytes: an open quote leaves exactly '"' and the value, its quotes doubled, at the
        end."""
        if last.num_rows == 0 or last.num_columns == 0:
            return False
        try:
            value = last.column(last.num_columns - 1)[-1].as_py()
        except (UnicodeDecodeError, pa.ArrowInvalid):  # a row that is not UTF-8 (quarantined): no open quote
            return False
        if not isinstance(value, str) or ("\n" not in value and "\r" not in value):
            return False
        tail = b'"' + value.encode("utf-8").replace(b'"', b'""')
        with self.loc.open() as f:
            size = f.seek(0, os.SEEK_END)
            if size < len(tail):
                return False
            f.seek(size - len(tail))
            return f.read() == tail

    def check_quotes(self) -> None:
        """Raise InputError when a quoted field of the file opens and never closes (one streamed pass)."""
        with self.loc.open() as f:
            line = open_quote_line(iter(lambda: f.read(SCAN_BYTES), b""), self.delimiter)
        if line is not None:
            raise InputError(f"{self.loc.shown}: a quote opened on line {line} is never closed, so the rest of the "
                             f"file would read as one value; close or remove that quote")


def too_long(size: int) -> str:
    """The quarantine reason of a row (or a JSON line) of ``size`` bytes."""
    return (f"row too long: {size:,} bytes, over the limit of {ROW_BYTES:,} per row; shorten its values (a model "
            "reads the first few hundred words of a text)")


def is_utf8(encoding: str) -> bool:
    """Whether ``encoding`` is a name of UTF-8; an unknown codec is a one-line error."""
    import codecs

    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        raise InputError(f"unknown --encoding {encoding!r}; give a Python codec name such as utf-8, latin-1, "
                         "cp1252 or utf-16") from None


def _shown(col: Any, n: int) -> Any:
    """A value for a quarantine record: text with undecodable bytes shown as \\x escapes."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        raw = col.cast(pa.binary() if pa.types.is_string(col.type) else pa.large_binary())[n].as_py()
        return None if raw is None else raw.decode("utf-8", errors="backslashreplace")
    return col[n].as_py()


def open_quote_line(chunks: Iterable[bytes], delimiter: str) -> int | None:
    """The line of a quote that opens a field and never closes, else None. Follows pyarrow's parser: a quote opens a
    field only as the field's first character, ``""`` inside it is a quote, and the next lone quote closes it (what
    follows, up to the delimiter, belongs to the field, quotes included). Streams: state carries across chunks."""
    starts = {ord(delimiter), ord("\n"), ord("\r")}
    line, opened_on = 1, 0
    inside = pending = False  # pending: inside a field, a quote ended the previous chunk (closing, or half of "")
    prev: int | None = None  # the byte before the chunk; None at the start of the file
    for chunk in _without_bom(chunks):
        if not chunk:
            continue
        at = 0
        if pending:
            pending = False
            if chunk[0] == ord('"'):
                at = 1  # "" split over two chunks: still inside
            else:
                inside = False
        counted = at  # the line count covers the chunk up to here
        crlf_split = prev == ord("\r") and chunk[0] == ord("\n")
        if crlf_split:
            line -= 1  # counted as a line break at the \r; the \n after it is the same break
        while True:
            q = chunk.find(b'"', at)
            if q < 0:
                break
            if inside:
                if q + 1 == len(chunk):
                    pending = True
                    break
                if chunk[q + 1] == ord('"'):
                    at = q + 2
                    continue
                inside, at = False, q + 1
                continue
            before = chunk[q - 1] if q > 0 else prev
            if before is None or before in starts:
                line += _breaks(chunk, counted, q)
                counted, inside, opened_on = q, True, line
            at = q + 1
        line += _breaks(chunk, counted, len(chunk))
        prev = chunk[-1]
    return opened_on if inside and not pending else None  # pending at the end: the file's last quote closes


def _without_bom(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks, a UTF-8 byte order mark at the start of the file left out (however the chunks split it)."""
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head) >= 3:
            break
    yield head.removeprefix(b"\xef\xbb\xbf")
    yield from it


def _breaks(data: bytes, start: int, end: int) -> int:
    """Line breaks in data[start:end]: \\n, \\r and \\r\\n each count once."""
    return data.count(b"\n", start, end) + data.count(b"\r", start, end) - data.count(b"\r\n", start, end)
