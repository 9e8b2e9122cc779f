"""Configuration has one path: explicit argument > environment variable > default.

One function decides the device (``resolve_device``); nothing deep in the code reads the environment. A
``Settings`` keeps the device as asked for (``auto`` included) and resolves it on first use of ``settings.device``
(a model load, a GPU search, a fit), so a command that needs no device (info, SQL, a search on a CPU) never imports
torch.
"""
from __future__ import annotations

import functools
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from .errors import InputError

DEFAULT_TEXT_ENCODER = "minilm"
DEFAULT_IMAGE_ENCODER = "efficientnet-lite0"
# An image with more pixels is refused from its header, before it is decoded (a decompression bomb: a 164 KB PNG of
# 13,000 x 13,000 decodes to 507 MB in RGB, more in the float tensors after it). 8192 x 8192 (67 Mpx, 201 MB in RGB)
# takes any camera's photo up to 64 Mpx while a few decoder workers at once stay within a few GB; PIL's own limits
# (a warning at 89 Mpx, an error at 179 Mpx) let the 169 Mpx bomb through. The models see 224 to 518 pixels a side.
MAX_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class Settings:
    """Knobs for one ingest or query run. Build with ``Settings.resolve(...)`` to apply env defaults.

    ``requested_device`` is the device as asked for (cpu, cuda, cuda:N, mps or auto); ``device`` is the one to run on,
    decided by ``resolve_device`` the first time something reads it."""

    requested_device: str = "auto"
    batch_size: int = 64
    commit_rows: int = 20_000  # rows per committed shard: a crash loses at most this many
    workers: int = 2  # image decoders: worker processes for many images (Linux), else threads
    index_memory: int = 8 << 30  # bytes a space's index may take: decides Flat / HNSW / IVF / IVF-PQ
    retention_s: int = 3600  # replaced files stay this long, so a reader of an older snapshot can finish
    runtime: str = "auto"  # what runs the model on the CPU: auto (the fastest installed), torch, openvino, onnx
    # seconds a writer waits for another to finish (0: stop at once, --no-wait). Without limit by default: the lock
    # is held only by a live process (the OS frees it when its holder dies), so a wait ends when that write ends,
    # and a limit would only turn a long ingest ahead in the queue into a failure after the waiting was done
    lock_wait: float = math.inf
    max_pixels: int = MAX_PIXELS  # an image with more is refused from its header, before it is decoded

    @classmethod
    def resolve(cls, device: str | None = None, batch_size: int | None = None, commit_rows: int | None = None,
                workers: int | None = None, index_memory: int | None = None,
                retention_s: int | None = None, runtime: str | None = None,
                lock_wait: float | None = None, max_pixels: int | None = None) -> "Settings":
        return cls(
            requested_device=requested_device(device),
            runtime=requested_runtime(runtime),
            batch_size=_positive("batch_size", batch_size, "EMBSTORE_BATCH_SIZE", 64),
            commit_rows=_positive("commit_rows", commit_rows, "EMBSTORE_COMMIT_ROWS", 20_000),
            workers=_positive("workers", workers, "EMBSTORE_WORKERS", min(8, os.cpu_count() or 1)),
            index_memory=_positive("index_memory", index_memory, "EMBSTORE_INDEX_MEMORY", 8 << 30),
            retention_s=_positive("retention_s", retention_s, "EMBSTORE_RETENTION_SECONDS", 3600, zero=True),
            lock_wait=_seconds("lock_wait", lock_wait, "EMBSTORE_LOCK_WAIT", math.inf),
            max_pixels=pixel_limit(max_pixels),
        )

    @functools.cached_property
    def device(self) -> str:
        """The device to run on: ``requested_device``, with ``auto`` resolved now (once) by ``resolve_device``."""
        return resolve_device(self.requested_device)


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


def _seconds(name: str, given: float | None, env: str, default: float) -> float:
    """A duration in seconds (given, else from ``env``, else ``default``): a non-negative number, ``inf`` for no
    limit."""
    if given is not None:
        value, where = float(given), name
    else:
        raw = (os.environ.get(env) or "").strip()
        if not raw:
            return default
        try:
            value, where = float(raw), env
        except ValueError:
            raise InputError(f"{env}={raw!r} is not a number of seconds; unset it, or give e.g. 600 (inf: no "
                             "limit)") from None
    if math.isnan(value) or value < 0:
        raise InputError(f"{where} must be a non-negative number of seconds (inf: no limit), got {value:g}")
    return value


def pixel_limit(given: int | None = None) -> int:
    """The most pixels an image may have to be decoded: ``given``, else ``EMBSTORE_MAX_PIXELS``, else MAX_PIXELS."""
    return _positive("max_pixels", given, "EMBSTORE_MAX_PIXELS", MAX_PIXELS)


RUNTIMES = ("auto", "torch", "openvino", "onnx")


def requested_runtime(runtime: str | None = None) -> str:
    """The CPU runtime asked for: ``runtime`` if given, else ``EMBSTORE_RUNTIME``, else ``auto``; checked here."""
    runtime = runtime or os.environ.get("EMBSTORE_RUNTIME") or "auto"
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; use {', '.join(RUNTIMES)}")
    return runtime


def requested_device(device: str | None = None) -> str:
    """The device asked for: ``device`` if given, else ``EMBSTORE_DEVICE``, else ``auto``; a name that is no device
    is refused here, before anything loads (no torch needed)."""
    device = device or os.environ.get("EMBSTORE_DEVICE") or "auto"
    if not (device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", device)):
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto")
    return device


def resolve_device(device: str | None = None) -> str:
    """The one function deciding the device: ``device`` if given, else ``EMBSTORE_DEVICE``, else cuda > mps > cpu.

    For ``auto``, torch is imported only to probe a machine that may have a GPU (2 s); one without any GPU device
    file is ``cpu`` at once."""
    device = requested_device(device)
    if device != "auto":
        return device
    if not _gpu_possible():
        return "cpu"
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if _mps_available(torch):
        return "mps"
    return "cpu"


GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/dxg", "/dev/kfd")


def _gpu_possible() -> bool:
    """Could torch see a GPU here? False only where it surely cannot: Linux without the device files of an NVIDIA
    (or WSL, or ROCm) driver. Elsewhere (macOS: MPS; Windows) torch is asked."""
    if sys.platform.startswith("linux"):
        return any(os.path.exists(p) for p in GPU_DEVICE_FILES)
    return True


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
