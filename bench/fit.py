"""Fit time of embstore's default head against the stock scikit-learn logistic regression, same features, one run.

    python bench/fit.py [--sizes 10000,100000,1000000] [--dim 384] [--labels 20] [--device cpu] [--stock-max 1000000]

Features are synthetic with a known structure: one Gaussian cluster per label in `dim` dimensions, L2-normalised
(like sentence embeddings), noisy enough that accuracy is below 1. Both sides see the same train/test arrays:
embstore's default head (`LinearProbe`, C chosen by cross-validation, temperature-calibrated) in this process, and
`../shared/bench/stock.py fit` (LogisticRegression(max_iter=1000), C fixed at 1) in its own process. Prints one JSON
line per size: seconds and accuracy of each side and the time ratio stock/embstore (>1: embstore is faster).
"""
from __future__ import annotations

import json
import time

import numpy as np

from common import SHARED, run_stock, workdir


def make(n: int, dim: int, labels: int, seed: int, spread: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    centers = np.random.default_rng(12345).standard_normal((labels, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, labels, n)
    X = centers[y] + rng.standard_normal((n, dim), dtype=np.float32) * spread
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, y


def main() -> None:
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--labels", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--stock", type=Path, default=SHARED / "bench" / "stock.py")
    p.add_argument("--stock-max", type=int, default=1_000_000, help="skip the stock side above this many rows")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    a = p.parse_args()

    from embstore.estimators import LinearProbe

    for n in (int(s) for s in a.sizes.split(",")):
        X, y = make(n, a.dim, a.labels, seed=1)
        Xt, yt = make(20_000, a.dim, a.labels, seed=2)
        t = time.perf_counter()
        probe = LinearProbe(device=a.device).fit(X, y)
        ours = time.perf_counter() - t
        row = {"what": "fit", "n": n, "dim": a.dim, "labels": a.labels, "device": a.device,
               "embstore_seconds": round(ours, 3), "embstore_accuracy": float((probe.predict(Xt) == yt).mean()),
               "embstore_C": probe.C_}
        if n <= a.stock_max:
            work = workdir(a.out, "fit")
            for name, arr in (("Xtr", X), ("ytr", y), ("Xte", Xt), ("yte", yt)):
                np.save(work / f"{name}.npy", arr)
            stock = run_stock(a.stock, ["fit", "--train", str(work / "Xtr.npy"), str(work / "ytr.npy"),
                                        "--test", str(work / "Xte.npy"), str(work / "yte.npy")])
            row.update(stock_seconds=round(stock["seconds"], 3), stock_accuracy=stock["accuracy"],
                       speedup=round(stock["seconds"] / ours, 2))
            for f in work.iterdir():
                f.unlink()
            work.rmdir()
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
