"""Diagnostic: what a text ingest costs beyond its encoder, when the encoder is as fast as a GPU's.

The model is replaced by a paced stand-in: it returns the hashing encoder's vectors and waits, without holding
Python's lock (as a process waiting on a GPU does), so that it takes ROWS/RATE seconds for ROWS texts. At the
default 8,000 texts/s (what stock sentence-transformers encodes with MiniLM at batch 256 on an H100:
bench/RESULTS.md), this shows on a CPU what the ingest adds around the model on a GPU machine: reading, hashing,
dedupe, Parquet writes, commits, the index. No stock counterpart: stock is the encoder alone, i.e. the paced time.

    python bench/ingest_overhead.py [--data ../shared/datasets/trec/train.csv] [--rows 100000] [--rate 8000]

Prints one JSON line: the ingest's seconds, the encoder's own seconds inside it, and the share of the ingest's
wall time that the encoder is (1.0: the ingest adds nothing; embed_text.py's GPU ratio cannot exceed it).
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from common import REPO, SHARED, workdir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED / "datasets" / "trec" / "train.csv")
    p.add_argument("--rows", type=int, default=100_000, help="texts to ingest: the data's, repeated with a number")
    p.add_argument("--rate", type=float, default=8000.0, help="the stand-in encoder's texts per second")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    a = p.parse_args()

    from embstore import Store, encoders
    from embstore.config import Settings
    from embstore.encoders.hashing import HashEncoder

    work = workdir(a.out, "ingest_overhead")
    with open(a.data, newline="") as f:
        base = [r["text"] for r in csv.DictReader(f)]
    source = work / "input.csv"
    with open(source, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "n"])
        for n in range(a.rows):
            w.writerow([f"{base[n % len(base)]} #{n // len(base)}", n])

    class Paced(HashEncoder):
        spent = 0.0

        def encode_text(self, texts, batch_size=64):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            out = super().encode_text(texts, batch_size)
            time.sleep(max(0.0, len(texts) / a.rate - (time.perf_counter() - t)))
            Paced.spent += time.perf_counter() - t
            return out

    from embstore.ingest import runner

    runner.BACKGROUND = True  # as with a model on a GPU: chunks are written and indexed while the next one encodes
    spec = f"hash:{a.dim}"
    settings = Settings.resolve(device="cpu")
    encoders._cache[(spec, settings.device)] = Paced(a.dim)
    runs = []
    for r in range(a.repeat):
        Paced.spent = 0.0
        store = Store.open(work / f"run{r}.store", settings=settings)
        t = time.perf_counter()
        rep = store.ingest(source, "bench", encoder=spec)
        runs.append({"seconds": round(time.perf_counter() - t, 3), "encoder_seconds": round(Paced.spent, 3),
                     "stages": rep.seconds, "embedded": rep.embedded})
    best = min(runs, key=lambda r: r["seconds"])
    print(json.dumps({"bench": "ingest_overhead", "rows": a.rows, "rate": a.rate, "commit_rows": settings.commit_rows,
                      **best, "overhead_seconds": round(best["seconds"] - best["encoder_seconds"], 3),
                      "encoder_share": round(best["encoder_seconds"] / best["seconds"], 3), "runs": runs}))


if __name__ == "__main__":
    main()
