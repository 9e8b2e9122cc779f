"""The store as a long-running service sees it: one ``Store`` per manifest snapshot, replaced when a writer commits.

A commit replaces ``embstore.json`` atomically (a new file renamed over the old: a new inode), so one ``stat`` per
request tells whether the snapshot changed; a new ``Store`` is then opened on the new manifest, and requests already
running keep the one they started with (the files an older snapshot names stay on disk for the retention time). A
request therefore sees the store as of one commit, never a half-written ingest. What a snapshot derives (FAISS
indexes, key tables) is built once per snapshot and space, under a lock, so that concurrent first requests do not
each load the same index; its SQL views once per snapshot (``Store.share_sql``: one read-only DuckDB database, a
cursor per query).

When a commit is seen, the next snapshot is made in the background by default (``reload="background"``): it is
opened, its SQL database made and the indexes (and ``where`` position maps) the current snapshot had loaded are
loaded again (those a request used in the last ``IDLE_S``: a space nobody asks for is not reloaded at every
commit forever), while requests go on being answered from the current snapshot; then it replaces it, all at once. No
request waits for a reload (on a 1M-item store a reload took seconds under load: bench/RESULTS.md), and each still
sees one commit whole: a commit is seen once its snapshot is ready, not at the instant of the rename. With
``reload="inline"`` the request that sees the change opens the new snapshot itself and the requests behind it wait:
a request that starts after a commit always sees it (what a client that wrote and then reads expects).

A background reload that fails (a shard removed under it, a disk error) leaves the current snapshot serving; it is
logged once per commit and tried again after ``RETRY_S``, doubled after each failure up to ``RETRY_MAX_S`` (a store
that stays broken costs one attempt a minute, not one a second; a new commit is tried at once), and ``describe()``'s
``reload_error`` says what failed, since when and how many times, until a reload succeeds. While a reload is made,
two snapshots' indexes are in memory (the one serving and the next); the older goes when its last request ends.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..config import Settings
from ..manifest import MANIFEST
from ..store import Store

log = logging.getLogger("embstore.serve")
RELOADS = ("background", "inline")
RETRY_S = 1.0  # a background reload that failed is tried again after this long, doubled after each failure
RETRY_MAX_S = 60.0  # up to this
IDLE_S = 900.0  # a space no request has used for this long is not prepared for the next snapshot


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
        self._where: set[tuple[str, str]] = set()
        self._used: dict[tuple[str, str], float] = {}  # (collection, space) -> when a request last used it
        self._lock = threading.Lock()

    @property
    def loaded(self) -> frozenset[tuple[str, str]]:
        """The (collection, space) pairs whose index this snapshot has loaded."""
        return frozenset(self._warm)

    @property
    def where_maps(self) -> frozenset[tuple[str, str]]:
        """The (collection, space) pairs a ``where`` search has run on (or was prepared for) on this snapshot."""
        return frozenset(self._where)

    @property
    def last_used(self) -> dict[tuple[str, str], float]:
        """(collection, space) -> ``time.monotonic()`` when a request last used its index (on this snapshot, or on
        the one it was prepared like)."""
        return dict(self._used)

    def used_where(self, collection: str, space: str) -> None:
        """Note that a search with a ``where`` ran on this space, so that the next snapshot prepares its map."""
        self._where.add((collection, space))

    def prepare_like(self, older: "Snapshot") -> None:
        """Make now what ``older`` had made when asked (its SQL database, the indexes it loaded, its ``where`` maps),
        so that the first requests on this snapshot find them ready. A space the new manifest no longer has is
        skipped."""
        from ..filtered import item_positions

        self.store.shared_sql()
        now, used = time.monotonic(), older.last_used
        for collection, space in sorted(older.loaded):
            last = used.get((collection, space))
            if last is None or now - last > IDLE_S:  # not asked for lately: its first request will load it
                continue
            if space not in self.store.manifest["collections"].get(collection, {}).get("spaces", {}):
                continue
            self._used.setdefault((collection, space), last)
            try:  # one space that cannot be made now fails its own requests later, not the whole snapshot
                self.warm(collection, space, request=False)
                if (collection, space) in older.where_maps:
                    item_positions(self.store, collection, space)
                    self._where.add((collection, space))
            except Exception as e:
                log.warning("embstore serve: preparing %s.%s for snapshot %d failed (its requests will try "
                            "again): %s", collection, space, self.serial, e)

    def warm(self, collection: str, space: str, *, request: bool = True) -> None:
        """Load the space's index (and its id table) for this snapshot once, whoever asks first; ``request``: a
        request is using it (so the next snapshot prepares it too)."""
        if request:
            self._used[(collection, space)] = time.monotonic()
        if (collection, space) in self._warm:
            return
        with self._lock:
            if (collection, space) not in self._warm:
                self.store.sync_index(collection, space)
                self._warm.add((collection, space))


class Snapshots:
    """``current()``: the snapshot as of the latest commit the service has made ready (see the module: ``reload``
    is ``background`` or ``inline``); whether the manifest changed is one ``stat`` of it (inode, modification time,
    size)."""

    def __init__(self, path: str | os.PathLike, settings: Settings | None = None, reload: str = "background"):
        if reload not in RELOADS:
            raise ValueError(f"reload must be one of {', '.join(RELOADS)}, got {reload!r}")
        self.settings = settings or Settings.resolve()
        self.reload = reload
        store = Store.open(path, create=False, settings=self.settings)
        self.root = store.root
        self._stamp = _stamp(self.root)
        self._snapshot = Snapshot(store, 1)
        self._lock = threading.Lock()
        self._pending: threading.Thread | None = None
        self._retry_at = 0.0  # (monotonic) no background reload starts before this
        self._failed_stamp: tuple[int, int, int] | None = None
        self._failures = 0  # failed reloads in a row of the commit self._failed_stamp
        self._error: dict[str, Any] | None = None  # the last failed reload, until one succeeds
        self.reloads = 0

    def current(self) -> Snapshot:
        try:
            stamp = _stamp(self.root)
        except FileNotFoundError:  # (the store was removed under the service: keep answering from what it had)
            return self._snapshot
        if stamp == self._stamp:
            return self._snapshot
        if self.reload == "inline":
            with self._lock:
                if stamp != self._stamp:
                    self._install(self._open(), stamp)
                return self._snapshot
        with self._lock:
            due = time.monotonic() >= self._retry_at or stamp != self._failed_stamp  # (a new commit: at once)
            if self._pending is None and stamp != self._stamp and due:
                self._pending = threading.Thread(target=self._prepare, args=(stamp, self._snapshot),
                                                 name="embstore-reload", daemon=True)
                self._pending.start()
            return self._snapshot

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background reload under way (if any) to finish; True when none is left running."""
        pending = self._pending
        if pending is not None:
            pending.join(timeout)
        return self._pending is None

    def _open(self) -> Snapshot:
        """The snapshot of the manifest as it is now."""
        # the stamp is taken before the manifest is read: a commit in between reopens once more next time
        return Snapshot(Store.open(self.root, create=False, settings=self.settings), self._snapshot.serial + 1)

    def _install(self, snap: Snapshot, stamp: tuple[int, int, int]) -> None:
        self._snapshot = snap
        self._stamp = stamp
        self.reloads += 1

    def _prepare(self, stamp: tuple[int, int, int], older: Snapshot) -> None:
        try:
            snap = self._open()
            snap.prepare_like(older)
            with self._lock:
                self._install(snap, stamp)
                self._error, self._retry_at, self._failures = None, 0.0, 0
        except Exception as e:  # (e.g. a shard removed under it: the current snapshot goes on; tried again later)
            if stamp != self._failed_stamp:  # once per commit, not once per retry
                log.warning("embstore serve: reloading the store failed, still serving snapshot %d: %s",
                            older.serial, e)
            with self._lock:
                err = self._error or {"since": time.time(), "attempts": 0}
                line = (str(e).strip().splitlines() or [""])[0]
                self._error = {"error": f"{type(e).__name__}: {line}", "since": err["since"],
                               "attempts": err["attempts"] + 1}
                self._failures = self._failures + 1 if stamp == self._failed_stamp else 1  # of this commit
                self._retry_at = time.monotonic() + min(RETRY_MAX_S, RETRY_S * 2 ** (self._failures - 1))
                self._failed_stamp = stamp
        finally:
            self._pending = None

    @property
    def reloading(self) -> bool:
        """Whether a background reload is under way."""
        return self._pending is not None

    @property
    def reload_error(self) -> dict[str, Any] | None:
        """The last background reload's failure while none has succeeded since: ``{"error": one line, "since": unix
        time of the first failure, "attempts": n}``; None when the last reload (or none yet) went well."""
        err = self._error
        return None if err is None else dict(err)

    def describe(self) -> dict[str, Any]:
        snap = self._snapshot
        return {"serial": snap.serial, "updated": snap.store.manifest.get("updated"), "reloads": self.reloads,
                "reload": self.reload, "reloading": self.reloading, "reload_error": self.reload_error}
