"""Finding wrong labels: `embstore label-issues` against cleanlab's default run, on labels flipped at random.

    python bench/label_noise.py --task trec --task mnist [--rates 0.05,0.2] [--seeds 0]

For each task, rate and seed: that share of the training labels is flipped (seeded) to another label drawn
uniformly. embstore: `Store.label_issues` (logreg heads, 5 stratified folds, cleanlab's default filter on their
out-of-fold probabilities) through a labels CSV holding the noisy labels (the prebuilt store is only read). cleanlab: its documented default run,
`cleanlab.filter.find_label_issues(labels, pred_probs)` on `cross_val_predict(LogisticRegression(max_iter=1000), X,
labels, method="predict_proba")` (5 folds), its issues ranked by self-confidence. Each side's
top k flagged items, k = the number flipped: precision (flipped among them / how many there are, at most k) and
recall (flipped among them / k), with the number each flags in all. One JSON line per run.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TASKS, task_data  # noqa: E402


def scores(top: list[int], flipped: set[int], flagged: int) -> dict:
    hits = sum(1 for i in top if i in flipped)
    return {"flagged": int(flagged), "top_k": len(top), "precision": round(hits / max(1, len(top)), 4),
            "recall": round(hits / len(flipped), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", action="append", choices=sorted(TASKS), help="repeatable (default: trec, mnist)")
    p.add_argument("--rates", default="0.05,0.2")
    p.add_argument("--seeds", default="0")
    p.add_argument("--log", type=Path)
    a = p.parse_args()

    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    log = open(a.log, "a") if a.log else None
    for name in a.task or ["trec", "mnist"]:
        task = task_data(name)
        X, y, ids = task["Xtr"], task["ytr"], task["train_ids"]
        classes = sorted(set(y))
        for rate in map(float, a.rates.split(",")):
            for seed in map(int, a.seeds.split(",")):
                rng = np.random.default_rng(seed)
                k = int(round(rate * len(y)))
                flip = rng.choice(len(y), k, replace=False)
                noisy = y.copy()
                for i in flip:
                    noisy[i] = rng.choice([c for c in classes if c != y[i]])
                flipped = set(int(i) for i in flip)
                out = {"task": name, "rate": rate, "seed": seed, "items": len(y), "flipped": k}

                t0 = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "noisy.csv"
                    with open(path, "w", newline="", encoding="utf-8") as f:
                        w = csv.writer(f)
                        w.writerow(["id", "label"])
                        w.writerows(zip(ids, noisy))
                    got = task["store"].label_issues(task["collection"], labels=path, model="logreg")
                row_of = {i: n for n, i in enumerate(ids)}
                ranked = [row_of[r["id"]] for r in got["rows"]]
                out["embstore"] = scores(ranked[:k], flipped, got["issues"]) | {
                    "seconds": round(time.perf_counter() - t0, 1)}

                t0 = time.perf_counter()
                yi = np.searchsorted(classes, noisy)
                proba = cross_val_predict(LogisticRegression(max_iter=1000), X, yi, cv=5, method="predict_proba")
                ranked = find_label_issues(yi, proba, return_indices_ranked_by="self_confidence")
                out["cleanlab"] = scores([int(i) for i in ranked[:k]], flipped, len(ranked)) | {
                    "seconds": round(time.perf_counter() - t0, 1)}
                line = json.dumps(out)
                print(line, flush=True)
                if log:
                    log.write(line + "\n")
                    log.flush()


if __name__ == "__main__":
    main()
