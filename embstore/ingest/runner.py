"""The ingest pipeline: read -> validate + dedupe (images: read and hash in threads) -> encode (images: decode
and preprocess in worker processes, streamed into the model) -> write + commit -> index. Each chunk of
up to ``commit_rows`` rows (the first 256, each next one what the run does in about 20 s) is
committed on its own, so a crash loses at most the chunks not yet committed: the one being written and the one
being encoded. On a GPU a chunk is written, committed and added to the space's index in a background thread while
the next chunk is read and encoded (text; images overlap the next chunk's hashing pass only, since their decoders
fork); on the CPU, where the model keeps every core busy, in turn."""
from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from ..encoders import Encoder, load_image
from ..errors import InputError
from .hashing import content_hash, row_ids
from .readers import ReadResult

RESERVED = ("id", "content_hash")
Progress = Callable[[str, int, int], None]


@dataclass
class IngestReport:
    """What one ingest did. ``read == added + duplicates + quarantined`` always holds."""

    collection: str
    space: str
    encoder: str
    source: str
    read: int = 0
    added: int = 0
    duplicates: int = 0
    quarantined: int = 0
    embedded: int = 0  # vectors computed by the encoder
    reused: int = 0  # vectors copied from items with the same content
    reasons: dict[str, int] = field(default_factory=dict)
    quarantine_file: str | None = None
    ignored_files: int = 0
    new_columns: list[str] = field(default_factory=list)  # columns the collection's earlier items do not have
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    """What to read from the table: resolved once, before any row is touched."""

    modality: str  # text | image
    content_column: str
    id_column: str | None
    base_dir: Path  # relative image paths resolve against this


