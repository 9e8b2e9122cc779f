"""The FAISS index beside each space: cosine similarity as inner product over L2-normalised vectors.

The index type follows the size and the memory budget, the way autofaiss reasons:

- fewer than ``FLAT_MAX`` vectors: ``Flat`` (exact);
- up to ``HNSW_MAX`` vectors, when raw vectors + graph fit the budget: ``HNSW32`` (efSearch tuned);
- beyond: ``IVF<nlist>,Flat`` (nprobe tuned), or ``IVF<nlist>,PQ<m>`` when the raw vectors do not fit the budget.

After a build the search parameter is raised until recall@10 against exact search, on a sample of the space's own
vectors used as queries, reaches the target; the choice, its parameters and the measured recall go to the manifest.

The index is derived data: its rows follow the space's shards in manifest order, so row ``i`` is the ``i``-th vector
of the space. It is written atomically after the shards are committed; a reader whose index holds fewer rows than its
snapshot adds the missing ones from the shards, and ignores rows beyond its snapshot.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

FLAT_MAX = 50_000
HNSW_MAX = 300_000
TARGET_RECALL = 0.95
DEFAULT_MEMORY = 8 << 30  # bytes an index may take, unless the caller says otherwise


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    x /= norms
    return x


def choose_factory(n: int, dim: int, memory_bytes: int = DEFAULT_MEMORY) -> str:
    """The FAISS factory string for ``n`` vectors of ``dim`` floats within ``memory_bytes``."""
    raw = n * dim * 4
    if n < FLAT_MAX and raw <= memory_bytes:
        return "Flat"
    if n < HNSW_MAX and raw + n * 32 * 2 * 4 <= memory_bytes:
        return "HNSW32"
    # 2 sqrt(n) lists up to 4,096, sqrt(n) beyond (1M vectors -> 2,048, 10M -> 4,096, 100M -> 8,192). In memory more
    # lists pay: at 1M hash:64 vectors recall 0.95 took nprobe 64 of 1,024 lists (1.33 ms a query) and 88 of 2,048
    # (0.74 ms; 4,096: 0.78, the coarse search grows). At 10M, lists on disk, a query reads as many bytes either way:
    # 8,192 lists searched in 22.5 ms against 22.7 for 4,096, and the ingest took 580 s against 410 (k-means and
    # assignment). FAISS's guide says 4-16 sqrt(n); what it costs to build decides here.
    root = math.sqrt(n)
    nlist = 1 << max(6, min(16, round(math.log2(min(2 * root, max(root, 4096))))))
    if raw * 1.1 <= memory_bytes:
        return f"IVF{nlist},Flat"
    for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1):  # bytes per vector: the largest that fits and divides dim
        if dim % m == 0 and n * m <= memory_bytes:
            break
    return f"IVF{nlist},PQ{m}"


def train_cap(index: Any) -> int:
    """How many rows an untrained index trains on: faiss wants >= 39 training vectors a list."""
    import faiss

    try:
        nlist = int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:  # trained, but not an IVF (PCA, OPQ, ...)
        nlist = 1024
    return max(64 * 1024, 40 * nlist)


def train(index: Any, factory: str, sample: np.ndarray, n: int) -> None:
    """Train ``index`` on the normalised ``sample`` of a space of ``n`` vectors; one-line InputError if FAISS cannot."""
    from .errors import InputError

    try:
        index.train(sample)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1].split(": ")[-1]
        raise InputError(f"FAISS cannot train {factory} on {n} vectors: {reason}; give a factory that "
                         "fits the space's size, or none (embstore chooses by size)") from None


def new_index(dim: int, factory: str) -> Any:
    import faiss

    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if factory.startswith("HNSW"):
        index.hnsw.efConstruction = 80
    return index


def build(vectors: np.ndarray, factory: str) -> Any:
    x = normalize(vectors)
    index = new_index(x.shape[1], factory)
    if not index.is_trained:
        cap = train_cap(index)
        sample = x if len(x) <= cap else x[np.random.default_rng(0).choice(len(x), cap, replace=False)]
        train(index, factory, sample, len(x))
    index.add(x)
    return index


def set_param(index: Any, factory: str, value: int | None) -> None:
    import faiss

    if value is None:
        return
    if factory.startswith("HNSW"):
        index.hnsw.efSearch = int(value)
    elif factory.startswith("IVF"):
        faiss.extract_index_ivf(index).nprobe = int(value)


def param_name(factory: str) -> str | None:
    return "efSearch" if factory.startswith("HNSW") else "nprobe" if factory.startswith("IVF") else None


def _query_rows(n: int, n_queries: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
    """The rows ``tune`` draws its queries from (seed 0): ``rows`` perturbed, ``other`` for the midpoints."""
    rng = np.random.default_rng(0)
    rows = rng.choice(n, min(n_queries, n), replace=False)
    other = rng.choice(n, len(rows))
    return rng, rows, other


def _queries(rng: np.random.Generator, at_rows: np.ndarray, at_other: np.ndarray) -> np.ndarray:
    """Queries like real ones, off the stored points: half are perturbed items, half midpoints of two items."""
    dim = at_rows.shape[1]
    noise = rng.standard_normal((len(at_rows), dim)).astype(np.float32) * (0.3 / np.sqrt(dim))
    half = len(at_rows) // 2
    return normalize(np.concatenate([at_rows[:half] + noise[:half], at_rows[half:] + at_other[half:]]))


def _recall(got: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth)]))


LIST_BUDGET = 256 << 20  # bytes of mapped lists a batch of tuning queries may touch before the index is mapped anew


def _raise_until(index: Any, factory: str, q: np.ndarray, truth: np.ndarray, k: int, target: float,
                 fresh: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Raise the search parameter until recall@k reaches ``target``. ``fresh()``: the index mapped anew (an IVF with
    lists on disk), searched in batches of queries whose probed lists add up to about ``LIST_BUDGET`` bytes, each
    batch on its own mapping, let go after it: the process's resident memory then holds a batch's pages, not every
    list the tuning touched (the pages stay in the page cache)."""
    import faiss

    name = param_name(factory)
    if name is None:  # another approximate index (PCA, a bare PQ, ...): no knob to raise, but measured all the same
        _, got = index.search(q, k)
        return {"param": None, "value": None, "recall_at_10": round(_recall(got, truth, k), 4), "n_queries": len(q)}
    ceiling = faiss.extract_index_ivf(index).nlist if name == "nprobe" else 1024

    def recall_at(value: int) -> float:
        if fresh is None:
            set_param(index, factory, value)
            _, got = index.search(q, k)
            return _recall(got, truth, k)
        ivf = faiss.extract_index_ivf(index)
        per_query = value * ivf.ntotal * ivf.code_size / max(ivf.nlist, 1)
        step, parts = max(1, int(LIST_BUDGET // max(per_query, 1))), []
        for start in range(0, len(q), step):
            mapped = fresh()
            set_param(mapped, factory, value)
            parts.append(mapped.search(q[start:start + step], k)[1])
            del mapped  # (unmapped: its pages leave this process)
        return _recall(np.concatenate(parts), truth, k)

    value, recall, below = 16, 0.0, None
    while True:
        recall = recall_at(value)
        if recall >= target or value >= ceiling:
            break
        below, value = value, min(value * 2, ceiling)
    # doubling overshoots by up to 2x (a search costs in proportion): bisect down to within an eighth of the value
    while recall >= target and below is not None and value - below > max(value // 8, 1):
        mid = (below + value) // 2
        r = recall_at(mid)
        if r >= target:
            value, recall = mid, r
        else:
            below = mid
    set_param(index, factory, value)
    return {"param": name, "value": value, "recall_at_10": round(recall, 4), "n_queries": len(q)}


def tune(index: Any, factory: str, vectors: np.ndarray, target: float = TARGET_RECALL, n_queries: int = 200,
         k: int = 10) -> dict[str, Any]:
    """Raise efSearch / nprobe until recall@k against exact search reaches ``target``; returns what was measured."""
    import faiss

    if factory.strip() == "Flat":  # the exact index: nothing to tune, nothing to measure
        return {"param": None, "value": None, "recall_at_10": 1.0, "n_queries": 0}
    x = normalize(vectors)
    rng, rows, other = _query_rows(len(x), n_queries)
    q = _queries(rng, x[rows], x[other])
    k = min(k, len(x))
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    _, truth = flat.search(q, k)
    return _raise_until(index, factory, q, truth, k, target)


class ExactTopK:
    """The queries ``tune`` draws for a space of ``n`` rows and their exact top-k, gathered by passes over the space's
    normalised blocks in index order: ``gather(start, x)`` for every block of a first pass (the query rows), then
    ``add(start, x)`` for every block of a second (a running top-k per query); ``result()``: (queries, rows).
    A builder that passes over the space anyway (``build_ondisk``) feeds it on its way, at no extra read."""

    def __init__(self, n: int, dim: int, n_queries: int = 200, k: int = 10):
        self.rng, self.rows, self.other = _query_rows(n, n_queries)
        self.wanted = np.unique(np.concatenate([self.rows, self.other]))
        self.got = np.empty((len(self.wanted), dim), np.float32)
        self.k, self.dim = min(k, n), dim
        self.q: np.ndarray | None = None
        self.heap: Any = None

    def gather(self, start: int, x: np.ndarray) -> None:
        lo, hi = np.searchsorted(self.wanted, [start, start + len(x)])
        self.got[lo:hi] = x[self.wanted[lo:hi] - start]

    def add(self, start: int, x: np.ndarray) -> None:
        import faiss

        if self.q is None:
            at = np.searchsorted(self.wanted, self.rows), np.searchsorted(self.wanted, self.other)
            self.q = _queries(self.rng, self.got[at[0]], self.got[at[1]])
            self.heap = faiss.ResultHeap(len(self.q), self.k, keep_max=True)
        flat = faiss.IndexFlatIP(self.dim)
        flat.add(x)
        D, I = flat.search(self.q, min(self.k, len(x)))
        self.heap.add_result(D, I + start)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self.heap.finalize()
        return self.q, self.heap.I


def tune_streaming(index: Any, factory: str, blocks: Callable[[], Iterator[np.ndarray]], n: int, dim: int,
                   target: float = TARGET_RECALL, n_queries: int = 200, k: int = 10, *,
                   exact: ExactTopK | None = None, fresh: Callable[[], Any] | None = None) -> dict[str, Any]:
    """``tune`` over a space read block by block (``blocks()`` re-reads it from the start each call), never holding
    it: a first pass fetches the query rows ``tune`` would draw for this ``n``, a second one keeps a running exact
    top-k per query (``ExactTopK``; ``exact``: one a builder has fed already, and no pass is made). The same result
    as ``tune`` on the same vectors (up to ties in exact scores). ``fresh``: see ``_raise_until`` (a mapped IVF)."""
    from .index_build import _checked

    if factory.strip() == "Flat":
        return {"param": None, "value": None, "recall_at_10": 1.0, "n_queries": 0}
    if exact is None:
        exact = ExactTopK(n, dim, n_queries, k)
        for feed in (exact.gather, exact.add):
            start = 0
            for block in _checked(blocks, n, dim):  # (no empty blocks)
                feed(start, normalize(block))
                start += len(block)
    q, truth = exact.result()
    return _raise_until(index, factory, q, truth, exact.k, target, fresh)


def save_index(index: Any, path: Path) -> None:
    import faiss

    from .manifest import temp_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with temp_file(tmp, path):  # a failed write (disk full) leaves no temporary file
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


def load_index(path: Path, mmap: bool = False) -> Any:
    """Open a saved index. ``mmap`` (what a reader wants) maps the file instead of reading it: an IVF index's lists
    (IO_FLAG_MMAP), a Flat/HNSW/PQ index's codes (IO_FLAG_MMAP_IFC) and an on-disk IVF's ``.ivfdata`` (beside
    ``path``) are paged in by the searches that touch them, so a cold query reads a few lists, not the whole file.
    A flag the index's type refuses falls back to the next one, and to a plain read. A mapped index is read-only:
    never ``add`` to it (faiss aborts the process on some types); ``add_rows``/``writable`` route adds to a copy.
    ``mmap=False`` (the default, as before: the store adds to what it loads): the whole index in memory and
    writable, never tied to the files (an on-disk IVF's lists are copied into memory)."""
    import faiss

    tries = (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_MMAP_IFC, faiss.IO_FLAG_MMAP, faiss.IO_FLAG_MMAP_IFC) if mmap else ()
    for flags in tries:
        try:
            index = faiss.read_index(str(path), flags)
            break
        except RuntimeError:
            continue
    else:  # (raises the reader's own error when the file is not an index)
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP if _ondisk_file(path) else 0)
    _map_ondisk(index, Path(path))
    if not mmap and is_mapped(index):
        index = _in_memory(index)
    return index


def _ondisk_file(path: Path) -> bool:
    return Path(path).with_suffix(".ivfdata").exists()


def _map_ondisk(index: Any, path: Path) -> None:
    """An on-disk IVF's lists, which the IO_FLAG_MMAP read leaves unmapped: mapped read-only from the ``.ivfdata``
    beside ``path`` (what IO_FLAG_ONDISK_SAME_DIR does, without its message on stdout). Without prefetch threads:
    faiss starts ``prefetch_nthread`` (32) threads per search to touch the lists it will probe, which cost a
    single query more than the scan itself (1M hash:64 vectors, nprobe 88 of 2,048, pages cached: 3.4 ms a query
    with them, 0.8 without; bench/RESULTS.md); a list not in the page cache is read by the scan's page faults."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    if not isinstance(lists, faiss.OnDiskInvertedLists):
        return
    lists.prefetch_nthread = 0
    if lists.ptr is None and lists.totsize:
        lists.filename = str(path.parent / Path(lists.filename).name)
        lists.read_only = True
        lists.do_mmap()


def _storage(index: Any) -> Any:
    """The object holding an index's vectors: an IndexIVF, or an IndexFlatCodes (Flat, PQ, HNSW's storage)."""
    import faiss

    index = faiss.downcast_index(index)
    while True:
        if isinstance(index, faiss.IndexIVF):
            return index
        inner = getattr(index, "storage", None) or getattr(index, "index", None)  # HNSW, IDMap, PreTransform
        if inner is None or not isinstance(inner, faiss.Index):
            return index
        index = faiss.downcast_index(inner)


def is_mapped(index: Any) -> bool:
    """Whether ``index`` reads its vectors from a mapped file (and so must not be added to). Unknown kinds: True."""
    import faiss

    inner = _storage(index)
    if isinstance(inner, faiss.IndexIVF):
        return isinstance(faiss.downcast_InvertedLists(inner.invlists), faiss.OnDiskInvertedLists)
    codes = getattr(inner, "codes", None)
    if codes is not None and hasattr(codes, "is_owned"):
        return not codes.is_owned
    return not isinstance(inner, faiss.IndexFlatCodes)


def _in_memory(index: Any) -> Any:
    """A copy of a mapped ``index`` whose vectors are in memory (on-disk or mapped lists copied into arrays)."""
    import faiss

    inner = _storage(index)
    if isinstance(inner, faiss.IndexIVF):
        lists = faiss.downcast_InvertedLists(inner.invlists)
        copy = faiss.ArrayInvertedLists(inner.nlist, inner.code_size)
        lists.copy_subset_to(copy, faiss.InvertedLists.SUBSET_TYPE_INVLIST, 0, inner.nlist)
        inner.replace_invlists(copy, True)
        copy.this.disown()
        return index
    return faiss.deserialize_index(faiss.serialize_index(index))  # copies viewed codes into owned ones


def writable(index: Any, path: Path) -> Any:
    """``index`` itself when rows can be added to it, else an in-memory copy read from ``path`` (its file)."""
    return load_index(path, mmap=False) if is_mapped(index) else index


def add_rows(index: Any, path: Path, vectors: np.ndarray) -> Any:
    """Add ``vectors`` (normalised here) to ``index`` loaded from ``path``, or to a writable copy when it is mapped
    (a reader whose index lags its snapshot); returns the index that holds them. The files are never written."""
    if len(vectors) == 0:
        return index
    index = writable(index, path)
    index.add(normalize(vectors))
    return index


def search(index: Any, queries: np.ndarray, k: int, limit: int | None = None, selector: Any = None,
           factory: str = "Flat", param: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, rows) per query; rows at or beyond ``limit`` (not in the reader's snapshot) are dropped.
    ``selector`` (a faiss IDSelector) restricts the search to some rows, inside the index's own search."""
    import faiss

    q = normalize(np.atleast_2d(queries))
    extra = 0 if limit is None else max(0, index.ntotal - limit)
    kk = min(k + extra, max(index.ntotal, 1))
    if selector is None:
        set_param(index, factory, param)
        scores, rows = index.search(q, kk)
    else:
        if factory.startswith("HNSW"):
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(int(param or 16), kk))
        elif factory.startswith("IVF"):
            params = faiss.SearchParametersIVF(sel=selector, nprobe=int(param or 8))
        else:
            params = faiss.SearchParameters(sel=selector)
        scores, rows = index.search(q, kk, params=params)
    if extra:
        keep = [(r < limit) & (r >= 0) for r in rows]
        scores = np.stack([s[m][:k] for s, m in zip(scores, keep)])
        rows = np.stack([r[m][:k] for r, m in zip(rows, keep)])
    return scores, rows




def nlist_of(factory: str) -> int:
    """The number of IVF lists a factory string asks for (1 when it is no IVF)."""
    import re

    m = re.search(r"IVF(\d+)", factory)
    return int(m.group(1)) if m else 1


def check_factory(factory: str, dim: int) -> None:
    """Refuse a FAISS factory string that cannot build at ``dim``, in one line, before anything is written."""
    import faiss

    from .errors import InputError

    try:
        faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1].split(": ")[-1]  # FAISS prefixes the C++ function and file
        raise InputError(f"FAISS cannot build index {factory!r}: {reason}; "
                         "see the faiss index_factory docs, e.g. Flat, HNSW32, IVF1024,Flat, IVF1024,PQ32") from None
from . import index_build as _index_build  # noqa: E402  (no faiss import)

# the streaming and on-disk builders, for callers of this module
build_ondisk, build_streaming = _index_build.build_ondisk, _index_build.build_streaming
list_bytes, ondisk_when = _index_build.list_bytes, _index_build.ondisk_when
