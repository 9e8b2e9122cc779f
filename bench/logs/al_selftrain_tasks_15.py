"""Scratch: the AL protocol with the self-training head on bench/auto_head.py's tasks, random vs the default rule."""
import sys, json, time
from pathlib import Path
import numpy as np
sys.path.insert(0, "/work/main/bench"); sys.path.insert(0, "/work/main/bench/logs")
from embstore.index import normalize
import al_selftrain_15 as al_st
def main():
    names = sys.argv[1].split(","); seeds = [int(s) for s in sys.argv[2].split(",")]; kinds = sys.argv[3].split(",")
    from auto_head import tasks
    T = tasks(Path("/work/bench-stores"))
    for tn in names:
        Xtr, ytr, Xte, yte = T[tn]; X, Xt = normalize(np.asarray(Xtr, np.float32)), normalize(np.asarray(Xte, np.float32))
        budget = min(500, len(ytr) // 3); batch = 20 if budget >= 200 else max(4, budget // 10); budget -= budget % batch
        al_st.EVAL = set(range(batch, budget + 1, batch))
        for kind in kinds:
            res = {}
            for r in ["random", "current"]:
                t0 = time.time(); cs = [al_st.run(r, X, np.asarray(ytr), Xt, np.asarray(yte), s, kind, batch, budget) for s in seeds]
                m = [float(np.mean([c[L] for c in cs])) for L in sorted(al_st.EVAL)]; res[r] = m
                reach = next((batch * (k + 1) for k, a in enumerate(m) if a >= res["random"][-1]), None)
                print(json.dumps({"task": tn, "head": kind, "rule": r, "budget": budget, "batch": batch, "at_budget": round(m[-1], 4),
                                  "mean_curve": round(float(np.mean(m)), 4), "reaches_random_at": reach, "secs": round(time.time() - t0, 1),
                                  "curve": [round(a, 4) for a in m]}), flush=True)
if __name__ == "__main__":
    main()
