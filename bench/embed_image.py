"""embstore ingest of image files vs the stock timm EfficientNet-Lite0 + PIL DataLoader on the same files, in one run.

    python bench/embed_image.py [--data ../shared/datasets/mnist/labels.csv] [--limit 500] [--device cpu] [--repeat 1]

--data is a CSV with a `path` column relative to its folder (as stock.py reads it). Prints one JSON line: images/s of
each side and their ratio (embstore/stock, >1 means embstore is faster), and the cosine between embstore's stored
vector and stock's vector for every image (min and mean; must be >= 0.999). Both sides load the model before the
clock starts. embstore's time is the whole ingest (read files, hash, decode, preprocess, encode, write Parquet, commit,
index); stock's is its DataLoader loop (decode + preprocess in worker processes, then the model).
"""
from __future__ import annotations

import os
import time

import numpy as np

from common import SHARED, base_parser, cosines, image_files, run_stock, throughput_report, vectors_by, workdir


def main() -> None:
    p = base_parser(__doc__, SHARED / "datasets" / "mnist" / "labels.csv")
    p.add_argument("--limit", type=int, default=500, help="first N images (default 500; 0 for all)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="decode workers on both sides (default: min(8, cpus))")
    a = p.parse_args()

    from embstore import Store
    from embstore.config import DEFAULT_IMAGE_ENCODER, Settings
    from embstore.encoders import get_encoder

    work = workdir(a.out, "embed_image")
    paths, source = image_files(a.data, a.limit, work)  # the same files for both sides

    settings = Settings.resolve(device=a.device, batch_size=a.batch_size, workers=a.workers)
    get_encoder(DEFAULT_IMAGE_ENCODER, settings.device)  # load once; the ingest below reuses this instance
    stock_args = ["image", "--labels", str(source), "--device", a.device,
                  "--batch-size", str(a.batch_size), "--workers", str(a.workers), "--save", str(work / "stock.npy")]
    ours, stock = [], []
    for r in range(a.repeat):
        stock.append(run_stock(a.stock, stock_args))
        store = Store.open(work / f"run{r}.store", settings=settings)
        t = time.perf_counter()
        rep = store.ingest(source, "bench", image_column="path")
        ours.append((time.perf_counter() - t, rep, store))
    seconds, rep, store = min(ours, key=lambda o: o[0])
    best = min(stock, key=lambda s: s["seconds"])

    vec = vectors_by(store, "bench", "path")
    cos = cosines(np.stack([vec[p] for p in paths]), np.load(work / "stock.npy"))
    throughput_report("embed_image", a, settings.device, len(paths), seconds, rep, best, cos, workers=a.workers)


if __name__ == "__main__":
    main()
