"""Scratch: test accuracy, log-loss and ECE (10 bins) of logreg and the self-training head at 100 / 250 / 500 random
labels (the pool: every other training item), from cached vectors (/tmp/al/<name>.npz, see al_layers_16.load).

  python bench/logs/selftrain_calib_16.py NPZ SEEDS [HEADS] [--heldout]   # heads: logreg,selftrain
"""
import json, os, sys, time
import numpy as np
sys.path.insert(0, "/work/main")

def ece(P, y, bins=10):
    conf, right = P.max(1), (P.argmax(1) == y)
    edges = np.linspace(0, 1, bins + 1); e = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += m.mean() * abs(right[m].mean() - conf[m].mean())
    return float(e)

if __name__ == "__main__":
    import embstore
    from embstore.heads import make_estimator
    f, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
    heads = (sys.argv[3] if len(sys.argv) > 3 and not sys.argv[3].startswith("--") else "logreg,selftrain").split(",")
    d = np.load(f, allow_pickle=False); X, y, Xt, yt = d["Xtr"], d["ytr"], d["Xte"], d["yte"]
    if "--heldout" in sys.argv:  # score on 1,000 (at most a third of the) training items held out of labels and pool: no train/test shift
        keep = np.random.default_rng(12345).permutation(len(X)); h = min(1000, len(X) // 3)
        Xt, yt = X[keep[:h]], y[keep[:h]]
        X, y = X[keep[h:]], y[keep[h:]]
    for kind in heads:
        for n in [n for n in (100, 250, 500) if n <= len(X)]:
            rows = []
            t0 = time.time()
            for s in seeds:
                idx = np.random.default_rng(s).choice(len(X), n, replace=False)
                est = make_estimator(kind, {}, "cpu")
                if kind == "selftrain":
                    est.fit(X[idx], y[idx], unlabelled=X[np.setdiff1d(np.arange(len(X)), idx)])
                else:
                    est.fit(X[idx], y[idx])
                P = est.predict_proba(Xt); t = np.searchsorted(est.classes_, yt)
                known = np.isin(yt, est.classes_)
                Pk, tk = P[known], t[known]
                ll = float(-np.log(np.clip(Pk[np.arange(len(tk)), tk], 1e-15, 1)).mean())
                rows.append((float((est.classes_[P.argmax(1)] == yt).mean()), ll, ece(Pk, tk), float(P.max(1).mean()),
                             float(getattr(est, 'temperature_', 0))))
            m = np.mean(rows, 0)
            print(json.dumps({"embstore": os.path.dirname(os.path.dirname(embstore.__file__)), "npz": f, "scored_on": "heldout" if "--heldout" in sys.argv else "test", "head": kind, "labels": n, "seeds": seeds, "accuracy": round(m[0], 4),
                              "log_loss": round(m[1], 4), "ece": round(m[2], 4), "mean_confidence": round(m[3], 4), "temperature": round(m[4], 3), "secs": round(time.time() - t0, 1)}),
                  flush=True)
