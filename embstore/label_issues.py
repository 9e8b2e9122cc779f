"""Labels that are likely wrong: confident learning (Northcutt, Jiang and Chuang, 2021) on out-of-fold probabilities.

Each labelled item's probabilities come from a head of the same kind trained on the other folds (it never saw the
item). Per label j, a threshold: the mean probability of j among items labelled j. An item confidently belongs to a
label when its probability reaches that label's threshold (with several, the likeliest of all); an item labelled i
that confidently belongs to j != i is an issue, with j as the suggested label. Issues are ranked by self-confidence
(the probability of the given label, lowest first), cleanlab's default ranking.

Written here rather than importing cleanlab (which needs pandas at run time); the test checks the same issues as
``cleanlab.filter.find_label_issues(filter_by="confident_learning")`` on the same probabilities.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

FOLDS = 5


def confident_issues(labels: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the items whose label is likely wrong, the label each confidently belongs to) for label indices
    ``labels`` and out-of-fold ``proba`` (items x labels)."""
    labels = np.asarray(labels, np.int64)
    k = proba.shape[1]
    thresholds = np.array([proba[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(k)])
    confident = proba >= thresholds - 1e-6
    n_conf = confident.sum(1)
    guess = np.where(n_conf > 1, proba.argmax(1), confident.argmax(1))  # cleanlab's rule, tie-breaks included
    return (n_conf > 0) & (guess != labels), guess


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
    wrong, guess = confident_issues(yi, proba)
    score = proba[np.arange(len(yi)), yi]
    order = [int(i) for i in np.argsort(score, kind="stable") if wrong[i]]
    if limit is not None:
        order = order[:limit]
    content = store.collection(collection)["content_column"]
    meta = item_rows(store, collection, [ids[i] for i in order])
    rows = [{"id": ids[i], "content": meta.get(ids[i], {}).get(content), "label": classes[yi[i]],
             "suggested": classes[guess[i]], "score": round(float(score[i]), 4)} for i in order]
    return {"collection": collection, "space": space, "model": model, "labelled": len(yi),
            "issues": int(wrong.sum()), "rows": rows,
            "how": f"confident learning on {model} out-of-fold probabilities ({min(FOLDS, int(np.bincount(yi).min()))} "
                   "folds), ranked by the probability of the given label"}
