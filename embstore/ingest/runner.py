"""The ingest pipeline: a streamed source -> validate + dedupe (images: read and hash in threads) -> encode (images:
decode and preprocess in worker processes, streamed into the model) -> write + commit -> index.

The source's pieces (Arrow tables of one file each) are gathered into chunks of up to ``commit_rows`` rows (the
first 256, each next one what the run does in about 20 s); each chunk is committed on its own, so a crash loses at
most the chunks not yet committed, and memory holds a few chunks whatever the corpus' size. Dedupe asks the
``SpaceWriter`` about the chunk's ids and contents (sorted 64-bit key tables, not dicts of every id). On a GPU a
chunk is written, committed and added to the space's index in a background thread while the next chunk is read
and encoded (text; images overlap the next chunk's hashing pass only, since their decoders fork); on the CPU, where
the model keeps every core busy, in turn."""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from ..encoders import Encoder
from ..errors import InputError
from ..keys import hash_key
from .chunks import Chunk, chunks
from . import device_decode
from .decode import decode_batches, read_file
from .hashing import content_hash, row_ids
from .quarantine import Quarantine

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
    # an ingest that made no collection (every row quarantined) keeps no quarantine file for it: its first records
    # are here instead (``quarantine.Quarantine.take_back``); empty otherwise, and never recorded in the manifest
    quarantined_rows: list[dict[str, Any]] = field(default_factory=list)
    ignored_files: int = 0
    new_columns: list[str] = field(default_factory=list)  # columns the collection's earlier items do not have
    seconds: dict[str, float] = field(default_factory=dict)
    files: int = 0  # input files read (tables) or images found
    engine: str = "local"
    decoded: dict[str, int] = field(default_factory=dict)  # with device decoding: images decoded "device" / "cpu"
    runtime: str | None = None  # what ran the model (torch, or a compiled CPU runtime): None when nothing was embedded

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    """What to read from the table: resolved once, before any row is touched."""

    modality: str  # text | image
    content_column: str
    id_column: str | None
    base_dir: str  # relative image paths of a folder source resolve against this (tables: each file's folder)
    folder: bool = False  # the source is a folder of images (paths relative to base_dir)


def plan_for(columns: list[str], kind: str, name: str, base_dir: str, text_column: str | None,
             image_column: str | None, id_column: str | None) -> Plan:
    """Which columns hold the content and the id, checked against the source's ``columns`` before a row is read."""
    listing = ", ".join(columns) or "(none)"
    if text_column and image_column:
        raise InputError("give --text-column or --image-column, not both")
    if kind == "folder":
        modality, content = "image", "path"
    elif image_column:
        modality, content = "image", image_column
    else:
        modality, content = "text", text_column or "text"
    if content not in columns:
        hint = "--text-column or --image-column" if not (text_column or image_column) else "another column"
        raise InputError(f"column {content!r} is not in {name}; its columns are: {listing}; pass {hint}")
    if id_column is None and "id" in columns:
        id_column = "id"  # the user's id column, when there is one
    if id_column is not None and id_column not in columns:
        raise InputError(f"id column {id_column!r} is not in {name}; its columns are: {listing}")
    for col in columns:
        if col in RESERVED and col != id_column:
            raise InputError(f"column {col!r} in {name} is reserved by embstore; rename it")
    return Plan(modality, content, id_column, base_dir, folder=kind == "folder")


