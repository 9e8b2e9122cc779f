"""Scratch: does using the unlabelled pool (self-training, label spreading) lift the head at 100-500 random labels?"""
import sys, json, time
import numpy as np
sys.path.insert(0, "/work/main/bench/logs"); sys.path.insert(0, "/work/main")
import al_strategies_13_9f84915 as al
from embstore.index import normalize
from embstore.estimators import LinearProbe

def lr():
    from embstore.heads import make_estimator
    return make_estimator("logreg", {}, "cpu")

def knn_graph(X, k):
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    nn = np.argpartition(-S, k, axis=1)[:, :k]
    w = np.take_along_axis(S, nn, 1)
    return nn, np.maximum(w, 0)

def spread(X, lab_idx, yl, classes, k=10, alpha=0.99, iters=30, G=None):
    nn, w = G if G is not None else knn_graph(X, k)
    n = len(X); c = len(classes)
    Y = np.zeros((n, c)); Y[lab_idx, np.searchsorted(classes, yl)] = 1
    # symmetric normalised W (approx: row-normalise the kNN weights, then average with transpose via sparse)
    import scipy.sparse as sp
    W = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(n), nn.shape[1]), nn.ravel())), shape=(n, n))
    W = W.maximum(W.T)
    d = np.asarray(W.sum(1)).ravel(); d[d == 0] = 1
    Dm = sp.diags(1 / np.sqrt(d)); S = Dm @ W @ Dm
    F = Y.copy()
    for _ in range(iters):
        F = alpha * (S @ F) + (1 - alpha) * Y
    return F

def head_fit(kind, X, lab_idx, yl, G=None):
    classes = np.unique(yl)
    if kind == "lr":
        return lr().fit(X[lab_idx], yl)
    if kind == "selftrain":  # embstore's own head (embstore/self_training.py), the pool: every other training item
        from embstore.self_training import SelfTrainingHead
        rest = np.setdiff1d(np.arange(len(X)), lab_idx)
        return SelfTrainingHead(device="cpu").fit(X[lab_idx], yl, unlabelled=X[rest])
    if kind.startswith("st"):  # self-training: st<tau>
        tau = float(kind[2:]); est = lr().fit(X[lab_idx], yl)
        for _ in range(2):
            P = est.predict_proba(X); conf = P.max(1); g = est.classes_[P.argmax(1)]
            m = conf >= tau; m[lab_idx] = False
            Xa = np.concatenate([X[lab_idx], X[m]]); ya = np.concatenate([yl, g[m]])
            sw = np.concatenate([np.ones(len(lab_idx)), np.full(m.sum(), 0.5)])
            est = lr().fit(Xa, ya, sample_weight=sw)
        return est
    if kind.startswith("ls"):  # label spreading then lr on pseudo labels weighted by confidence: ls<frac>
        frac = float(kind[2:])
        F = spread(X, lab_idx, yl, classes, G=G)
        s = F.sum(1); ok = s > 0
        P = np.zeros_like(F); P[ok] = F[ok] / s[ok, None]
        conf = P.max(1); g = classes[P.argmax(1)]
        cand = np.flatnonzero(ok); cand = cand[~np.isin(cand, lab_idx)]
        top = cand[np.argsort(-conf[cand])[: int(frac * len(cand))]]
        Xa = np.concatenate([X[lab_idx], X[top]]); ya = np.concatenate([yl, g[top]])
        sw = np.concatenate([np.ones(len(lab_idx)), np.full(len(top), 0.5)])
        return lr().fit(Xa, ya, sample_weight=sw)
    raise ValueError(kind)

if __name__ == "__main__":
    task = sys.argv[1]; kinds = sys.argv[2].split(","); seeds = range(int(sys.argv[3]))
    Xtr, ytr, Xte, yte = al.load(task); X, Xt = normalize(Xtr), normalize(Xte)
    G = knn_graph(X, 10)
    for kind in kinds:
        t0 = time.time(); acc = {}
        for n in (100, 250, 500):
            a = []
            for s in seeds:
                rng = np.random.default_rng(s); idx = rng.choice(len(X), n, replace=False)
                est = head_fit(kind, X, idx, ytr[idx], G)
                a.append(float((est.predict(Xt) == yte).mean()))
            acc[n] = round(float(np.mean(a)), 4)
        print(json.dumps({"task": task, "head": kind, "acc": acc, "secs": round(time.time() - t0, 1)}), flush=True)
