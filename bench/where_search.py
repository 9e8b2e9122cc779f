"""Filtered search at several selectivities: `Store.search(vector=q, k=10, where=...)` latency and recall@10 against
exact search, for this checkout and another (`--code DIR`, e.g. the code before a change), alternating in one run.

    python bench/where_search.py --store /tmp/serve_load/1m.store [--code DIR] [--rounds 2] [--queries 20]

The predicate `hash(id) % 10000 < N` keeps a share N/10,000 of the items at random (0.01%, 0.1%, 1%, 10%, 50% by
default); DuckDB evaluates it whatever the code, so what differs is what happens with its matches. Each round runs
each code in a new process (the store opened once, one warm-up search, then every query at every selectivity); the
queries are stored items' vectors plus noise (as `index.tune` draws them). Recall@10 is against an exact top-10
among the matching items (numpy over all vectors). One JSON line per code, round and selectivity; nothing here is a
test.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARES = (1, 10, 100, 1000, 5000)  # of 10,000

WORKER = r"""
import json, sys, time
import numpy as np
import embstore
from embstore import Store
store_path, queries, shares = sys.argv[1], np.load(sys.argv[2]), json.loads(sys.argv[3])
paths = []
try:
    from embstore import filtered
    choose = filtered.choose
    filtered.choose = lambda *a: (lambda p: (paths.append(p.path), p)[1])(choose(*a))
except ImportError:
    pass
t = time.perf_counter()
store = Store.open(store_path, create=False)
first = store.search("docs", vector=queries[0], k=10, where="hash(id) % 10000 < 1")
print(json.dumps({"first_ms": round((time.perf_counter() - t) * 1000, 1), "code": embstore.__file__}), flush=True)
for share in shares:
    times, found = [], []
    paths.clear()
    for q in queries:
        t = time.perf_counter()
        hits = store.search("docs", vector=q, k=10, where=f"hash(id) % 10000 < {share}")
        times.append((time.perf_counter() - t) * 1000)
        found.append([h["id"] for h in hits])
    print(json.dumps({"share": share, "ms": times, "found": found, "paths": sorted(set(paths))}), flush=True)
"""


def truth(store_path: Path, queries: np.ndarray, shares: list[int]) -> dict[int, list[list[str]]]:
    """Exact top-10 among the matching items, per share and query."""
    from embstore import Store
    from embstore import index as ix

    store = Store.open(store_path, create=False)
    ids, X = store.embeddings("docs")
    X = ix.normalize(X)
    h = dict(store.sql('SELECT id, hash(id) % 10000 FROM "docs"').fetchall())
    bucket = np.asarray([h[i] for i in ids])
    ids = np.asarray(ids, dtype=object)
    out = {}
    for share in shares:
        keep = np.flatnonzero(bucket < share)
        S = ix.normalize(queries) @ X[keep].T
        out[share] = [list(ids[keep[np.argsort(-s, kind="stable")[:10]]]) for s in S]
    return out


def run(code: Path, store: Path, queries: Path, shares: list[int]) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="shim-") as tmp:
        shim = Path(tmp)
        (shim / "embstore_cli").symlink_to(code / "cli")
        env = dict(os.environ, PYTHONPATH=f"{shim}:{code}")
        p = subprocess.run([sys.executable, "-c", WORKER, str(store), str(queries), json.dumps(shares)],
                           capture_output=True, text=True, env=env, check=False, cwd=shim)  # (-c puts the cwd first)
    if p.returncode:
        sys.exit(f"worker for {code} failed:\n{p.stderr[-3000:]}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True, help="a store with a collection 'docs' of one space")
    ap.add_argument("--code", type=Path, help="another checkout to compare (run first in each round)")
    ap.add_argument("--label", default="before", help="what to call --code in the output")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--shares", type=int, nargs="*", default=list(SHARES), help="matching items per 10,000")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from embstore import Store
    from embstore.lookup import vectors_at

    store = Store.open(args.store, create=False)
    rng = np.random.default_rng(0)
    n = store.space("docs")["rows"]
    base = vectors_at(store, "docs", store.space_name("docs"), np.sort(rng.choice(n, args.queries, replace=False)))
    dim = base.shape[1]
    queries = (base / np.linalg.norm(base, axis=1, keepdims=True)
               + rng.standard_normal(base.shape).astype(np.float32) * (0.3 / np.sqrt(dim))).astype(np.float32)
    tmp = tempfile.TemporaryDirectory(prefix="where-")
    qfile = Path(tmp.name) / "queries.npy"
    np.save(qfile, queries)
    exact = truth(args.store, queries, args.shares)
    codes = ([(args.label, args.code)] if args.code else []) + [("this", REPO)]
    for r in range(args.rounds):
        for label, code in codes:
            load = os.getloadavg()[0]
            rows = run(code, args.store, qfile, args.shares)
            first = rows[0]["first_ms"]
            assert rows[0]["code"].startswith(str(code.resolve())), rows[0]["code"]  # (that checkout's code ran)
            for row in rows[1:]:
                got, want = row["found"], exact[row["share"]]
                recall = np.mean([len(set(g) & set(w)) / max(len(w), 1) for g, w in zip(got, want)])
                print(json.dumps({"code": label, "round": r + 1, "load": round(load, 2), "first_ms": first,
                                  "share_pct": row["share"] / 100, "p50_ms": round(float(np.median(row["ms"])), 1),
                                  "max_ms": round(max(row["ms"]), 1), "recall_at_10": round(float(recall), 4),
                                  "paths": row["paths"]}), flush=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(json.dumps({"wall_s": round(time.perf_counter() - t0, 1)}), file=sys.stderr)
