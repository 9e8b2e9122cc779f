"""How well the centroid head's fitted temperature calibrates its probabilities, against the previous rule.

    python bench/centroid_temperature.py NAME=TRAIN_PREFIX[,TEST_PREFIX] ... [--per-label 2,4,8] [--seeds 0,1,2]

Tasks as in ``c_rules.py`` (exported arrays; no TEST_PREFIX: a 70/30 stratified split, seed 0). Each task is run on
n items per label (one draw per seed) and on its whole training set, always scored on the whole test set. Both rules
fit the temperature by the left-out log-loss of the training items; they differ in what each item is scored against:

- ``previous``: its own label's centroid without it, and every other label's whole centroid (embstore before this
  benchmark: the own label is handicapped, most at two items per label);
- ``embstore``: its own label's centroid without it, and every other label's centroid without one item too (a few
  draws), as ``CentroidHead`` now does.

Prints one JSON line per run (temperature, test ECE and log-loss under each rule; accuracy is the same), then a
summary by n. There is no stock counterpart: ``stock.py`` has no centroid head.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from c_rules import load


def previous_temperature(est, X: np.ndarray, yi: np.ndarray, S: np.ndarray) -> float:
    """The rule before: every other label's whole centroid."""
    from scipy.optimize import minimize_scalar

    from embstore.estimators import _log_loss

    rows = np.flatnonzero(np.bincount(yi, minlength=len(S))[yi] > 1)
    if len(rows) == 0:
        return est.UNFIT_TEMPERATURE
    sims = (X[rows] @ est.centroids_.T).astype(np.float64)
    own = S[yi[rows]] - X[rows]
    sims[np.arange(len(rows)), yi[rows]] = (X[rows] * own).sum(1) / np.maximum(np.linalg.norm(own, axis=1), 1e-12)
    res = minimize_scalar(lambda lt: _log_loss(sims * np.exp(lt), yi[rows], False), bounds=(0.0, np.log(1000.0)),
                          method="bounded")
    return float(np.exp(res.x))


def scores(est, Xt: np.ndarray, yt: np.ndarray) -> dict:
    from embstore.evaluation import calibration

    known = np.isin(yt, est.classes_)
    cal = calibration(est.predict_proba(Xt[known]), np.searchsorted(est.classes_, yt[known]))
    return {"temperature": round(est.temperature_, 2), "ece": round(cal["ece"], 4), "log_loss": round(cal["log_loss"], 4)}


def main() -> None:
    from embstore.estimators import CentroidHead

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tasks", nargs="+", metavar="NAME=TRAIN_PREFIX[,TEST_PREFIX]")
    p.add_argument("--per-label", default="2,4,8", help="items per label (comma-separated)")
    p.add_argument("--seeds", default="0,1,2", help="one draw per seed (comma-separated)")
    a = p.parse_args()
    runs = []
    for spec in a.tasks:
        name, X, y, Xt, yt = load(spec)
        plan = [(int(n), int(s)) for n in a.per_label.split(",") for s in a.seeds.split(",")] + [(None, None)]
        for n, seed in plan:
            if n is None:
                rows = np.arange(len(y))
            else:
                rng = np.random.default_rng(seed)
                rows = np.concatenate([rng.choice(np.flatnonzero(y == c), min(n, int((y == c).sum())), replace=False)
                                       for c in np.unique(y)])
            est = CentroidHead().fit(X[rows], y[rows])
            run = {"task": name, "per_label": n or "all", "seed": seed,
                   "accuracy": round(float((est.predict(Xt) == yt).mean()), 4), "embstore": scores(est, Xt, yt)}
            _, yi = est._prepare_fit(X[rows], y[rows])
            S = np.zeros((len(est.classes_), X.shape[1]))
            np.add.at(S, yi, est._features(X[rows]).astype(np.float64))
            est.temperature_ = previous_temperature(est, est._features(X[rows]), yi, S)
            run["previous"] = scores(est, Xt, yt)
            runs.append(run)
            print(json.dumps(run), flush=True)
    summary = {}
    for n in dict.fromkeys(r["per_label"] for r in runs):
        group = [r for r in runs if r["per_label"] == n]
        summary[str(n)] = {"runs": len(group), **{f"{rule}_{k}": round(float(np.mean([r[rule][k] for r in group])), 4)
                                                   for rule in ("previous", "embstore") for k in ("ece", "log_loss")},
                           "log_loss_better": sum(r["embstore"]["log_loss"] < r["previous"]["log_loss"] for r in group),
                           "log_loss_worse": sum(r["embstore"]["log_loss"] > r["previous"]["log_loss"] for r in group)}
    print(json.dumps({"summary": True, "by_per_label": summary}))


if __name__ == "__main__":
    main()
