"""A space's FAISS index across a store's snapshots: mapped or loaded for a reader, extended or rebuilt and tuned
for a writer, grown during an ingest, saved under a new name each time so the manifest and the file never disagree.

``index.py`` holds what an index is (kinds, builds, tuning); this module holds where it lives in a store and when it
is made again. The store's ``sync_index``, ``grow_index`` and ``reindex`` are this module's ``SpaceIndexes``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import index as ix
from .manifest import now
from .storage import embedding_matrix, read_shards


class SpaceIndexes:
    """The indexes of one open ``Store`` (``store.indexes``): what was loaded is kept in ``store.derived`` for the
    snapshot; an index an ingest grows in memory is kept here until the ingest saves it."""

    def __init__(self, store: Any):
        self.store = store
        self.grown: dict[tuple[str, str], tuple[str, Any]] = {}  # index being grown by an ingest: (factory, index)

    def drop_growing(self, collection: str, space: str) -> None:
        """Forget an index grown during an ingest that did not finish (the next one starts from the saved one)."""
        self.grown.pop((collection, space), None)

    def vectors_from(self, collection: str, space: str, start: int) -> np.ndarray:
        """The space's vectors from row ``start`` on, reading only the shards that hold them."""
        sp = self.store.manifest["collections"][collection]["spaces"][space]
        offset, parts = 0, []
        for shard in sp["shards"]:
            if offset + shard["rows"] > start:
                t = read_shards(self.store.root, [shard], ["embedding"])
                m = embedding_matrix(t.column("embedding"), sp["encoder"]["dim"])
                parts.append(m[max(0, start - offset):])
            offset += shard["rows"]
        return np.concatenate(parts) if parts else np.zeros((0, sp["encoder"]["dim"]), np.float32)

    def vector_blocks(self, collection: str, space: str, progress: Any = None) -> Any:
        """``blocks()``: the space's vectors a shard at a time, in index order (what the index builders take);
        ``progress(stage, done, total)`` after each shard of each pass (a builder makes several: sample, add, tune)."""
        sp = self.store.manifest["collections"][collection]["spaces"][space]
        shards, dim = list(sp["shards"]), sp["encoder"]["dim"]
        total = sum(s["rows"] for s in shards)

        def blocks() -> Iterator[np.ndarray]:
            done = 0
            for shard in shards:
                yield embedding_matrix(read_shards(self.store.root, [shard], ["embedding"]).column("embedding"), dim)
                done += shard["rows"]
                if progress is not None:
                    progress("index", done, total)
        return blocks

    def sync(self, collection: str, space: str, save: bool = False, factory: str | None = None,
                   target_recall: float | None = None, progress: Any = None) -> tuple[Any, Any]:
        """The space's FAISS index holding exactly the snapshot's rows.

        A writer (``save``) rebuilds it when missing, when its type no longer fits the size (or ``factory`` asks for
        another), else extends it; then re-tunes it and records the choice in the manifest. A reader extends a
        lagging index in memory from the shards. Returns the index and the space's ids in index order (a
        ``lookup.SpaceIds``, read a shard at a time when asked for). A reader memory-maps the saved index, so a
        cold search reads the lists it probes, not the whole file."""
        from .lookup import SpaceIds

        sp = self.store.manifest["collections"][collection]["spaces"][space]
        key = (collection, space)
        cached = self.store.derived.get(key)
        if cached and cached[0] == sp["rows"] and not save:
            return cached[1], cached[2]
        folder = f"collections/{collection}/spaces/{space}/index"
        entry = sp.get("index") or {}
        listed = entry.get("file")  # the file the manifest names now: retired when a new build replaces it
        path = self.store.root / entry.get("file", f"{folder}/index.faiss")
        ondisk = path.with_suffix(".ivfdata").exists()  # lists in a file beside it: rebuilt, never extended
        ids = SpaceIds(self.store.root, sp)
        n, dim = len(ids), sp["encoder"]["dim"]
        index = None
        if save:
            want = factory or sp.get("index_factory") or ix.choose_factory(n, dim, self.store.settings.index_memory)
            grown = self.grown.pop(key, None)
            if grown is not None and grown[0] == want and grown[1].ntotal <= n:
                index, entry = grown[1], {"factory": want}  # grown during the ingest: extend it, tune it, save it
        if save and ondisk and index is None and entry.get("ntotal") == n and entry.get("factory") == want \
                and path.exists():  # an on-disk index that already holds every row: kept as it is (mapped)
            index = _loaded(path, mmap=True)
            if index is not None:
                ix.set_param(index, want, entry.get("value"))
                self.store.derived[key] = (sp["rows"], index, ids)
                return index, ids
        if index is None and path.exists() and entry and not (save and ondisk):
            # a reader maps the file; a writer, or a reader whose index lags its snapshot, reads it to add rows
            # (a damaged file reads as none: a reader builds an exact index from the shards, a writer a new one)
            index = _loaded(path, mmap=not save and entry.get("ntotal", 0) >= sp["rows"])
            if index is not None and index.ntotal > sp["rows"]:
                index = None  # more rows than the snapshot: not this space's index (an edited manifest)
        if save:
            if factory:
                sp["index_factory"] = factory  # forced by the user: kept for later ingests
            blocks = self.vector_blocks(collection, space, progress=progress)
            changed = index is None or entry.get("factory") != want or index.ntotal > n
            exact = None  # an on-disk build's exact top-k of the tuning queries, gathered on its passes
            if changed:  # built a shard at a time: the space's vectors are never all in memory
                rel = self._new_name(folder)  # a new name per build: manifest and file never disagree
                if not n:
                    index = ix.build(np.zeros((0, dim)), "Flat")
                elif ix.ondisk_when(n, dim, self.store.settings.index_memory, want):
                    rel = f"{folder}/b{self.store.new_part():06d}/index.faiss"  # a folder per build: readers keep theirs
                    exact = ix.ExactTopK(n, dim)
                    ix.build_ondisk(blocks, n, dim, want, (self.store.root / rel).parent, exact=exact)
                    index = ix.load_index(self.store.root / rel, mmap=True)
                else:
                    index = ix.build_streaming(blocks, n, dim, want)
            elif index.ntotal < n:
                index.add(ix.normalize(self.vectors_from(collection, space, index.ntotal)))
                changed, rel = True, self._new_name(folder)
            if changed or not entry.get("recall_at_10"):
                if not changed:  # saved anew (under a new name) unless its lists are on disk (not rewritten)
                    kept = entry.get("file")
                    rel = kept if kept and (self.store.root / kept).with_suffix(".ivfdata").exists() \
                        else self._new_name(folder)
                target = target_recall or ix.TARGET_RECALL
                saved = self.store.root / rel
                if n and saved.with_suffix(".ivfdata").exists():
                    # lists on disk: tuned on the index itself, each batch of queries on a mapping of its own, let
                    # go after it (one mapping for all would keep every list it paged in resident). An index of the
                    # same kind over a 500k sample needed nprobe 144 where the whole 10M space needs 96 (fewer
                    # vectors a list: a query's neighbours lie farther), and a query costs in proportion
                    tuned = ix.tune_streaming(index, want, blocks, n, dim, target, exact=exact,
                                              fresh=lambda: ix.load_index(saved, mmap=True))
                    ix.set_param(index, want, tuned["value"])
                else:
                    tuned = ix.tune_streaming(index, want, blocks, n, dim, target) if n \
                        else {"param": None, "value": None, "recall_at_10": None, "n_queries": 0}
                if not saved.with_suffix(".ivfdata").exists():  # (an on-disk build wrote its files itself)
                    ix.save_index(index, self.store.root / rel)
                if listed and listed != rel:  # replaced: kept for readers of older snapshots, as shards are
                    self.store.retire(index_files(listed))
                sp["index"] = {"file": rel, "factory": want, "metric": "cosine", "ntotal": index.ntotal,
                               "param": tuned["param"], "value": tuned["value"],
                               "recall_at_10": tuned["recall_at_10"], "recall_queries": tuned["n_queries"],
                               "built": now()}
            entry = sp["index"]
        elif index is None:
            index = ix.build_streaming(self.vector_blocks(collection, space), n, dim, "Flat") if n else \
                ix.build(np.zeros((0, dim)), "Flat")
            entry = {"factory": "Flat", "value": None}
        elif index.ntotal < n:
            index = ix.add_rows(index, path, self.vectors_from(collection, space, index.ntotal))
        ix.set_param(index, entry.get("factory", "Flat"), entry.get("value"))
        self.store.derived[key] = (sp["rows"], index, ids)
        return index, ids

    def _new_name(self, folder: str) -> str:
        return f"{folder}/index-{self.store.new_part():06d}.faiss"

    def grow(self, collection: str, space: str, expect_rows: int, factory: str | None = None) -> None:
        """During an ingest, after each committed chunk (in its writer thread): bring an in-memory index up to the
        committed rows, of the kind a space of ``expect_rows`` needs, so that the closing ``sync`` has only
        the last rows to add before it tunes and saves it. Flat and HNSW only: an IVF index trains once, on the
        whole space, at the end."""
        sp = self.store.manifest["collections"][collection]["spaces"][space]
        dim = sp["encoder"]["dim"]
        want = factory or sp.get("index_factory") or ix.choose_factory(expect_rows, dim, self.store.settings.index_memory)
        if not want.startswith(("HNSW", "Flat")):
            return
        key = (collection, space)
        grown = self.grown.get(key)
        if grown is None or grown[0] != want or grown[1].ntotal > sp["rows"]:
            entry = sp.get("index") or {}
            path = self.store.root / entry["file"] if entry.get("file") else None
            index = _loaded(path) if path is not None and path.exists() and entry.get("factory") == want \
                and not path.with_suffix(".ivfdata").exists() else None
            if index is None or index.ntotal > sp["rows"]:
                index = ix.build(np.zeros((0, dim), np.float32), want)
            grown = self.grown[key] = (want, index)
        index = grown[1]
        if index.ntotal < sp["rows"]:
            index.add(ix.normalize(self.vectors_from(collection, space, index.ntotal)))


def _loaded(path: Path, mmap: bool = False) -> Any:
    """The saved index at ``path``, or None when it cannot be read (truncated, not an index): rebuilt from the
    shards, which are the source of truth."""
    try:
        return ix.load_index(path, mmap=mmap)
    except (RuntimeError, OSError):
        return None


def index_files(rel: str) -> list[str]:
    """The files of a saved index named ``rel`` in the manifest: the index, and an on-disk build's lists."""
    return [rel, str(Path(rel).with_suffix(".ivfdata"))] if Path(rel).parent.name.startswith("b") else [rel]
