"""Image decoding for the ingest: each file read and checked against the hash it was hashed with, decoded and
preprocessed in worker processes (many images, Linux) or threads, streamed to the model a batch at a time."""
from __future__ import annotations

import os
import re
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from ..config import MAX_PIXELS
from ..encoders import load_image
from ..errors import ImageTooLargeError
from .hashing import content_hash
from .locations import special_kind

PROCESS_MIN = 256  # images to decode before worker processes pay for their start (fewer: threads)


def read_file(path: str) -> tuple[bytes | None, str | None]:
    """An image file's bytes (a local path, or a URL fsspec knows), or the quarantine reason why they cannot be
    read (a named pipe or a device is not read at all)."""
    try:
        if "://" in path:
            import fsspec

            with fsspec.open(path, "rb") as f:
                return f.read(), None
        # opened without blocking, so that a named pipe does not wait for a writer; then looked at before a read
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            kind = special_kind(os.fstat(fd).st_mode)
        except OSError:
            os.close(fd)
            raise
        if kind is not None:
            os.close(fd)
            return None, f"not a regular file: {path} is {kind}; give image files"
        with open(fd, "rb") as f:
            return f.read(), None
    except FileNotFoundError:
        return None, f"missing file: {path}"
    except OSError as e:
        return None, f"unreadable file: {path}: {e.strerror or e}"



class _Decode:
    """Decode + preprocess image k of a list, checking that the file still has the bytes that were hashed.
    Returns (k, input or None, error or None), the error as (kind, reason): kind "content" when the bytes do not
    decode (so for every file with those bytes), "file" when this file vanished or changed. Never raises."""

    def __init__(self, paths: list[str], digests: list[str], preprocess: Callable[[Any], Any], max_pixels: int):
        self.paths, self.digests, self.preprocess, self.max_pixels = paths, digests, preprocess, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int) -> tuple[int, Any, tuple[str, str] | None]:
        path = self.paths[k]
        data, error = read_file(path)
        if data is None:
            return k, None, ("file", str(error))
        if content_hash(data) != self.digests[k]:
            return k, None, ("file", f"file changed while it was being ingested: {path}; ingest it again")
        x, error = decode_one(data, path, self.preprocess, self.max_pixels)
        return k, x, error


def decode_one(data: bytes, path: str, preprocess: Callable[[Any], Any],
               max_pixels: int | None = None) -> tuple[Any, tuple[str, str] | None]:
    """One file's bytes -> (the model's input, None), or (None, ("content", reason)) when they are no image or one
    with more pixels than ``max_pixels`` (seen from its header: never decoded)."""
    try:
        return preprocess(load_image(data, max_pixels)), None
    except ImageTooLargeError as e:
        return None, ("content", f"image too large: {path}: {e}")
    except Exception as e:  # PIL raises many types for bad bytes; each one means "broken image"
        detail = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(e).splitlines()[0] if str(e) else "")
        return None, ("content", f"broken image: {path}: {type(e).__name__}: {detail}")


def _collate(items: list[tuple[int, Any, Any]]) -> tuple[list[int], Any, list[tuple[int, Any]]]:
    """One batch: the indices that decoded, their inputs stacked (one tensor crosses from a worker process, not
    one per image), and the (index, error) of those that did not."""
    good = [(k, x) for k, x, error in items if error is None]
    errors = [(k, error) for k, _, error in items if error is not None]
    if not good:
        return [], None, errors
    xs = [x for _, x in good]
    if type(xs[0]).__module__.startswith("torch"):
        import torch

        batch: Any = torch.stack(xs)
    else:
        batch = np.stack(xs)
    return [k for k, _ in good], batch, errors


def decode_batches(paths: list[str], digests: list[str], preprocess: Callable[[Any], Any], batch_size: int,
                   workers: int, max_pixels: int | None = None) -> Any:
    """Yield (indices, stacked inputs, errors) batch by batch, in order, while the next batches decode: in worker
    processes (torch's DataLoader, forked) for many images on Linux, else in threads, never more than a few
    batches ahead of the model, so memory holds batches, not a whole chunk of decoded images."""
    import multiprocessing

    dataset = _Decode(paths, digests, preprocess, max_pixels or MAX_PIXELS)
    # a daemonic process (a multiprocessing.Pool worker, say) may not start processes of its own: threads there
    if workers > 1 and len(paths) >= PROCESS_MIN and sys.platform.startswith("linux") \
            and not multiprocessing.current_process().daemon:
        from torch.utils.data import DataLoader

        # fork, as DataLoader does by default on Linux up to Python 3.13: workers start at once, inherit the
        # preprocess function without pickling the model, and touch neither CUDA nor DuckDB; each runs torch on
        # one thread (DataLoader sets that), so no thread pool is shared across the fork
        yield from DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                              multiprocessing_context="fork", prefetch_factor=2)
        return

    def batch(start: int) -> tuple[list[int], Any, list[tuple[int, Any]]]:
        return _collate([dataset[k] for k in range(start, min(start + batch_size, len(paths)))])

    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for start in range(0, len(paths), batch_size):
            pending.append(pool.submit(batch, start))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
