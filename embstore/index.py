"""The FAISS index beside each space: cosine similarity as inner product over L2-normalised vectors.

The index is derived data: its rows follow the space's shards in manifest order, so row ``i`` is the ``i``-th
vector of the space. It is written atomically after the shards are committed; a reader whose index holds fewer rows
than its snapshot adds the missing ones from the shards, and ignores rows beyond its snapshot.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_FACTORY = "Flat"


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    x /= norms
    return x


def new_index(dim: int, factory: str = DEFAULT_FACTORY) -> Any:
    import faiss

    return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)


def save_index(index: Any, path: Path) -> None:
    import faiss

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_index(path: Path) -> Any:
    import faiss

    return faiss.read_index(str(path))


def search(index: Any, queries: np.ndarray, k: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, rows) per query; rows at or beyond ``limit`` (not in the reader's snapshot) are dropped."""
    q = normalize(np.atleast_2d(queries))
    extra = 0 if limit is None else max(0, index.ntotal - limit)
    scores, rows = index.search(q, min(k + extra, max(index.ntotal, 1)))
    if extra:
        keep = [(r < limit) & (r >= 0) for r in rows]
        scores = np.stack([s[m][:k] for s, m in zip(scores, keep)])
        rows = np.stack([r[m][:k] for r, m in zip(rows, keep)])
    return scores, rows
