"""Scratch: centroid temperature with the succession smoothing against without, 17 tasks x 1,2,4,8,32 per label."""
import sys, json, importlib.util, numpy as np
from pathlib import Path
sys.path.insert(0, "/work/main/bench"); sys.path.insert(0, "/work/main")
import embstore.estimators as new
spec = importlib.util.spec_from_file_location("embstore._old_est", "/tmp/al14/old/old_estimators.py",
                                              submodule_search_locations=None)
old = importlib.util.module_from_spec(spec); old.__package__ = "embstore"; spec.loader.exec_module(old)
from auto_head import tasks
T = tasks(Path("/work/bench-stores"))
def ece(P, y, bins=15):
    c = P.max(1); ok = P.argmax(1) == y; e = 0
    for lo in np.linspace(0, 1, bins + 1)[:-1]:
        m = (c > lo) & (c <= lo + 1 / bins)
        if m.any(): e += m.mean() * abs(ok[m].mean() - c[m].mean())
    return e
res = {}
for name, (Xtr, ytr, Xte, yte) in T.items():
    for per in (2, 4, 8, 32):
        for seed in (0, 1, 2):
            rng = np.random.default_rng(seed); idx = []
            for c in np.unique(ytr):
                w = np.flatnonzero(ytr == c); idx += list(rng.choice(w, min(per, len(w)), replace=False))
            idx = np.array(idx)
            row = {"task": name, "per": per, "seed": seed}
            for tag, mod in (("old", old), ("new", new)):
                h = mod.CentroidHead().fit(Xtr[idx], ytr[idx]); P = h.predict_proba(Xte)
                yi = np.searchsorted(h.classes_, yte)
                ll = float(-np.mean(np.log(np.clip(P[np.arange(len(yte)), yi], 1e-12, 1))))
                row[tag] = {"T": round(h.temperature_, 2), "ece": round(ece(P, yi), 4), "ll": round(ll, 4)}
            print(json.dumps(row), flush=True)
            res.setdefault(per, []).append(row)
for per, rows in res.items():
    d = [r["new"]["ll"] - r["old"]["ll"] for r in rows]
    print(json.dumps({"per": per, "runs": len(rows), "ll_old": round(np.mean([r["old"]["ll"] for r in rows]), 4),
                      "ll_new": round(np.mean([r["new"]["ll"] for r in rows]), 4),
                      "ece_old": round(np.mean([r["old"]["ece"] for r in rows]), 4),
                      "ece_new": round(np.mean([r["new"]["ece"] for r in rows]), 4),
                      "better": int(sum(x < -1e-4 for x in d)), "worse": int(sum(x > 1e-4 for x in d))}))
