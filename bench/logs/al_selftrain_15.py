"""Scratch: the AL protocol with a self-training head (logreg + confident pseudo-labels of the pool) on both arms."""
import sys, json, time
import numpy as np
sys.path.insert(0, "/work/main/bench/logs"); sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/bench/logs")
import al_strategies_13_9f84915 as al
from embstore.index import normalize
from semisup_15 import head_fit
EVAL = {100, 200, 240, 260, 300, 400, 500}

def run(rule, X, y, Xt, yt, seed, kind, batch=20, budget=500):
    rng = np.random.default_rng(seed); lab = np.zeros(len(y), bool); est = None; out = {}
    while lab.sum() < budget:
        pool = np.flatnonzero(~lab); n = min(batch, budget - int(lab.sum()))
        if rule == "random":
            picks = rng.choice(pool, n, replace=False)
        else:
            proba = None if est is None else est.predict_proba(X[pool])
            picks = pool[al.strat(rule, X[pool], n, proba, seed, X[lab], y[lab])]
        lab[picks] = True; have = np.flatnonzero(lab); L = len(have)
        need = rule != "random" or L in EVAL
        est = head_fit(kind, X, have, y[have]) if need and len(set(y[have])) > 1 else None
        if L in EVAL:
            out[L] = float((est.predict(Xt) == yt).mean())
    return out

if __name__ == "__main__":
    task, kind, seeds, rules = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3].split(",")], sys.argv[4].split(",")
    Xtr, ytr, Xte, yte = al.load(task); X, Xt = normalize(Xtr), normalize(Xte)
    for r in rules:
        t0 = time.time(); res = [run(r, X, ytr, Xt, yte, s, kind) for s in seeds]
        print(json.dumps({"task": task, "head": kind, "rule": r, "seeds": seeds, "secs": round(time.time() - t0, 1),
                          "at": {L: round(float(np.mean([d[L] for d in res])), 4) for L in sorted(EVAL)}}), flush=True)
