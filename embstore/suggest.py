"""Which items to label next. With no head: a diverse, representative sample of the space (k-center greedy: each
pick the item farthest from those already picked). With a head: the items it is least sure of (the smallest margin
between its two most probable labels), spread out in the space (k-center greedy among the most uncertain), so a
batch does not spend its labels on fifty copies of one confusing item.

For a space of any size the picks come from a seeded random pool of at most ``POOL`` items (its vectors read from
the row groups that hold them), so a suggestion costs the same on 10^4 and 10^9 items; the same seed, the same picks.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .index import normalize

POOL = 50_000  # candidates drawn from the space
UNCERTAIN_SHARE = 10  # with a head: k-center greedy among the n x this most uncertain candidates


def k_center_greedy(X: np.ndarray, n: int, first: int = 0) -> list[int]:
    """``n`` rows of unit vectors ``X``, from ``first`` on, each the farthest (cosine) from those already chosen."""
    n = min(n, len(X))
    if n <= 0:
        return []
    chosen = [int(first)]
    nearest = 1.0 - X @ X[first]  # cosine distance to the nearest chosen row
    nearest[first] = -np.inf
    for _ in range(n - 1):
        j = int(np.argmax(nearest))
        chosen.append(j)
        nearest = np.minimum(nearest, 1.0 - X @ X[j])
        nearest[chosen] = -np.inf
    return chosen


def choose(X: np.ndarray, n: int, proba: np.ndarray | None = None, *, seed: int = 0) -> tuple[list[int], str]:
    """``n`` rows of unit vectors ``X`` to label next, and how they were chosen: with no ``proba`` (items x labels
    from the current head), a diverse sample; with it, the least sure rows, spread out."""
    if proba is None:
        first = int(np.argmax(X @ normalize(X.mean(0, keepdims=True))[0]))  # start at the most central item
        return k_center_greedy(X, n, first), "k-center greedy: a diverse sample"
    top2 = np.sort(proba, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    unsure = np.argsort(margin, kind="stable")[: max(n, UNCERTAIN_SHARE * n)]
    local = k_center_greedy(X[unsure], n, 0)  # from the least sure one, then spread out
    return [int(unsure[k]) for k in local], (f"the {len(unsure):,} with the smallest margin between the two "
                                             "likeliest labels, then k-center greedy among them")


def suggest(store: Any, collection: str, n: int = 50, *, head: str | None = None, space: str | None = None,
            seed: int = 0) -> dict[str, Any]:
    """``{"how": ..., "rows": [{id, content, guess, confidence}]}``: ``n`` items to label next (see the module)."""
    from .heads import load_head
    from .lookup import item_rows, vectors_at

    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    record = est = None
    if head is not None:
        record, est = load_head(store, head)
        if record["collection"] != collection and space is None:
            from .labelled import matching_space

            space = matching_space(store, collection, record["space_fingerprint"], f"head {head!r}")
    space = store.space_name(collection, space)
    sp = store.space(collection, space)
    if record is not None and record["space_fingerprint"] != sp["encoder"]["fingerprint"]:
        raise InputError(f"head {head!r} was trained on another encoder's space than {collection}.{space}")
    total = int(sp["rows"])
    if total == 0:
        raise InputError(f"space {space!r} of {collection!r} has no vectors yet; ingest some items first")
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.choice(total, min(POOL, total), replace=False))
    ids, X = vectors_at(store, collection, space, pos, with_ids=True)
    X = normalize(X)
    content = store.collection(collection)["content_column"]
    label_column = record.get("label_column") if record else None
    if label_column:  # the items already labelled are not suggested
        rows = item_rows(store, collection, ids)
        keep = [k for k, i in enumerate(ids) if rows.get(i, {}).get(label_column) in (None, "")]
        ids, X = [ids[k] for k in keep], X[keep]
    elif record is not None and record.get("labelled_ids"):  # a head fitted on a labels file: the ids it labelled
        done = set(np.load(store.root / record["path"] / record["labelled_ids"], allow_pickle=False).tolist())
        keep = [k for k, i in enumerate(ids) if i not in done]
        ids, X = [ids[k] for k in keep], X[keep]
    if not ids:
        where = f"a label in {label_column!r}" if label_column else "a label in the head's labels file"
        raise InputError(f"every sampled item of {collection!r} already has {where}")
    guess = conf = None
    proba = None if est is None else est.predict_proba(X)
    picks, how = choose(X, n, proba, seed=seed)
    if est is None:
        how = f"{how} over a random {len(ids):,} of {total:,} items (seed {seed})"
    else:
        classes = np.asarray(record["classes"], dtype=object)
        guess, conf = classes[proba.argmax(1)], proba.max(1)
        how = f"{how}, of {len(ids):,} sampled items; head {record['name']!r} (seed {seed})"
    chosen = [ids[k] for k in picks]
    meta = item_rows(store, collection, chosen)
    out = []
    for k, item_id in zip(picks, chosen):
        row = {"id": item_id, "content": meta.get(item_id, {}).get(content)}
        if guess is not None:
            row |= {"guess": str(guess[k]), "confidence": round(float(conf[k]), 4)}
        out.append(row)
    return {"collection": collection, "space": space, "head": record["name"] if record else None, "how": how,
            "rows": out}
