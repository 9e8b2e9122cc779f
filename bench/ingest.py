"""CPU ingest rows of issue 12: embstore ingest (default runtime) vs what a user would run instead, same input, same
machine, same run, alternating, the fastest of --repeat runs of each side.

    python bench/ingest.py [--rows text,image] [--repeat 2] [--image-limit 1000] [--stock-pythonpath DIR]

text:  embstore ingest of ../shared/datasets/trec/train.csv (CSV -> committed store: read, hash, dedupe, encode,
       write Parquet, commit, index) vs each of sentence-transformers encode with backend torch, onnx and openvino
       (encode alone; the exports are made before the clock starts). The ONNX and OpenVINO backends need optimum,
       which pins transformers < 4.58: they run in --stock-python (another interpreter) or with --stock-pythonpath
       (a folder put first on PYTHONPATH, e.g. `pip install --target DIR --no-deps` of what
       `pip install 'sentence-transformers[onnx,openvino]'` resolves to); without either, those rows are skipped.
image: embstore ingest of ../shared/datasets/mnist (the first --image-limit images of labels.csv) vs the stock timm
       EfficientNet-Lite0 + PIL DataLoader (../shared/bench/stock.py image).

One JSON line per comparison: rows/s of each side, ratio = embstore / stock (> 1: embstore is faster), and the cosine
of embstore's stored vectors to the fp32 torch reference (ST torch encode; timm in torch) for every row, min and mean;
the stock backends' own cosine to the reference too. Exits 1 when embstore's min cosine is under 0.999.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import REPO, SHARED, base_parser, cosines, image_files, report, run_stock, vectors_by, workdir


def stock_backend(a, backend: str, source: Path, column: str, save: Path) -> dict | None:
    if not (a.stock_python or a.stock_pythonpath):
        return None
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    if a.stock_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(a.stock_pythonpath), env.get("PYTHONPATH", "")])
    out = subprocess.run([a.stock_python or sys.executable, str(REPO / "bench" / "st_backend.py"), "--backend",
                          backend, "--csv", str(source), "--column", column, "--batch-size", str(a.batch_size),
                          "--save", str(save)], capture_output=True, text=True, env=env)
    if out.returncode:  # (e.g. optimum-onnx and optimum-intel pin different optimum versions: one may be missing)
        why = (out.stderr.strip().splitlines() or ["no output"])[-1]
        print(json.dumps({"bench": "ingest_text", "stock": f"sentence-transformers backend={backend}",
                          "failed": why[:300]}), flush=True)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def text_rows(a) -> None:
    import pyarrow.csv as pcsv

    from embstore import Store
    from embstore.config import DEFAULT_TEXT_ENCODER, Settings
    from embstore.encoders import get_encoder

    work = workdir(a.out, "ingest_text")
    source = a.text_data
    texts = [str(t) for t in pcsv.read_csv(source).column("text").to_pylist()]
    settings = Settings.resolve(device="cpu", batch_size=a.batch_size, runtime=a.runtime)
    enc = get_encoder(DEFAULT_TEXT_ENCODER, "cpu", settings.runtime)  # the ingests below reuse this instance
    enc.encode_text(texts[: a.batch_size], a.batch_size)  # warm-up (compiles the runtime), as stock warms up
    stocks: dict[str, list[dict]] = {"torch": [], "onnx": [], "openvino": []}
    ours = []
    for r in range(a.repeat):
        stocks["torch"].append(run_stock(a.stock, ["text", "--csv", str(source), "--column", "text", "--device",
                                                   "cpu", "--batch-size", str(a.batch_size), "--save",
                                                   str(work / "st-torch.npy")]))
        for backend in ("onnx", "openvino"):
            res = stock_backend(a, backend, source, "text", work / f"st-{backend}.npy")
            if res is not None:
                stocks[backend].append(res)
        store = Store.open(work / f"run{r}.store", settings=settings)
        t = time.perf_counter()
        rep = store.ingest(source, "bench", text_column="text")
        ours.append((time.perf_counter() - t, rep, store))
    seconds, rep, store = min(ours, key=lambda o: o[0])
    vec = vectors_by(store, "bench", "text")
    ref = np.load(work / "st-torch.npy")
    cos = cosines(np.stack([vec[t] for t in texts]), ref)
    per_s = rep.read / seconds
    best_stock = max((min(runs, key=lambda s: s["seconds"]) | {"backend": b} for b, runs in stocks.items() if runs),
                     key=lambda s: s["per_s"])
    for backend, runs in stocks.items():
        if not runs:
            print(json.dumps({"bench": "ingest_text", "stock": f"sentence-transformers backend={backend}",
                              "skipped": "no --stock-python or --stock-pythonpath with optimum, or it failed"}))
            continue
        best = min(runs, key=lambda s: s["seconds"])
        stock_cos = cosines(np.load(work / f"st-{backend}.npy"), ref)
        report({"bench": "ingest_text", "machine": a.machine, "commit": a.commit, "data": str(source),
                "rows": len(texts), "batch_size": a.batch_size, "repeat": a.repeat,
                "embstore": {"runtime": rep.runtime, "seconds": round(seconds, 3), "embedded": rep.embedded,
                             "per_s": round(per_s, 1), "stages": rep.seconds},
                "stock": {"what": best["what"], "seconds": round(best["seconds"], 3), "per_s": round(best["per_s"], 1),
                          "cosine_min": float(stock_cos.min()), "cosine_mean": float(stock_cos.mean())},
                "ratio_per_s": round(per_s / best["per_s"], 3), "best_stock": backend == best_stock["backend"],
                "cosine_rows": len(cos), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean())})


def image_rows(a) -> None:
    from embstore import Store
    from embstore.config import DEFAULT_IMAGE_ENCODER, Settings
    from embstore.encoders import get_encoder

    work = workdir(a.out, "ingest_image")
    paths, source = image_files(a.image_data, a.image_limit, work)  # the same files for both sides
    settings = Settings.resolve(device="cpu", batch_size=a.batch_size, workers=a.workers, runtime=a.runtime)
    enc = get_encoder(DEFAULT_IMAGE_ENCODER, "cpu", settings.runtime)
    import torch

    enc.encode_preprocessed(torch.zeros(a.batch_size, *enc.data_config["input_size"]))  # warm-up (compiles)
    stock, ours = [], []
    for r in range(a.repeat):
        stock.append(run_stock(a.stock, ["image", "--labels", str(source), "--device", "cpu", "--batch-size",
                                         str(a.batch_size), "--workers", str(a.workers), "--save",
                                         str(work / "stock.npy")]))
        store = Store.open(work / f"run{r}.store", settings=settings)
        t = time.perf_counter()
        rep = store.ingest(source, "bench", image_column="path")
        ours.append((time.perf_counter() - t, rep, store))
    seconds, rep, store = min(ours, key=lambda o: o[0])
    best = min(stock, key=lambda s: s["seconds"])
    vec = vectors_by(store, "bench", "path")
    cos = cosines(np.stack([vec[p] for p in paths]), np.load(work / "stock.npy"))
    per_s = rep.read / seconds
    report({"bench": "ingest_image", "machine": a.machine, "commit": a.commit, "data": str(a.image_data),
            "rows": len(paths), "batch_size": a.batch_size, "workers": a.workers, "repeat": a.repeat,
            "embstore": {"runtime": rep.runtime, "seconds": round(seconds, 3), "embedded": rep.embedded,
                         "per_s": round(per_s, 1), "stages": rep.seconds},
            "stock": {"what": best["what"], "seconds": round(best["seconds"], 3), "per_s": round(best["per_s"], 1)},
            "ratio_per_s": round(per_s / best["per_s"], 3),
            "cosine_rows": len(cos), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean())})


def main() -> None:
    p = base_parser(__doc__, SHARED / "datasets" / "trec" / "train.csv")
    p.add_argument("--rows", default="text,image", help="which rows: text, image or both (default)")
    p.add_argument("--image-data", type=Path, default=SHARED / "datasets" / "mnist" / "labels.csv")
    p.add_argument("--image-limit", type=int, default=1000, help="first N images (default 1000; 0 for all)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="image decode workers, both sides")
    p.add_argument("--runtime", default=None, help="embstore's runtime (default: EMBSTORE_RUNTIME, else auto)")
    p.add_argument("--stock-python", help="interpreter with sentence-transformers[onnx,openvino]")
    p.add_argument("--stock-pythonpath", type=Path, help="folder with sentence-transformers[onnx,openvino]")
    a = p.parse_args()
    a.text_data = a.data
    a.machine = f"{os.uname().sysname} {os.uname().machine}, {os.cpu_count()} CPUs"
    a.commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    rows = a.rows.split(",")
    if "text" in rows:
        text_rows(a)
    if "image" in rows:
        image_rows(a)


if __name__ == "__main__":
    main()
