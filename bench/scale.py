"""Scale: ingest N short texts with the hashing encoder (the model costs nothing, so what is measured is embstore's
own reading, dedupe, writing and indexing), then time cold queries on the store.

    python bench/scale.py --rows 1000000 [--rows 10000000] [--code DIR --label L ...] [--rounds R] [--out bench/out]
    python bench/scale.py --store PATH --code DIR --label before --code . --label after --rounds 4 --skip-cli

Per N: the ingest's wall time, rows/s and peak resident memory (ru_maxrss of the `embstore ingest` process), the
store's size; then the median wall time of `embstore search ... -k 10` and `embstore info` from the command line
(each a new process, as a user runs them; --cold-runs times), and of the same search through one open `Store`
(median and 90th percentile of 50 queries after a first one, run --api-blocks times in the same process, with
each block's median; and the recall@10 of those queries' hits against an exact search of the space: --recall). `--code DIR` (repeatable, each with its `--label`) runs other checkouts (e.g.
an export of the code before a change) with this venv: every measurement is made for each code in turn, round after
round (`--rounds`), so a shared machine's load falls on all of them alike; the load average is logged with each.
`--store PATH` measures an existing store (its collection `t`) instead of ingesting one. One JSON line per
measurement; nothing here is a test.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
         "romeo sierra tango uniform victor whiskey xray yankee zulu red green blue black white river mountain city "
         "garden engine market signal window doctor planet music winter summer").split()


def make_csv(path: Path, n: int, seed: int = 0) -> None:
    """n distinct short texts (a row number makes each one unique) with a label."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write("text,label\n")
        for i in range(n):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))
            f.write(f"{words} {i},{rng.choice(WORDS[:8])}\n")


