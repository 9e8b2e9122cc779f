"""IVF list encodings for a single query, on a store's own space: the saved index (lists mapped, as a search reads
them) against IVF,SQ8 (with and without exact re-ranking of its top candidates from the float vectors) and
IVF,SQfp16 built in memory on the same coarse quantizer and list assignment, at a few nprobe values; recall@10
against exact search on the queries `embstore` tunes with (200, index.ExactTopK's), strict (the exact ids) and
tie-aware (a hit counts when its exact score reaches the 10th best: the hash encoder has twins), and the median /
90th percentile time of one query on one thread.

    python bench/ivf_kinds.py --store /work/scale-10m [--nprobe 96 --nprobe 128 --nprobe 144]

Holds the space's normalised vectors in memory (n x dim x 4 bytes: 2.6 GB at 10M x 64) plus one SQ index at a
time. One JSON line per measurement; nothing here is a test.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def main() -> None:
    import faiss

    from embstore import Store
    from embstore import index as ix

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True)
    p.add_argument("--collection", default="t")
    p.add_argument("--nprobe", type=int, action="append")
    p.add_argument("--rerank", type=int, action="append", help="candidates re-ranked exactly (SQ8; default 30, 50)")
    a = p.parse_args()
    s = Store.open(a.store, create=False)
    sp = s.space(a.collection)
    saved = ix.load_index(s.root / sp["index"]["file"], mmap=True)
    ivf = faiss.extract_index_ivf(saved)
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    n, nlist, dim = saved.ntotal, ivf.nlist, saved.d
    X = np.empty((n, dim), np.float32)
    start = 0
    for _, block in s.vector_shards(a.collection):
        X[start:start + len(block)] = ix.normalize(block)
        start += len(block)
    assign = np.empty(n, np.int64)  # each row's list, as the saved index has it
    for j in range(nlist):
        m = lists.list_size(j)
        if m:
            assign[faiss.rev_swig_ptr(lists.get_ids(j), m)] = j
    exact = ix.ExactTopK(n, dim)
    for feed in (exact.gather, exact.add):
        for at in range(0, n, 1_000_000):
            feed(at, X[at:at + 1_000_000])
    Q, truth = exact.result()
    tenth = np.einsum("qd,qd->q", Q, X[truth[:, -1]])
    faiss.omp_set_num_threads(1)

    def report(kind: str, nprobe: int, rerank: int, search) -> None:
        got = search(Q)
        scores = np.einsum("qd,qkd->qk", Q, X[np.maximum(got, 0)])
        ties = float(np.mean(((scores >= tenth[:, None] - 1e-6) & (got >= 0)).sum(1) / 10))
        times = []
        for q in Q:
            t = time.perf_counter()
            search(q[None])
            times.append(time.perf_counter() - t)
        times.sort()
        print(json.dumps({"kind": kind, "rows": n, "nprobe": nprobe, "rerank": rerank,
                          "recall_at_10": round(ix._recall(got, truth, 10), 4), "tie_aware_recall": round(ties, 4),
                          "median_ms": round(1000 * statistics.median(times), 3),
                          "p90_ms": round(1000 * times[int(0.9 * len(times))], 3)}), flush=True)

    nprobes = a.nprobe or [96, 128, 144]
    for nprobe in nprobes:
        def mapped(q, nprobe=nprobe):
            ivf.nprobe = nprobe
            return saved.search(q, 10)[1]
        report(f"{sp['index']['factory']} (saved, lists mapped)", nprobe, 0, mapped)
    for code, name in ((faiss.ScalarQuantizer.QT_8bit, "SQ8"), (faiss.ScalarQuantizer.QT_fp16, "SQfp16")):
        sq = faiss.IndexIVFScalarQuantizer(ivf.quantizer, dim, nlist, code, faiss.METRIC_INNER_PRODUCT)
        sq.train(X[np.random.default_rng(0).choice(n, min(n, 200_000), replace=False)])
        sq.add_core(n, faiss.swig_ptr(X), None, faiss.swig_ptr(assign))
        for nprobe in nprobes:
            for rerank in [0] + ((a.rerank or [30, 50]) if name == "SQ8" else []):
                def search(q, nprobe=nprobe, rerank=rerank, sq=sq):
                    sq.nprobe = nprobe
                    if not rerank:
                        return sq.search(q, 10)[1]
                    _, cand = sq.search(q, rerank)
                    out = np.empty((len(q), 10), np.int64)
                    for j, (v, c) in enumerate(zip(q, cand)):
                        c = c[c >= 0]
                        out[j] = c[np.argsort(-(X[c] @ v))[:10]]
                    return out
                report(f"IVF{nlist},{name} (in memory)", nprobe, rerank, search)
        del sq


if __name__ == "__main__":
    main()
