"""Scratch (session 14): more selection rules (BADGE, weighted k-means, random share) on many tasks, same protocol
as al_strategies_13_9f84915.py (rounds of 20 from 0 labels, embstore's logreg on every arm)."""
import json, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, "/work/main/bench"); sys.path.insert(0, str(Path(__file__).resolve().parent))
from embstore.index import normalize
from embstore.suggest import choose, cluster_picks, by_cluster
import al_strategies_13_9f84915 as al

_old = al.strat


def badge(X, n, proba, seed, pool_idx=None):
    """BADGE (Ash et al. 2020): k-means++ seeding over the last layer's gradient embeddings (p - e_yhat) x."""
    A = proba.astype(np.float64).copy()
    A[np.arange(len(A)), A.argmax(1)] -= 1.0
    a2 = (A * A).sum(1)
    rng = np.random.default_rng(seed)
    first = int(np.argmax(a2)); chosen = [first]
    d2 = np.maximum(a2 + a2[first] - 2 * (A @ A[first]) * (X @ X[first]), 0); d2[first] = 0
    for _ in range(min(n, len(X)) - 1):
        s = d2.sum()
        j = int(rng.choice(len(X), p=d2 / s)) if s > 0 else int(rng.integers(len(X)))
        chosen.append(j)
        d2 = np.minimum(d2, np.maximum(a2 + a2[j] - 2 * (A @ A[j]) * (X @ X[j]), 0)); d2[chosen] = 0
    return chosen


def strat(name, X, n, proba, seed, Xl, yl=None):
    if proba is None or name == "random":
        return _old(name, X, n, proba, seed, Xl, yl)
    m = al.margin_of(proba)
    if name == "badge":
        return badge(X, n, proba, seed + len(Xl))
    if name.startswith("badgetop"):  # BADGE among the k n least sure
        k = int(name[8:]); u = np.argsort(m, kind="stable")[: k * n]
        return [int(u[j]) for j in badge(X[u], n, proba[u], seed + len(Xl))]
    if name.startswith("wkm"):  # Zhdanov as published: weighted k-means over k n least sure, nearest each centre
        from sklearn.cluster import KMeans
        k = int(name[3:]); u = np.argsort(m, kind="stable")[: k * n]
        km = KMeans(n, n_init=1, max_iter=100, random_state=seed).fit(X[u], sample_weight=1 - m[u])
        sim = np.einsum("ij,ij->i", X[u], km.cluster_centers_[km.labels_])
        return [int(u[j]) for j in by_cluster(km.labels_, -sim, n, m[u])]
    if name.startswith("rnd"):  # rnd<p>: p% random picks, the rest the default
        p = int(name[3:]); r = max(1, round(n * p / 100))
        a = choose(X, n - r, proba, seed=seed)[0]
        rest = np.setdiff1d(np.arange(len(X)), a)
        rng = np.random.default_rng(seed + len(Xl))
        return a + [int(x) for x in rng.choice(rest, r, replace=False)]
    if name.startswith("bal"):  # candidates balanced over the head's guesses: the k n / labels least sure of each
        k = int(name[3:]); guess = proba.argmax(1); per = max(1, (k * n) // proba.shape[1])
        u = np.concatenate([np.flatnonzero(guess == c)[np.argsort(m[guess == c], kind="stable")[:per]]
                            for c in range(proba.shape[1])])
        u = u[np.argsort(m[u], kind="stable")]
        return [int(u[j]) for j in cluster_picks(X[u], n, m[u], seed)]
    return _old(name, X, n, proba, seed, Xl, yl)


al.strat = strat


def main():
    names = sys.argv[1].split(","); seeds = [int(s) for s in sys.argv[2].split(",")]; rules = sys.argv[3].split(",")
    from auto_head import tasks
    T = tasks(Path("/work/bench-stores"))
    for tn in names:
        Xtr, ytr, Xte, yte = T[tn]
        X, Xt = normalize(np.asarray(Xtr, np.float32)), normalize(np.asarray(Xte, np.float32))
        budget = min(500, len(ytr) // 3); batch = 20 if budget >= 200 else max(4, budget // 10)
        budget -= budget % batch
        res = {}
        for r in ["random"] + rules:
            t0 = time.time()
            cs = [al.run(r, X, ytr, Xt, yte, s, "embstore", batch, budget) for s in seeds]
            res[r] = np.mean(cs, 0)
            target = res["random"][-1]
            reach = next((batch * (k + 1) for k, a in enumerate(res[r]) if a >= target), None)
            print(json.dumps({"task": tn, "rule": r, "seeds": seeds, "n_train": len(ytr), "budget": budget,
                              "batch": batch, "at_half": round(float(res[r][len(res[r]) // 2 - 1]), 4),
                              "at_budget": round(float(res[r][-1]), 4), "mean_curve": round(float(res[r].mean()), 4),
                              "reaches_random_at": reach, "secs": round(time.time() - t0, 1),
                              "curve": [round(float(a), 4) for a in res[r]]}), flush=True)


if __name__ == "__main__":
    main()
