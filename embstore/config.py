"""Configuration has one path: explicit argument > environment variable > default.

One function decides the device (``resolve_device``); nothing deep in the code reads the environment.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from .errors import InputError

DEFAULT_TEXT_ENCODER = "minilm"
DEFAULT_IMAGE_ENCODER = "efficientnet-lite0"


@dataclass(frozen=True)
class Settings:
    """Knobs for one ingest or query run. Build with ``Settings.resolve(...)`` to apply env defaults."""

    device: str = "cpu"
    batch_size: int = 64
    commit_rows: int = 20_000  # rows per committed shard: a crash loses at most this many
    workers: int = 2  # image decoders: worker processes for many images (Linux), else threads
    index_memory: int = 8 << 30  # bytes a space's index may take: decides Flat / HNSW / IVF / IVF-PQ
    retention_s: int = 3600  # replaced files stay this long, so a reader of an older snapshot can finish

    @classmethod
    def resolve(cls, device: str | None = None, batch_size: int | None = None, commit_rows: int | None = None,
                workers: int | None = None, index_memory: int | None = None,
                retention_s: int | None = None) -> "Settings":
        return cls(
            device=resolve_device(device),
            batch_size=_positive("batch_size", batch_size, "EMBSTORE_BATCH_SIZE", 64),
            commit_rows=_positive("commit_rows", commit_rows, "EMBSTORE_COMMIT_ROWS", 20_000),
            workers=_positive("workers", workers, "EMBSTORE_WORKERS", min(8, os.cpu_count() or 1)),
            index_memory=_positive("index_memory", index_memory, "EMBSTORE_INDEX_MEMORY", 8 << 30),
            retention_s=_positive("retention_s", retention_s, "EMBSTORE_RETENTION_SECONDS", 3600, zero=True),
        )


def _pick(value: int | None, env: str, default: int) -> int:
    """The explicit value, else the environment variable, else the default."""
    if value is not None:
        return value
    raw = os.environ.get(env)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"{env}={raw!r} is not an integer; unset it or give a whole number") from None


def _positive(name: str, given: int | None, env: str, default: int, zero: bool = False) -> int:
    """The setting (given, else from ``env``, else ``default``), checked; an error names where a bad value came from."""
    value = _pick(given, env, default)
    if value < (0 if zero else 1):
        where = name if given is not None else env
        raise InputError(f"{where} must be a {'non-negative' if zero else 'positive'} integer, got {value}")
    return value


def resolve_device(device: str | None = None) -> str:
    """``device`` if given, else ``EMBSTORE_DEVICE``, else cuda > mps > cpu (torch is imported only to probe)."""
    device = device or os.environ.get("EMBSTORE_DEVICE") or "auto"
    if device != "auto":
        if not (device in ("cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", device)):
            raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto")
        return device
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if _mps_available(torch):
        return "mps"
    return "cpu"


def _mps_available(torch: Any) -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def check_device(device: str) -> None:
    """Before a model or tensor goes to ``device``: an accelerator asked for by name (--device, EMBSTORE_DEVICE)
    that torch cannot see is one clear error, not a driver message from deep inside the model loading."""
    if device in ("cpu", "auto"):
        return
    import torch

    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        number = int(device.partition(":")[2] or 0)
        if number >= count:
            seen = f"{count} CUDA GPU{'' if count == 1 else 's'}" if count else "no CUDA GPU"
            raise InputError(f"device {device!r} was asked for (--device or EMBSTORE_DEVICE), but torch sees {seen} "
                             "here; use --device cpu, or auto to take a GPU when there is one")
    elif device == "mps" and not _mps_available(torch):
        raise InputError("device 'mps' was asked for (--device or EMBSTORE_DEVICE), but torch sees no Apple GPU "
                         "here; use --device cpu, or auto")
