"""Scratch: the self-training head against logreg (both embstore's) on bench/auto_head.py's 16 tasks with a pool, at
1-32 items per label (3 seeds), the unlabelled pool being every other training item; stock LogisticRegression beside.

  python bench/logs/selftrain_tasks_16.py [TASKS] > LOG
Vectors from /tmp/al caches instead of the prebuilt stores (al_layers_16.load, cache_mnist_16.py): TREC and TREC
fine (MiniLM), MNIST (EfficientNet-Lite0), digits (EfficientNet-Lite0 on the 8x8 images as digits_to_png.py writes
them, split 70/30 stratified, seed 0, by index: the stores split by id order, so its split differs from auto_head's).
"""
import json, os, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/bench")
import auto_head  # noqa: E402

def cached(name, stores=None):
    if name == "digits" and not os.path.exists("/tmp/al/digits.npz"):
        from PIL import Image
        from sklearn.datasets import load_digits
        from embstore.encoders import get_encoder
        d = load_digits(); px = np.rint(d.images * (255 / 16)).clip(0, 255).astype(np.uint8)
        X = get_encoder("efficientnet-lite0").encode_images([Image.fromarray(p).convert("RGB") for p in px])
        Xtr, ytr, Xte, yte = auto_head.split(X, d.target.astype(str))
        np.savez("/tmp/al/digits.npz", Xtr=Xtr, ytr=ytr, Xte=Xte, yte=yte)
    f = {"trec": "trec_minilm"}.get(name, name)
    d = np.load(f"/tmp/al/{f}.npz", allow_pickle=False)
    return {"Xtr": d["Xtr"], "ytr": d["ytr"].astype(str), "Xte": d["Xte"], "yte": d["yte"].astype(str)}

auto_head.task_data = cached
auto_head.SHARED = Path("/work/shared")

if __name__ == "__main__":
    from sklearn.linear_model import LogisticRegression
    from embstore.heads import make_estimator
    all_tasks = auto_head.tasks(Path("/nonexistent"))
    chosen = sys.argv[1].split(",") if len(sys.argv) > 1 else list(all_tasks)
    for name in chosen:
        Xtr, ytr, Xte, yte = all_tasks[name]
        for shots in (1, 2, 4, 8, 16, 32):
            for seed in (0, 1, 2):
                rows = auto_head.draw(ytr, shots, seed)
                if rows is None or len(rows) >= len(ytr):
                    continue
                pool = np.setdiff1d(np.arange(len(ytr)), rows)
                X, y = Xtr[rows], ytr[rows]
                t0 = time.perf_counter()
                right = {"stock_logreg": LogisticRegression(max_iter=1000).fit(X, y).predict(Xte) == yte,
                         "logreg": make_estimator("logreg", {}, "cpu").fit(X, y).predict(Xte) == yte}
                t1 = time.perf_counter()
                st = make_estimator("selftrain", {}, "cpu").fit(X, y, unlabelled=Xtr[pool])
                right["selftrain"] = st.predict(Xte) == yte
                t2 = time.perf_counter()
                b, c = int((right["selftrain"] & ~right["logreg"]).sum()), int((~right["selftrain"] & right["logreg"]).sum())
                print(json.dumps({"task": name, "shots": shots, "seed": seed, "n_train": len(rows), "n_pool": len(pool),
                                  "n_test": len(yte), "test": {k: round(float(v.mean()), 4) for k, v in right.items()},
                                  "selftrain_vs_logreg": [b, c], "pseudo_labelled": st.pseudo_labelled_,
                                  "seconds": {"logreg": round(t1 - t0, 2), "selftrain": round(t2 - t1, 2)}}), flush=True)
