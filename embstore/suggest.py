"""Which items to label next. With no head: a diverse, representative sample of the space (k-means with as many
clusters as picks, and from each cluster the item nearest its centre). With a head: the items it is least sure of
(the smallest margin between its two most probable labels), spread out in the space: the ``UNCERTAIN_SHARE`` x n
least sure are clustered into n groups, and the least sure item of each group is picked (Zhdanov 2019, "Diverse
mini-batch active learning"), so a batch does not spend its labels on fifty copies of one confusing item.

Why these: in rounds of 20 from 0 labels (``bench/active_learning.py``), they reach random picking's 500-label
accuracy at 240 labels on MNIST and 200-220 on digits. On TREC coarse they need 420-450 over 12 seeds; k-center
greedy (the farthest item from those picked, then among the 10n least sure) never got there by 500. Of 32 other rules
tried on TREC, the best (a quarter of each round k-means representatives of the whole pool; BADGE's gradient
embeddings among the 5n least sure) needed 280-360, but each was worse on MNIST and on most of 15 other tasks, so
neither is used (``bench/RESULTS.md``). With a self-training head (``fit --model selftrain``) on both arms instead of
logreg, these rules need about 270-280 labels on TREC coarse, but 280 on MNIST.

For a space of any size the picks come from a seeded random pool of at most ``POOL`` items (its vectors read from
the row groups that hold them), so a suggestion costs the same on 10^4 and 10^9 items; the same seed, the same picks.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .index import normalize

POOL = 50_000  # candidates drawn from the space
UNCERTAIN_SHARE = 5  # with a head: the n x this least sure candidates are clustered into n groups


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


def cluster_picks(X: np.ndarray, n: int, score: np.ndarray, seed: int = 0) -> list[int]:
    """``n`` rows of ``X``: k-means into n clusters, and of each the row of the lowest ``score``."""
    n = min(n, len(X))
    if n <= 0:
        return []
    if n == len(X):
        return list(range(n))
    return by_cluster(_kmeans(X, n, seed).labels_, score, n, score)


def _kmeans(X: np.ndarray, n: int, seed: int) -> Any:
    from sklearn.cluster import KMeans

    return KMeans(n, n_init=1, max_iter=100, random_state=seed).fit(X)


def by_cluster(labels: np.ndarray, score: np.ndarray, n: int, fill: np.ndarray) -> list[int]:
    """Of each cluster the row of the lowest ``score``; clusters that came out empty are made up by the rows of
    lowest ``fill`` not yet picked, so there are always n picks (when there are n rows)."""
    first: dict[int, int] = {}
    for r in np.argsort(score, kind="stable"):  # rows by score: the first seen of a cluster is its lowest
        first.setdefault(int(labels[r]), int(r))
    picks = sorted(first.values(), key=lambda r: (score[r], r))
    taken = set(picks)
    picks += [int(r) for r in np.argsort(fill, kind="stable") if int(r) not in taken][: n - len(picks)]
    return picks[:n]


def choose(X: np.ndarray, n: int, proba: np.ndarray | None = None, *, seed: int = 0) -> tuple[list[int], str]:
    """``n`` rows of unit vectors ``X`` to label next, and how they were chosen: with no ``proba`` (items x labels
    from the current head), a diverse, representative sample; with it, the least sure rows, spread out."""
    if proba is None:
        centre = normalize(X.mean(0, keepdims=True))[0]
        # the distance to the own cluster's centre is what matters; the whole space's centre only breaks ties
        return _nearest_to_centres(X, n, seed, centre), "k-means: the item nearest each of n cluster centres"
    top2 = np.sort(proba, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    unsure = np.argsort(margin, kind="stable")[: max(n, UNCERTAIN_SHARE * n)]
    local = cluster_picks(X[unsure], n, margin[unsure], seed)
    return [int(unsure[k]) for k in local], (f"the {len(unsure):,} with the smallest margin between the two "
                                             "likeliest labels, clustered into n groups, the least sure of each")


def _nearest_to_centres(X: np.ndarray, n: int, seed: int, centre: np.ndarray) -> list[int]:
    n = min(n, len(X))
    if n <= 0:
        return []
    km = _kmeans(X, n, seed)
    sim = np.einsum("ij,ij->i", X, km.cluster_centers_[km.labels_])  # each row's closeness to its own centre
    return by_cluster(km.labels_, -sim, n, -(X @ centre))


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
        how = f"{how} over " + (f"all {total:,} items" if len(ids) == total else
                                f"a random {len(ids):,} of {total:,} items (seed {seed})")
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
