"""Scratch: BADGE (Ash et al. 2020) and variants against the committed suggest on TREC, via bench/active_learning.run_arm."""
import sys, json, numpy as np
sys.path.insert(0, "/work/main/bench")
import active_learning as al
from common import task_data
import embstore.suggest as sg

orig = sg.choose

def badge(X, n, proba=None, *, seed=0):
    if proba is None:
        return orig(X, n, None, seed=seed)
    pred = proba.argmax(1)
    g = proba.copy(); g[np.arange(len(g)), pred] -= 1.0    # d loss / d logits at the predicted label
    # gradient embedding: g (items x classes) outer x (items x d); norms = |g| |x|
    G = (g[:, :, None] * X[:, None, :]).reshape(len(X), -1).astype(np.float32)
    rng = np.random.default_rng(seed)
    norms = (G * G).sum(1)
    first = int(np.argmax(norms)); picks = [first]
    d2 = ((G - G[first]) ** 2).sum(1)
    for _ in range(n - 1):
        p = d2 / d2.sum()
        j = int(rng.choice(len(G), p=p)); picks.append(j)
        d2 = np.minimum(d2, ((G - G[j]) ** 2).sum(1))
    return picks, "badge"

STRATS = {"badge": badge}
name = sys.argv[1]; strat = sys.argv[2]; seeds = [0, 1, 2]
task = task_data(name)
sg.choose = STRATS[strat]
curves = []
for s in seeds:
    curves.append(al.run_arm(task, "suggest", s, 20, 500, lambda o: None))
m = np.mean(curves, 0)
print(json.dumps({"task": name, "strat": strat, "curve": [round(float(x), 4) for x in m]}))
