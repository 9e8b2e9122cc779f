"""Active learning: `embstore suggest` against random picks, from 0 labels to 500, the same head on both arms.

    python bench/active_learning.py --task trec --task mnist [--seeds 0,1,2] [--batch 20] [--budget 500]

Each arm starts with no label. Every round it picks ``--batch`` unlabelled training items, gets their true labels
(the simulated annotator), refits the head on all labels so far and scores accuracy on the task's test split. The
suggest arm's first round is suggest's cold start (no head), later rounds suggest with the current head
(``embstore.suggest.choose``, the function `embstore suggest` calls, on the unlabelled training items); the random
arm draws uniformly with the seed. Head on both arms: embstore's `logreg` (LinearProbe: C by 3-fold CV, temperature
calibrated), stated explicitly so the result does not depend on `fit`'s default. Prints one JSON line per round and
arm, then a summary per task: mean accuracy over seeds at each label count, random's at the budget, and the fewest
labels at which suggest's mean reaches it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TASKS, task_data  # noqa: E402


def head():
    from embstore.heads import make_estimator

    return make_estimator("logreg", {}, "cpu")


def run_arm(task: dict, arm: str, seed: int, batch: int, budget: int, emit) -> list[float]:
    from embstore.index import normalize
    from embstore.suggest import choose

    X, y, Xte, yte = normalize(task["Xtr"]), task["ytr"], normalize(task["Xte"]), task["yte"]  # both unit
    rng = np.random.default_rng(seed)
    labelled = np.zeros(len(y), bool)
    est, accs = None, []
    while labelled.sum() < budget:
        pool = np.flatnonzero(~labelled)
        n = min(batch, budget - int(labelled.sum()))
        if arm == "random":
            picks = rng.choice(pool, n, replace=False)
        else:
            proba = None if est is None else est.predict_proba(X[pool])
            picks = pool[choose(X[pool], n, proba, seed=seed)[0]]
        labelled[picks] = True
        have = np.flatnonzero(labelled)
        t0 = time.perf_counter()
        est = head().fit(X[have], y[have]) if len(set(y[have])) > 1 else None
        acc = float((est.predict(Xte) == yte).mean()) if est is not None else float(np.mean(yte == y[have][0]))
        accs.append(acc)
        emit({"task": task["name"], "arm": arm, "seed": seed, "labels": int(labelled.sum()),
              "classes_seen": int(len(set(y[have]))), "accuracy": round(acc, 4),
              "fit_s": round(time.perf_counter() - t0, 2)})
    return accs


def summary(name: str, curves: dict, batch: int) -> dict:
    mean = {arm: np.mean(runs, axis=0) for arm, runs in curves.items()}
    target = float(mean["random"][-1])
    reach = next((batch * (k + 1) for k, a in enumerate(mean["suggest"]) if a >= target), None)
    return {"task": name, "seeds": len(curves["random"]), "random_at_budget": round(target, 4),
            "suggest_at_budget": round(float(mean["suggest"][-1]), 4), "suggest_reaches_it_at": reach,
            "curve": {arm: [round(float(a), 4) for a in m] for arm, m in mean.items()},
            "std": {arm: [round(float(s), 4) for s in np.std(runs, axis=0)] for arm, runs in curves.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", action="append", choices=sorted(TASKS), help="repeatable (default: trec, mnist)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--budget", type=int, default=500)
    p.add_argument("--log", type=Path, help="also append every JSON line to this file")
    a = p.parse_args()
    log = open(a.log, "a") if a.log else None

    def emit(obj: dict) -> None:
        line = json.dumps(obj)
        print(line, flush=True)
        if log:
            log.write(line + "\n")
            log.flush()

    for name in a.task or ["trec", "mnist"]:
        task = task_data(name)
        curves: dict = {"suggest": [], "random": []}
        for seed in map(int, a.seeds.split(",")):
            for arm in curves:
                curves[arm].append(run_arm(task, arm, seed, a.batch, a.budget, emit))
        emit({"summary": summary(name, curves, a.batch)})


if __name__ == "__main__":
    main()
