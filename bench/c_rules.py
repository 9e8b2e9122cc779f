"""Rules for choosing C, judged on many tasks: is cross-validation the right default, or a fixed C=1 as stock uses?

    python bench/c_rules.py NAME=TRAIN_PREFIX[,TEST_PREFIX] ... [--sizes 300,1000] [--seeds 0,1,2] [--prep]

Each NAME=TRAIN_PREFIX,TEST_PREFIX is a task on exported arrays (``examples/export_npy.py``); with no TEST_PREFIX
the arrays are split 70/30 (stratified, seed 0). Every task is run on its whole training set and on subsamples of
``--sizes`` training rows (stratified, one per seed), always scored on the whole test set. For each run, the test
accuracy of: ``embstore`` (``LinearProbe()``, C by 3-fold CV on held-out log-loss: the default head), ``stock``
(``../shared/bench/stock.py fit`` on the same arrays, written to a scratch folder: LogisticRegression(max_iter=1000),
C=1), ``one_se``
(the strongest C whose CV log-loss is within one standard error of the best) and ``cv_accuracy`` (the C of the best
CV accuracy, the stronger one on ties). The rules other than embstore's are computed from one CV sweep over the
default grid (the same folds for every C). ``--prep`` adds the default head on features preprocessed first, fitted on
the training rows: ``centered`` (the training mean subtracted) and ``standardized`` (scikit-learn's StandardScaler),
to see whether the default should do either. Prints one JSON line per run, then a summary line: mean test accuracy per
rule, and how often each rule is best or tied for best.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from common import SHARED, cv_sweep, run_stock


def load(spec: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    name, _, paths = spec.partition("=")
    train, _, test = paths.partition(",")
    X, y = np.load(f"{train}.X.npy"), np.load(f"{train}.y.npy", allow_pickle=False)
    if test:
        return name, X, y, np.load(f"{test}.X.npy"), np.load(f"{test}.y.npy", allow_pickle=False)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    return name, Xtr, ytr, Xte, yte


def subsample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n training rows, stratified where every label has 2 items or more, else plainly random."""
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(y, return_counts=True)
    strat = y if counts.min() >= 2 else None
    return train_test_split(np.arange(len(y)), train_size=n, random_state=seed, stratify=strat)[0]


def sweep(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray) -> list[dict]:
    """``cv_sweep`` with 3 folds, or as many as the rarest label allows (at least 2)."""
    rarest = int(np.unique(y, return_counts=True)[1].min())
    return cv_sweep(X, y, Xt, yt, folds=min(3, rarest) if rarest >= 2 else 2)


def preprocessed(X: np.ndarray, Xt: np.ndarray) -> dict:
    """(train, test) features centered on the training mean, and standardized by the training rows' scaler."""
    from sklearn.preprocessing import StandardScaler

    mean = X.mean(0)
    scaler = StandardScaler().fit(X)
    return {"centered": (X - mean, Xt - mean),
            "standardized": (scaler.transform(X).astype(np.float32), scaler.transform(Xt).astype(np.float32))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tasks", nargs="+", metavar="NAME=TRAIN_PREFIX[,TEST_PREFIX]")
    p.add_argument("--sizes", default="300,1000", help="training subsample sizes (comma-separated)")
    p.add_argument("--seeds", default="0,1,2", help="one subsample per seed (comma-separated)")
    p.add_argument("--stock", type=Path, default=SHARED / "bench" / "stock.py", help="the stock reference script")
    p.add_argument("--prep", action="store_true", help="also the default head on centered and on standardized features")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="c_rules-") as tmp:
        run_all(a, Path(tmp))


def run_all(a: argparse.Namespace, scratch: Path) -> None:
    from embstore.estimators import LinearProbe

    sizes, seeds = [int(s) for s in a.sizes.split(",") if s], [int(s) for s in a.seeds.split(",") if s]
    rules = ("embstore", "stock", "one_se", "cv_accuracy") + (("centered", "standardized") if a.prep else ())
    runs = []
    for spec in a.tasks:
        name, X, y, Xt, yt = load(spec)
        np.save(scratch / "test.X.npy", Xt)
        np.save(scratch / "test.y.npy", yt)
        plan = [(len(y), None)] + [(n, s) for n in sizes if n < len(y) for s in seeds]
        for n, seed in plan:
            rows = np.arange(len(y)) if seed is None else subsample(y, n, seed)
            Xs, ys = X[rows], y[rows]
            if len(np.unique(ys)) < 2:
                continue
            sw = sweep(Xs, ys, Xt, yt)
            best = min(s["cv_log_loss"] for s in sw)
            se = next(s["cv_se"] for s in sw if s["cv_log_loss"] == best)
            one_se = next(s for s in sw if s["cv_log_loss"] <= best + se)  # grid runs strong to weak
            cv_acc = max(sw, key=lambda s: (s["cv_accuracy"], -s["C"]))
            auto = LinearProbe().fit(Xs, ys)
            np.save(scratch / "train.X.npy", Xs)
            np.save(scratch / "train.y.npy", ys)
            stock = run_stock(a.stock, ["fit", "--train", str(scratch / "train.X.npy"), str(scratch / "train.y.npy"),
                                        "--test", str(scratch / "test.X.npy"), str(scratch / "test.y.npy")])
            acc = {"embstore": float((auto.predict(Xt) == yt).mean()), "stock": float(stock["accuracy"]),
                   "one_se": one_se["test_accuracy"], "cv_accuracy": cv_acc["test_accuracy"]}
            Cs_ = {"embstore": auto.C_, "stock": 1.0, "one_se": one_se["C"], "cv_accuracy": cv_acc["C"]}
            if a.prep:
                for rule, (A, B) in preprocessed(Xs, Xt).items():
                    m = LinearProbe().fit(A, ys)
                    acc[rule], Cs_[rule] = float((m.predict(B) == yt).mean()), m.C_
            run = {"task": name, "n_train": len(ys), "seed": seed, "n_test": len(yt), "accuracy": acc,
                   "C": Cs_}
            runs.append(run)
            print(json.dumps(run), flush=True)
    top = {r: 0 for r in rules}
    for run in runs:
        best = max(run["accuracy"].values())
        for r in rules:
            top[r] += run["accuracy"][r] >= best - 1e-12
    print(json.dumps({"summary": True, "runs": len(runs),
                      "mean_accuracy": {r: round(float(np.mean([x["accuracy"][r] for x in runs])), 4) for r in rules},
                      "best_or_tied": top,
                      "embstore_minus_stock": {"wins": sum(x["accuracy"]["embstore"] > x["accuracy"]["stock"] for x in runs),
                                               "losses": sum(x["accuracy"]["embstore"] < x["accuracy"]["stock"] for x in runs),
                                               "mean_points": round(100 * float(np.mean([x["accuracy"]["embstore"] - x["accuracy"]["stock"] for x in runs])), 2)}}))


if __name__ == "__main__":
    main()
