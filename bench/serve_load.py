"""Load test of `embstore serve` on a 1M-item store, to 127.0.0.1 only, bounded in time and count.

    python bench/serve_load.py [--store /tmp/serve_load/1m.store] [--clients 8,32] [--seconds 30]
                               [--max-requests 200000] [--out bench/logs/serve_load.jsonl]

Builds the store once (1,000,000 short texts, `hash:64` encoder: bench/scale.py's input) when it is missing, starts
the real CLI (`embstore serve`) on a free 127.0.0.1 port, then for each client count runs that many threads (one
keep-alive http.client connection each) for a fixed time, each request drawn from a fixed mix: text search (k=10),
search by an item's id, search with a `where`, a SQL count, info. Meanwhile `embstore ingest` adds new rows into the
same store a few times (EMBSTORE_COMMIT_ROWS small, so each ingest commits several times). Reported: requests/s,
p50/p99 latency overall and by kind, errors (any status but 200, any connection error), and the checks that no
request saw a half-written state: every count (SQL count(*), info's items) is one of the counts the store was at
after a commit (from the manifest's shards at the end), info's items equal its vectors, every search without a
where returns k results, and each client's counts never go back. One JSON line per client count, then a summary.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from scale import WORDS, make_csv  # noqa: E402

COLLECTION = "docs"


def env() -> dict[str, str]:
    # one shim per checkout: a shim of another checkout would run its CLI over this code
    shim = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve_load_shim_{hashlib.sha1(str(REPO).encode()).hexdigest()[:8]}"
    shim.mkdir(exist_ok=True)
    link = shim / "embstore_cli"
    if not link.exists():
        link.symlink_to(REPO / "cli")
    return dict(os.environ, PYTHONPATH=f"{shim}:{REPO}")


def build(store: Path, rows: int) -> None:
    if (store / "embstore.json").exists():
        return
    store.parent.mkdir(parents=True, exist_ok=True)
    src = store.parent / f"{rows}.csv"
    make_csv(src, rows)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "embstore_cli.main", "ingest", str(src), "--store", str(store),
                    "--collection", COLLECTION, "--encoder", "hash:64"], check=True, env=env())
    print(f"built {store} ({rows:,} rows) in {time.perf_counter() - t:.0f} s", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive connection to the service; ``call`` returns (status, parsed JSON or None, seconds)."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object, float]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        t = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            r = self.conn.getresponse()
            raw = r.read()
            status = r.status
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            return -1, str(e), time.perf_counter() - t
        took = time.perf_counter() - t
        try:
            return status, json.loads(raw), took
        except ValueError:
            return status, raw[:200], took


MIX = [("search", 0.55), ("like", 0.1), ("where", 0.05), ("sql_count", 0.15), ("info", 0.15)]


def request(kind: str, rng: random.Random, ids: list[str]) -> tuple[str, str, dict | None]:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6)))
    if kind == "search":
        return "POST", "/api/search", {"collection": COLLECTION, "text": words, "k": 10}
    if kind == "like":
        return "POST", "/api/search", {"collection": COLLECTION, "id": rng.choice(ids), "k": 10}
    if kind == "where":
        return "POST", "/api/search", {"collection": COLLECTION, "text": words, "k": 10,
                                       "where": f"label = '{rng.choice(WORDS[:8])}' AND text LIKE '%{rng.choice(WORDS)} 1%'"}
    if kind == "sql_count":
        return "POST", "/api/sql", {"query": f"SELECT count(*) AS n FROM {COLLECTION}"}
    return "GET", "/api/info", None


def run_level(port: int, clients: int, seconds: float, max_requests: int, ids: list[str]) -> dict:
    results: list[list[tuple]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + seconds
    budget = threading.Semaphore(max_requests)

    def worker(n: int) -> None:
        rng = random.Random(n)
        c = Client(port)
        kinds, weights = zip(*MIX)
        while time.perf_counter() < stop and budget.acquire(blocking=False):
            kind = rng.choices(kinds, weights)[0]
            method, path, body = request(kind, rng, ids)
            status, out, took = c.call(method, path, body)
            results[n].append((kind, status, took, out if kind in ("sql_count", "info") or status != 200 else
                               (len(out["results"]) if isinstance(out, dict) else out)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {"clients": clients, "wall_s": time.perf_counter() - t, "results": results}


def counts_of(out: object, kind: str) -> tuple[int | None, int | None]:
    if kind == "sql_count":
        return out["rows"][0][0], None
    c = out["collections"][COLLECTION]
    return c["items"], sum(s["rows"] for s in c["spaces"].values()) // max(1, len(c["spaces"]))


def summarize(level: dict, committed: set[int]) -> dict:
    lat: dict[str, list[float]] = {}
    errors, bad_counts, mismatched, short, backwards, samples = 0, [], 0, 0, 0, []
    for per_client in level["results"]:
        last = 0
        for kind, status, took, out in per_client:
            lat.setdefault(kind, []).append(took)
            if status != 200:
                errors += 1
                samples.append(f"{kind}: {status} {str(out)[:160]}")
                continue
            if kind in ("sql_count", "info"):
                items, vectors = counts_of(out, kind)
                if items not in committed:
                    bad_counts.append(items)
                if vectors is not None and vectors != items:
                    mismatched += 1
                if items < last:
                    backwards += 1
                last = max(last, items)
            elif kind in ("search", "like") and out != 10:
                short += 1
    every = [x for v in lat.values() for x in v]
    q = lambda xs, p: statistics.quantiles(xs, n=100, method="inclusive")[p - 1] * 1000 if len(xs) > 1 else xs[0] * 1000
    return {"clients": level["clients"], "wall_s": round(level["wall_s"], 1), "requests": len(every),
            "requests_per_s": round(len(every) / level["wall_s"], 1), "p50_ms": round(q(every, 50), 1),
            "p99_ms": round(q(every, 99), 1), "errors": errors, "error_samples": samples[:5],
            "counts_not_committed": bad_counts[:10], "n_counts_not_committed": len(bad_counts),
            "items_ne_vectors": mismatched, "short_results": short, "counts_going_back": backwards,
            "by_kind": {k: {"n": len(v), "p50_ms": round(q(v, 50), 1), "p99_ms": round(q(v, 99), 1)}
                        for k, v in sorted(lat.items())}}


def ingester(store: Path, rounds: int, rows: int, pause: float, stop: threading.Event, log: list) -> None:
    """Add ``rows`` new rows ``rounds`` times, pausing between (a separate `embstore ingest` process each)."""
    e = env() | {"EMBSTORE_COMMIT_ROWS": str(max(256, rows // 4))}
    for n in range(rounds):
        if stop.wait(pause):
            return
        src = store.parent / f"extra-{time.time_ns()}.csv"
        make_csv(src, rows, seed=1000 + n + int(time.time()))  # other random words: new rows
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "embstore_cli.main", "ingest", str(src), "--store", str(store),
                            "--collection", COLLECTION, "--json"], capture_output=True, text=True, env=e)
        log.append({"ingest": n, "rc": p.returncode, "s": round(time.perf_counter() - t, 1),
                    "added": (json.loads(p.stdout).get("added") if p.returncode == 0 else p.stderr[-300:])})
        src.unlink()


def committed_counts(store: Path, before: int) -> set[int]:
    """The item counts the collection had after each commit since it held ``before`` items: its shards are listed
    in commit order, and a commit adds one item shard (or none)."""
    manifest = json.loads((store / "embstore.json").read_text())
    shards = manifest["collections"][COLLECTION]["item_shards"]
    total, counts = 0, set()
    for s in shards:
        total += s["rows"]
        if total >= before:
            counts.add(total)
    return counts | {before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=Path("/tmp/serve_load/1m.store"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--clients", default="8,32")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--ingest-rounds", type=int, default=3, help="ingests during each client count's run")
    ap.add_argument("--ingest-rows", type=int, default=4000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    build(args.store, args.rows)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from embstore_cli.main import main; main()", "serve", "--store", str(args.store),
                               "--host", "127.0.0.1", "--port", str(port)], env=env())
    out_lines = []
    try:
        c = Client(port)
        for _ in range(600):
            time.sleep(0.1)
            status, info, _ = c.call("GET", "/api/info")
            if status == 200:
                break
        else:
            sys.exit("the service did not start")
        st, sample, _ = c.call("POST", "/api/sql", {"query": f"SELECT id FROM {COLLECTION} USING SAMPLE 2000 ROWS"})
        ids = [r[0] for r in sample["rows"]]
        t = time.perf_counter()
        st, first, _ = c.call("POST", "/api/search", {"collection": COLLECTION, "text": "alpha bravo", "k": 10})
        warm = time.perf_counter() - t
        for clients in [int(x) for x in args.clients.split(",")]:
            before = Client(port).call("GET", "/api/info")[1]["collections"][COLLECTION]["items"]
            stop, log = threading.Event(), []
            ing = threading.Thread(target=ingester, args=(args.store, args.ingest_rounds, args.ingest_rows,
                                                          args.seconds / (args.ingest_rounds + 1), stop, log))
            ing.start()
            level = run_level(port, clients, args.seconds, args.max_requests, ids)
            stop.set()
            ing.join()
            after = Client(port).call("GET", "/api/info")[1]["collections"][COLLECTION]["items"]
            row = summarize(level, committed_counts(args.store, before)) | {
                "items_before": before, "items_after": after, "ingests": log, "first_search_s": round(warm, 2)}
            out_lines.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.terminate()
        server.wait(30)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            for row in out_lines:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