class Quarantine:
    """Rejected rows, each with its reason, appended to one JSONL file per ingest run."""

    def __init__(self, root: Path, collection: str, source: str):
        self.rel = f"quarantine/{collection}/{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
        self.path = root / self.rel
        self.source = source
        self.reasons: Counter[str] = Counter()
        self.count = 0

    def add(self, row: int | None, reason: str, data: Any, line: int | None = None) -> None:
        """``row``: the 1-based data row among the rows that parsed; ``line``: the file line of a row that did not."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"source": self.source, "row": row, "reason": reason, "data": data}
        if line is not None:
            record["line"] = line
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        self.reasons[reason.split(":")[0]] += 1
        self.count += 1


def plan_for(read: ReadResult, source: Path, text_column: str | None, image_column: str | None,
             id_column: str | None) -> Plan:
    cols = read.table.column_names
    listing = ", ".join(cols) or "(none)"
    if text_column and image_column:
        raise InputError("give --text-column or --image-column, not both")
    if read.kind == "folder":
        modality, content = "image", "path"
    elif image_column:
        modality, content = "image", image_column
    else:
        modality, content = "text", text_column or "text"
    if content not in cols:
        hint = "--text-column or --image-column" if not (text_column or image_column) else "another column"
        raise InputError(f"column {content!r} is not in {source.name}; its columns are: {listing}; pass {hint}")
    if id_column is None and "id" in cols:
        id_column = "id"  # the user's id column, when there is one
    if id_column is not None and id_column not in cols:
        raise InputError(f"id column {id_column!r} is not in {source.name}; its columns are: {listing}")
    for name in cols:
        if name in RESERVED and name != id_column:
            raise InputError(f"column {name!r} in {source.name} is reserved by embstore; rename it")
    base = source if source.is_dir() else source.parent
    return Plan(modality, content, id_column, base.resolve())


class IngestRun:
    """One ingest of one source into one collection and one space; the Store supplies storage and commits."""

    def __init__(self, store: Any, collection: str, space: str, encoder: Encoder, plan: Plan, read: ReadResult,
                 source: Path, settings: Any, progress: Progress | None = None, factory: str | None = None):
        self.store, self.collection, self.space, self.encoder = store, collection, space, encoder
        self.factory = factory  # the index the user asked for (--index), else None: chosen by size
        self.plan, self.read, self.settings = plan, read, settings
        self.progress = progress or (lambda stage, done, total: None)
        self.report = IngestReport(collection, space, encoder.spec, str(source), read=read.table.num_rows,
                                   ignored_files=read.ignored_files)
        self.quarantine = Quarantine(store.root, collection, str(source))
        self.timings: Counter[str] = Counter()
        self.writer: ThreadPoolExecutor | None = None
        self.writing: Any = None  # the future of the chunk being written
        self.pending: dict[str, np.ndarray] = {}  # its vectors by content hash, until its shard is listed
        self.expect_rows = 0
        self.run_values: dict[str, str] = {}  # user id -> value digest of the items this ingest added
        # write in the background while the model works on an accelerator; on the CPU the model's threads already
        # use every core, and a writer beside them only makes them wait for each other (measured: bench/RESULTS.md)
        self.background = BACKGROUND if BACKGROUND is not None else not str(settings.device).startswith("cpu")

    # ----------------------------------------------------------------------------------------------------------
    def run(self) -> IngestReport:
        for bad in self.read.bad_rows:  # rows the reader could not parse at all: located by their line in the file
            self.quarantine.add(None, bad["reason"], bad["data"], line=bad["row"])
        self.report.read += len(self.read.bad_rows)
        table = self.read.table
        existing_items = self.store._item_hashes(self.collection)  # id -> content_hash
        existing_space = self.store._space_ids(self.collection, self.space)

        def known_vectors(collection: str, space: str, hashes: set[str]) -> dict[str, np.ndarray]:
            """Vectors the space has for these contents: committed, or in the chunk being written."""
            pending = self.pending
            out = {h: pending[h] for h in hashes if h in pending}
            return out | self.store._space_vectors_by_hash(collection, space, hashes - out.keys())
        total = table.num_rows
        step = self.settings.commit_rows
        # the space's size when every row is new: the index grows, chunk by chunk, as the one that size needs
        self.expect_rows = self.store.space(self.collection, self.space)["rows"] + total
        self.progress("ingest", 0, total)
        with ThreadPoolExecutor(self.settings.workers) as pool, ThreadPoolExecutor(1) as self.writer:
            try:
                start, size = 0, min(step, FIRST_CHUNK)
                while start < total:
                    chunk = table.slice(start, size)
                    t = time.perf_counter()
                    self._chunk(chunk, start, existing_items, existing_space, known_vectors, pool)
                    start += chunk.num_rows
                    # the next chunk: what this run does in COMMIT_SECONDS at the rate just measured, up to
                    # commit_rows: a first commit soon, and a slow model (images on a CPU) never holds minutes of
                    # work uncommitted, while a fast one writes few, large shards
                    rate = chunk.num_rows / max(time.perf_counter() - t, 1e-9)
                    size = int(min(step, max(FIRST_CHUNK, rate * COMMIT_SECONDS)))
            except BaseException:
                self._settle(raise_error=False)  # never leave a write running; the first error is the one raised
                raise
            self._settle()
        r = self.report
        r.quarantined = self.quarantine.count
        r.reasons = dict(self.quarantine.reasons)
        r.quarantine_file = self.quarantine.rel if self.quarantine.count else None
        r.seconds = {k: round(v, 3) for k, v in self.timings.items()}
        assert r.read == r.added + r.duplicates + r.quarantined, r  # counts add up, or it is a bug
        return r

    # ----------------------------------------------------------------------------------------------------------
    def _chunk(self, chunk: pa.Table, offset: int, existing_items: dict[str, str], existing_space: set[str],
               known_vectors: Callable[..., dict[str, np.ndarray]], pool: ThreadPoolExecutor) -> None:
        t = time.perf_counter()
        plan = self.plan
        ids = (self._user_ids(chunk, offset) if plan.id_column else row_ids(chunk))  # from the rows as given
        if plan.modality == "image":
            chunk = self._resolve_paths(chunk)  # after the ids: a moved dataset keeps its ids
        content = chunk.column(plan.content_column).to_pylist()
        self.timings["prepare"] += time.perf_counter() - t

        # which rows to keep, which are duplicates, which need an embedding
        t = time.perf_counter()
        payloads: dict[int, Any] = {}
        hashes: dict[int, str] = {}
        candidates = []

        values = self._values(chunk) if plan.id_column else None  # the rest of each row, to compare by id
        same: list[int] = []  # rows whose id is an item with the same content: are their other values the same?

        def settled(i: int, digest: str) -> bool:
            """Whether this row's id is already an item and that decides the row: a duplicate when this space has
            its vector, quarantined when its content changed. (Same content, no vector in this space yet: not
            settled, the space still needs the vector.)"""
            stored = existing_items.get(ids[i])
            if stored is None or (ids[i] not in existing_space and stored == digest):
                return False
            if stored != digest:
                fix = "items are not updated in place: rename the file, and its new path is a new item" \
                    if plan.modality == "image" and not plan.id_column else "give the new content a new id"
                self.quarantine.add(offset + i + 1, f"id already in collection with different content: {ids[i]}; "
                                    f"{fix}", _row(chunk, i))
            elif values is not None:
                same.append(i)
            else:
                self.report.duplicates += 1
            return True

        for i, (item_id, value) in enumerate(zip(ids, content)):
            row = offset + i + 1
            if item_id is None:
                continue  # quarantined by _user_ids
            if plan.modality == "text":
                if value is None or not str(value).strip():
                    self.quarantine.add(row, f"empty text in column {plan.content_column!r}", _row(chunk, i))
                    continue
                payloads[i] = str(value)
                hashes[i] = content_hash(payloads[i])
                if settled(i, hashes[i]):
                    continue
            candidates.append(i)
        fresh: set[str] = set()  # content hashes embedded in this chunk
        if plan.modality == "image":
            candidates = self._hash_images(chunk, candidates, offset, payloads, hashes, pool, settled)
        if same:
            self._same_values(chunk, same, ids, values, offset)
        self.timings["validate" if plan.modality == "text" else "load"] += time.perf_counter() - t
        if plan.modality == "image":  # decode and embed before the rows are counted: a broken image is quarantined
            self._settle()  # the decoders fork: not while a write (FAISS threads, file handles) is under way
            t = time.perf_counter()
            vectors = known_vectors(self.collection, self.space, set(hashes[i] for i in candidates))
            candidates = self._embed_images(chunk, candidates, offset, payloads, hashes, ids, vectors, fresh,
                                            lambda share: self._tick(offset, chunk.num_rows, share))
            self.timings["encode"] += time.perf_counter() - t

        # within-input repeats of one id
        keep, new_items = [], []
        for i in candidates:
            item_id = ids[i]
            if item_id in existing_items and item_id in existing_space:
                if existing_items[item_id] == hashes[i]:
                    self._repeat(chunk, i, item_id, None if values is None else values[i], offset)
                else:
                    self.quarantine.add(offset + i + 1, f"id repeated in input with different content: {item_id}",
                                        _row(chunk, i))
                continue
            keep.append(i)
            existing_space.add(item_id)
            if item_id not in existing_items:
                existing_items[item_id] = hashes[i]
                if values is not None:
                    self.run_values[item_id] = values[i]
                new_items.append(i)
                self.report.added += 1
            else:
                self.report.duplicates += 1  # already an item; only the space was missing its vector

        # embed each distinct new content once; reuse vectors the space already has
        if plan.modality == "text":
            t = time.perf_counter()
            vectors = known_vectors(self.collection, self.space, set(hashes[i] for i in keep))
            first: dict[str, int] = {}
            for i in keep:
                if hashes[i] not in vectors:
                    first.setdefault(hashes[i], i)
            if first:
                texts = [payloads[i] for i in first.values()]
                piece = self.settings.batch_size * PROGRESS_BATCHES  # the model's calls: progress between them
                out = []
                for start in range(0, len(texts), piece):
                    out.extend(self.encoder.encode_text(texts[start:start + piece], self.settings.batch_size))
                    self._tick(offset, chunk.num_rows, min(start + piece, len(texts)) / len(texts))
                vectors.update(zip(first, out))
                fresh.update(first)
            self.timings["encode"] += time.perf_counter() - t
        embedded = len(fresh.intersection(hashes[i] for i in keep))
        self.report.embedded += embedded
        self.report.reused += len(keep) - embedded

        # write + commit: new items, and the space's vectors for every kept row, in one manifest update; then the
        # index takes them. In the background, while the next chunk is read and encoded.
        t = time.perf_counter()
        items = chunk.take(pa.array(new_items, pa.int64())) if new_items else None
        if items is not None:
            items = _with_system_columns(items, [ids[i] for i in new_items], [hashes[i] for i in new_items])
        emb = np.stack([vectors[hashes[i]] for i in keep]) if keep else np.zeros((0, self.encoder.dim), np.float32)
        space_rows = pa.table({"id": pa.array([ids[i] for i in keep], pa.string()),
                               "content_hash": pa.array([hashes[i] for i in keep], pa.string())})
        self.timings["prepare"] += time.perf_counter() - t
        if not self.background:
            self._write(items, space_rows, emb)
        else:
            self._settle()  # one chunk in flight: commits stay in order, memory holds two chunks at most
            self.pending = {hashes[i]: vectors[hashes[i]] for i in keep}
            self.writing = self.writer.submit(self._write, items, space_rows, emb)
        self.progress("ingest", offset + chunk.num_rows, self.read.table.num_rows)  # read and encoded

    def _tick(self, offset: int, rows: int, share: float) -> None:
        """Progress within a chunk: ``share`` of its embedding done (the rows count when it is handed to the
        writer)."""
        self.progress("ingest", offset + min(int(rows * share), rows - 1), self.read.table.num_rows)

    def _write(self, items: pa.Table | None, space_rows: pa.Table, emb: np.ndarray) -> None:
        t = time.perf_counter()
        self.store._commit_chunk(self.collection, self.space, self.encoder, self.plan, items, space_rows, emb,
                                 self.report)
        self.timings["write"] += time.perf_counter() - t
        t = time.perf_counter()
        self.store._grow_index(self.collection, self.space, self.expect_rows, self.factory)
        self.timings["index"] += time.perf_counter() - t

    def _settle(self, raise_error: bool = True) -> None:
        """Wait for the chunk being written; raise what went wrong in it (unless another error is on its way)."""
        writing, self.writing = self.writing, None
        if writing is None:
            return
        try:
            writing.result()
        except BaseException:
            if raise_error:
                raise

    def _compared(self, columns: list[str]) -> list[str]:
        """The columns that must match for a row to be a duplicate of the item with its id (its content is
        compared by hash)."""
        return [c for c in columns if c not in (self.plan.id_column, self.plan.content_column, *RESERVED)]

    def _values(self, chunk: pa.Table) -> list[str]:
        """Per row, a digest of its compared columns' values."""
        cols = self._compared(chunk.column_names)
        data = [chunk.column(c).to_pylist() for c in cols]
        return [value_digest(row) for row in zip(*data)] if cols else [""] * chunk.num_rows

    def _same_values(self, chunk: pa.Table, rows: list[int], ids: list[Any], values: list[str], offset: int) -> None:
        """Rows whose id is an item with the same content: duplicates when their other values are the item's too;
        quarantined, naming the columns, when not (items are not updated in place: nothing is dropped unseen)."""
        cols = self._compared(chunk.column_names)
        stored = self.store._item_values(self.collection, [ids[i] for i in rows if ids[i] not in self.run_values],
                                         cols)
        for i in rows:
            item_id = ids[i]
            if item_id in self.run_values:  # added by this ingest: compared by digest
                self._repeat(chunk, i, item_id, values[i], offset)
                continue
            changed = changed_columns(cols, stored.get(item_id, [None] * len(cols)),
                                      [chunk.column(c)[i].as_py() for c in cols])
            if not changed:
                self.report.duplicates += 1
            else:
                self.quarantine.add(offset + i + 1, other_values(changed, item_id), _row(chunk, i))

    def _repeat(self, chunk: pa.Table, i: int, item_id: str, value: str | None, offset: int) -> None:
        """A row repeating an id (with its content) that this ingest has kept: a duplicate, unless its other
        values (``value``: their digest, None when ids are row hashes) differ from the kept row's."""
        if value is not None and self.run_values.get(item_id, value) != value:
            self.quarantine.add(offset + i + 1, f"id repeated in input with other values: {item_id}", _row(chunk, i))
        else:
            self.report.duplicates += 1

    def _user_ids(self, chunk: pa.Table, offset: int) -> list[str | None]:
        out: list[str | None] = []
        for i, value in enumerate(chunk.column(self.plan.id_column).to_pylist()):
            if value is None or (isinstance(value, str) and not value.strip()):
                self.quarantine.add(offset + i + 1, f"missing id in column {self.plan.id_column!r}", _row(chunk, i))
                out.append(None)
            else:
                out.append(str(value))
        return out

    def _resolve_paths(self, chunk: pa.Table) -> pa.Table:
        col = self.plan.content_column
        base = self.plan.base_dir
        resolved = [None if v is None else os.path.normpath(base / os.path.expanduser(str(v)))
                    if not os.path.isabs(str(v)) else os.path.normpath(str(v)) for v in chunk.column(col).to_pylist()]
        return chunk.set_column(chunk.column_names.index(col), col, pa.array(resolved, pa.string()))

    def _hash_images(self, chunk: pa.Table, candidates: list[int], offset: int, payloads: dict[int, Any],
                     hashes: dict[int, str], pool: ThreadPoolExecutor,
                     settled: Callable[[int, str], bool]) -> list[int]:
        """Read and hash each image file in worker threads; quarantine what cannot be read. An id already stored
        with the same bytes is a duplicate; with other bytes, it is quarantined. Returns the rows left to embed."""
        paths = chunk.column(self.plan.content_column).to_pylist()

        def read(i: int) -> tuple[int, str | None, str | None]:
            if paths[i] is None:
                return i, None, f"empty image path in column {self.plan.content_column!r}"
            data, error = _read_file(paths[i])
            return i, None if data is None else content_hash(data), error

        ok = []
        for i, digest, error in pool.map(read, candidates):
            if error:
                self.quarantine.add(offset + i + 1, error, _row(chunk, i))
            elif not settled(i, digest):
                payloads[i], hashes[i] = paths[i], digest
                ok.append(i)
        return ok

    def _embed_images(self, chunk: pa.Table, candidates: list[int], offset: int, payloads: dict[int, Any],
                      hashes: dict[int, str], ids: list[Any], vectors: dict[str, np.ndarray],
                      fresh: set[str], on_batch: Callable[[float], None] | None = None) -> list[int]:
        """Decode, preprocess and embed what the space has no vector for, streamed through the model a batch at a
        time (decoded in worker processes when there are many); quarantine rows whose image does not decode;
        return the others.

        Only the first usable row of each id needs a vector (later rows of the id are duplicates or quarantined
        below), and each distinct content is decoded from one of its rows. Broken bytes are broken for every row
        that has them; a file that vanished or changed since it was hashed fails its own row only, and the content
        is tried again from another row that has it. Each file is read twice, to hash and to decode, so that memory
        never holds a chunk's worth of file bytes or decoded images."""
        by_id: dict[Any, list[int]] = {}
        for i in candidates:
            by_id.setdefault(ids[i], []).append(i)
        broken: dict[str, tuple[str, str]] = {}  # content hash -> (reason, the file it names)
        failed: dict[int, str] = {}  # row -> what went wrong with its own file
        encoder = None
        while True:
            need: dict[str, int] = {}
            for rows in by_id.values():
                live = next((i for i in rows if i not in failed and hashes[i] not in broken), None)
                if live is not None and hashes[live] not in vectors:
                    need.setdefault(hashes[live], live)
            if not need:
                break
            encoder = encoder or self.encoder.load()  # here: a load error must not read as a broken image
            todo = list(need.items())
            seen = 0
            for done, batch, errors in decode_batches([payloads[i] for _, i in todo], [h for h, _ in todo],
                                                      encoder.preprocess, self.settings.batch_size,
                                                      self.settings.workers):
                for k, (kind, reason) in errors:
                    digest, i = todo[k]
                    if kind == "content":
                        broken[digest] = (reason, payloads[i])
                    else:
                        failed[i] = reason
                if done:
                    out = encoder.encode_preprocessed(batch)
                    vectors.update(zip((todo[k][0] for k in done), out))
                    fresh.update(todo[k][0] for k in done)
                seen += len(done) + len(errors)
                if on_batch is not None:
                    on_batch(seen / len(todo))
        ok = []
        for i in candidates:
            if i in failed:
                self.quarantine.add(offset + i + 1, failed[i], _row(chunk, i))
            elif hashes[i] in broken:
                reason, named = broken[hashes[i]]  # it names the file decoded; each row with those bytes, its own
                self.quarantine.add(offset + i + 1, reason.replace(named, payloads[i], 1), _row(chunk, i))
            else:
                ok.append(i)
        return ok


