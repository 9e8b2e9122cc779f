"""Repeated filters through a long-running reader: `Store.search(vector=q, k=10, where=...)` with the SQL shared
(`Store.share_sql`, embstore serve's way), the same few predicates again and again, with the matches of recent
predicates kept per snapshot (`SharedSql.memo`) and without (every predicate scanned by DuckDB, the code before it).

    python bench/where_repeat.py --store /tmp/serve_load/1m.store [--filters 8] [--rounds 10] [--out FILE]

The predicates are serve_load's (`label = W AND text LIKE '%V 1%'`), `--filters` of them, each asked `--rounds`
times with a new query vector (stored items' vectors). Both arms run in this process on one open store, alternating
by round (memo, then none), so they see the same page cache; the first round of each arm is its cold one. One
JSON line per arm: the p50 and p90 of the first ask of each predicate and of the repeats, in ms. Nothing here is a
test.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO)); sys.path.insert(0, str(REPO / "bench"))
from scale import WORDS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True, help="a store with a collection 'docs' (serve_load's)")
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    from embstore import Store, sql_shared
    from embstore.lookup import vectors_at

    store = Store.open(a.store, create=False)
    store.share_sql()
    space = store.space_name("docs", None)
    rng = np.random.default_rng(0)
    n = int(store.space("docs", space)["rows"])
    Q = vectors_at(store, "docs", space, np.sort(rng.choice(n, 2 * a.filters * a.rounds, replace=False)))
    filters = [f"label = '{WORDS[i % 8]}' AND text LIKE '%{WORDS[(7 * i + 3) % len(WORDS)]} 1%'"
               for i in range(a.filters)]
    memo = sql_shared.SharedSql.memo
    arms = {"memo": memo, "scan every time": lambda self, key, query, build: build()}
    store.search("docs", vector=Q[0], k=10, where="label = 'none at all'")  # the views and position map, once
    times: dict = {arm: {"first": [], "repeat": []} for arm in arms}
    q = 0
    for r in range(a.rounds):
        for arm, fn in arms.items():
            sql_shared.SharedSql.memo = fn
            for f in filters:
                t = time.perf_counter()
                hits = store.search("docs", vector=Q[q], k=10, where=f)
                times[arm]["first" if r == 0 else "repeat"].append((time.perf_counter() - t) * 1000)
                q += 1
                assert all(h["label"] == f.split("'")[1] for h in hits), f
    sql_shared.SharedSql.memo = memo
    pct = lambda xs, p: round(float(np.percentile(xs, p)), 1)
    out = []
    for arm, t in times.items():
        out.append({"arm": arm, "filters": a.filters, "rounds": a.rounds, "rows": n,
                    "first_p50_ms": pct(t["first"], 50), "repeat_p50_ms": pct(t["repeat"], 50),
                    "repeat_p90_ms": pct(t["repeat"], 90), "repeat_mean_ms": round(statistics.mean(t["repeat"]), 1)})
    out.append({"repeat_p50_ratio": round(out[1]["repeat_p50_ms"] / max(out[0]["repeat_p50_ms"], 1e-9), 1)})
    for line in out:
        print(json.dumps(line), flush=True)
        if a.out:
            with open(a.out, "a") as fh:
                fh.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
