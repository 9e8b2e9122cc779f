"""The store's writer lock (``STORE/.writer.lock``): one writer at a time.

The lock is an OS lock (``flock``) on that file, which the kernel releases when its process dies, however it dies.
The file records who holds it (pid, host, since when) for the message a second writer sees, and is emptied on
release. A record left by a writer killed on this host is reported and taken over (the OS lock is free, so nobody
writes). A record from another host is never taken over: that host's process cannot be checked from here, and on a
shared file system that does not carry ``flock`` across hosts it may still be writing; the message says to delete
the file once that process is known to be gone.

A second writer waits (``wait`` seconds; ``inf``: until the first finishes) by polling a non-blocking ``flock`` with
a sleep between tries, so it can give up at its deadline, never sits in a blocking call, and reads anew who holds
the lock. The lock's descriptor is closed in a child forked while it is held (image decoders fork), so a killed
writer's children never keep its lock.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .errors import StoreLockedError

LOCK = ".writer.lock"
POLL_S = 0.2  # between two tries for a lock another writer holds
_HELD: set[int] = set()  # descriptors of the locks this process holds (closed in forked children)


def _close_held_in_child() -> None:
    for fd in list(_HELD):
        try:
            os.close(fd)  # the parent's descriptor stays open: its lock is not released
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


@dataclass(frozen=True)
class Holder:
    """Who a lock file says holds (or held) the lock. ``host`` None: a record of an older embstore ("pid N"), which
    never emptied the file on release, so it says nothing about a live writer."""

    pid: int | None
    host: str | None
    since: str | None

    def __str__(self) -> str:
        if self.pid is None:
            return "another process"
        return f"pid {self.pid}" + (f" on host {self.host}" if self.host else "") + \
            (f" since {self.since}" if self.since else "")

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    @property
    def me(self) -> bool:
        return self.here and self.pid == os.getpid()

    @property
    def running(self) -> bool:
        """Whether the process is alive (on another host: assumed so, it cannot be checked)."""
        return not self.here or self.pid is None or alive(self.pid)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def read_holder(fd: int) -> Holder | None:
    """The record in the lock file (None: empty, released cleanly)."""
    raw = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    if not raw:
        return None
    try:
        rec = json.loads(raw)
        return Holder(int(rec["pid"]), str(rec["host"]), rec.get("since"))
    except (ValueError, KeyError, TypeError):
        words = raw.split()
        pid = int(words[1]) if len(words) == 2 and words[0] == "pid" and words[1].isdigit() else None
        return Holder(pid, None, None)


def lock_state(root: Path) -> tuple[str, str]:
    """Who has the writer lock, without taking it or writing anything (a read-only store works): ``("free", "")``,
    ``("held", holder)`` by a live writer, or ``("stale", holder)``: the file names a writer that was killed (the
    OS released its lock; the next writer takes it over)."""
    try:
        fd = os.open(root / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return "free", ""
    try:
        holder = read_holder(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "held", str(holder) if holder else "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return ("stale", str(holder)) if holder else ("free", "")
    finally:
        os.close(fd)


def record() -> bytes:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode() + b"\n"


@contextmanager
def writer_lock(root: Path, wait: float = 0.0, notify: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``root``'s writer lock. Another writer holding it: wait up to ``wait`` seconds (``notify`` is told once,
    with who holds it), then StoreLockedError; a lock left by a killed writer of this host is taken over
    (``notify`` is told)."""
    fd = _acquire(Path(root), wait, notify)
    try:
        _HELD.add(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, record(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released cleanly: the next writer finds no record to report
    finally:
        _HELD.discard(fd)
        os.close(fd)  # closing releases the flock


def _acquire(root: Path, wait: float, notify: Callable[[str], None] | None) -> int:
    """A descriptor of the lock file holding its flock (tried anew, file opened anew, every ``POLL_S``)."""
    path = root / LOCK
    deadline = time.monotonic() + wait
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(fd)
            os.close(fd)
            if holder is not None and holder.me:  # waiting on itself would never end
                raise StoreLockedError(f"store {root} is being written by {holder} (this process); one writer at "
                                       "a time: finish that write before starting another") from None
            who = str(holder) if holder else "another process"
            if holder is not None and holder.here and not holder.running:  # an inherited descriptor holds it
                who = f"a process started by {who}, which is no longer running"
        except BaseException:
            os.close(fd)
            raise
        else:
            if os.fstat(fd).st_ino != _inode(path):  # deleted or replaced since it was opened: open it anew
                os.close(fd)
                continue
            holder = read_holder(fd)
            if holder is None or holder.host is None or holder.here:
                if holder is not None and holder.host is not None and notify is not None:
                    notify(f"store {root}: took over the writer lock left by {holder}, which "
                           f"{'no longer holds it' if holder.running else 'is no longer running'}; what it left "
                           "unfinished is swept")
                return fd
            os.close(fd)  # another host's record: never taken over
            who = str(holder)
        remote = holder is not None and holder.host is not None and not holder.here
        hint = f"; if that process is gone, delete {path}" if remote else ""
        if time.monotonic() >= deadline:
            how = f" after waiting {wait:g} s (EMBSTORE_LOCK_WAIT)" if wait > 0 else ""
            then = "" if wait > 0 else " (or without --no-wait to wait for it)"
            raise StoreLockedError(f"store {root} is being written by {who}{how}; one writer at a time: run the "
                                   f"command again when it has finished{then}{hint}")
        if not told and notify is not None:
            notify(f"store {root} is being written by {who}; waiting... (--no-wait to stop instead{hint})")
            told = True
        time.sleep(max(0.0, min(POLL_S, deadline - time.monotonic())))


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None
