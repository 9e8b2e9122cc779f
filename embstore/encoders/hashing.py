"""A deterministic fake encoder for fast tests: no weights, no torch, same input -> same vector.

Text: a signed hashing bag of words (so texts sharing words are similar). Images: the 8x8 grayscale thumbnail,
projected by a fixed random matrix. Vectors are L2-normalised.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Sequence

import numpy as np

from .base import Encoder

_WORD = re.compile(r"\w+")


class HashEncoder(Encoder):
    modalities = frozenset({"text", "image"})
    normalized = True

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.spec = f"hash:{dim}"
        self.default_space = f"hash{dim}"
        self._proj = np.random.default_rng(0).standard_normal((64, dim)).astype(np.float32)

    def identity(self) -> dict[str, Any]:
        return {"library": "embstore", "model": "hash", "dim": self.dim, "normalized": True, "config": {},
                "weights_sha256": None}

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            for word in _WORD.findall(str(text).lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return _normalize(out)

    def preprocess(self, image: Any) -> Any:
        from PIL import Image

        thumb = image.convert("L").resize((8, 8), Image.BILINEAR)
        return np.asarray(thumb, np.float32).reshape(-1) / 255.0 - 0.5

    def encode_preprocessed(self, batch: list[Any]) -> np.ndarray:
        return _normalize(np.stack(batch) @ self._proj)


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (x / norms).astype(np.float32)
