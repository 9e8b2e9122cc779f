"""The writer: the one way rows enter a collection and one of its spaces, used alike by the in-process ingest, the
vector ingest and the Ray engine.

It names shards in the store's layout, commits them (an atomic manifest replace, with the store's writer lock
held by the caller), keeps the collection's and the space's key tables (``keys.py``) up to date, and answers the
lookups dedupe needs (which ids are stored, with which content and values; which contents the space has vectors
for) without reading every stored id. A chunk is first *staged* (its shards get their names and its keys go into
the tables, so the next chunk's dedupe sees them at once), then *committed* (written and listed), possibly in a
background thread while the next chunk is staged; ``finish`` saves the key tables and the index and records the
ingest.
"""
from __future__ import annotations

import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from . import keys as kt
from .lookup import located, read_rows, shard_columns
from .storage import embedding_array, embedding_matrix, write_shard


class Known(NamedTuple):
    """What the store (or this ingest) holds for an id: 64 bits of its content hash and of its other values (0: not
    recorded), where the item is, and whether this ingest added it."""

    hash: int
    values: int
    loc: int
    added: bool


@dataclass
class Staged:
    """A chunk with its shard names, keys recorded, not yet written."""

    items: pa.Table | None
    items_part: int | None
    space_rows: pa.Table
    space_part: int | None
    vectors: np.ndarray