class IngestRun:
    """One ingest of one source into one collection and one space; the SpaceWriter stores and commits."""

    def __init__(self, store: Any, writer: Any, encoder: Encoder, plan: Plan, source: Any, settings: Any,
                 conform: Callable[[pa.Table, str], pa.Table], progress: Progress | None = None,
                 factory: str | None = None):
        self.store, self.out, self.encoder = store, writer, encoder
        self.collection, self.space = writer.collection, writer.space
        self.factory = factory  # the index the user asked for (--index), else None: chosen by size
        self.plan, self.source, self.settings, self.conform = plan, source, settings, conform
        self.progress = progress or (lambda stage, done, total: None)
        self.report = IngestReport(self.collection, self.space, encoder.spec, source.name)
        self.quarantine = Quarantine(store.root, self.collection, source.name)
        self.timings: Counter[str] = Counter()
        self.decoded: Counter[str] = Counter()  # images decoded on the device / on the CPU (device decoding only)
        self.pool: ThreadPoolExecutor | None = None
        self.writing: Any = None  # the future of the chunk being written
        self.done = 0  # rows read and handled so far
        self.total = source.rows_hint or 0  # 0: not known up front (then estimated: _estimate)
        self.seen_bytes = 0
        self.start_rows = store.space(self.collection, self.space)["rows"]
        # write in the background while the model works on an accelerator; on the CPU the model's threads already
        # use every core, and a writer beside them only makes them wait for each other (measured: bench/RESULTS.md)
        self.background = BACKGROUND if BACKGROUND is not None else not str(settings.device).startswith("cpu")

    @property
    def expect_rows(self) -> int:
        """The space's size when every row is new (as far as the source's size is known): the index grows, chunk
        by chunk, as the one that size needs."""
        return self.start_rows + max(self.total, self.done)

    def _estimate(self, chunk: Chunk) -> None:
        """The rows of a source that does not say (CSV, JSONL): its files' bytes over the bytes a row has taken so
        far, in Arrow (within a few tens of percent of the file's: for progress and the index's kind, never for
        counts); exact at the end."""
        self.seen_bytes += chunk.table.nbytes
        size = getattr(self.source, "size_hint", None)
        if self.source.rows_hint is None and size and self.seen_bytes:
            rows = self.done + chunk.table.num_rows
            self.total = max(rows, int(size * rows / self.seen_bytes))

    # ----------------------------------------------------------------------------------------------------------
    def run(self) -> IngestReport:
        step = self.settings.commit_rows
        size = [min(step, FIRST_CHUNK)]
        self.progress("ingest", 0, self.total)

        def bad_rows(piece: Any) -> None:  # rows the reader could not parse at all: located by their file line
            for bad in piece.bad:
                self.quarantine.add(None, bad["reason"], bad["data"], line=bad["row"], source=self._name(piece.file))
            self.report.read += len(piece.bad)

        with ThreadPoolExecutor(self.settings.workers) as pool, ThreadPoolExecutor(1) as self.pool:
            try:
                for chunk in chunks(self.source.pieces(), lambda: size[0], self.conform, bad_rows):
                    t = time.perf_counter()
                    self.report.read += chunk.table.num_rows
                    self._estimate(chunk)
                    self.process(chunk, pool)
                    rows = chunk.table.num_rows
                    self.done += rows
                    del chunk
                    pa.default_memory_pool().release_unused()  # the pool keeps freed chunks unless asked
                    # the next chunk: what this run does in COMMIT_SECONDS at the rate just measured, up to
                    # commit_rows: a first commit soon, and a slow model (images on a CPU) never holds minutes of
                    # work uncommitted, while a fast one writes few, large shards
                    # (in whole model batches: a chunk's last batch cut short by the timing would embed its items
                    # in another batch shape, or under MIN_ROWS in torch, and the vectors would hang on the load)
                    rate = rows / max(time.perf_counter() - t, 1e-9)
                    batch = max(1, self.settings.batch_size)
                    whole = int(min(step, rate * COMMIT_SECONDS)) // batch * batch
                    size[0] = int(min(step, max(FIRST_CHUNK, whole)))
            except BaseException:
                self._settle(raise_error=False)  # never leave a write running; the first error is the one raised
                raise
            self._settle()
        if self.total != self.done:
            self.total = self.done
            self.progress("ingest", self.done, self.total)  # an estimated total is exact at the end
        r = self.report
        r.ignored_files = self.source.ignored_files
        r.files = self.source.files
        r.quarantined = self.quarantine.count
        r.reasons = dict(self.quarantine.reasons)
        r.quarantine_file = self.quarantine.rel if self.quarantine.count else None
        r.seconds = {k: round(v, 3) for k, v in self.timings.items()}
        r.decoded = dict(self.decoded)
        if r.embedded:
            r.runtime = self.encoder.runtime_in_use()
        assert r.read == r.added + r.duplicates + r.quarantined, r  # counts add up, or it is a bug
        return r

    def _name(self, file: str) -> str:
        """The file as quarantine records name it: the source itself when it is one file or a folder of images."""
        return self.source.name if self.plan.folder or self.source.files <= 1 else file

    def _bad(self, chunk: Chunk, i: int, reason: str) -> None:
        file, row = chunk.origin(i)
        self.quarantine.add(row, reason, _row(chunk.table, i), source=self._name(file))

    # ----------------------------------------------------------------------------------------------------------
    def process(self, chunk: Chunk, pool: ThreadPoolExecutor) -> None:
        """One chunk through dedupe, embedding and staging, then its commit (in turn, or in the background): the
        step the Ray engine's workers run too."""
        t = time.perf_counter()
        plan, table = self.plan, chunk.table
        ids = (self._user_ids(chunk) if plan.id_column else row_ids(table))  # from the rows as given
        if plan.modality == "image":
            table = chunk.table = self._resolve_paths(chunk)  # after the ids: a moved dataset keeps its ids
        content = table.column(plan.content_column).to_pylist()
        # what the store already holds for this chunk's ids: looked up once, kept in chunk-sized dicts
        known = self.out.known_items(sorted({i for i in ids if i is not None}))
        existing_items = {i: k.hash for i, k in known.items()}  # id -> 64 bits of the content hash
        existing_space = self.out.in_space(list(known))
        run_values = {i: k.values for i, k in known.items() if k.added}  # ids this ingest added -> their values
        self.timings["prepare"] += time.perf_counter() - t

        # which rows to keep, which are duplicates, which need an embedding
        t = time.perf_counter()
        payloads: dict[int, Any] = {}
        hashes: dict[int, str] = {}
        candidates = []

        values = self._values(table) if plan.id_column else None  # the rest of each row, to compare by id
        same: list[int] = []  # rows whose id is an item with the same content: are their other values the same?

        def settled(i: int, digest: str) -> bool:
            """Whether this row's id is already an item and that decides the row: a duplicate when this space has
            its vector, quarantined when its content changed. (Same content, no vector in this space yet: not
            settled, the space still needs the vector.)"""
            stored = existing_items.get(ids[i])
            if stored is None or (ids[i] not in existing_space and stored == hash_key(digest)):
                return False
            if stored != hash_key(digest):
                fix = "items are not updated in place: rename the file, and its new path is a new item" \
                    if plan.modality == "image" and not plan.id_column else "give the new content a new id"
                self._bad(chunk, i, f"id already in collection with different content: {ids[i]}; {fix}")
            elif values is not None:
                same.append(i)
            else:
                self.report.duplicates += 1
            return True

        for i, (item_id, value) in enumerate(zip(ids, content)):
            if item_id is None:
                continue  # quarantined by _user_ids
            if plan.modality == "text":
                if isinstance(value, bytes):  # a binary column: its UTF-8 text, never the repr of its bytes
                    try:
                        value = value.decode("utf-8")
                    except UnicodeDecodeError as e:
                        self._bad(chunk, i, f"not utf-8 text: column {plan.content_column!r} is binary and byte "
                                  f"0x{value[e.start]:02x} at position {e.start} does not decode; store the text as "
                                  "UTF-8 strings")
                        continue
                if value is None or not str(value).strip():
                    self._bad(chunk, i, f"empty text in column {plan.content_column!r}")
                    continue
                payloads[i] = str(value)
                hashes[i] = content_hash(payloads[i])
                if settled(i, hashes[i]):
                    continue
            candidates.append(i)
        fresh: set[str] = set()  # content hashes embedded in this chunk
        if plan.modality == "image":
            candidates = self._hash_images(chunk, candidates, payloads, hashes, pool, settled)
        if same:
            self._same_values(chunk, same, ids, values, run_values, known)
        self.timings["validate" if plan.modality == "text" else "load"] += time.perf_counter() - t
        if plan.modality == "image":  # decode and embed before the rows are counted: a broken image is quarantined
            self._settle()  # the decoders fork: not while a write (FAISS threads, file handles) is under way
            t = time.perf_counter()
            vectors = self.out.vectors_by_hash(set(hashes[i] for i in candidates))
            candidates = self._embed_images(chunk, candidates, payloads, hashes, ids, vectors, fresh,
                                            lambda share: self._tick(table.num_rows, share))
            self.timings["encode"] += time.perf_counter() - t

        # within-input repeats of one id
        keep, new_items = [], []
        for i in candidates:
            item_id = ids[i]
            if item_id in existing_items and item_id in existing_space:
                if existing_items[item_id] == hash_key(hashes[i]):
                    self._repeat(chunk, i, item_id, None if values is None else values[i], run_values)
                else:
                    self._bad(chunk, i, f"id repeated in input with different content: {item_id}")
                continue
            keep.append(i)
            existing_space.add(item_id)
            if item_id not in existing_items:
                existing_items[item_id] = hash_key(hashes[i])
                if values is not None:
                    run_values[item_id] = hash_key(values[i])
                new_items.append(i)
                self.report.added += 1
            else:
                self.report.duplicates += 1  # already an item; only the space was missing its vector

        # embed each distinct new content once; reuse vectors the space already has
        if plan.modality == "text":
            t = time.perf_counter()
            vectors = self.out.vectors_by_hash(set(hashes[i] for i in keep))
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
                    self._tick(table.num_rows, min(start + piece, len(texts)) / len(texts))
                vectors.update(zip(first, out))
                fresh.update(first)
            self.timings["encode"] += time.perf_counter() - t
        embedded = len(fresh.intersection(hashes[i] for i in keep))
        self.report.embedded += embedded
        self.report.reused += len(keep) - embedded

        # stage (shard names, keys: the next chunk's dedupe sees them), then write + commit: new items, and the
        # space's vectors for every kept row, in one manifest update; then the index takes them. In the
        # background, while the next chunk is read and encoded.
        t = time.perf_counter()
        items = table.take(pa.array(new_items, pa.int64())) if new_items else None
        if items is not None:
            items = _with_system_columns(items, [ids[i] for i in new_items], [hashes[i] for i in new_items])
        emb = np.stack([vectors[hashes[i]] for i in keep]) if keep else np.zeros((0, self.encoder.dim), np.float32)
        space_rows = pa.table({"id": pa.array([ids[i] for i in keep], pa.string()),
                               "content_hash": pa.array([hashes[i] for i in keep], pa.string())})
        self._settle()  # one chunk in flight: commits stay in order, memory holds two chunks at most
        staged = self.out.stage(items, space_rows, emb, None if values is None else [values[i] for i in new_items])
        self.timings["prepare"] += time.perf_counter() - t
        if not self.background:
            self._write(staged)
        else:
            self.writing = self.pool.submit(self._write, staged)
        self.progress("ingest", self.done + table.num_rows, self.total)  # read and encoded

    def _tick(self, rows: int, share: float) -> None:
        """Progress within a chunk: ``share`` of its embedding done (the rows count when it is handed to the
        writer)."""
        self.progress("ingest", self.done + min(int(rows * share), rows - 1), self.total)

    def _write(self, staged: Any) -> None:
        t = time.perf_counter()
        self.out.commit(staged)
        self.timings["write"] += time.perf_counter() - t
        t = time.perf_counter()
        self.store.grow_index(self.collection, self.space, self.expect_rows, self.factory)
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

    def _values(self, table: pa.Table) -> list[str]:
        """Per row, a digest of its compared columns' names and values."""
        cols = self._compared(table.column_names)
        data = [table.column(c).to_pylist() for c in cols]
        return [value_digest([*cols, *row]) for row in zip(*data)] if cols else [value_digest([])] * table.num_rows

    def _same_values(self, chunk: Chunk, rows: list[int], ids: list[Any], values: list[str],
                     run_values: dict[str, int], known: dict[str, Any]) -> None:
        """Rows whose id is an item with the same content: duplicates when their other values are the item's too;
        quarantined, naming the columns, when not (items are not updated in place: nothing is dropped unseen).
        Values recorded with the stored item are compared by digest; the others are read from its row."""
        table = chunk.table
        cols = self._compared(table.column_names)
        slow = [ids[i] for i in rows if ids[i] not in run_values and known[ids[i]].values != hash_key(values[i])]
        stored = self.out.item_values(sorted(set(slow)), cols)
        for i in rows:
            item_id = ids[i]
            if item_id in run_values:  # added by this ingest: compared by digest
                self._repeat(chunk, i, item_id, values[i], run_values)
                continue
            if known[item_id].values == hash_key(values[i]):
                self.report.duplicates += 1
                continue
            changed = changed_columns(cols, stored.get(item_id, [None] * len(cols)),
                                      [table.column(c)[i].as_py() for c in cols])
            if not changed:
                self.report.duplicates += 1
            else:
                self._bad(chunk, i, other_values(changed, item_id))

    def _repeat(self, chunk: Chunk, i: int, item_id: str, value: str | None, run_values: dict[str, int]) -> None:
        """A row repeating an id (with its content) that this ingest has kept: a duplicate, unless its other
        values (``value``: their digest, None when ids are row hashes) differ from the kept row's."""
        if value is not None and run_values.get(item_id, hash_key(value)) != hash_key(value):
            self._bad(chunk, i, f"id repeated in input with other values: {item_id}")
        else:
            self.report.duplicates += 1

    def _user_ids(self, chunk: Chunk) -> list[str | None]:
        out: list[str | None] = []
        for i, value in enumerate(chunk.table.column(self.plan.id_column).to_pylist()):
            if value is None or (isinstance(value, str) and not value.strip()):
                self._bad(chunk, i, f"missing id in column {self.plan.id_column!r}")
                out.append(None)
            else:
                out.append(str(value))
        return out

    def _resolve_paths(self, chunk: Chunk) -> pa.Table:
        """Image paths made absolute: a folder source's against its folder, a table's against the table's folder;
        URLs (``s3://...``) as they are, joined with ``/``."""
        col = self.plan.content_column
        values = chunk.table.column(col).to_pylist()
        resolved = []
        for i, v in enumerate(values):
            if v is None:
                resolved.append(None)
                continue
            v = str(v)
            base = self.plan.base_dir if self.plan.folder else _parent(chunk.file_of(i))
            resolved.append(_join(base, v))
        return chunk.table.set_column(chunk.table.column_names.index(col), col, pa.array(resolved, pa.string()))

    def _hash_images(self, chunk: Chunk, candidates: list[int], payloads: dict[int, Any],
                     hashes: dict[int, str], pool: ThreadPoolExecutor,
                     settled: Callable[[int, str], bool]) -> list[int]:
        """Read and hash each image file in worker threads; quarantine what cannot be read. An id already stored
        with the same bytes is a duplicate; with other bytes, it is quarantined. Returns the rows left to embed."""
        paths = chunk.table.column(self.plan.content_column).to_pylist()

        def read(i: int) -> tuple[int, str | None, str | None]:
            if paths[i] is None:
                return i, None, f"empty image path in column {self.plan.content_column!r}"
            data, error = read_file(paths[i])
            return i, None if data is None else content_hash(data), error

        ok = []
        for i, digest, error in pool.map(read, candidates):
            if error:
                self._bad(chunk, i, error)
            elif not settled(i, digest):
                payloads[i], hashes[i] = paths[i], digest
                ok.append(i)
        return ok

    def _decoded(self, encoder: Any, paths: list[str], digests: list[str]) -> Any:
        """The files decoded and preprocessed a batch at a time: JPEGs on the model's device when it is a GPU (or
        EMBSTORE_DECODE=device) and the encoder's transform replays on tensors, else on CPU workers."""
        device = getattr(encoder, "device", self.settings.device)
        if device_decode.wanted(str(device)):
            transform = device_decode.TensorTransform.of(getattr(encoder, "transform", None))
            if transform is not None:
                return device_decode.decode_batches(paths, digests, encoder.preprocess, transform,
                                                    self.settings.batch_size, self.settings.workers, str(device),
                                                    self.decoded, self.settings.max_pixels)
        return decode_batches(paths, digests, encoder.preprocess, self.settings.batch_size, self.settings.workers,
                              self.settings.max_pixels)

    def _embed_images(self, chunk: Chunk, candidates: list[int], payloads: dict[int, Any],
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
            for done, batch, errors in self._decoded(encoder, [payloads[i] for _, i in todo], [h for h, _ in todo]):
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
                self._bad(chunk, i, failed[i])
            elif hashes[i] in broken:
                reason, named = broken[hashes[i]]  # it names the file decoded; each row with those bytes, its own
                self._bad(chunk, i, reason.replace(named, payloads[i], 1))
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


BACKGROUND: bool | None = None  # write + index chunks in a background thread; None: when the device is not the CPU
FIRST_CHUNK = 256  # rows in the first commit chunk (and the fewest in any); later ones take about ...
COMMIT_SECONDS = 20.0  # ... this long at the measured rate, up to commit_rows
PROGRESS_BATCHES = 32  # text: model batches per encoder call, so per progress update (images: one batch)


def _with_system_columns(items: pa.Table, ids: list[str], hashes: list[str]) -> pa.Table:
    for name in RESERVED:
        if name in items.column_names:
            items = items.drop_columns([name])
    items = items.add_column(0, "id", pa.array(ids, pa.string()))
    return items.append_column("content_hash", pa.array(hashes, pa.string()))


def _row(chunk: pa.Table, i: int) -> dict[str, Any]:
    return {k: v[0] for k, v in chunk.slice(i, 1).to_pydict().items()}


def _parent(path: str) -> str:
    """The folder of a file or URL."""
    return path.rsplit("/", 1)[0] if "://" in path else os.path.dirname(path)


def _join(base: str, path: str) -> str:
    """``path`` made absolute against ``base`` (both local, or URLs), without ``..`` left in it."""
    if "://" in path:
        return path
    if "://" in base:
        import posixpath

        protocol, _, rest = base.partition("://")
        return f"{protocol}://" + posixpath.normpath(posixpath.join(rest, path))
    path = os.path.expanduser(path)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))
