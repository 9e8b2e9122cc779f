"""Heads end to end through a store: ingest precomputed vectors, then `Store.fit` and `Store.predict` for each head
(logreg, knn, centroid), against `../shared/bench/stock.py fit` on the same training/test arrays in the same run.

    python bench/heads_e2e.py [--n 100000] [--dim 384] [--labels 20]

The features are bench/fit.py's synthetic clusters (noisy, nearly uniform on the sphere: hard for an HNSW graph, so
this is also where a kNN head's choice between the space's index and an exact search shows). Prints one JSON line:
seconds per step and the accuracy of each head on its held-out 20%, and stock's fit time and accuracy on the same
split (the `logreg` fit ratio is stock seconds / embstore seconds; embstore's includes reading the store, the C
search, calibration and metrics).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import SHARED, run_stock
from fit import make


def main() -> None:
    from embstore import Store

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--labels", type=int, default=20)
    p.add_argument("--stock", type=Path, default=SHARED / "bench" / "stock.py")
    a = p.parse_args()
    X, y = make(a.n, a.dim, a.labels, 0)
    out: dict = {"n": a.n, "dim": a.dim, "labels": a.labels}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "s")
        t = time.perf_counter()
        store.ingest_vectors("v", X, metadata={"label": [f"l{v}" for v in y]})
        out["ingest_s"] = round(time.perf_counter() - t, 2)
        out["index"] = {k: store.space("v")["index"][k] for k in ("factory", "value", "recall_at_10")}
        for model in ("logreg", "knn", "centroid"):
            t = time.perf_counter()
            rec = store.fit("v", "label", model=model)
            fit_s = time.perf_counter() - t
            t = time.perf_counter()
            store.predict(rec["name"], "v")
            out[model] = {"fit_s": round(fit_s, 2), "predict_all_s": round(time.perf_counter() - t, 2),
                          "accuracy": rec["accuracy"], **({"served_by": rec["served_by"]} if "served_by" in rec else {})}
        # stock on the very same held-out split: the logreg head's training and test ids
        from embstore.labelled import holdout_split

        ids, V = store.embeddings("v")
        label = dict(store.sql("SELECT id, label FROM v").fetchall())
        yy = [label[i] for i in ids]
        tr, te = holdout_split(yy, 0.2, 0)
        for name, rows in (("train", tr), ("test", te)):
            np.save(Path(tmp) / f"{name}.X.npy", V[rows])
            np.save(Path(tmp) / f"{name}.y.npy", np.asarray([yy[i] for i in rows]))
        stock = run_stock(a.stock, ["fit", "--train", f"{tmp}/train.X.npy", f"{tmp}/train.y.npy",
                                    "--test", f"{tmp}/test.X.npy", f"{tmp}/test.y.npy"])
    out["stock_fit"] = {"fit_s": round(stock["seconds"], 2), "accuracy": stock["accuracy"]}
    out["logreg_fit_ratio"] = round(stock["seconds"] / out["logreg"]["fit_s"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
