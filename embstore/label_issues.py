"""Labels that are likely wrong: confident learning (Northcutt, Jiang and Chuang, 2021) on out-of-fold probabilities,
by cleanlab.

Each labelled item's probabilities come from a head of the same kind trained on the other folds (it never saw the
item). cleanlab's default filter (``find_label_issues``, ``prune_by_noise_rate``) estimates from them how many items
of each given label truly belong to each other label (the calibrated confident joint), and flags that many per pair,
those with the largest margin of the other label over the given one; the issues are ranked by self-confidence (the
probability of the given label, lowest first). The suggested label is the likeliest one.

cleanlab rather than code of our own: the previous filter here (confident learning's plain ``confident_learning``
rule, written out) ranked worse on labels flipped at random: 9 to 12 points of precision below cleanlab's default
on TREC at 5% and 20% noise on the very same probabilities (``bench/label_noise.py``, ``bench/RESULTS.md``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

FOLDS = 5


def ranked_issues(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Indices of the items whose label is likely wrong, worst first, for label indices ``labels`` and out-of-fold
    ``proba`` (items x labels): cleanlab's default filter, ranked by self-confidence."""
    import warnings

    from cleanlab.filter import find_label_issues

    with warnings.catch_warnings():  # cleanlab warns of labels with few items; the caller's counts say as much
        warnings.simplefilter("ignore")
        return np.asarray(find_label_issues(np.asarray(labels, np.int64), proba,
                                            return_indices_ranked_by="self_confidence"), np.int64)


def out_of_fold(make: Any, X: np.ndarray, y: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Probabilities of each item from a head (``make()``) fitted on the other stratified folds."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    folds = int(min(folds, counts[counts > 0].min()))
    if folds < 2:
        raise InputError("finding wrong labels needs at least 2 items of each label (each is scored by a head "
                         "trained without it)")
    proba = np.zeros((len(y), counts.size))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        est = make().fit(X[tr], y[tr])
        cols = np.asarray(est.classes_, np.int64)
        proba[np.ix_(te, cols)] = est.predict_proba(X[te])
    return proba


def label_issues(store: Any, collection: str, label_column: str | None = None, *, labels: Any = None,
                 space: str | None = None, model: str = "logreg", params: dict[str, Any] | None = None,
                 limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """The labelled items of ``collection`` whose label is likely wrong, worst first: id, content, given label,
    suggested label, score (the out-of-fold probability of the given label; lower is worse)."""
    from .heads import make_estimator
    from .labelled import labelled, labels_from_file
    from .lookup import item_rows

    space = store.space_name(collection, space)
    from_file = None if labels is None else labels_from_file(labels, None)
    X, y, ids, _ = labelled(store, collection, space, label_column, from_file)
    if y and isinstance(y[0], list):
        raise InputError("finding wrong labels takes one label per item; this label column holds lists")
    classes = sorted(set(y), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise InputError("finding wrong labels needs at least 2 labels")
    index = {c: j for j, c in enumerate(classes)}
    yi = np.asarray([index[v] for v in y], np.int64)
    device = store.settings.device
    proba = out_of_fold(lambda: make_estimator(model, dict(params or {}), device), X, yi, seed=seed)
    ranked = ranked_issues(yi, proba)
    score, guess = proba[np.arange(len(yi)), yi], proba.argmax(1)
    order = [int(i) for i in ranked]
    if limit is not None:
        order = order[:limit]
    content = store.collection(collection)["content_column"]
    meta = item_rows(store, collection, [ids[i] for i in order])
    rows = [{"id": ids[i], "content": meta.get(ids[i], {}).get(content), "label": classes[yi[i]],
             "suggested": classes[guess[i]], "score": round(float(score[i]), 4)} for i in order]
    return {"collection": collection, "space": space, "model": model, "labelled": len(yi),
            "issues": len(ranked), "rows": rows,
            "how": f"confident learning (cleanlab, prune by noise rate) on {model} out-of-fold probabilities "
                   f"({min(FOLDS, int(np.bincount(yi).min()))} folds), ranked by the probability of the given label"}