def _norm(v: Any) -> str | None:
    """A value as compared across inputs: 1, 1.0 and "1" alike (one file's column may parse as int, another's as
    float or text), nested values by their JSON."""
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def value_digest(values: Any) -> str:
    return content_hash(json.dumps([_norm(v) for v in values]))


def changed_columns(columns: list[str], before: Any, now: Any) -> list[str]:
    """The columns whose values differ between a stored item (``before``) and a row for its id (``now``)."""
    return [c for c, a, b in zip(columns, before, now) if _norm(a) != _norm(b)]


def other_values(changed: list[str], item_id: str) -> str:
    """The quarantine reason of a row whose id is an item with other values in ``changed``."""
    return (f"id already in collection with other values in {', '.join(changed)}: {item_id}; items are not updated "
            "in place: give the row a new id, or ingest into a new collection")


def _read_file(path: str) -> tuple[bytes | None, str | None]:
    """An image file's bytes, or the quarantine reason why they cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(), None
    except FileNotFoundError:
        return None, f"missing file: {path}"
    except OSError as e:
        return None, f"unreadable file: {path}: {e.strerror}"


BACKGROUND: bool | None = None  # write + index chunks in a background thread; None: when the device is not the CPU
FIRST_CHUNK = 256  # rows in the first commit chunk (and the fewest in any); later ones take about ...
COMMIT_SECONDS = 20.0  # ... this long at the measured rate, up to commit_rows
PROGRESS_BATCHES = 32  # text: model batches per encoder call, so per progress update (images: one batch)
PROCESS_MIN = 256  # images to decode before worker processes pay for their start (fewer: threads)


class _Decode:
    """Decode + preprocess image k of a list, checking that the file still has the bytes that were hashed.
    Returns (k, input or None, error or None), the error as (kind, reason): kind "content" when the bytes do not
    decode (so for every file with those bytes), "file" when this file vanished or changed. Never raises."""

    def __init__(self, paths: list[str], digests: list[str], preprocess: Callable[[Any], Any]):
        self.paths, self.digests, self.preprocess = paths, digests, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int) -> tuple[int, Any, tuple[str, str] | None]:
        path = self.paths[k]
        data, error = _read_file(path)
        if data is None:
            return k, None, ("file", str(error))
        if content_hash(data) != self.digests[k]:
            return k, None, ("file", f"file changed while it was being ingested: {path}; ingest it again")
        try:
            return k, self.preprocess(load_image(data)), None
        except Exception as e:  # PIL raises many types for bad bytes; each one means "broken image"
            detail = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(e).splitlines()[0] if str(e) else "")
            return k, None, ("content", f"broken image: {path}: {type(e).__name__}: {detail}")


def _collate(items: list[tuple[int, Any, Any]]) -> tuple[list[int], Any, list[tuple[int, Any]]]:
    """One batch: the indices that decoded, their inputs stacked (one tensor crosses from a worker process, not
    one per image), and the (index, error) of those that did not."""
    good = [(k, x) for k, x, error in items if error is None]
    errors = [(k, error) for k, _, error in items if error is not None]
    if not good:
        return [], None, errors
    xs = [x for _, x in good]
    if type(xs[0]).__module__.startswith("torch"):
        import torch

        batch: Any = torch.stack(xs)
    else:
        batch = np.stack(xs)
    return [k for k, _ in good], batch, errors


def decode_batches(paths: list[str], digests: list[str], preprocess: Callable[[Any], Any], batch_size: int,
                   workers: int) -> Any:
    """Yield (indices, stacked inputs, errors) batch by batch, in order, while the next batches decode: in worker
    processes (torch's DataLoader, forked) for many images on Linux, else in threads, never more than a few
    batches ahead of the model, so memory holds batches, not a whole chunk of decoded images."""
    import multiprocessing

    dataset = _Decode(paths, digests, preprocess)
    # a daemonic process (a multiprocessing.Pool worker, say) may not start processes of its own: threads there
    if workers > 1 and len(paths) >= PROCESS_MIN and sys.platform.startswith("linux") \
            and not multiprocessing.current_process().daemon:
        from torch.utils.data import DataLoader

        # fork, as DataLoader does by default on Linux up to Python 3.13: workers start at once, inherit the
        # preprocess function without pickling the model, and touch neither CUDA nor DuckDB; each runs torch on
        # one thread (DataLoader sets that), so no thread pool is shared across the fork
        yield from DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                              multiprocessing_context="fork", prefetch_factor=2)
        return

    def batch(start: int) -> tuple[list[int], Any, list[tuple[int, Any]]]:
        return _collate([dataset[k] for k in range(start, min(start + batch_size, len(paths)))])

    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for start in range(0, len(paths), batch_size):
            pending.append(pool.submit(batch, start))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _with_system_columns(items: pa.Table, ids: list[str], hashes: list[str]) -> pa.Table:
    for name in RESERVED:
        if name in items.column_names:
            items = items.drop_columns([name])
    items = items.add_column(0, "id", pa.array(ids, pa.string()))
    return items.append_column("content_hash", pa.array(hashes, pa.string()))


def _row(chunk: pa.Table, i: int) -> dict[str, Any]:
    return {k: v[0] for k, v in chunk.slice(i, 1).to_pydict().items()}
