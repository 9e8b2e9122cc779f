"""What the Ray engine runs on the cluster: the read task and the encoder actors (the driver is ``ray_engine``).

The read task opens the source with embstore's own readers (``open_source``: the same types, the same rows that do
not parse, the same conforming to the collection's stored types as in-process) and streams it as one *block* per
``commit_rows`` rows of one file. Each block travels as a one-row envelope (the rows as Arrow IPC bytes, the file,
its first row, the reader's bad rows), so Ray Data never merges or reslices blocks of different files and schemas.

An ``EncodeWrite`` actor (one model per actor, on its own GPU where the cluster has GPUs) runs the in-process
engine's own chunk step (``IngestRun.process``: ids, content hashes, dedupe, quarantine reasons, embedding) against a
*snapshot*: the store as it was when the ingest began (its manifest and key tables, broadcast with ``ray.put``).
The chunk's shards are written into the store's layout under names of this run (``part-r<run>-<block>``), which no
manifest lists yet, and the actor returns a one-row summary. The driver resolves what one block cannot see (an id
or content met in an earlier block of this run) and lists the shards. One rule set for both engines, not two
copies that drift; the price is that this module calls the runner's per-chunk method.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from .. import keys as kt
from ..storage import embedding_array, write_shard
from ..writer import SpaceWriter, Staged

ENVELOPE = pa.schema([("block", pa.int64()), ("rows", pa.binary()), ("file", pa.string()),
                      ("first_row", pa.int64()), ("bad", pa.string()), ("files", pa.int64()),
                      ("ignored_files", pa.int64()), ("end", pa.bool_())])
SUMMARY = pa.schema([("block", pa.int64()), ("summary", pa.string()), ("values", pa.binary()),
                     ("item_rows", pa.binary())])


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def shard_names(collection: str, space: str, run: str, block: int) -> tuple[str, str]:
    """The block's item shard and space shard, in the store's layout (the manifest schema's ``part-...`` names)."""
    name = f"part-r{run}-{block:06d}.parquet"
    return f"collections/{collection}/items/{name}", f"collections/{collection}/spaces/{space}/{name}"


# ---------------------------------------------------------------------------------------------------- reading
def envelopes(spec: Any, stored: pa.Schema | None, collection: str, block_rows: int) -> Iterator[pa.Table]:
    """The source's rows as envelopes of at most ``block_rows`` rows of one file, conformed as they come (as the
    runner's ``chunks`` does); a last envelope (``end``) carries the files read and ignored."""
    from .job import Types
    from .readers import open_source

    src = open_source(spec)
    types = Types(stored, collection)
    block = 0

    def envelope(rows: pa.Table | None, file: str, first: int, bad: list, end: bool = False) -> pa.Table:
        nonlocal block
        out = pa.Table.from_pylist([{"block": block, "rows": None if rows is None else to_ipc(rows), "file": file,
                                     "first_row": first, "bad": json.dumps(bad, default=str),
                                     "files": src.files, "ignored_files": src.ignored_files, "end": end}],
                                   schema=ENVELOPE)
        block += 1
        return out

    for piece in src.pieces():
        table = piece.table
        if table.num_rows == 0:
            if piece.bad:
                yield envelope(None, piece.file, piece.first_row, piece.bad)
            continue
        table = types.conform(table, piece.file)
        for start in range(0, table.num_rows, block_rows):
            yield envelope(table.slice(start, block_rows), piece.file, piece.first_row + start,
                           piece.bad if start == 0 else [])
    yield envelope(None, src.name, 0, [], end=True)


def datasource(spec: Any, stored: pa.Schema | None, collection: str, block_rows: int) -> Any:
    """A Ray Data source of one read task: embstore's readers stream the source in order (a source is read as one
    stream, since ``Source`` does not hand out its files; the encoders and writers are what run in parallel)."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class Pieces(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[ReadTask]:
            meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
            read = lambda: envelopes(spec, stored, collection, block_rows)  # noqa: E731
            try:
                return [ReadTask(read, meta, schema=ENVELOPE)]
            except TypeError:  # Ray before the schema argument
                return [ReadTask(read, meta)]

        def get_name(self) -> str:
            return "embstore_source"

    return Pieces()


# ---------------------------------------------------------------------------------------------------- encoding
class Snapshot:
    """The store as the ingest found it, on a worker: root, manifest, settings; indexes grow on the driver."""

    def __init__(self, root: str, manifest: dict[str, Any], settings: Any):
        self.root, self.manifest, self.settings = Path(root), manifest, settings

    def space(self, collection: str, space: str) -> dict[str, Any]:
        return self.manifest["collections"][collection]["spaces"][space]

    def grow_index(self, *args: Any, **kwargs: Any) -> None:
        pass


class BlockWriter(SpaceWriter):
    """A ``SpaceWriter`` whose lookups answer from the broadcast key tables of the snapshot, and whose commit writes
    the block's shards to its two names without listing them (the driver does)."""

    def __init__(self, snapshot: Snapshot, collection: str, space: str, tables: tuple[np.ndarray, ...],
                 names: tuple[str, str]):
        self.store, self.collection, self.space = snapshot, collection, space
        self.dim = snapshot.space(collection, space)["encoder"]["dim"]
        self.items = kt.KeyTable(kt.ITEM_FIELDS, tables[0])
        self.by_id = kt.KeyTable(kt.BY_ID_FIELDS, tables[1])
        self.by_hash = kt.KeyTable(kt.BY_HASH_FIELDS, tables[2])
        self.added = kt.KeyTable(kt.ITEM_FIELDS)
        self.inflight: dict[str, np.ndarray] = {}
        self.inflight_parts: set[int] = set()
        self.lock = threading.Lock()
        self.names = names
        self.values: list[str] | None = None
        self.shards: dict[str, dict[str, Any]] = {}
        self.item_ids: list[str] = []

    def stage(self, items: pa.Table | None, space_rows: pa.Table, vectors: np.ndarray,
              values: list[str] | None = None) -> Staged:
        self.values = values
        return Staged(items, None, space_rows, None, vectors)

    def commit(self, staged: Staged) -> None:
        root = self.store.root
        if staged.items is not None and staged.items.num_rows:
            self.shards["items"] = write_shard(root, self.names[0], staged.items, rows_copy=True)
            self.item_ids = staged.items.column("id").to_pylist()
        if staged.space_rows.num_rows:
            table = staged.space_rows.append_column("embedding", embedding_array(staged.vectors))
            self.shards["space"] = write_shard(root, self.names[1], table)


class Collected:
    """Quarantine records of one block, kept for the driver (which writes the ingest's one quarantine file)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def add(self, row: int | None, reason: str, data: Any, line: int | None = None, source: str | None = None) -> None:
        self.records.append({"row": row, "reason": reason, "data": data, "line": line, "source": source})


class EncodeWrite:
    """A Ray Data actor: loads the space's encoder once (checked against the recorded fingerprint), then embeds and
    writes one block per call."""

    def __init__(self, ctx: dict[str, Any], tables: list[Any]):
        import dataclasses

        import ray

        from ..encoders import RecordedEncoder

        self.ctx = ctx
        device = ctx["device"]
        self.settings = dataclasses.replace(ctx["settings"], requested_device=device)
        self.snapshot = Snapshot(ctx["root"], ctx["manifest"], self.settings)
        self.encoder = RecordedEncoder(ctx["encoder"], device, self.settings.runtime)  # the runtime asked for
        self.tables = tuple(ray.get(tables))  # items, by id, by hash: one copy per node, shared by its actors
        self.pool = ThreadPoolExecutor(self.settings.workers)  # image files are read and hashed in threads

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.block(env) for env in batch.to_pylist()], schema=SUMMARY)

    def block(self, env: dict[str, Any]) -> dict[str, Any]:
        from .runner import Chunk, IngestRun, Plan

        summary: dict[str, Any] = {"file": env["file"], "first_row": env["first_row"], "bad": json.loads(env["bad"]),
                                   "files": env["files"], "ignored_files": env["ignored_files"], "end": env["end"],
                                   "rows": 0, "added": 0, "duplicates": 0, "quarantine": [], "columns": [],
                                   "items": None, "space": None, "seconds": {}, "runtime": None}
        out = {"block": env["block"], "summary": None, "values": b"", "item_rows": b""}
        if env["rows"] is not None:
            t = time.perf_counter()
            ctx = self.ctx
            table = from_ipc(env["rows"])
            names = shard_names(ctx["collection"], ctx["space"], ctx["run"], env["block"])
            writer = BlockWriter(self.snapshot, ctx["collection"], ctx["space"], self.tables, names)
            plan = Plan(**ctx["plan"])
            source = _SourceView(ctx["source"], env["files"])
            run = IngestRun(self.snapshot, writer, self.encoder, plan, source, self.settings, lambda t, f: t)
            run.background = False  # one block, written here and now
            run.quarantine = quarantine = Collected()  # type: ignore[assignment]
            run.process(Chunk(table, [(0, env["file"], env["first_row"])]), self.pool)
            r = run.report
            summary.update(rows=table.num_rows, added=r.added, duplicates=r.duplicates,
                           quarantine=quarantine.records, columns=table.column_names,
                           items=writer.shards.get("items"), space=writer.shards.get("space"),
                           runtime=self.encoder.runtime_in_use() if r.embedded else None,
                           seconds={k: round(v, 4) for k, v in run.timings.items()}
                           | {"worker": round(time.perf_counter() - t, 4)})
            if "items" in writer.shards:
                out["values"] = kt.value_keys(writer.values, len(writer.item_ids)).tobytes()
                out["item_rows"] = _item_rows(_ids(table, plan), writer.item_ids, quarantine.records,
                                              env["first_row"]).tobytes()
        out["summary"] = json.dumps(summary, default=str)
        return out


class _SourceView:
    """What the runner's chunk step asks of the source: its name and the files read so far (quarantine records
    name the file only when the source has several)."""

    def __init__(self, name: str, files: int):
        self.name, self.files, self.rows_hint, self.ignored_files = name, files, None, 0


def _ids(table: pa.Table, plan: Any) -> list[Any]:
    from .hashing import row_ids

    if plan.id_column:
        return [None if v is None or (isinstance(v, str) and not v.strip()) else str(v)
                for v in table.column(plan.id_column).to_pylist()]
    return row_ids(table)


def _item_rows(ids: list[Any], stored: list[str], quarantined: list[dict[str, Any]], first_row: int) -> np.ndarray:
    """Per row of the item shard, the block row it came from (to locate a row the driver quarantines): the first row
    with its id that was not quarantined here."""
    bad = {r["row"] - first_row for r in quarantined if r["row"] is not None}
    where: dict[Any, int] = {}
    for i, item_id in enumerate(ids):
        if i not in bad:
            where.setdefault(item_id, i)
    return np.array([where.get(i, 0) for i in stored], np.int64)
