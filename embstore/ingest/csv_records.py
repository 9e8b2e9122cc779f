"""CSV records found in the raw bytes the way pyarrow's parser finds them, for what its block reader cannot do: a
header too wide to read, and rows larger than a block.

pyarrow's streaming reader needs each row to end in the block after the one it starts in: a row longer than a block
stops the whole file ("straddling object straddles two block boundaries"), and no block size is safe for every
file short of the file's size. So a file that stops so is read again from the first row not yet handed out, through
``Trimmed``: the bytes pass as they are, but each record over the row limit is replaced by one short line that
pyarrow reports as malformed (``placeholder``), so the reader quarantines that row with its size and the first bytes
of it, and goes on. Memory holds the record being looked at up to the limit, never the rest of it. Normal files
never pass through here: this Python pass costs about what pyarrow's parse does.

The quoting rules are pyarrow's: a quote opens a field only as the field's first character, ``""`` inside a
quoted field is a quote, and a line break (\\n, \\r or \\r\\n) outside quotes ends the record; a record with no byte
before its line break is a blank line, which is no row.
"""
from __future__ import annotations

import io
from typing import Any, BinaryIO, Callable, Iterator

CHUNK = 1 << 20  # bytes read at a time
MARK = b"\x00embstore-oversized-row-"  # starts a placeholder line (a NUL byte: no CSV value of a user's has it)


class Quotes:
    """Which bytes of a stream of chunks lie outside quoted fields; the state carries across chunks."""

    def __init__(self, delimiter: str):
        self.starts = {ord(delimiter), ord("\n"), ord("\r")}
        self.inside = self.pending = False  # pending: inside a field, a quote ended the previous chunk
        self.prev: int | None = None  # the byte before the chunk; None at the start of a record stream

    def outside(self, chunk: bytes) -> list[tuple[int, int]]:
        """The spans [a, b) of ``chunk`` outside quoted fields: where delimiters and line breaks are syntax."""
        spans: list[tuple[int, int]] = []
        at = 0
        if chunk and self.pending:
            self.pending = False
            if chunk[0] == ord('"'):
                at = 1  # "" split over two chunks: still inside
            else:
                self.inside = False
        while at < len(chunk):
            if self.inside:
                q = chunk.find(b'"', at)
                if q < 0:
                    break
                if q + 1 == len(chunk):
                    self.pending = True
                    break
                if chunk[q + 1] == ord('"'):
                    at = q + 2
                    continue
                self.inside, at = False, q + 1
                continue
            start, q = at, chunk.find(b'"', at)
            while q >= 0 and (chunk[q - 1] if q > 0 else self.prev) not in self.starts and not (
                    q == 0 and self.prev is None):
                q = chunk.find(b'"', q + 1)  # a quote inside an unquoted field is a character
            if q < 0:
                spans.append((start, len(chunk)))
                break
            spans.append((start, q))
            self.inside, at = True, q + 1
        if chunk:
            self.prev = chunk[-1]
        return spans


