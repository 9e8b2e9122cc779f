"""`embstore eval` (the MTEB few-shot protocol) against a plain re-implementation of MTEB's loop, same embeddings.

    python bench/few_shot.py --store STORE --train trec_train --test trec_test [--label-column label] [--seeds 42,0,1,2,3]

The reference is MTEB's AbsTaskClassification loop written out with scikit-learn alone: for each experiment,
shuffle the train indices with a RandomState(seed), keep the first n of each label, fit
LogisticRegression(max_iter=100), score accuracy on the whole test split. Prints one JSON line per seed with the mean
accuracy at each n from both sides, and the mean over seeds (the seed-to-seed spread is the protocol's own noise).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np


def mteb_reference(Xtr, ytr, Xte, yte, n: int, repeats: int, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(seed)
    idxs = np.arange(len(ytr))
    scores = []
    for _ in range(repeats):
        rng.shuffle(idxs)
        counter: dict = defaultdict(int)
        keep = []
        for i in idxs:
            if counter[ytr[i]] < n:
                counter[ytr[i]] += 1
                keep.append(i)
        clf = LogisticRegression(max_iter=100).fit(Xtr[keep], ytr[keep])
        scores.append(float((clf.predict(Xte) == yte).mean()))
    return float(np.mean(scores))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--label-column", default="label")
    p.add_argument("--samples", default="1,2,4,8,16,32")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seeds", default="42,0,1,2,3")
    a = p.parse_args()

    from embstore import Store

    store = Store.open(a.store, create=False)

    def xy(collection: str):
        ids, X = store.embeddings(collection)
        labels = dict(store.sql(f'SELECT id, "{a.label_column}" FROM "{collection}"').fetchall())
        return X, np.asarray([str(labels[i]) for i in ids])

    Xtr, ytr = xy(a.train)
    Xte, yte = xy(a.test)
    ns = [int(s) for s in a.samples.split(",")]
    totals: dict = defaultdict(lambda: [0.0, 0.0])
    seeds = [int(s) for s in a.seeds.split(",")]
    for seed in seeds:
        ours = store.eval(a.train, a.label_column, test_collection=a.test, samples=ns, repeats=a.repeats, seed=seed)
        row = {"seed": seed}
        for r in ours["results"]:
            n = r["samples_per_label"]
            ref = mteb_reference(Xtr, ytr, Xte, yte, n, a.repeats, seed)
            row[str(n)] = {"embstore": round(r["accuracy_mean"], 4), "reference": round(ref, 4)}
            totals[n][0] += r["accuracy_mean"] / len(seeds)
            totals[n][1] += ref / len(seeds)
        print(json.dumps(row), flush=True)
    print(json.dumps({"mean_over_seeds": {str(n): {"embstore": round(v[0], 4), "reference": round(v[1], 4)}
                                          for n, v in totals.items()}}))


if __name__ == "__main__":
    main()
