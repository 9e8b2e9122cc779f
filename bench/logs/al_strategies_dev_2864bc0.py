import sys, json, time
sys.path.insert(0, "/work/wt-bench13/bench")
import numpy as np
from common import task_data
from embstore.heads import make_estimator
from embstore.index import normalize
from embstore.suggest import k_center_greedy
from sklearn.cluster import KMeans

def margin_of(p):
    t = np.sort(p, 1)[:, -2:]; return t[:, 1] - t[:, 0]

def cold_kcenter(X, n, seed):
    first = int(np.argmax(X @ normalize(X.mean(0, keepdims=True))[0])); return k_center_greedy(X, n, first)

def cold_kmeans(X, n, seed):
    km = KMeans(n, n_init=1, random_state=seed).fit(X)
    d = ((X[:, None, :] - km.cluster_centers_[None]) ** 2).sum(-1) if len(X) * n < 3e6 else None
    picks = []
    for c in range(n):
        m = np.flatnonzero(km.labels_ == c)
        if len(m) == 0: continue
        picks.append(int(m[np.argmax(X[m] @ km.cluster_centers_[c])]))
    return picks

def cold_typiclust(X, n, seed, k=20):
    km = KMeans(n, n_init=1, random_state=seed).fit(X)
    picks = []
    for c in np.argsort(-np.bincount(km.labels_, minlength=n)):
        m = np.flatnonzero(km.labels_ == c)
        if len(m) == 0: continue
        S = X[m] @ X[m].T
        kk = min(k, len(m) - 1)
        if kk < 1: picks.append(int(m[0])); continue
        dist = 1 - np.sort(S, 1)[:, -kk - 1:-1]
        typ = 1 / (dist.mean(1) + 1e-9)
        picks.append(int(m[np.argmax(typ)]))
    return picks

def later_kcenter(X, n, p, seed, beta=10):
    u = np.argsort(margin_of(p), kind="stable")[:beta * n]
    return [int(u[k]) for k in k_center_greedy(X[u], n, 0)]

def later_margin(X, n, p, seed):
    return [int(i) for i in np.argsort(margin_of(p), kind="stable")[:n]]

def later_kmeans(X, n, p, seed, beta=10, weighted=False, pick="margin"):
    m = margin_of(p)
    u = np.argsort(m, kind="stable")[:beta * n]
    km = KMeans(n, n_init=1, random_state=seed).fit(X[u], sample_weight=(1 - m[u]) if weighted else None)
    picks = []
    for c in range(n):
        mm = np.flatnonzero(km.labels_ == c)
        if len(mm) == 0: continue
        if pick == "margin": picks.append(int(u[mm[np.argmin(m[u][mm])]]))
        else: picks.append(int(u[mm[np.argmax(X[u][mm] @ km.cluster_centers_[c])]]))
    return picks

STRATS = {
 "base": (cold_kcenter, later_kcenter),
 "km+kc": (cold_kmeans, later_kcenter),
 "km+kmm": (cold_kmeans, later_kmeans),
 "typ+kmm": (cold_typiclust, later_kmeans),
 "km+kmc_w": (cold_kmeans, lambda X, n, p, s: later_kmeans(X, n, p, s, weighted=True, pick="center")),
 "km+margin": (cold_kmeans, later_margin),
 "km+kmm5": (cold_kmeans, lambda X, n, p, s: later_kmeans(X, n, p, s, beta=5)),
 "km+kmm3": (cold_kmeans, lambda X, n, p, s: later_kmeans(X, n, p, s, beta=3)),
 "random": None,
}

def run(task, strat, seed, batch=20, budget=500):
    X, y, Xte, yte = normalize(task["Xtr"]), task["ytr"], task["Xte"], task["yte"]
    rng = np.random.default_rng(seed); lab = np.zeros(len(y), bool); est = None; accs = []
    while lab.sum() < budget:
        pool = np.flatnonzero(~lab)
        if STRATS[strat] is None: picks = rng.choice(pool, batch, replace=False)
        elif est is None: picks = pool[STRATS[strat][0](X[pool], batch, seed)]
        else: picks = pool[STRATS[strat][1](X[pool], batch, est.predict_proba(X[pool]), seed)]
        lab[picks] = True; have = np.flatnonzero(lab)
        est = make_estimator("logreg", {}, "cpu").fit(X[have], y[have])
        accs.append(float((est.predict(Xte) == yte).mean()))
    return accs

tasks = sys.argv[1].split(","); strats = sys.argv[2].split(","); seeds = [int(s) for s in sys.argv[3].split(",")]
for t in tasks:
    task = task_data(t)
    for s in strats:
        t0 = time.time()
        curves = [run(task, s, seed) for seed in seeds]
        m = np.mean(curves, 0)
        print(json.dumps({"task": t, "strat": s, "seeds": seeds, "at": {k: round(float(m[k // 20 - 1]), 4) for k in (20, 60, 100, 200, 250, 300, 500)}, "curve": [round(float(v), 4) for v in m], "s": round(time.time() - t0)}), flush=True)
