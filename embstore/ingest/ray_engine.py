"""The Ray engine: an ingest's read -> encode -> write as a Ray Data pipeline, committed from the driver.

``run_ray`` is what ``job.ingest`` calls for ``engine="ray"``, under the store's writer lock, with the same
arguments as the in-process engine and the same ``IngestReport`` back. The pipeline (see ``ray_tasks``)::

    read_datasource(embstore's readers)  ->  map_batches(EncodeWrite, actor pool, a GPU per actor if any)
    one envelope per block of commit_rows      dedupe against the snapshot, embed, write the block's shards

The driver takes the blocks' summaries in input order (``preserve_order``) and, per block: resolves what no worker
could see (an id already added by an earlier block of this run: a duplicate when its content and values are the
same, else quarantined with the in-process engine's reasons; a content embedded by an earlier block counts as
reused), rewrites the block's shards without such rows, writes the quarantine records, and lists the shards with
``SpaceWriter.list_shards``: one manifest commit per block. A killed run loses only its blocks not yet listed;
their files are invisible (the manifest does not list them) and the next run deletes them. A re-run dedupes
against what was committed, so it finishes the ingest. Key tables and the index are done once, by ``job.finish``.

Why the workers run the in-process chunk step instead of a second copy of the rules: the stores must be equal
(same ids, vectors, metadata, counts), and one rule set cannot drift from itself. Why the read is embstore's own
readers in a Ray read task rather than ``ray.data.read_csv``/``read_json``: those parse differently (a bad JSON line
fails the file instead of being quarantined, CSV types are inferred per block), so the rows and ids would differ.
Ray is imported here only (``pip install 'embstore[ray]'``).
"""
from __future__ import annotations

import copy
import json
import os
import time
import uuid
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa

from .. import keys as kt
from ..errors import EmbstoreError, InputError
from ..row_copies import copy_files
from ..storage import write_shard
from .quarantine import Quarantine
from .runner import IngestReport

EXTRA = "pip install 'embstore[ray]'"


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError(f"--engine ray needs Ray Data, which is not installed: {EXTRA}") from None
    return ray


