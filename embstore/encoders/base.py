"""The encoder contract: list in, float32 ``(n, dim)`` out, order preserved.

An encoder also knows its identity (library, model, config, a hash of its weights, dim, normalisation), from which the
space fingerprint is derived: a head or a query checks that fingerprint so it never mixes two encoders' vectors.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..errors import EncoderError


class Encoder:
    """Base class. Subclasses set ``spec``, ``modalities``, ``dim`` and implement the encode methods they support."""

    spec: str
    modalities: frozenset[str] = frozenset()
    dim: int
    normalized: bool = False  # True when the model itself L2-normalises its output
    default_space: str = "space"
    transform: Any = None  # image encoders: the torchvision transform ``preprocess`` applies (replayed on tensors
    # by the ingest's device decoding); None when it is not one

    def identity(self) -> dict[str, Any]:
        """What makes two encoders the same: never a local path, always the weights' hash."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        return fingerprint_of(self.identity())

    def describe(self) -> dict[str, Any]:
        """Identity plus how to rebuild it (the spec) and its fingerprint: what a space records."""
        return {"spec": self.spec, "fingerprint": self.fingerprint(), **self.identity()}

    def runtime_in_use(self) -> str:
        """What runs the model: ``torch``, or a compiled CPU runtime (its name, version and precision)."""
        return "torch"

    def load(self) -> "Encoder":
        """The encoder with its model in memory (a lazy encoder loads it here; others already have)."""
        return self

    # text -----------------------------------------------------------------------------------------------------
    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        raise EncoderError(f"encoder {self.spec!r} does not embed text; use a text or CLIP encoder")

    # images ---------------------------------------------------------------------------------------------------
    def preprocess(self, image: "Any") -> Any:
        """Turn one decoded PIL image into the model's input (called in worker threads or processes)."""
        raise EncoderError(f"encoder {self.spec!r} does not embed images; use an image or CLIP encoder")

    def encode_preprocessed(self, batch: list[Any]) -> np.ndarray:
        """Embed a batch of ``preprocess`` outputs: a list, or the same already stacked into one array/tensor."""
        raise EncoderError(f"encoder {self.spec!r} does not embed images; use an image or CLIP encoder")

    def encode_images(self, images: Iterable[Any], batch_size: int = 64) -> np.ndarray:
        """Convenience: paths, bytes or PIL images -> vectors (no quarantine; the ingest runner does that)."""
        items = [self.preprocess(load_image(x)) for x in images]
        if not items:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate([self.encode_preprocessed(items[i:i + batch_size])
                               for i in range(0, len(items), batch_size)])


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection now (False when HF_HUB_OFFLINE is set; True behind a
    proxy, which a direct connection cannot judge): asked before a
    download is tried, so a machine without network gets one message at once, not a minute of retries."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the proxy knows: let the download try
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or (80 if url.scheme == "http" else 443)), timeout).close()
        return True
    except OSError:
        return False


def fingerprint_of(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def hash_state_dict(module: Any) -> str:
    """sha256 over a torch module's parameters and buffers (names, shapes, dtypes, bytes) on the CPU."""
    import torch

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def open_image(source: Any, max_pixels: int | None = None) -> Any:
    """A path or bytes -> a PIL image opened lazily (its header read, no pixel decoded), refused with
    ImageTooLargeError when it has more pixels than ``max_pixels`` (default: ``config.pixel_limit()``)."""
    import warnings

    from PIL import Image

    from ..config import pixel_limit
    from ..errors import ImageTooLargeError

    limit = pixel_limit(max_pixels)
    with warnings.catch_warnings():  # PIL's warning above 89 Mpx: the limit below decides
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if isinstance(source, Image.Image):
            img = source
        elif isinstance(source, (bytes, bytearray, memoryview)):
            img = Image.open(io.BytesIO(bytes(source)))
        else:
            img = Image.open(source)
    width, height = img.size
    if width * height > limit:
        raise ImageTooLargeError(f"{width} x {height} = {width * height:,} pixels, over the limit of {limit:,} "
                                 "(EMBSTORE_MAX_PIXELS); shrink the image, or raise the limit")
    return img


def load_image(source: Any, max_pixels: int | None = None) -> Any:
    """A path, bytes or PIL image -> an RGB PIL image, fully decoded (so a truncated file fails here, not later);
    one with more pixels than ``max_pixels`` is refused from its header, before decoding (see ``open_image``)."""
    img = open_image(source, max_pixels)
    img.load()
    return img.convert("RGB")


def load_user_image(source: Any, max_pixels: int | None = None, name: str | None = None) -> Any:
    """``load_image`` for an image a user names on the command line or in a call: a one-line InputError when the
    file is missing, is no regular file (a named pipe is never opened) or is not an image. ``name``: how the
    message names it (default: the path)."""
    from ..errors import ImageTooLargeError, InputError

    shown = source if name is None else name
    try:
        kind = None
        if isinstance(source, (str, os.PathLike)):
            from ..ingest.locations import special_kind

            kind = special_kind(os.stat(source).st_mode)
        if kind is None:
            return load_image(source, max_pixels)
    except FileNotFoundError:
        raise InputError(f"image {shown} does not exist") from None
    except ImageTooLargeError as e:
        raise ImageTooLargeError(f"image {shown} has {e}") from None
    except Exception as e:  # PIL raises many types for bad bytes; each one means "not an image"
        raise InputError(f"cannot read image {shown}: {type(e).__name__}: {e}") from None
    raise InputError(f"image {shown} is not a regular file ({kind}); give an image file")


def as_float32(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise EncoderError(f"encoder returned an array of shape {arr.shape}; expected (n, dim)")
    return np.ascontiguousarray(arr)


@contextmanager
def hub_cache_only_when_unreachable() -> Iterator[bool]:
    """Inside: when the Hugging Face hub cannot be reached, its downloads look in the local cache only (a weights
    file already there loads; one that is not fails at once, not after a minute of retries). Yields whether the
    hub was reachable."""
    reachable = hub_reachable()
    if reachable:
        yield True
        return
    try:
        import huggingface_hub.constants as hub
    except ImportError:  # pragma: no cover
        yield False
        return
    before = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = True
    try:
        yield False
    finally:
        hub.HF_HUB_OFFLINE = before