class SpaceWriter:
    """Writes one ingest into ``collection`` / ``space``. The caller holds the store's writer lock throughout."""

    def __init__(self, store: Any, collection: str, space: str):
        self.store, self.collection, self.space = store, collection, space
        root = store.root
        coll = store.manifest["collections"][collection]
        sp = coll["spaces"][space]
        self.dim = sp["encoder"]["dim"]
        # large runs of the key tables go to files here (mapped), so memory does not grow with the corpus
        self.spill = root / ".tmp" / f"keys-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.items = kt.open_table(root, coll.get("keys"), coll["item_shards"], kt.ITEM_FIELDS, self.spill)
        entry = sp.get("keys") or {}
        self.by_id = kt.open_table(root, entry.get("by_id"), sp["shards"], kt.BY_ID_FIELDS, self.spill)
        self.by_hash = kt.open_table(root, entry.get("by_hash"), sp["shards"], kt.BY_HASH_FIELDS, self.spill)
        self.added = kt.KeyTable(kt.ITEM_FIELDS, spill=self.spill)  # the items this ingest added
        self.positions: list[np.ndarray] = []  # the id keys of the space rows this ingest adds, in index order
        self.first_shard = len(sp["shards"])  # where this ingest's space shards start
        self.inflight: dict[str, np.ndarray] = {}  # vectors of staged chunks not yet committed, by content hash
        self.inflight_parts: set[int] = set()
        self.lock = threading.Lock()

    # ------------------------------------------------------------------------------------------------ lookups
    def known_items(self, ids: list[str]) -> dict[str, Known]:
        """The ids (of a chunk) that are items already, stored or added by this ingest."""
        if not ids:
            return {}
        out: dict[str, Known] = {}
        for table, added in ((self.items, False), (self.added, True)):
            found, rec = table.find_ids(ids)
            for n in np.flatnonzero(found):
                out[ids[n]] = Known(int(rec[1, n]), int(rec[2, n]), int(rec[3, n]), added)
        return out

    def in_space(self, ids: list[str]) -> set[str]:
        """The ids (of a chunk) that have a vector in the space."""
        if not ids:
            return set()
        found, _ = self.by_id.find_ids(ids)
        return {ids[n] for n in np.flatnonzero(found)}

    def vectors_by_hash(self, hashes: set[str]) -> dict[str, np.ndarray]:
        """Vectors the space has for these contents: in a chunk staged but not yet written, or committed."""
        with self.lock:
            out = {h: self.inflight[h] for h in hashes if h in self.inflight}
        rest = sorted(hashes - out.keys())
        if not rest:
            return out
        found, rec = self.by_hash.find(kt.hash_keys(rest))
        shards = self.store.manifest["collections"][self.collection]["spaces"][self.space]["shards"]
        for ns, path, rows in located(self.store.root, shards, found, rec[1], skip=self.inflight_parts):
            got = read_rows(path, rows, ["content_hash", "embedding"])
            m = embedding_matrix(got.column("embedding"), self.dim)
            for n, stored, v in zip(ns, got.column("content_hash").to_pylist(), m):
                if stored == rest[n]:  # the whole hash, not only its 64 bits
                    out[rest[n]] = v
        return out

    def item_values(self, ids: list[str], columns: list[str]) -> dict[str, list[Any]]:
        """id -> the stored item's values in ``columns`` (None where its shard has no such column), for these ids,
        read from the rows the key table points at."""
        coll = self.store.manifest["collections"][self.collection]
        if not ids or not coll["item_shards"]:
            return {}
        found, rec = self.items.find_ids(ids)
        out: dict[str, list[Any]] = {}
        for ns, path, rows in located(self.store.root, coll["item_shards"], found, rec[3]):
            have = [c for c in columns if c in shard_columns(path)]
            t = read_rows(path, rows, ["id", *have])
            got = {c: t.column(c).to_pylist() for c in have}
            for j, (n, stored_id) in enumerate(zip(ns, t.column("id").to_pylist())):
                if stored_id == ids[n]:
                    out[ids[n]] = [got[c][j] if c in got else None for c in columns]
        return out

    # ------------------------------------------------------------------------------------------------ writing
    def stage(self, items: pa.Table | None, space_rows: pa.Table, vectors: np.ndarray,
              values: list[str] | None = None) -> Staged:
        """Name the chunk's shards and record its keys (``items``: new items with id and content_hash; ``values``:
        their values digests, or None when not compared); the chunk is written by ``commit``."""
        store = self.store
        items_part = space_part = None
        if items is not None and items.num_rows:
            items_part = store.new_part()
            ids = items.column("id").to_pylist()
            self.added.add(kt.id_keys(ids), kt.hash_keys(items.column("content_hash").to_pylist()),
                           kt.value_keys(values, len(ids)), kt.locations(items_part, len(ids)), kt.id_checks(ids))
        if space_rows.num_rows:
            space_part = store.new_part()
            n = space_rows.num_rows
            hashes = space_rows.column("content_hash").to_pylist()
            loc = kt.locations(space_part, n)
            space_ids = space_rows.column("id").to_pylist()
            keys = kt.id_keys(space_ids)
            self.positions.append(keys)  # in commit order, so in the index's row order
            self.by_id.add(keys, loc, kt.id_checks(space_ids))
            self.by_hash.add(kt.hash_keys(hashes), loc)
            with self.lock:
                self.inflight_parts.add(space_part)
                self.inflight.update(zip(hashes, vectors))
        return Staged(items, items_part, space_rows, space_part, vectors)

    def commit(self, staged: Staged) -> None:
        """Write a staged chunk's shards and list them, in one manifest commit."""
        store = self.store
        coll = store.manifest["collections"][self.collection]
        base = f"collections/{self.collection}"
        if staged.items_part is not None:
            shard = write_shard(store.root, f"{base}/items/part-{staged.items_part:06d}.parquet", staged.items,
                                rows_copy=True)
            coll["item_shards"].append(shard | {"part": staged.items_part})
        if staged.space_part is not None:
            table = staged.space_rows.append_column("embedding", embedding_array(staged.vectors))
            sp = coll["spaces"][self.space]
            shard = write_shard(store.root, f"{base}/spaces/{self.space}/part-{staged.space_part:06d}.parquet", table)
            sp["shards"].append(shard | {"part": staged.space_part})
            sp["rows"] += table.num_rows
        store.commit()
        if staged.space_part is not None:
            with self.lock:
                self.inflight_parts.discard(staged.space_part)
                for h in staged.space_rows.column("content_hash").to_pylist():
                    self.inflight.pop(h, None)

    def write(self, items: pa.Table | None, space_rows: pa.Table, vectors: np.ndarray,
              values: list[str] | None = None) -> None:
        """Stage and commit at once."""
        self.commit(self.stage(items, space_rows, vectors, values))

    def list_shards(self, item_shards: list[dict[str, Any]], space_shards: list[dict[str, Any]],
                    item_values: list[np.ndarray] | None = None) -> None:
        """Commit shards written elsewhere (the Ray engine's workers), already in the store's layout under names from
        ``new_name``: their keys are read from the files, then they are listed in one manifest commit."""
        store = self.store
        coll = store.manifest["collections"][self.collection]
        sp = coll["spaces"][self.space]
        for n, shard in enumerate(item_shards):
            key, hash_, values, loc, check = kt.shard_records(store.root, shard, kt.ITEM_FIELDS)
            if item_values is not None:
                values = item_values[n]
            self.added.add(key, hash_, values, loc, check)
            coll["item_shards"].append(shard)
        for shard in space_shards:
            key, loc, check = kt.shard_records(store.root, shard, kt.BY_ID_FIELDS)
            self.positions.append(key)
            self.by_id.add(key, loc, check)
            self.by_hash.add(*kt.shard_records(store.root, shard, kt.BY_HASH_FIELDS))
            sp["shards"].append(shard)
            sp["rows"] += shard["rows"]
        store.commit()

    def new_name(self, kind: str) -> tuple[str, int]:
        """A shard name in the store's layout, not yet listed: ``kind`` "items" or "space"."""
        part = self.store.new_part()
        folder = "items" if kind == "items" else f"spaces/{self.space}"
        return f"collections/{self.collection}/{folder}/part-{part:06d}.parquet", part

    def finish(self) -> None:
        """Save the key tables (merged with what this ingest added) under new names, put their entries in the
        manifest and retire the files they replace; the caller commits. A reader on an older snapshot keeps the
        files its manifest names (retired files stay for the retention time), and a crash before the commit
        leaves the older entries and files as they were."""
        store = self.store
        coll = store.manifest["collections"].get(self.collection)
        if coll is None:
            return
        base = f"collections/{self.collection}"
        sp = coll["spaces"][self.space]
        old = [coll.get("keys")] + [(sp.get("keys") or {}).get(k) for k in ("by_id", "by_hash", "by_position")]
        part = store.new_part()
        items = kt.KeyTable(kt.ITEM_FIELDS, self.items.base)
        items.runs = [*self.items.runs, *self.added.runs]  # (each sorted: merged as they are written)
        coll["keys"] = self._save(f"{base}/keys-{part:06d}.npy", items, len(coll["item_shards"]))
        folder = f"{base}/spaces/{self.space}"
        shards = len(sp["shards"])
        sp["keys"] = {"by_id": self._save(f"{folder}/keys-id-{part:06d}.npy", self.by_id, shards),
                      "by_hash": self._save(f"{folder}/keys-hash-{part:06d}.npy", self.by_hash, shards),
                      "by_position": kt.save_positions(self.store.root, f"{folder}/keys-pos-{part:06d}.npy",
                                                       (sp.get("keys") or {}).get("by_position"), sp["shards"],
                                                       self.first_shard, self.positions)}
        store.retire([e["file"] for e in old if e and (store.root / e["file"]).exists()])

    def close(self) -> None:
        """Drop the spilled runs (after ``finish``, or when the ingest failed: the saved tables do not need them)."""
        self.items = self.by_id = self.by_hash = self.added = None  # type: ignore[assignment]
        shutil.rmtree(self.spill, ignore_errors=True)

    def _save(self, rel: str, table: kt.KeyTable, shards: int) -> dict[str, Any]:
        rows = table.save(self.store.root / rel)
        return {"file": rel, "shards": shards, "rows": rows}