def run_ray(store: Any, writer: Any, enc: Any, plan: Any, src: Any, types: Any, *, address: str | None = None,
            progress: Any = None, factory: str | None = None, spec: Any = None) -> IngestReport:
    """Ingest ``src`` (re-opened on the cluster from ``spec``, default its name) on Ray: the cluster at ``address``
    (``ray://host:10001`` or ``host:6379``), the Ray this process already joined, or else a local one started here
    (and stopped after)."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray"
            raise InputError(f"cannot start or join {where}: {str(e).splitlines()[0]}") from None
        started = True
    try:
        return RayIngest(ray, store, writer, enc, plan, src, types, progress, _spec(spec, src)).run()
    finally:
        if started:
            ray.shutdown()


def _spec(spec: Any, src: Any) -> Any:
    """The source as a worker opens it: local paths made absolute (a worker's folder is not this one's)."""
    spec = src.name if spec is None else spec

    def absolute(s: Any) -> Any:
        s = os.fspath(s)
        return s if "://" in s or "::" in s else os.path.abspath(os.path.expanduser(s))

    return [absolute(s) for s in spec] if isinstance(spec, (list, tuple)) else absolute(spec)


class RayIngest:
    """One ingest on Ray: builds the pipeline, commits its blocks in order, returns the report."""

    def __init__(self, ray: Any, store: Any, writer: Any, enc: Any, plan: Any, src: Any, types: Any, progress: Any,
                 spec: Any):
        self.ray, self.store, self.writer, self.enc, self.plan, self.src, self.types = \
            ray, store, writer, enc, plan, src, types
        self.spec = spec
        self.collection, self.space = writer.collection, writer.space
        self.progress = progress or (lambda stage, done, total: None)
        self.report = IngestReport(self.collection, self.space, enc.spec, src.name, engine="ray")
        self.quarantine = Quarantine(store.root, self.collection, src.name)
        self.run_id = uuid.uuid4().hex[:8]
        self.seconds: dict[str, float] = {}
        self.done = 0

    def run(self) -> IngestReport:
        from . import ray_tasks

        t0 = time.perf_counter()
        ray, store = self.ray, self.store
        self._drop_unlisted()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        actors = gpus or max(1, int(resources.get("CPU", 1)))
        device = "cuda" if gpus else "cpu"
        ctx = {"root": str(store.root), "manifest": copy.deepcopy(store.manifest), "collection": self.collection,
               "space": self.space, "encoder": self.enc.describe(), "plan": asdict(self.plan),
               "settings": store.settings, "device": device, "run": self.run_id, "source": self.src.name}
        tables = [ray.put(np.ascontiguousarray(t.merged())) for t in
                  (self.writer.items, self.writer.by_id, self.writer.by_hash)]
        data = ray.data.DataContext.get_current()
        saved = (data.execution_options.preserve_order, data.target_max_block_size, data.enable_progress_bars)
        data.execution_options.preserve_order = True  # blocks commit in input order, as in-process
        data.target_max_block_size = 1  # an envelope (one row) is a block: never merged with the next one
        data.enable_progress_bars = False  # the library never prints; progress goes to the callback
        try:
            source = ray_tasks.datasource(self.spec, self.types.schema, self.collection, store.settings.commit_rows)
            ds = _read(ray, source, num_cpus=0)  # the reader streams; the actors hold the cores
            ds = ds.map_batches(ray_tasks.EncodeWrite, fn_constructor_args=(ctx, tables), batch_size=1,
                                batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1,
                                num_gpus=1 if gpus else 0)
            self.progress("ingest", 0, self.src.rows_hint or 0)
            try:
                for row in ds.iter_rows():
                    self._block(row)
            except Exception as e:  # a worker's InputError (a column that does not convert ...) as itself
                cause = _embstore_cause(e)
                if cause is None:
                    raise
                # embstore's messages are one line; Ray appends its retry advice to the exception it carried
                raise type(cause)(str(cause).splitlines()[0]) from None
        finally:
            data.execution_options.preserve_order, data.target_max_block_size, data.enable_progress_bars = saved
        r = self.report
        r.quarantined = self.quarantine.count
        r.reasons = dict(self.quarantine.reasons)
        r.quarantine_file = self.quarantine.rel if self.quarantine.count else None
        r.seconds = {k: round(v, 3) for k, v in self.seconds.items()} | {"total": round(time.perf_counter() - t0, 3)}
        assert r.read == r.added + r.duplicates + r.quarantined, r  # counts add up, or it is a bug
        return r

    # ------------------------------------------------------------------------------------------------ per block
    def _name(self, file: str, files: int) -> str:
        """The file as quarantine records name it (as in-process: the source itself when it is one file)."""
        return self.src.name if self.plan.folder or files <= 1 else file

    def _block(self, row: dict[str, Any]) -> None:
        import pyarrow.parquet as pq

        t = time.perf_counter()
        s = json.loads(row["summary"])
        r, writer, root = self.report, self.writer, self.store.root
        for bad in s["bad"]:  # rows the reader could not parse: located by their file line
            self.quarantine.add(None, bad["reason"], bad["data"], line=bad["row"], source=self._name(s["file"],
                                                                                                     s["files"]))
        r.read += len(s["bad"]) + s["rows"]
        if s["end"]:
            r.files, r.ignored_files = s["files"], s["ignored_files"]
            return
        for q in s["quarantine"]:
            self.quarantine.add(q["row"], q["reason"], q["data"], line=q["line"], source=q["source"])
        self.types.seen += [c for c in s["columns"] if c not in self.types.seen]
        r.duplicates += s["duplicates"]
        item_shards, space_shards, values = [], [], None
        if s["items"]:
            items = pq.read_table(root / s["items"]["file"], columns=["id", "content_hash"])
            ids, hashes = items.column("id").to_pylist(), items.column("content_hash").to_pylist()
            values = np.frombuffer(row["values"], np.uint64)
            origin = np.frombuffer(row["item_rows"], np.int64)
            known = writer.known_items(ids)
            drop = []
            for n, item_id in enumerate(ids):
                k = known.get(item_id)
                if k is None:
                    continue
                drop.append(n)  # an id an earlier block of this run added
                if k.hash != kt.hash_key(hashes[n]):
                    fix = "items are not updated in place: rename the file, and its new path is a new item" \
                        if self.plan.modality == "image" and not self.plan.id_column else \
                        "give the new content a new id"
                    self._bad(s, n, origin, f"id already in collection with different content: {item_id}; {fix}")
                elif values[n] and k.values != values[n]:
                    self._bad(s, n, origin, f"id repeated in input with other values: {item_id}")
                else:
                    r.duplicates += 1
            keep = np.setdiff1d(np.arange(len(ids)), drop)
            values = values[keep]
            shard = self._rewritten(s["items"], keep, len(ids))
            if shard is not None:
                item_shards.append(shard)
            r.added += len(keep)
        if s["space"]:
            sp = pq.read_table(root / s["space"]["file"], columns=["id", "content_hash"])
            ids = sp.column("id").to_pylist()
            there = writer.in_space(ids)  # given a vector by an earlier block of this run
            keep = np.array([n for n, i in enumerate(ids) if i not in there], np.int64)
            hashes = sp.column("content_hash").to_pylist()
            kept = sorted({hashes[n] for n in keep})
            if kept:
                found, _ = writer.by_hash.find(kt.hash_keys(kept))
                embedded = int((~found).sum())  # contents no earlier block (nor the store) has a vector for
            else:
                embedded = 0
            r.embedded += embedded
            r.reused += len(keep) - embedded
            shard = self._rewritten(s["space"], keep, len(ids))
            if shard is not None:
                space_shards.append(shard)
        if item_shards or space_shards:
            for shard in item_shards + space_shards:
                shard["part"] = self.store.new_part()
            writer.list_shards(item_shards, space_shards, [values] if item_shards else None)
        self.done += s["rows"] + len(s["bad"])
        self.progress("ingest", self.done, self.src.rows_hint or 0)
        for k, v in s["seconds"].items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v
        if s.get("runtime"):  # what ran the model on the workers (the last block's word)
            self.report.runtime = s["runtime"]
        self.seconds["commit"] = self.seconds.get("commit", 0.0) + time.perf_counter() - t

    def _bad(self, s: dict[str, Any], n: int, origin: np.ndarray, reason: str) -> None:
        """Quarantine row ``n`` of the block's item shard: its input values, located in its file."""
        import pyarrow.parquet as pq

        row = pq.read_table(self.store.root / s["items"]["file"]).slice(n, 1).to_pylist()[0]
        row.pop("content_hash", None)
        if self.plan.id_column != "id":
            row.pop("id", None)
        self.quarantine.add(s["first_row"] + int(origin[n]), reason, row, source=self._name(s["file"], s["files"]))

    def _rewritten(self, shard: dict[str, Any], keep: np.ndarray, rows: int) -> dict[str, Any] | None:
        """The shard with only the rows ``keep`` (rewritten when some go: it is not listed yet), or None when none
        is left (its file deleted)."""
        import pyarrow.parquet as pq

        path = self.store.root / shard["file"]
        if len(keep) == rows:
            return dict(shard)
        if not len(keep):
            for rel in copy_files(shard):
                (self.store.root / rel).unlink(missing_ok=True)
            return None
        table = pq.read_table(path).take(pa.array(keep, pa.int64()))
        return write_shard(self.store.root, shard["file"], table, rows_copy="rows_copy" in shard)

    def _drop_unlisted(self) -> None:
        """Delete the shards an earlier Ray run of this collection wrote but never listed (it was killed): no
        manifest lists them, so no reader can be using them (the writer lock is held)."""
        coll = self.store.manifest["collections"][self.collection]
        listed = {rel for s in coll["item_shards"] for rel in copy_files(s)}  # (the shards, their row copies)
        for sp in coll["spaces"].values():
            listed |= {s["file"] for s in sp["shards"]}
        base = self.store.root / "collections" / self.collection
        folders = [base / "items", *[base / "spaces" / name for name in coll["spaces"]]]
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                name = path.name
                if not (name.startswith("part-r") or name.startswith(".part-r")):
                    continue
                rel = path.relative_to(self.store.root).as_posix()
                if rel not in listed:
                    path.unlink(missing_ok=True)


def _read(ray: Any, source: Any, num_cpus: float) -> Any:
    """``read_datasource`` with the read task's CPUs, named as this Ray version takes them."""
    import inspect

    params = inspect.signature(ray.data.read_datasource).parameters
    # one read task, its envelopes kept whole (not split towards Ray's default of 200 blocks)
    blocks = {"override_num_blocks": 1} if "override_num_blocks" in params else {"parallelism": 1}
    if "num_cpus" in params:
        return ray.data.read_datasource(source, num_cpus=num_cpus, **blocks)
    return ray.data.read_datasource(source, ray_remote_args={"num_cpus": num_cpus}, **blocks)


def _embstore_cause(e: BaseException) -> EmbstoreError | None:
    """The embstore error a Ray task raised, unwrapped from Ray's exceptions (``RayTaskError.cause``, chained
    ``UserCodeException``)."""
    seen: set[int] = set()
    stack: list[Any] = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, EmbstoreError) and type(x).__module__.startswith("embstore"):
            return x
        stack += [getattr(x, "cause", None), x.__cause__, x.__context__]
    return None
