"""Near-duplicates: items whose embeddings are closer than a cosine threshold, grouped (connected components of the
"closer than" relation), found through the space's own index a shard at a time (each item's k nearest, kept when
at or above the threshold), so memory holds one shard's vectors and the pairs found, whatever the space's size.
And the check a fit makes: how many test items have a near-duplicate among the training items (leakage that
inflates the test score).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

THRESHOLD = 0.99  # cosine: copies (re-encoded, resized, re-punctuated), not merely alike. On scikit-learn's digits
# in EfficientNet-Lite0 space, 128 of 360 test images have a training image at >= 0.95 and 1 at >= 0.98, all of them
# other drawings (the nearest one is of another digit 4% of the time at 0.95-0.97): 0.95 would call look-alikes copies
NEIGHBOURS = 10  # each item's nearest looked at: a group larger than this is still found through its members


def _groups(pairs: list[tuple[str, str, float]]) -> list[list[str]]:
    parent: dict[str, str] = {}

    def root(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b, _ in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[str, list[str]] = {}
    for a in parent:
        members.setdefault(root(a), []).append(a)
    return sorted((sorted(m) for m in members.values()), key=lambda m: (-len(m), m[0]))


def find_duplicates(store: Any, collection: str, *, space: str | None = None, threshold: float = THRESHOLD,
                    k: int = NEIGHBOURS, limit: int | None = None, progress: Any = None) -> dict[str, Any]:
    """``{"groups": [{"size", "ids", "contents", "min_score"}], ...}``, largest first."""
    from . import index as ix
    from .lookup import item_rows
    from .search import index_setting

    if not 0 < threshold <= 1:
        raise InputError(f"threshold is a cosine in (0, 1], got {threshold}")
    space = store.space_name(collection, space)
    index, ids = store.sync_index(collection, space)
    factory, param = index_setting(store, collection, space)
    total, done = len(ids), 0
    progress = progress or (lambda stage, done, total: None)
    pairs: list[tuple[str, str, float]] = []
    for shard_ids, X in store.vector_shards(collection, space):
        scores, rows = ix.search(index, ix.normalize(X), min(k + 1, total), limit=total, factory=factory, param=param)
        for a, srow, rrow in zip(shard_ids, scores, rows):
            near = [(int(r), float(s)) for r, s in zip(rrow, srow) if r >= 0 and s >= threshold - 1e-6]
            if near:
                for b, s in zip(ids.take([r for r, _ in near]), (s for _, s in near)):
                    if b != a:
                        pairs.append((min(a, b), max(a, b), s))
        done += len(shard_ids)
        progress("duplicates", done, total)
    groups = _groups(pairs)
    low: dict[str, float] = {}
    for a, b, s in pairs:
        low[a] = min(low.get(a, 1.0), s)
    content = store.collection(collection)["content_column"]
    shown = groups if limit is None else groups[:limit]
    meta = item_rows(store, collection, [i for g in shown for i in g[:5]])
    out = [{"size": len(g), "ids": g, "contents": [meta.get(i, {}).get(content) for i in g[:5]],
            "min_score": round(min(low.get(i, 1.0) for i in g), 4)} for g in shown]
    return {"collection": collection, "space": space, "threshold": threshold, "items": total,
            "groups_found": len(groups), "items_in_groups": sum(len(g) for g in groups), "groups": out}


LEAKAGE_WORK = 2e9  # multiply-adds the fit's check may spend: beyond, it checks a seeded sample of the test items


def leakage(X_train: np.ndarray, X_test: np.ndarray, threshold: float = THRESHOLD,
            block: int = 4096) -> dict[str, Any]:
    """How many test rows have a training row at cosine >= ``threshold`` (exact; on a seeded sample of the test
    rows when all of them would cost more than ``LEAKAGE_WORK``)."""
    from .index import normalize

    out = {"threshold": threshold, "test_items_checked": 0, "near_duplicates": 0}
    if not len(X_train) or not len(X_test):
        return out
    cap = max(200, int(LEAKAGE_WORK / (len(X_train) * X_train.shape[1])))
    rows = np.arange(len(X_test)) if len(X_test) <= cap else \
        np.sort(np.random.default_rng(0).choice(len(X_test), cap, replace=False))
    A, n = normalize(X_train), 0
    for start in range(0, len(rows), block):
        n += int(((normalize(X_test[rows[start:start + block]]) @ A.T).max(1) >= threshold - 1e-6).sum())
    return out | {"test_items_checked": int(len(rows)), "near_duplicates": n}
