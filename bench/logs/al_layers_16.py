"""Scratch: the AL protocol of al_strategies_13 (rounds of 20 to 500, embstore's logreg or selftrain head on both
arms, the default suggest rule) in MiniLM's multi-layer spaces (`minilm?layers=...`) instead of the plain one.

  python bench/logs/al_layers_16.py SPEC HEAD SEEDS RULES     # e.g. 'minilm?layers=last3' logreg 0,1,2 random,current
The vectors go to the head as a store keeps them (norm sqrt(D) for a layers space); suggest normalises its own copy.
"""
import json, os, sys, time
import numpy as np
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/bench/logs")
from embstore.suggest import choose
EVAL = (100, 200, 240, 260, 300, 400, 500)

def load(spec):
    f = "/tmp/al/trec_" + "".join(c if c.isalnum() else "_" for c in spec) + ".npz"
    if os.path.exists(f):
        d = np.load(f, allow_pickle=False); return d["Xtr"], d["ytr"], d["Xte"], d["yte"]
    import pyarrow.csv as pc
    from embstore.encoders import get_encoder
    enc = get_encoder(spec); out = {}
    for split in ["train", "test"]:
        t = pc.read_csv(f"/work/shared/datasets/trec/{split}.csv").to_pandas().drop_duplicates("text")
        out["X" + split[:2]] = np.asarray(enc.encode_text(list(t.text)), np.float32)
        out["y" + split[:2]] = np.asarray(t["label"].astype(str).tolist(), dtype="U")
    np.savez(f, **out)
    return out["Xtr"], out["ytr"], out["Xte"], out["yte"]

def fit(kind, X, have, y, seed):
    from embstore.heads import make_estimator
    if kind == "selftrain":
        pool = np.setdiff1d(np.arange(len(X)), have)
        return make_estimator("selftrain", {}, "cpu").fit(X[have], y, unlabelled=X[pool])
    return make_estimator(kind, {}, "cpu").fit(X[have], y)

def run(rule, X, y, Xt, yt, seed, kind, batch=20, budget=500):
    rng = np.random.default_rng(seed); lab = np.zeros(len(y), bool); est = None; out = {}
    while lab.sum() < budget:
        pool = np.flatnonzero(~lab); n = min(batch, budget - int(lab.sum()))
        if rule == "random":
            picks = rng.choice(pool, n, replace=False)
        else:
            proba = None if est is None else est.predict_proba(X[pool])
            picks = pool[choose(X[pool], n, proba, seed=seed)[0]]
        lab[picks] = True; have = np.flatnonzero(lab); L = len(have)
        need = rule != "random" or L in EVAL
        est = fit(kind, X, have, y[have], seed) if need and len(set(y[have])) > 1 else None
        if L in EVAL:
            out[L] = float((est.predict(Xt) == yt).mean())
    return out

if __name__ == "__main__":
    spec, kind, seeds, rules = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3].split(",")], sys.argv[4].split(",")
    X, y, Xt, yt = load(spec)
    for r in rules:
        t0 = time.time(); res = [run(r, X, y, Xt, yt, s, kind) for s in seeds]
        print(json.dumps({"task": "trec", "spec": spec, "dim": X.shape[1], "head": kind, "rule": r, "seeds": seeds,
                          "secs": round(time.time() - t0, 1),
                          "at": {L: round(float(np.mean([d[L] for d in res])), 4) for L in EVAL},
                          "per_seed": {L: [round(d[L], 4) for d in res] for L in EVAL}}), flush=True)
