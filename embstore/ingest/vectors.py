"""Precomputed embeddings into a space: vectors the user already has (a fixed-size list column in Parquet, a NumPy
array with ids), recorded with an ``external`` encoder so they can be searched by vector or by item, fitted on, and
queried with SQL, but never mixed with another encoder's vectors."""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..encoders.base import fingerprint_of
from ..errors import InputError
from ..keys import hash_key
from ..writer import SpaceWriter
from .quarantine import Quarantine
from .runner import IngestReport, changed_columns, other_values, value_digest


class ExternalEncoder:
    """Identity only: nothing can be embedded with it."""

    modalities: frozenset[str] = frozenset()
    normalized = False

    def __init__(self, name: str, dim: int):
        self.name, self.dim = name, dim
        self.spec = f"external:{name}"
        self.default_space = name

    def identity(self) -> dict[str, Any]:
        return {"library": "external", "model": self.name, "dim": self.dim, "normalized": False, "config": {},
                "weights_sha256": None}

    def fingerprint(self) -> str:
        return fingerprint_of(self.identity())

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "fingerprint": self.fingerprint(), **self.identity()}


def vectors_from_table(table: pa.Table, column: str) -> np.ndarray:
    if column not in table.column_names:
        raise InputError(f"embedding column {column!r} is not in the input; its columns are: "
                         f"{', '.join(table.column_names)}")
    col = table.column(column)
    typ = col.type
    if not (pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ)):
        raise InputError(f"column {column!r} holds {typ}, not vectors; give a list<float> or fixed_size_list column")
    values = col.to_pylist()
    dims = {len(v) for v in values if v is not None}
    if len(dims) != 1:
        raise InputError(f"column {column!r} holds vectors of different lengths {sorted(dims)[:5]}; all need one dim")
    if any(v is None for v in values):
        raise InputError(f"column {column!r} has empty rows; drop them or give them vectors")
    return np.asarray(values, dtype=np.float32)


def ingest_vectors(store: Any, collection: str, vectors: np.ndarray, ids: Sequence[Any] | None,
                   metadata: pa.Table | None, name: str, space: str | None, source: str,
                   factory: str | None = None) -> IngestReport:
    from ..storage import check_name
    from .job import finish

    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] < 1:
        raise InputError(f"vectors must be a 2-d array (n, dim); got shape {vectors.shape}")
    n = len(vectors)
    ids = [str(i) for i in (range(n) if ids is None else ids)]
    if len(ids) != n or (metadata is not None and metadata.num_rows != n):
        raise InputError(f"{n} vectors but {len(ids)} ids and {metadata.num_rows if metadata is not None else n} "
                         "metadata rows; give one of each per vector")
    if metadata is not None:
        for reserved in ("id", "content_hash"):
            if reserved in metadata.column_names:
                metadata = metadata.drop_columns([reserved])
    enc = ExternalEncoder(check_name("encoder", name), vectors.shape[1])
    space = check_name("space", space or enc.default_space)
    report = IngestReport(collection, space, enc.spec, source, read=n)
    quarantine = Quarantine(store.root, collection, source)
    with store.writing():
        coll = store.manifest["collections"].get(collection)
        if coll and coll["modality"] != "vector":
            raise InputError(f"collection {collection!r} holds {coll['modality']} items; put vectors in another one")
        if coll and space in coll["spaces"] and coll["spaces"][space]["encoder"]["fingerprint"] != enc.fingerprint():
            had = coll["spaces"][space]["encoder"]
            raise InputError(f"space {space!r} holds {had['spec']} vectors of {had['dim']} dimensions; these are "
                             f"{enc.spec} with {enc.dim}: pass another space name (--space, or space=)")
        created = coll is None
        if factory is not None:
            from ..index import check_factory

            check_factory(factory, vectors.shape[1])  # before anything is written, as for other inputs
        if coll and metadata is not None:  # shards of one collection must read together: see storage.conform
            from ..storage import conform, stored_schema

            metadata = conform(metadata, stored_schema(store.root, coll["item_shards"]), source, collection)
        store.ensure_space(collection, space, enc, "vector", None, "id")
        writer = SpaceWriter(store, collection, space)
        try:
            known = {i: k.hash for i, k in writer.known_items(sorted(set(ids))).items()}  # 64 bits of the hash
            finite = np.isfinite(vectors).all(1)
            digests = [hashlib.sha256(v.tobytes()).hexdigest() for v in vectors]
            short = [hash_key(d) for d in digests]
            short_set = set(short)
            cols = [] if metadata is None else metadata.column_names
            meta_rows = list(zip(*[metadata.column(c).to_pylist() for c in cols])) if cols else [()] * n
            stored = writer.item_values(sorted(i for i in set(ids) if known.get(i) in short_set), cols)
            keep, seen = [], {}
            for i, item_id in enumerate(ids):
                # the same id again: a duplicate when its vector and its metadata are the same, else quarantined
                before = (known[item_id], stored.get(item_id, [None] * len(cols))) if item_id in known else seen.get(item_id)
                if not finite[i]:
                    quarantine.add(i + 1, "vector has NaN or infinite values", {"id": item_id})
                elif before is None:
                    seen[item_id] = (short[i], list(meta_rows[i]))
                    keep.append(i)
                elif before[0] != short[i]:
                    quarantine.add(i + 1, f"id already in collection with a different vector: {item_id}; give it a new id"
                                   " (without ids, vectors from a file are named by their content, an array's by row "
                                   "number)", {"id": item_id})
                elif changed := changed_columns(cols, before[1], meta_rows[i]):
                    quarantine.add(i + 1, other_values(changed, item_id), {"id": item_id})
                else:
                    report.duplicates += 1
            step = store.settings.commit_rows
            for start in range(0, len(keep), step):
                rows = keep[start:start + step]
                hashes = [digests[i] for i in rows]
                items = pa.table({"id": pa.array([ids[i] for i in rows], pa.string())})
                if metadata is not None:
                    meta = metadata.take(pa.array(rows, pa.int64()))
                    for col in meta.column_names:
                        items = items.append_column(col, meta.column(col))
                items = items.append_column("content_hash", pa.array(hashes, pa.string()))
                space_rows = pa.table({"id": items.column("id"), "content_hash": items.column("content_hash")})
                writer.write(items, space_rows, vectors[rows])
                report.added += len(rows)
            report.embedded = 0
            report.quarantined = quarantine.count
            report.reasons = dict(quarantine.reasons)
            report.quarantine_file = quarantine.rel if quarantine.count else None
            finish(store, writer, report, created=created, factory=factory)
        finally:
            writer.close()  # its spilled runs, if any
    return report


def vector_row_ids(vectors: np.ndarray, meta: pa.Table | None = None) -> list[str]:
    """Ids of a file's vectors when it gives none: a hash of the row (its vector and its other values), as a text
    row's id is, so that a second file's rows are new items and the same rows again are duplicates."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows = zip(*[meta.column(c).to_pylist() for c in meta.column_names]) if meta is not None and meta.num_columns \
        else [()] * len(vectors)
    return [value_digest([v.tobytes().hex(), *r])[:32] for v, r in zip(vectors, rows)]