def _breaks(chunk: bytes, spans: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The ends (just after the line break) of the first and of the last line break outside quotes, else None."""
    first = last = None
    for a, b in spans:
        n, r = chunk.find(b"\n", a, b), chunk.find(b"\r", a, b)
        if n >= 0 or r >= 0:
            at = min(x for x in (n, r) if x >= 0)
            first = at + (2 if chunk[at:at + 2] == b"\r\n" and at + 1 < b else 1)
            break
    for a, b in reversed(spans):
        at = max(chunk.rfind(b"\n", a, b), chunk.rfind(b"\r", a, b))
        if at >= 0:
            last = at + 1
            break
    return None if first is None else (first, max(first, last or first))


def first_record(f: BinaryIO, delimiter: str, limit: int) -> tuple[int, int, bool]:
    """(its bytes, its fields, whether it ends before ``limit`` bytes) of the file's first record: its header."""
    quotes, size, fields = Quotes(delimiter), 0, 1
    while size <= limit and (chunk := f.read(min(CHUNK, 64 << 10 if size == 0 else CHUNK))):
        chunk = chunk.removeprefix(b"\xef\xbb\xbf") if size == 0 else chunk
        spans = quotes.outside(chunk)
        ends = _breaks(chunk, spans)
        stop = ends[0] if ends else len(chunk)
        fields += sum(chunk.count(delimiter.encode(), a, min(b, stop)) for a, b in spans if a < stop)
        size += stop
        if ends:
            return size, fields, size <= limit
    return size, fields, size <= limit


def skip_records(f: BinaryIO, delimiter: str, n: int) -> int:
    """The offset just after the first ``n`` records of the file (blank lines are no records)."""
    import re

    quotes, pos, length, seen = Quotes(delimiter), 0, 0, 0  # length: bytes of the record so far
    brk = re.compile(rb"\r\n|\r|\n")
    while seen < n and (chunk := f.read(CHUNK)):
        at = 0
        for a, b in quotes.outside(chunk):
            for m in brk.finditer(chunk, a, b):
                length += m.start() - at
                at = m.end()
                if length:
                    seen += 1
                    if seen == n:
                        return pos + at
                length = 0
        length += len(chunk) - at
        pos += len(chunk)
    return pos


def placeholder(n: int, delimiter: str, columns: int) -> bytes:
    """Line ``n``'s stand-in: one field more than the header has, so pyarrow hands it to the malformed-row handler."""
    return MARK + str(n).encode() + delimiter.encode() * columns + b"\n"


def placeholder_number(text: str) -> int | None:
    """The ``n`` of a placeholder line pyarrow reports as malformed, else None."""
    mark = MARK.decode()
    if not text.startswith(mark):
        return None
    digits = text[len(mark):].split(",", 1)[0].split("\t", 1)[0]
    return int(digits) if digits.isdigit() else None


class Trimmed(io.RawIOBase):
    """The bytes of ``f`` from where it stands, each record over ``limit`` bytes replaced by ``stand_in(size,
    first bytes)`` (a placeholder line): a file pyarrow's block reader can read to the end."""

    def __init__(self, f: BinaryIO, delimiter: str, limit: int, stand_in: Callable[[int, bytes], bytes]):
        super().__init__()
        self.f, self.limit, self.stand_in = f, limit, stand_in
        self.quotes = Quotes(delimiter)
        self.quotes.prev = ord("\n")  # ``f`` stands at the start of a record
        self.parts = self._parts()
        self.buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        """Fills ``b`` unless the file ends first: pyarrow takes what a read returns as a whole block."""
        view, n = memoryview(b).cast("B"), 0
        while n < len(view):
            if not self.buffer:
                self.buffer = next(self.parts, b"")
                if not self.buffer:
                    break
            take = min(len(view) - n, len(self.buffer))
            view[n:n + take] = self.buffer[:take]
            self.buffer = self.buffer[take:]
            n += take
        return n

    def close(self) -> None:
        self.f.close()
        super().close()

    def _parts(self) -> Iterator[bytes]:
        held: list[bytes] = []  # the record so far, while it is within the limit
        size, head = 0, b""  # its bytes so far; its first bytes, once it is over the limit
        while chunk := self.f.read(CHUNK):
            ends = _breaks(chunk, self.quotes.outside(chunk))
            if ends is None:  # the record goes on
                size += len(chunk)
                if size > self.limit and not head:
                    head, held = (b"".join(held) + chunk)[:1000], []
                elif not head:
                    held.append(chunk)
                continue
            first, last = ends
            size += first
            if size > self.limit:  # (a record that starts and ends in one chunk is shorter than the limit)
                yield self.stand_in(size, head or (b"".join(held) + chunk[:first])[:1000])
            else:
                yield b"".join(held) + chunk[:last]
                first = last
            if first < last:
                yield chunk[first:last]
            held, size, head = [chunk[last:]], len(chunk) - last, b""
        if size > self.limit:
            yield self.stand_in(size, head)
        elif size:
            yield b"".join(held)
