"""embstore ingest of a text CSV vs the stock sentence-transformers encode of the same rows, in one run.

    python bench/embed_text.py [--data ../shared/datasets/trec/train.csv] [--limit N] [--device cpu] [--repeat 1]

Prints one JSON line: rows/s of each side and their ratio (embstore/stock, >1 means embstore is faster), and the
cosine between embstore's stored vector and stock's vector for every row (min and mean; must be >= 0.999).
Both sides load the model and embed one batch before the clock starts. embstore's time is the whole ingest (read,
hash, dedupe, encode, write Parquet, commit, index); stock's is `SentenceTransformer.encode` alone.
"""
from __future__ import annotations

import time

import numpy as np

from common import SHARED, base_parser, cosines, run_stock, throughput_report, vectors_by, workdir


def main() -> None:
    p = base_parser(__doc__, SHARED / "datasets" / "trec" / "train.csv")
    p.add_argument("--column", default="text")
    p.add_argument("--limit", type=int, help="first N rows only")
    a = p.parse_args()

    import pyarrow.csv as pcsv

    from embstore import Store
    from embstore.config import DEFAULT_TEXT_ENCODER, Settings
    from embstore.encoders import get_encoder

    work = workdir(a.out, "embed_text")
    table = pcsv.read_csv(a.data)
    if a.limit:
        table = table.slice(0, a.limit)
    source = work / "input.csv"
    pcsv.write_csv(table, source)
    texts = [str(t) for t in table.column(a.column).to_pylist()]

    settings = Settings.resolve(device=a.device, batch_size=a.batch_size)
    enc = get_encoder(DEFAULT_TEXT_ENCODER, settings.device)  # cached: the ingest below reuses this instance
    enc.encode_text(texts[: a.batch_size], a.batch_size)  # warm-up, as stock does
    stock_args = ["text", "--csv", str(source), "--column", a.column, "--device", a.device,
                  "--batch-size", str(a.batch_size), "--save", str(work / "stock.npy")]
    ours, stock = [], []
    for r in range(a.repeat):
        stock.append(run_stock(a.stock, stock_args))
        store = Store.open(work / f"run{r}.store", settings=settings)
        t = time.perf_counter()
        rep = store.ingest(source, "bench", text_column=a.column)
        ours.append((time.perf_counter() - t, rep, store))
    seconds, rep, store = min(ours, key=lambda o: o[0])
    best = min(stock, key=lambda s: s["seconds"])

    vec = vectors_by(store, "bench", a.column)
    cos = cosines(np.stack([vec[t] for t in texts]), np.load(work / "stock.npy"))
    throughput_report("embed_text", a, settings.device, len(texts), seconds, rep, best, cos)


if __name__ == "__main__":
    main()
