"""Similarity search at size: embstore's auto-chosen index against stock exact FAISS and DuckDB brute force.

    python bench/search.py [--n 1000000] [--dim 384] [--clusters 1000] [--queries 1000] [--device cpu]

Synthetic clustered vectors (Gaussian clusters, L2-normalised) go into a store through the public API
(`Store.ingest_vectors`), which picks, builds and tunes the index. Queries come from the same clusters but are not in
the base. In the same run: `../shared/bench/stock.py search` (IndexFlatIP, exact) and DuckDB's
`array_cosine_similarity` brute force over the space's Parquet view. Prints one JSON line: recall@10 of embstore's
index against exact search, median single-query latency and batched queries/s of each side, and the ratios. With
`--device cuda` it also times the exact GPU path (torch matmul + top-k).
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from common import SHARED, run_stock, workdir


def make(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    centers = np.random.default_rng(7).standard_normal((clusters, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    X = centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim), dtype=np.float32) * 0.6
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--duckdb-queries", type=int, default=5)
    p.add_argument("--stock", type=Path, default=SHARED / "bench" / "stock.py")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    a = p.parse_args()

    import faiss

    from embstore import Store
    from embstore.config import Settings

    work = workdir(a.out, "search")
    X = make(a.n, a.dim, a.clusters, seed=1)
    Q = make(a.queries, a.dim, a.clusters, seed=2)
    store = Store.open(work / "bench.store", settings=Settings.resolve(device="cpu"))
    t = time.perf_counter()
    store.ingest_vectors("synthetic", X, name=f"synthetic{a.dim}")
    ingest_s = time.perf_counter() - t
    entry = store.space("synthetic")["index"]

    # exact reference for recall
    flat = faiss.IndexFlatIP(a.dim)
    flat.add(X)
    _, truth = flat.search(Q, a.k)
    del flat

    index, ids = store.sync_index("synthetic", store.space_name("synthetic"))
    store.search("synthetic", vector=Q[0], k=a.k)  # warm
    lat, found = [], []
    for q in Q[:200]:
        t = time.perf_counter()
        hits = store.search("synthetic", vector=q, k=a.k)
        lat.append(time.perf_counter() - t)
        found.append([int(h["id"]) for h in hits])
    recall = float(np.mean([len(set(f) & set(t)) / a.k for f, t in zip(found, truth[:200])]))
    from embstore import index as ix

    t = time.perf_counter()
    _, rows = ix.search(index, Q, a.k, factory=entry["factory"], param=entry["value"])
    batch_s = time.perf_counter() - t
    recall_batch = float(np.mean([len(set(r) & set(t)) / a.k for r, t in zip(rows, truth)]))
    t = time.perf_counter()
    for q in Q[:200]:
        ix.search(index, q[None], a.k, factory=entry["factory"], param=entry["value"])
    raw_single = (time.perf_counter() - t) / 200

    np.save(work / "base.npy", X)
    np.save(work / "queries.npy", Q)
    stock = run_stock(a.stock, ["search", "--base", str(work / "base.npy"), "--queries", str(work / "queries.npy"),
                                "--k", str(a.k)])

    con = store.connect()
    view = f'"synthetic__{store.space_name("synthetic")}"'
    duck = []
    for q in Q[: a.duckdb_queries]:
        t = time.perf_counter()
        con.execute(f"SELECT id FROM {view} ORDER BY array_cosine_similarity(embedding, ?::FLOAT[{a.dim}]) DESC "
                    f"LIMIT {a.k}", [q.tolist()]).fetchall()
        duck.append(time.perf_counter() - t)

    row = {"what": "search", "n": a.n, "dim": a.dim, "k": a.k, "index": entry["factory"],
           "index_param": {entry["param"]: entry["value"]} if entry["param"] else {},
           "tuned_recall_at_10": entry["recall_at_10"], "recall_at_10_single": round(recall, 4),
           "recall_at_10_batch": round(recall_batch, 4), "ingest_and_index_s": round(ingest_s, 1),
           "embstore_single_ms_median_api": round(statistics.median(lat) * 1000, 3),
           "embstore_single_ms_index": round(raw_single * 1000, 3),
           "embstore_batch_qps": round(len(Q) / batch_s, 1),
           "stock_flat_single_ms": round(stock["single_query_ms"], 3),
           "stock_flat_batch_qps": round(stock["batch_queries_per_s"], 1),
           "duckdb_bruteforce_single_ms_median": round(statistics.median(duck) * 1000, 1),
           "latency_ratio_index_vs_stock": round(raw_single * 1000 / stock["single_query_ms"], 4)}
    if a.device.startswith("cuda"):
        from embstore.search import gpu_exact_search

        store.settings = Settings.resolve(device=a.device)
        gpu_exact_search(store, "synthetic", store.space_name("synthetic"), Q[:1], a.k)  # upload + warm
        import torch

        M = store.cached(("gpu", "synthetic", store.space_name("synthetic")), store.space("synthetic")["rows"],
                         None)[0]
        qt = torch.as_tensor(Q).to(M.device, M.dtype)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            torch.topk((qt @ M.T).float(), a.k, dim=1)
        torch.cuda.synchronize()
        row["gpu_exact_batch_qps"] = round(10 * len(Q) / (time.perf_counter() - t), 1)
        _, top = torch.topk((qt @ M.T).float(), a.k, dim=1)
        row["gpu_exact_recall_at_10"] = round(float(np.mean([len(set(r) & set(t)) / a.k for r, t in zip(top.cpu().numpy(), truth)])), 4)
    print(json.dumps(row), flush=True)
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
