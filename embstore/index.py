"""The FAISS index beside each space: cosine similarity as inner product over L2-normalised vectors.

The index type follows the size and the memory budget, the way autofaiss reasons:

- fewer than ``FLAT_MAX`` vectors: ``Flat`` (exact);
- up to ``HNSW_MAX`` vectors, when raw vectors + graph fit the budget: ``HNSW32`` (efSearch tuned);
- beyond: ``IVF<nlist>,Flat`` (nprobe tuned), or ``IVF<nlist>,PQ<m>`` when the raw vectors do not fit the budget.

After a build the search parameter is raised until recall@10 against exact search, on a sample of the space's own
vectors used as queries, reaches the target; the choice, its parameters and the measured recall go to the manifest.

The index is derived data: its rows follow the space's shards in manifest order, so row ``i`` is the ``i``-th vector
of the space. It is written atomically after the shards are committed; a reader whose index holds fewer rows than its
snapshot adds the missing ones from the shards, and ignores rows beyond its snapshot.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

FLAT_MAX = 50_000
HNSW_MAX = 300_000
TARGET_RECALL = 0.95
DEFAULT_MEMORY = 8 << 30  # bytes an index may take, unless the caller says otherwise


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    x /= norms
    return x


def choose_factory(n: int, dim: int, memory_bytes: int = DEFAULT_MEMORY) -> str:
    """The FAISS factory string for ``n`` vectors of ``dim`` floats within ``memory_bytes``."""
    raw = n * dim * 4
    if n < FLAT_MAX and raw <= memory_bytes:
        return "Flat"
    if n < HNSW_MAX and raw + n * 32 * 2 * 4 <= memory_bytes:
        return "HNSW32"
    nlist = 1 << max(6, min(16, round(math.log2(math.sqrt(n)))))  # ~sqrt(n) lists: 1M vectors -> 1024
    if raw * 1.1 <= memory_bytes:
        return f"IVF{nlist},Flat"
    for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1):  # bytes per vector: the largest that fits and divides dim
        if dim % m == 0 and n * m <= memory_bytes:
            break
    return f"IVF{nlist},PQ{m}"


def build(vectors: np.ndarray, factory: str) -> Any:
    import faiss

    from .errors import InputError

    x = normalize(vectors)
    index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        try:
            nlist = int(faiss.extract_index_ivf(index).nlist)
        except RuntimeError:  # trained, but not an IVF (PCA, OPQ, ...)
            nlist = 1024
        cap = max(64 * 1024, 40 * nlist)  # faiss wants >= 39 training vectors a list
        sample = x if len(x) <= cap else x[np.random.default_rng(0).choice(len(x), cap, replace=False)]
        try:
            index.train(sample)
        except RuntimeError as e:
            reason = str(e).strip().splitlines()[-1].split(": ")[-1]
            raise InputError(f"FAISS cannot train {factory} on {len(x)} vectors: {reason}; give a factory that "
                             "fits the space's size, or none (embstore chooses by size)") from None
    if factory.startswith("HNSW"):
        index.hnsw.efConstruction = 80
    index.add(x)
    return index


def set_param(index: Any, factory: str, value: int | None) -> None:
    import faiss

    if value is None:
        return
    if factory.startswith("HNSW"):
        index.hnsw.efSearch = int(value)
    elif factory.startswith("IVF"):
        faiss.extract_index_ivf(index).nprobe = int(value)


def param_name(factory: str) -> str | None:
    return "efSearch" if factory.startswith("HNSW") else "nprobe" if factory.startswith("IVF") else None


def tune(index: Any, factory: str, vectors: np.ndarray, target: float = TARGET_RECALL, n_queries: int = 200,
         k: int = 10) -> dict[str, Any]:
    """Raise efSearch / nprobe until recall@k against exact search reaches ``target``; returns what was measured."""
    import faiss

    name = param_name(factory)
    if factory.strip() == "Flat":  # the exact index: nothing to tune, nothing to measure
        return {"param": None, "value": None, "recall_at_10": 1.0, "n_queries": 0}
    rng = np.random.default_rng(0)
    x = normalize(vectors)
    rows = rng.choice(len(x), min(n_queries, len(x)), replace=False)
    # queries like real ones, off the stored points: half are perturbed items, half midpoints of two items
    other = rng.choice(len(x), len(rows))
    noise = rng.standard_normal((len(rows), x.shape[1])).astype(np.float32) * (0.3 / np.sqrt(x.shape[1]))
    half = len(rows) // 2
    q = normalize(np.concatenate([x[rows[:half]] + noise[:half], x[rows[half:]] + x[other[half:]]]))
    k = min(k, len(x))
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    _, truth = flat.search(q, k)
    if name is None:  # another approximate index (PCA, a bare PQ, ...): no knob to raise, but measured all the same
        _, got = index.search(q, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth)]))
        return {"param": None, "value": None, "recall_at_10": round(recall, 4), "n_queries": len(rows)}
    ceiling = faiss.extract_index_ivf(index).nlist if name == "nprobe" else 1024
    value, recall = 16, 0.0
    while True:
        set_param(index, factory, value)
        _, got = index.search(q, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth)]))
        if recall >= target or value >= ceiling:
            break
        value = min(value * 2, ceiling)
    return {"param": name, "value": value, "recall_at_10": round(recall, 4), "n_queries": len(rows)}


def save_index(index: Any, path: Path) -> None:
    import faiss

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_index(path: Path, mmap: bool = False) -> Any:
    """Read a saved index; ``mmap``: map the file instead (IVF lists and flat codes are paged in as searched), for
    an index that will only be searched."""
    import faiss

    if mmap:
        for flag in ("IO_FLAG_MMAP_IFC", "IO_FLAG_MMAP"):
            try:
                return faiss.read_index(str(path), getattr(faiss, flag) | faiss.IO_FLAG_READ_ONLY)
            except (RuntimeError, AttributeError):
                continue
    return faiss.read_index(str(path))


def search(index: Any, queries: np.ndarray, k: int, limit: int | None = None, selector: Any = None,
           factory: str = "Flat", param: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, rows) per query; rows at or beyond ``limit`` (not in the reader's snapshot) are dropped.
    ``selector`` (a faiss IDSelector) restricts the search to some rows, inside the index's own search."""
    import faiss

    q = normalize(np.atleast_2d(queries))
    extra = 0 if limit is None else max(0, index.ntotal - limit)
    kk = min(k + extra, max(index.ntotal, 1))
    if selector is None:
        set_param(index, factory, param)
        scores, rows = index.search(q, kk)
    else:
        if factory.startswith("HNSW"):
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(int(param or 16), kk))
        elif factory.startswith("IVF"):
            params = faiss.SearchParametersIVF(sel=selector, nprobe=int(param or 8))
        else:
            params = faiss.SearchParameters(sel=selector)
        scores, rows = index.search(q, kk, params=params)
    if extra:
        keep = [(r < limit) & (r >= 0) for r in rows]
        scores = np.stack([s[m][:k] for s, m in zip(scores, keep)])
        rows = np.stack([r[m][:k] for r, m in zip(rows, keep)])
    return scores, rows


def check_factory(factory: str, dim: int) -> None:
    import faiss

    from .errors import InputError

    try:
        faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1].split(": ")[-1]  # FAISS prefixes the C++ function and file
        raise InputError(f"FAISS cannot build index {factory!r}: {reason}; "
                         "see the faiss index_factory docs, e.g. Flat, HNSW32, IVF1024,Flat, IVF1024,PQ32") from None
