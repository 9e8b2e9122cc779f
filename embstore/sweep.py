"""What a killed writer leaves behind, swept by the next writer (it holds the writer lock, so no write is under
way): temporary files (``.NAME.tmp``, ``.NAME.<pid>.tmp``), a key spill folder (``STORE/.tmp``), and files under
``collections/`` and ``heads/`` that the manifest does not name (a shard, a key table or an index written before
the kill, never committed), and a quarantine folder (``quarantine/<name>/``) of a collection the manifest does not
have (an ingest into a new collection killed before its first commit, a delete killed after its commit). A file the
manifest names, current or retired, is never touched, nor anything else (``sql.duckdb``, the quarantine records of
the store's collections). A writer that writes shards without the lock (predict) reserves
their part numbers in the manifest (``reserve``): their files are left alone while that process lives.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

TEMP = re.compile(r"^\..+\.tmp$")
PART = re.compile(r"-(\d+)\.[a-z]+$")  # part-000012.parquet, index-000013.faiss, keys-id-000014.npy


def reserve(manifest: dict[str, Any], first: int, count: int) -> None:
    """Mark part numbers ``first .. first+count-1`` as being written by this process outside the lock."""
    manifest.setdefault("reserved", []).append({"first": first, "count": count, "pid": os.getpid(),
                                                "host": socket.gethostname()})


def release(manifest: dict[str, Any], first: int) -> None:
    """Drop this process's reservation that starts at ``first`` (its files are listed or given up)."""
    kept = [r for r in manifest.get("reserved", []) if not (r["first"] == first and r["pid"] == os.getpid())]
    if kept:
        manifest["reserved"] = kept
    else:
        manifest.pop("reserved", None)


def live_reservations(manifest: dict[str, Any]) -> list[tuple[int, int]]:
    """The (first, end) part ranges reserved by processes still alive (on another host: assumed alive); a dead
    process's reservation is dropped from ``manifest`` (committed with the writer's next commit)."""
    host, live, kept = socket.gethostname(), [], []
    for r in manifest.get("reserved", []):
        if r["host"] == host and not _alive(r["pid"]):
            continue
        kept.append(r)
        live.append((r["first"], r["first"] + r["count"]))
    if kept:
        manifest["reserved"] = kept
    else:
        manifest.pop("reserved", None)
    return live


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def listed_files(manifest: dict[str, Any]) -> set[str]:
    """Every path the manifest names (under any ``file`` key, an on-disk index's lists beside it), store-relative."""
    out: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "file" and isinstance(v, str):
                    out.add(v)
                    if v.endswith(".faiss"):
                        out.add(v[:-len(".faiss")] + ".ivfdata")
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(manifest)
    return out


def head_folders(manifest: dict[str, Any]) -> set[str]:
    return {v["path"] for h in manifest.get("heads", {}).values() for v in h.get("versions", []) if v.get("path")}


def leftovers(root: Path, manifest: dict[str, Any]) -> Iterator[Path]:
    """The files (and spill folder) a writer that did not finish left in ``root``."""
    root = Path(root)
    listed, heads = listed_files(manifest), head_folders(manifest)
    reserved = live_reservations(manifest)
    for name in os.listdir(root):
        if TEMP.match(name) and (root / name).is_file():
            yield root / name
    if (root / ".tmp").is_dir():
        yield root / ".tmp"
    if (root / "quarantine").is_dir():
        collections = manifest.get("collections", {})
        for name in sorted(os.listdir(root / "quarantine")):
            if name not in collections and (root / "quarantine" / name).is_dir():
                yield root / "quarantine" / name  # the records of a collection that does not exist
    for top in ("collections", "heads"):
        for folder, _, files in os.walk(root / top):
            for name in files:
                path = Path(folder) / name
                rel = path.relative_to(root).as_posix()
                if TEMP.match(name):
                    yield path
                elif rel in listed:
                    continue
                elif top == "heads" and path.parent.relative_to(root).as_posix() in heads:
                    continue  # a head version's own files (head.json and its arrays)
                elif (m := PART.search(name)) and any(a <= int(m.group(1)) < b for a, b in reserved):
                    continue  # being written by a live process outside the lock
                else:
                    yield path


def sweep(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Delete ``leftovers``; returns what went (store-relative). Folders stay (a writer makes them as it needs)."""
    root = Path(root)
    gone = []
    for path in list(leftovers(root, manifest)):
        try:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        except FileNotFoundError:
            continue
        gone.append(path.relative_to(root).as_posix())
    return gone
