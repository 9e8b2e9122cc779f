"""Index build at size: peak memory and time of `index.build` (all vectors in memory) against `build_streaming`,
`build_ondisk` and faiss's own `merge_ondisk`, then a fresh process's load + one query, with and without mmap.

    python bench/index_build.py [--n 1000000 4000000] [--dim 64] [--block 20000] [--out bench/out/index_build]

Random unit vectors are written as .npy blocks of `--block` rows (as the space's shards would be read). Each build
runs in a subprocess of its own that reads the blocks and reports its wall time and peak RSS (ru_maxrss, which
counts mapped file pages as well as the heap), and its RSS split at the end from /proc/self/status. The factory is
`choose_factory(n, dim)`'s (IVF,Flat at these sizes). Load + query: a fresh process loads the saved index and
answers one query (nprobe 16); the page cache is warm (the files were just written), so it measures what the
process itself reads and maps, not the disk. Prints one JSON line per run, then a table.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def write_blocks(folder: Path, n: int, dim: int, block: int) -> None:
    if (folder / "done").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, start in enumerate(range(0, n, block)):
        x = np.random.default_rng(i).standard_normal((min(block, n - start), dim), dtype=np.float32)
        np.save(folder / f"{i:06d}.npy", x / np.linalg.norm(x, axis=1, keepdims=True))
    (folder / "done").write_text("")


def memory() -> dict:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mb = lambda key: round(int(status[key].split()[0]) / 1024)  # noqa: E731
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "end_rss_anon_mb": mb("RssAnon"), "end_rss_file_mb": mb("RssFile")}


def child(mode: str, data: Path, n: int, dim: int, out: Path, factory: str | None) -> dict:
    import faiss

    from embstore import index as ix
    from embstore.index_build import _trained

    files = sorted(data.glob("*.npy"))
    blocks = lambda: (np.load(f) for f in files)  # noqa: E731
    factory = factory or ix.choose_factory(n, dim)
    base = memory()["peak_rss_mb"]
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if mode == "build":
        index = ix.build(np.concatenate(list(blocks())), factory)
        ix.save_index(index, out / "index.faiss")
    elif mode == "streaming":
        index = ix.build_streaming(blocks, n, dim, factory)
        ix.save_index(index, out / "index.faiss")
    elif mode == "ondisk":
        ix.build_ondisk(blocks, n, dim, factory, out)
    elif mode == "merge_ondisk":  # faiss.contrib.ondisk: IVF shards of 10 blocks written, then merged
        from faiss.contrib.ondisk import merge_ondisk

        trained = _trained(blocks, n, dim, factory, None)
        names, start, shard, rows = [], 0, faiss.clone_index(trained), 0
        for i, x in enumerate(blocks()):
            shard.add_with_ids(ix.normalize(x), np.arange(start, start + len(x)))
            start += len(x)
            if (i + 1) % 10 == 0 or start == n:
                names.append(str(out / f"shard{len(names)}.faiss"))
                faiss.write_index(shard, names[-1])
                shard.reset()
        merge_ondisk(trained, names, str(out / "index.ivfdata"))
        faiss.write_index(trained, str(out / "index.faiss"))
        for name in names:
            os.remove(name)
    return {"mode": mode, "n": n, "factory": factory, "seconds": round(time.perf_counter() - t0, 1),
            "rss_after_imports_mb": base, **memory()}


def query_child(path: Path, dim: int, mmap: bool) -> dict:
    t0 = time.perf_counter()
    from embstore import index as ix

    t1 = time.perf_counter()
    index = ix.load_index(path, mmap=mmap)
    t2 = time.perf_counter()
    ix.set_param(index, "IVF" if "IVF" in type(index).__name__ else "HNSW", 16)
    q = np.random.default_rng(99).standard_normal((1, dim), dtype=np.float32)
    index.search(ix.normalize(q), 10)
    t3 = time.perf_counter()
    return {"index": path.parent.name, "mmap": mmap, "import_s": round(t1 - t0, 3), "load_s": round(t2 - t1, 4),
            "query_s": round(t3 - t2, 4), "load_and_query_s": round(t3 - t1, 4), **memory()}


def run(args: list[str]) -> dict:
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"})
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[1_000_000, 4_000_000])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--block", type=int, default=20_000)
    p.add_argument("--modes", nargs="+", default=["build", "streaming", "ondisk", "merge_ondisk"])
    p.add_argument("--factory", help="instead of choose_factory's (an IVF for the on-disk builds)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "index_build")
    p.add_argument("--child", nargs=3, metavar=("MODE", "DATA", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--query", nargs=2, metavar=("PATH", "MMAP"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], Path(a.child[1]), a.n[0], a.dim, Path(a.child[2]), a.factory)))
        return
    if a.query:
        print(json.dumps(query_child(Path(a.query[0]), a.dim, a.query[1] == "1")))
        return
    rows = []
    for n in a.n:
        data = a.out / f"blocks-{n}x{a.dim}"
        write_blocks(data, n, a.dim, a.block)
        for mode in a.modes:
            folder = a.out / f"{mode}-{n}"
            shutil.rmtree(folder, ignore_errors=True)
            r = run(["--child", mode, str(data), str(folder), "--n", str(n), "--dim", str(a.dim),
                     *(["--factory", a.factory] if a.factory else [])])
            print(json.dumps(r), flush=True)
            rows.append(r)
            if mode in ("build", "ondisk"):
                for mmap in (False, True):
                    q = run(["--query", str(folder / "index.faiss"), "1" if mmap else "0", "--dim", str(a.dim)])
                    q["n"] = n
                    print(json.dumps(q), flush=True)
                    rows.append(q)
            if mode != "build":
                shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{'n':>9} {'build':<13} {'factory':<13} {'seconds':>8} {'peak RSS MB':>12} {'end anon/file MB':>17}")
    for r in rows:
        if "mode" in r:
            print(f"{r['n']:>9} {r['mode']:<13} {r['factory']:<13} {r['seconds']:>8} {r['peak_rss_mb']:>12} "
                  f"{r['end_rss_anon_mb']:>8}/{r['end_rss_file_mb']}")
    print(f"\n{'n':>9} {'index':<14} {'mmap':<5} {'load s':>8} {'1 query s':>10} {'peak RSS MB':>12} {'import s':>9}")
    for r in rows:
        if "mmap" in r:
            print(f"{r['n']:>9} {r['index']:<14} {str(r['mmap']):<5} {r['load_s']:>8} {r['query_s']:>10} "
                  f"{r['peak_rss_mb']:>12} {r['import_s']:>9}")


if __name__ == "__main__":
    main()
