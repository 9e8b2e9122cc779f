"""The manifest (``embstore.json``); the writer lock is in ``lock.py``.

The manifest is the only source of what exists: a shard that it does not list does not exist. It is replaced
atomically (write a temporary file, fsync, rename, fsync the directory), so readers always see a whole snapshot and a
crash loses at most the shard being written.
"""
from __future__ import annotations

import copy
import errno
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import InputError, StoreWriteError
from . import lock as _lock

LOCK, lock_state, writer_lock = _lock.LOCK, _lock.lock_state, _lock.writer_lock  # for callers of the manifest's lock

FORMAT_VERSION = 1
MANIFEST = "embstore.json"
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}


def empty_manifest() -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "created": now(), "updated": now(), "next_part": 0,
            "collections": {}, "heads": {}}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON ({e}); restore it from a backup") from None
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"{path} has format_version {version!r}; this embstore reads version {FORMAT_VERSION}")
    return data


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temp_file(tmp, path):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    fsync_dir(path.parent)


@contextmanager
def temp_file(tmp: Path, path: Path) -> Iterator[Path]:
    """Around writing ``tmp`` and renaming it to ``path``: a failure to write (disk full, no permission; FAISS
    reports those as RuntimeError) removes ``tmp`` and raises one StoreWriteError naming ``path``."""
    try:
        yield tmp
    except (OSError, RuntimeError) as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if not _write_failure(e):
            raise
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[-1][:200]
        raise StoreWriteError(f"cannot write {path}: {reason}; what was committed before stays and no temporary "
                              "file is left: free some disk space or fix the folder's permissions, then run the "
                              "command again") from None


def _write_failure(e: BaseException) -> bool:
    """Whether an error (an OSError, FAISS's RuntimeError, Arrow's) reports a file that could not be written, not
    one that could not be read."""
    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
        return True
    text = str(e).lower()
    return any(w in text for w in ("no space left", "permission denied", "read-only file system", "disk quota",
                                   "file too large")) or (isinstance(e, RuntimeError) and "write" in text)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    manifest = copy.deepcopy(manifest)
    manifest["updated"] = now()
    write_atomic(root / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
