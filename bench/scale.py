"""Scale: ingest N short texts with the hashing encoder (the model costs nothing, so what is measured is embstore's
own reading, dedupe, writing and indexing), then time cold queries on the store.

    python bench/scale.py --rows 1000000 [--rows 10000000] [--code DIR] [--out bench/out]

Per N: the ingest's wall time, rows/s and peak resident memory (ru_maxrss of the `embstore ingest` process), the
store's size; then the median wall time of `embstore search ... -k 10` and `embstore info` from the command line
(each a new process, as a user runs them; --cold-runs times), and of the same search through one open `Store`.
`--code DIR` runs another checkout (e.g. a worktree of the code before a change) with this venv, for a
before/after in one run. One JSON line per measurement; nothing here is a test.
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


def cli(code: Path | None, *args: str, env: dict | None = None) -> tuple[float, int, str]:
    """Run `embstore ARGS` in a new process: (wall seconds, peak RSS in bytes, stdout)."""
    e = dict(os.environ, **(env or {}))
    if code is not None:
        shim = Path(tempfile.mkdtemp(prefix="shim-"))
        (shim / "embstore_cli").symlink_to(code / "cli")
        e["PYTHONPATH"] = f"{shim}:{code}"
    script = ("import resource, sys, time; from embstore_cli.main import main; sys.argv = ['embstore'] + sys.argv[1:]\n"
              "try:\n    main()\nfinally:\n"
              "    sys.stderr.write('\\nMAXRSS %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=e)
    wall = time.perf_counter() - t
    if p.returncode not in (0,):
        sys.exit(f"embstore {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    rss = int(p.stderr.rsplit("MAXRSS", 1)[1].split()[0]) * 1024
    return wall, rss, p.stdout


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, action="append", help="corpus sizes (repeatable; default 1,000,000)")
    p.add_argument("--code", type=Path, help="run this checkout instead of the one here (PYTHONPATH)")
    p.add_argument("--label", default="this", help="what to call the code in the output")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    p.add_argument("--cold-runs", type=int, default=5)
    p.add_argument("--encoder", default="hash:64")
    p.add_argument("--index-memory", default=None, help="EMBSTORE_INDEX_MEMORY for the ingest (bytes)")
    p.add_argument("--keep", action="store_true", help="keep the store and the CSV")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    env = {"EMBSTORE_INDEX_MEMORY": a.index_memory} if a.index_memory else {}
    for n in a.rows or [1_000_000]:
        work = Path(tempfile.mkdtemp(prefix=f"scale-{n}-", dir=a.out))
        csv = work / "texts.csv"
        t = time.perf_counter()
        make_csv(csv, n)
        emit({"what": "csv written", "rows": n, "bytes": csv.stat().st_size, "seconds": round(time.perf_counter() - t, 1)})
        store = work / "s.store"
        wall, rss, out = cli(a.code, "ingest", str(csv), "--store", str(store), "--collection", "t", "--encoder",
                             a.encoder, "--json", env=env)
        rep = json.loads(out)
        emit({"what": "ingest", "code": a.label, "rows": n, "added": rep["added"], "seconds": round(wall, 1),
              "rows_per_s": round(n / wall), "peak_rss_mb": round(rss / 2**20), "store_mb": round(du(store) / 2**20),
              "stages": rep.get("seconds")})
        searches, infos, sqls = [], [], []
        found = json.loads(cli(a.code, "search", "--store", str(store), "-c", "t", "alpha", "-k", "1", "--json")[2])
        some_id = found["results"][0]["id"]
        for _ in range(a.cold_runs):
            searches.append(cli(a.code, "search", "--store", str(store), "-c", "t", "delta river 17", "-k", "10")[0])
            infos.append(cli(a.code, "info", "--store", str(store))[0])
            sqls.append(cli(a.code, "sql", "--store", str(store), f"SELECT text, label FROM t WHERE id = '{some_id}'")[0])
        emit({"what": "cold cli", "code": a.label, "rows": n, "search_median_s": round(statistics.median(searches), 3),
              "info_median_s": round(statistics.median(infos), 3),
              "sql_point_query_median_s": round(statistics.median(sqls), 3), "runs": a.cold_runs})
        code = (f"import sys, time, statistics, json; sys.path.insert(0, {str(a.code or REPO)!r})\n"
                "from embstore import Store\n"
                f"s = Store.open({str(store)!r}, create=False)\n"
                "t = time.perf_counter(); s.search('t', 'delta river 17', k=10); first = time.perf_counter() - t\n"
                "lat = []\n"
                "for i in range(50):\n"
                "    t = time.perf_counter(); s.search('t', f'garden engine {i}', k=10); lat.append(time.perf_counter() - t)\n"
                "print(json.dumps({'first_s': round(first, 4), 'median_ms': round(1000 * statistics.median(lat), 2), "
                "'index': s.info()['collections']['t']['spaces']}))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        api = json.loads(res.stdout.strip().splitlines()[-1])
        emit({"what": "api search", "code": a.label, "rows": n, **{k: v for k, v in api.items() if k != "index"},
              "index": {s: v["index"] for s, v in api["index"].items()}})
        if not a.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