def cli(code: Path, *args: str, env: dict | None = None) -> tuple[float, int, str]:
    """Run `embstore ARGS` in a new process: (wall seconds, peak RSS in bytes, stdout)."""
    e = dict(os.environ, **(env or {}), PYTHONPATH=f"{_shim(code)}:{code}")
    script = ("import resource, sys, time; from embstore_cli.main import main; sys.argv = ['embstore'] + sys.argv[1:]\n"
              "try:\n    main()\nfinally:\n"
              "    sys.stderr.write('\\nMAXRSS %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    t = time.perf_counter()
    # (from the checkout's folder: `python -c` puts the working directory first on sys.path, before PYTHONPATH)
    p = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=e, cwd=code)
    wall = time.perf_counter() - t
    if p.returncode not in (0,):
        sys.exit(f"embstore {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    rss = int(p.stderr.rsplit("MAXRSS", 1)[1].split()[0]) * 1024
    return wall, rss, p.stdout


_SHIMS: dict[Path, Path] = {}


def _shim(code: Path) -> Path:
    """A folder where ``embstore_cli`` is ``code``'s cli/ (one per checkout)."""
    if code not in _SHIMS:
        _SHIMS[code] = Path(tempfile.mkdtemp(prefix="shim-"))
        (_SHIMS[code] / "embstore_cli").symlink_to(code / "cli")
    return _SHIMS[code]


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


API = """import sys, time, statistics, json; sys.path.insert(0, CODE)
from embstore import Store
s = Store.open(STORE, create=False)
t = time.perf_counter(); s.search('t', 'delta river 17', k=10); first = time.perf_counter() - t
lat, hits, blocks = [], [], []
for block in range(BLOCKS):  # the same 50 queries again: a long-lived process has the lists it reads in memory
    took = []
    for i in range(50):
        t = time.perf_counter(); found = s.search('t', f'garden engine {i}', k=10); took.append(time.perf_counter() - t)
        if block == 0:
            hits.append(found)
    blocks.append(round(1000 * statistics.median(took), 2)); lat += took
lat.sort()
out = {'first_s': round(first, 4), 'median_ms': round(1000 * statistics.median(lat), 2),
       'p90_ms': round(1000 * lat[int(0.9 * len(lat)) - 1], 2), 'block_medians_ms': blocks,
       'index': s.info()['collections']['t']['spaces']}
if RECALL:  # the same queries against an exact search of the space, a shard at a time
    import faiss, numpy as np
    from embstore.index import normalize
    enc = s.encoder_for('t')
    q = normalize(enc.encode_text([f'garden engine {i}' for i in range(50)]))
    heap, start, ids = faiss.ResultHeap(len(q), 10, keep_max=True), 0, []
    for shard_ids, X in s.vector_shards('t'):
        D = q @ normalize(X).T
        top = np.argpartition(-D, min(9, D.shape[1] - 1), axis=1)[:, :10]
        heap.add_result(np.take_along_axis(D, top, 1).astype('float32'), (top + start).astype('int64'))
        ids.extend(shard_ids); start += len(X)
    heap.finalize()
    # ties: an exact hit counts when its score is the 10th best or better (the hash encoder has twins)
    tenth = heap.D[:, -1]
    got = [sum(1 for h in r if h['score'] >= t - 1e-6) / 10 for r, t in zip(hits, tenth)]
    out['recall_at_10'] = round(float(np.mean(got)), 4)
print(json.dumps(out))
"""


def load() -> float:
    return os.getloadavg()[0]


def api_search(code: Path, store: Path, recall: bool, blocks: int = 1) -> dict:
    script = API.replace("CODE", repr(str(code))).replace("STORE", repr(str(store))).replace("RECALL", str(recall)) \
        .replace("BLOCKS", str(blocks))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=code)
    if res.returncode:
        sys.exit(f"API search failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, action="append", help="corpus sizes (repeatable; default 1,000,000)")
    p.add_argument("--store", type=Path, help="measure this store (collection t) instead of ingesting one")
    p.add_argument("--code", type=Path, action="append", help="run this checkout instead of the one here (repeatable)")
    p.add_argument("--label", action="append", help="what to call each --code in the output")
    p.add_argument("--rounds", type=int, default=1, help="measure every code this many times, in turn")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    p.add_argument("--cold-runs", type=int, default=5)
    p.add_argument("--skip-cli", action="store_true", help="no cold CLI timings")
    p.add_argument("--recall", action="store_true", help="recall@10 of the API queries against exact search")
    p.add_argument("--api-blocks", type=int, default=1, help="times each API process runs its 50 queries")
    p.add_argument("--encoder", default="hash:64")
    p.add_argument("--index-memory", default=None, help="EMBSTORE_INDEX_MEMORY for the ingest (bytes)")
    p.add_argument("--keep", action="store_true", help="keep the store and the CSV")
    a = p.parse_args()
    codes = [c.resolve() for c in a.code] if a.code else [REPO]
    a.out, a.store = a.out.resolve(), a.store.resolve() if a.store else None
    labels = a.label or (["this"] if not a.code else [c.name for c in codes])
    if len(labels) != len(codes):
        p.error("give one --label per --code")
    a.out.mkdir(parents=True, exist_ok=True)
    env = {"EMBSTORE_INDEX_MEMORY": a.index_memory} if a.index_memory else {}
    for n in [None] if a.store else a.rows or [1_000_000]:
        csv = None
        if n is not None:
            work = Path(tempfile.mkdtemp(prefix=f"scale-{n}-", dir=a.out))
            csv = work / "texts.csv"
            t = time.perf_counter()
            make_csv(csv, n)
            emit({"what": "csv written", "rows": n, "bytes": csv.stat().st_size,
                  "seconds": round(time.perf_counter() - t, 1)})
        for r in range(a.rounds):
            for code, label in zip(codes, labels):
                if a.store:
                    store = a.store
                else:
                    store = work / f"{label}-{r}.store"
                    before = load()
                    wall, rss, out = cli(code, "ingest", str(csv), "--store", str(store), "--collection", "t",
                                         "--encoder", a.encoder, "--json", env=env)
                    rep = json.loads(out)
                    emit({"what": "ingest", "code": label, "round": r, "rows": n, "added": rep["added"],
                          "seconds": round(wall, 1), "rows_per_s": round(n / wall), "peak_rss_mb": round(rss / 2**20),
                          "store_mb": round(du(store) / 2**20), "stages": rep.get("seconds"),
                          "load": [round(before, 2), round(load(), 2)]})
                rows = n or int(json.loads(cli(code, "info", "--store", str(store), "--json")[2])
                                ["collections"]["t"]["items"])
                if not a.skip_cli:
                    searches, infos, sqls = [], [], []
                    found = json.loads(cli(code, "search", "--store", str(store), "-c", "t", "alpha", "-k", "1",
                                           "--json")[2])
                    some_id = found["results"][0]["id"]
                    for _ in range(a.cold_runs):
                        searches.append(cli(code, "search", "--store", str(store), "-c", "t", "delta river 17",
                                            "-k", "10")[0])
                        infos.append(cli(code, "info", "--store", str(store))[0])
                        sqls.append(cli(code, "sql", "--store", str(store),
                                        f"SELECT text, label FROM t WHERE id = '{some_id}'")[0])
                    emit({"what": "cold cli", "code": label, "round": r, "rows": rows,
                          "search_median_s": round(statistics.median(searches), 3),
                          "info_median_s": round(statistics.median(infos), 3),
                          "sql_point_query_median_s": round(statistics.median(sqls), 3), "runs": a.cold_runs,
                          "load": round(load(), 2)})
                before = load()
                api = api_search(code, store, a.recall, a.api_blocks)
                emit({"what": "api search", "code": label, "round": r, "rows": rows,
                      **{k: v for k, v in api.items() if k != "index"},
                      "index": {s: v["index"] for s, v in api["index"].items()},
                      "nprobe": {s: v["index_param"] for s, v in api["index"].items()},
                      "load": [round(before, 2), round(load(), 2)]})
                if n is not None and not a.keep:
                    import shutil

                    shutil.rmtree(store, ignore_errors=True)
        if n is not None and not a.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
