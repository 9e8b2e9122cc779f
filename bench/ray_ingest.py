"""The Ray engine against the in-process engine, in one run, on the same generated rows (hash encoder).

Writes a CSV of ROWS short texts (id, text, label; some texts shared by several ids) into a temporary folder,
ingests it into two new stores, ``engine="local"`` and ``engine="ray"`` on a local Ray of ``--cpus`` CPUs started
here (its start-up is timed apart and not counted), then checks that the stores are equal: the same id set, the
same vector per id, the same item metadata, the same counts. Prints each engine's rows/s and the ratio ray/local,
then one JSON line.

    python bench/ray_ingest.py [--rows 200000] [--cpus 2] [--commit-rows 20000] [--index Flat|auto|FACTORY]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def store_contents(store, collection: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    store.refresh()
    coll = store.manifest["collections"][collection]
    items = pa.concat_tables([pq.read_table(store.root / s["file"]) for s in coll["item_shards"]],
                             promote_options="permissive").sort_by("id")
    ids, vectors = store.embeddings(collection)
    order = np.argsort(np.asarray(ids, dtype=object))
    return items, [ids[i] for i in order], vectors[order]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    p.add_argument("--commit-rows", type=int, default=20_000, help="rows per commit (in-process chunk, Ray block)")
    p.add_argument("--index", default="Flat", help="FAISS factory for both (default Flat: building the index, the "
                   "same work for both engines, would otherwise dominate); 'auto' lets embstore choose (HNSW here)")
    a = p.parse_args()

    import ray

    from embstore import Store
    from embstore.config import Settings

    work = Path(tempfile.mkdtemp(prefix="ray_ingest_"))
    src = work / "texts.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        for i in range(a.rows):  # about 1 in 8 texts is shared with another id
            n = i if i % 8 else i // 8
            w.writerow([f"t{i}", f"short text {n} about topic {n % 97} and word {n % 1013}", n % 5])
    settings = Settings.resolve(device="cpu", commit_rows=a.commit_rows)

    t = time.perf_counter()
    ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t

    seconds, reports, stores = {}, {}, {}
    for engine in ("local", "ray"):
        store = stores[engine] = Store.open(work / f"{engine}.store", settings=settings)
        t = time.perf_counter()
        reports[engine] = store.ingest(src, "texts", encoder="hash:64", engine=engine,
                                       index=None if a.index == "auto" else a.index)
        seconds[engine] = time.perf_counter() - t
    ray.shutdown()

    la, lb = store_contents(stores["local"], "texts"), store_contents(stores["ray"], "texts")
    counts = ("read", "added", "duplicates", "quarantined", "embedded", "reused")
    equal = {
        "ids": la[1] == lb[1],
        "vectors": bool(np.array_equal(la[2], lb[2])),
        "items": la[0].equals(lb[0]),
        "counts": all(getattr(reports["local"], k) == getattr(reports["ray"], k) for k in counts),
    }
    rate = {e: a.rows / s for e, s in seconds.items()}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = None
    print(f"rows {a.rows}, commit_rows {a.commit_rows}, index {a.index}, local Ray of {a.cpus} CPUs (start-up {ray_start:.1f} s, "
          "not counted)")
    for e in ("local", "ray"):
        r = reports[e]
        print(f"{e:5s}  {seconds[e]:7.2f} s  {rate[e]:9.0f} rows/s  added {r.added}  duplicates {r.duplicates}  "
              f"quarantined {r.quarantined}  embedded {r.embedded}  reused {r.reused}")
    print(f"ray/local rows/s ratio: {rate['ray'] / rate['local']:.2f}")
    print("equal stores: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in equal.items()))
    print(json.dumps({"bench": "ray_ingest", "rows": a.rows, "cpus": a.cpus, "commit_rows": a.commit_rows,
                      "index": a.index,
                      "seconds": {k: round(v, 3) for k, v in seconds.items()},
                      "rows_per_s": {k: round(v, 1) for k, v in rate.items()},
                      "ratio_ray_local": round(rate["ray"] / rate["local"], 3), "equal": equal,
                      "ray_start_s": round(ray_start, 2), "ray_seconds": reports["ray"].seconds,
                      "local_seconds": reports["local"].seconds, "commit": commit,
                      "load_avg": [round(x, 2) for x in os.getloadavg()]}))
    if not all(equal.values()):
        raise SystemExit("the two engines made different stores")


if __name__ == "__main__":
    main()
