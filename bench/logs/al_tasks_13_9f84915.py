"""Scratch: the active-learning rules on many tasks (bench/auto_head.py's), same head, random vs rules."""
import json, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, "/work/main/bench"); sys.path.insert(0, str(Path(__file__).resolve().parent))
from embstore.index import normalize
import al_strategies_13_9f84915 as al  # its rules and its run()

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
            cs = []
            for s in seeds:
                cs.append(al.run(r, X, ytr, Xt, yte, s, "embstore", batch, budget))
            res[r] = np.mean(cs, 0)
            target = res["random"][-1]
            reach = next((batch * (k + 1) for k, a in enumerate(res[r]) if a >= target), None)
            print(json.dumps({"task": tn, "rule": r, "n_train": len(ytr), "budget": budget, "batch": batch,
                              "at_half": round(float(res[r][len(res[r]) // 2 - 1]), 4), "at_budget": round(float(res[r][-1]), 4),
                              "mean_curve": round(float(res[r].mean()), 4), "reaches_random_at": reach,
                              "secs": round(time.time() - t0, 1), "curve": [round(float(a), 4) for a in res[r]]}), flush=True)

if __name__ == "__main__":
    main()
