"""Scratch: active-learning strategies on TREC coarse (and others), same head, rounds of 20 to 500."""
import json, sys, time, os
import numpy as np
sys.path.insert(0, "/work/main")
from embstore.index import normalize
from embstore.suggest import choose, cluster_picks, _kmeans, by_cluster

def load(name):
    f = f"/tmp/al/{name}.npz"
    if os.path.exists(f):
        d = np.load(f, allow_pickle=False); return d["Xtr"], d["ytr"], d["Xte"], d["yte"]
    import pyarrow.csv as pc
    from embstore.encoders import get_encoder as load_encoder
    enc = load_encoder("minilm")
    out = {}
    for split in ["train", "test"]:
        t = pc.read_csv(f"/work/shared/datasets/trec/{split}.csv").to_pandas().drop_duplicates("text")
        col = "label" if name == "trec" else "fine_label"
        out["X" + split[:2]] = enc.encode_text(list(t.text))
        out["y" + split[:2]] = np.asarray(t[col].astype(str).tolist(), dtype="U")
    np.savez(f, **out)
    return out["Xtr"], out["ytr"], out["Xte"], out["yte"]

def head(kind):
    if kind == "embstore":
        from embstore.heads import make_estimator
        return make_estimator("logreg", {}, "cpu")
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=float(kind), max_iter=1000)

def margin_of(proba):
    t = np.sort(proba, 1)[:, -2:]; return t[:, 1] - t[:, 0]

def strat(name, X, n, proba, seed, Xl, yl=None):
    if proba is None or name == "random":
        return choose(X, n, None, seed=seed)[0]
    m = margin_of(proba)
    if name == "current":
        return choose(X, n, proba, seed=seed)[0]
    if name.startswith("share"):  # share<k>
        k = int(name[5:]); u = np.argsort(m, kind="stable")[: k * n]
        return [int(u[j]) for j in cluster_picks(X[u], n, m[u], seed)]
    if name.startswith("typ"):  # among k n least sure, per cluster the most typical (nearest centre)
        k = int(name[3:]); u = np.argsort(m, kind="stable")[: k * n]
        km = _kmeans(X[u], n, seed); sim = np.einsum("ij,ij->i", X[u], km.cluster_centers_[km.labels_])
        return [int(u[j]) for j in by_cluster(km.labels_, -sim, n, m[u])]
    if name.startswith("dens"):  # margin weighted by density: score = margin - beta * knn density
        beta = float(name[4:])
        S = X @ X.T if len(X) < 6000 else None
        d = np.sort(S, 1)[:, -11:-1].mean(1)
        score = m - beta * d
        u = np.argsort(score, kind="stable")[: 5 * n]
        return [int(u[j]) for j in cluster_picks(X[u], n, score[u], seed)]
    if name == "entropy":
        e = -(proba * np.log(np.clip(proba, 1e-12, 1))).sum(1); s = -e
        u = np.argsort(s, kind="stable")[: 5 * n]
        return [int(u[j]) for j in cluster_picks(X[u], n, s[u], seed)]
    if name == "far":  # least sure that are also far from labelled ones: margin - gamma * dist to labelled
        dist = 1 - (X @ Xl.T).max(1)
        s = m - 0.5 * dist
        u = np.argsort(s, kind="stable")[: 5 * n]
        return [int(u[j]) for j in cluster_picks(X[u], n, s[u], seed)]
    if name == "margin":
        return [int(j) for j in np.argsort(m, kind="stable")[:n]]
    if name.startswith("mix") and name[3:].isdigit():  # mix<p>: p% of picks k-means representatives of the pool, the rest current
        p = int(name[3:]); r = max(1, round(n * p / 100))
        a = choose(X, n - r, proba, seed=seed)[0]
        rest = np.setdiff1d(np.arange(len(X)), a)
        b = [int(rest[j]) for j in choose(X[rest], r, None, seed=seed)[0]]
        return a + b
    if name.startswith("cal"):  # uncertainty from a fixed-C logistic regression
        from sklearn.linear_model import LogisticRegression
        C = float(name[3:]); lr = LogisticRegression(C=C, max_iter=1000).fit(Xl, yl)
        mm = margin_of(lr.predict_proba(X)); u = np.argsort(mm, kind="stable")[: 5 * n]
        return [int(u[j]) for j in cluster_picks(X[u], n, mm[u], seed)]
    if name.startswith("qbc"):  # disagreement of the head and a kNN vote, then margin
        k = 10; S = X @ Xl.T; nn = np.argsort(-S, 1)[:, :k]
        classes = np.unique(yl)
        votes = np.stack([(yl[nn] == c).mean(1) for c in classes], 1)
        mk = margin_of(votes)
        s = 0.5 * m + 0.5 * mk
        u = np.argsort(s, kind="stable")[: 5 * n]
        return [int(u[j]) for j in cluster_picks(X[u], n, s[u], seed)]
    if name.startswith("nbr") or name.startswith("smooth"):
        k = int(name.lstrip("nbrsmoth"))
        S = X @ X.T
        nn = np.argpartition(-S, k, axis=1)[:, :k]
        if name.startswith("nbr"):
            sc = -(1 - m)[nn].mean(1)  # lower is better: a neighbourhood the head is unsure of
        else:
            sc = margin_of(proba[nn].mean(1))
        u = np.argsort(sc, kind="stable")[: 5 * n]
        return [int(u[j]) for j in cluster_picks(X[u], n, sc[u], seed)]
    if name == "mix25s2":
        r = max(1, round(n * 0.25)); u = np.argsort(m, kind="stable")[: 2 * (n - r)]
        a = [int(u[j]) for j in cluster_picks(X[u], n - r, m[u], seed)]
        rest = np.setdiff1d(np.arange(len(X)), a)
        return a + [int(rest[j]) for j in choose(X[rest], r, None, seed=seed)[0]]
    if name.startswith("cold"):  # cold<N>: k-means representatives until N labels, then the default
        if len(Xl) < int(name[4:]):
            return choose(X, n, None, seed=seed + len(Xl))[0]
        return choose(X, n, proba, seed=seed)[0]
    raise ValueError(name)

def run(name, X, y, Xte, yte, seed, hk, batch=20, budget=500):
    rng = np.random.default_rng(seed)
    lab = np.zeros(len(y), bool); est = None; accs = []
    while lab.sum() < budget:
        pool = np.flatnonzero(~lab); n = min(batch, budget - int(lab.sum()))
        if name == "random":
            picks = rng.choice(pool, n, replace=False)
        else:
            proba = None if est is None else est.predict_proba(X[pool])
            picks = pool[strat(name, X[pool], n, proba, seed, X[lab], y[lab])]
        lab[picks] = True; have = np.flatnonzero(lab)
        est = head(hk).fit(X[have], y[have]) if len(set(y[have])) > 1 else None
        accs.append(float((est.predict(Xte) == yte).mean()) if est is not None else 0.0)
    return accs

if __name__ == "__main__":
    task, hk, seeds = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3].split(",")]
    names = sys.argv[4].split(",")
    Xtr, ytr, Xte, yte = load(task); X, Xte = normalize(Xtr), normalize(Xte)
    for nm in names:
        t0 = time.time(); cs = [run(nm, X, ytr, Xte, yte, s, hk) for s in seeds]
        m = np.mean(cs, 0)
        print(json.dumps({"task": task, "head": hk, "strategy": nm, "seeds": seeds, "secs": round(time.time() - t0, 1),
                          "at": {l: round(float(m[l // 20 - 1]), 4) for l in (100, 200, 240, 260, 300, 400, 500)},
                          "curve": [round(float(a), 4) for a in m]}), flush=True)
