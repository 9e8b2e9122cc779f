"""The store as a long-running service sees it: one ``Store`` per manifest snapshot, replaced when a writer commits.

A commit replaces ``embstore.json`` atomically (a new file renamed over the old: a new inode), so one ``stat`` per
request tells whether the snapshot changed; a new ``Store`` is then opened on the new manifest, and requests already
running keep the one they started with (the files an older snapshot names stay on disk for the retention time). A
request therefore sees the store as of one commit, never a half-written ingest. What a snapshot derives (FAISS
indexes, key tables) is built once per snapshot and space, under a lock, so that concurrent first requests do not
each load the same index; its SQL views once per snapshot (``Store.share_sql``: one read-only DuckDB database, a
cursor per query).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from ..config import Settings
from ..manifest import MANIFEST
from ..store import Store


def _stamp(root: Path) -> tuple[int, int, int]:
    st = os.stat(root / MANIFEST)
    return st.st_ino, st.st_mtime_ns, st.st_size


class Snapshot:
    """One opened snapshot: its ``Store``, a number counting the snapshots this service has seen (``serial``), and
    the spaces whose index it has loaded."""

    def __init__(self, store: Store, serial: int):
        self.store = store
        self.serial = serial
        store.share_sql()  # SQL and where filters: the views of this snapshot, made once
        self._warm: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def warm(self, collection: str, space: str) -> None:
        """Load the space's index (and its id table) for this snapshot once, whoever asks first."""
        if (collection, space) in self._warm:
            return
        with self._lock:
            if (collection, space) not in self._warm:
                self.store.sync_index(collection, space)
                self._warm.add((collection, space))


class Snapshots:
    """``current()``: the snapshot as of the latest commit, reopened only when the manifest file changed (checked
    with one ``stat``: its inode, modification time and size)."""

    def __init__(self, path: str | os.PathLike, settings: Settings | None = None):
        self.settings = settings or Settings.resolve()
        store = Store.open(path, create=False, settings=self.settings)
        self.root = store.root
        self._stamp = _stamp(self.root)
        self._snapshot = Snapshot(store, 1)
        self._lock = threading.Lock()
        self.reloads = 0

    def current(self) -> Snapshot:
        try:
            stamp = _stamp(self.root)
        except FileNotFoundError:  # (the store was removed under the service: keep answering from what it had)
            return self._snapshot
        if stamp == self._stamp:
            return self._snapshot
        with self._lock:
            if stamp != self._stamp:
                # the stamp is taken before the manifest is read: a commit in between reopens once more next time
                store = Store.open(self.root, create=False, settings=self.settings)
                self._snapshot = Snapshot(store, self._snapshot.serial + 1)
                self._stamp = stamp
                self.reloads += 1
            return self._snapshot

    def describe(self) -> dict[str, Any]:
        snap = self._snapshot
        return {"serial": snap.serial, "updated": snap.store.manifest.get("updated"), "reloads": self.reloads}
