"""embstore image ingest with open_clip ViT-B/32 vs the stock open_clip + PIL DataLoader loop on the same files, in one
run. stock.py has no CLIP mode: the stock side is here, what open_clip's README does (create_model_and_transforms,
the returned preprocess in a DataLoader's workers, model.encode_image), run in its own process like stock.py.

    python bench/embed_clip.py [--data ../shared/datasets/mnist/labels.csv] [--limit 300] [--device cpu] [--repeat 2]
    python bench/embed_clip.py --stock-side ...   (the stock loop alone; what the first form runs as a subprocess)

Weights: ``--pretrained random`` by default (no weights can be had on this machine; the same FLOPs as the real model:
throughput and agreement of the vectors only). Prints one JSON line: images/s of each side, their ratio
(embstore/stock, >1 means embstore is faster), and the cosine between embstore's stored vectors and stock's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from common import SHARED, base_parser, cosines, image_files, throughput_report, vectors_by, workdir


def stock_side(paths: list[str], arch: str, pretrained: str, device: str, batch_size: int, workers: int,
               save: str) -> dict:
    import open_clip
    import torch
    from PIL import Image

    torch.manual_seed(0)  # embstore's @random is seeded the same way: the same random weights
    if pretrained == "random":
        model, _, preprocess = open_clip.create_model_and_transforms(arch)
    else:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
    model = model.eval().to(device)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return preprocess(Image.open(paths[i]).convert("RGB"))

    dl = torch.utils.data.DataLoader(DS(), batch_size=batch_size, num_workers=workers)
    with torch.inference_mode():
        model.encode_image(torch.zeros(1, 3, 224, 224, device=device))  # warm-up, as embstore's side loads first
    t = time.perf_counter()
    out = []
    with torch.inference_mode():
        for x in dl:
            out.append(model.encode_image(x.to(device), normalize=True).float().cpu().numpy())
    dt = time.perf_counter() - t
    np.save(save, np.concatenate(out))
    return {"what": f"stock open_clip {arch} + PIL DataLoader", "n": len(paths), "seconds": dt, "per_s": len(paths) / dt}


def main() -> None:
    p = base_parser(__doc__, SHARED / "datasets" / "mnist" / "labels.csv")
    p.add_argument("--limit", type=int, default=300, help="first N images (default 300; 0 for all)")
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--pretrained", default="random", help="an open_clip tag or weights file (default: random)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--stock-side", action="store_true", help=argparse_hidden())
    p.add_argument("--paths", help=argparse_hidden())
    p.add_argument("--save", help=argparse_hidden())
    a = p.parse_args()
    if a.stock_side:
        paths = json.loads(open(a.paths).read())
        print(json.dumps(stock_side(paths, a.arch, a.pretrained, a.device, a.batch_size, a.workers, a.save)))
        return

    from embstore import Store
    from embstore.config import Settings
    from embstore.encoders import get_encoder

    work = workdir(a.out, "embed_clip")
    paths, source = image_files(a.data, a.limit, work)  # the same files for both sides
    (work / "paths.json").write_text(json.dumps(paths))
    spec = f"open_clip:{a.arch}@{a.pretrained}"
    settings = Settings.resolve(device=a.device, batch_size=a.batch_size, workers=a.workers)
    get_encoder(spec, settings.device)  # loaded once; the ingests reuse it
    ours, stock = [], []
    for r in range(a.repeat):
        out = subprocess.run([sys.executable, __file__, "--stock-side", "--paths", str(work / "paths.json"),
                              "--save", str(work / "stock.npy"), "--arch", a.arch, "--pretrained", a.pretrained,
                              "--device", a.device, "--batch-size", str(a.batch_size), "--workers", str(a.workers)],
                             check=True, capture_output=True, text=True)
        stock.append(json.loads(out.stdout.strip().splitlines()[-1]))
        store = Store.open(work / f"run{r}.store", settings=settings)
        t = time.perf_counter()
        rep = store.ingest(source, "bench", image_column="path", encoder=spec)
        ours.append((time.perf_counter() - t, rep, store))
    seconds, rep, store = min(ours, key=lambda o: o[0])
    best = min(stock, key=lambda s: s["seconds"])
    vec = vectors_by(store, "bench", "path")
    cos = cosines(np.stack([vec[x] for x in paths]), np.load(work / "stock.npy"))
    throughput_report("embed_clip", a, settings.device, len(paths), seconds, rep, best, cos, workers=a.workers,
                      model=spec)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
