"""Building a space's FAISS index without holding the space: the vectors come block by block (one shard each).

``blocks`` is a callable returning a fresh iterator over float32 ``(m, dim)`` arrays, in the index's row order; each
call re-reads from the start. Normalisation, the training sample and the training errors are ``index.build``'s:

- ``build_streaming``: the index in memory, filled block by block. A trained index (IVF, PQ) trains on the rows
  ``build`` would draw for the same ``n`` (seed 0, at most ``train_cap`` rows), fetched in a first pass, so Flat and
  IVF indexes come out identical to ``build``'s. Memory: the index itself + the sample + one block.
- ``build_ondisk``: an IVF index whose inverted lists live in ``index.ivfdata`` beside ``index.faiss``. A pass assigns
  every row to its list (4 bytes a row kept), which sizes the lists; a last pass encodes the rows shard by shard
  in a small in-memory IVF and writes each list's part at its final offset with ``pwrite``. Nothing is mapped while
  writing, so the peak is one shard + the assignments, whatever ``n`` (faiss's ``merge_ondisk`` writes through a
  shared mapping and reads its shards through mappings: those pages count in the process's RSS, which then grows
  with the index; see ``bench/index_build.py``).
- ``ondisk_when``: the rule the store follows to choose between them.

Measured (``bench/index_build.py``, 64-d IVF,Flat, blocks of 20k rows, peak RSS by ru_maxrss, 80 MB of it imports):
1M rows: build 907 MB, build_streaming 421 MB, build_ondisk 246 MB, merge_ondisk 687 MB; 4M rows: 3292, 1336, 264,
2204 MB. Only build_ondisk is bounded (a shard + 4 bytes a row); merge_ondisk's RSS is its mapped lists (2068 MB of
file pages at the end at 4M), so it is not used. A 10M x 64 space (2.6 GB of lists) therefore builds on disk under
2 GB, and in memory it could not. A fresh process maps either index and answers a query in ~0.03-0.1 s
(``load_index(path, mmap=True)``) against 1.1 s for a plain read at 4M.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .manifest import fsync_dir

Blocks = Callable[[], Iterator[np.ndarray]]
ONDISK_SHARE = 0.25  # an IVF index goes on disk when its lists would take more than this share of the memory budget
SHARD_BYTES = 64 << 20  # rows encoded at a time by build_ondisk


def _checked(blocks: Blocks, n: int, dim: int) -> Iterator[np.ndarray]:
    """The blocks, each checked for shape, and their total checked against ``n`` at the end."""
    seen = 0
    for block in blocks():
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != dim:
            raise ValueError(f"a block of shape {block.shape} in a space of {dim} dimensions")
        seen += len(block)
        if seen > n:
            raise ValueError(f"the blocks hold more than the {n} rows announced")
        if len(block):
            yield block
    if seen != n:
        raise ValueError(f"the blocks hold {seen} rows, {n} announced")


def gather_rows(blocks: Blocks, n: int, dim: int, rows: np.ndarray) -> np.ndarray:
    """The normalised vectors at the sorted, distinct ``rows``, in one pass over the blocks."""
    from .index import normalize

    out = np.empty((len(rows), dim), np.float32)
    start, done = 0, 0
    for block in _checked(blocks, n, dim):
        end = start + len(block)
        hi = np.searchsorted(rows, end)
        if hi > done:
            out[done:hi] = normalize(block[rows[done:hi] - start])
            done = hi
        start = end
    return out


def training_sample(blocks: Blocks, n: int, dim: int, cap: int) -> np.ndarray:
    """The rows ``index.build`` trains on for a space of ``n`` rows, in its order, fetched from the blocks."""
    if n <= cap:
        return gather_rows(blocks, n, dim, np.arange(n))
    chosen = np.random.default_rng(0).choice(n, cap, replace=False)
    order = np.argsort(chosen)
    sample = np.empty((cap, dim), np.float32)
    sample[order] = gather_rows(blocks, n, dim, chosen[order])
    return sample


def _trained(blocks: Blocks, n: int, dim: int, factory: str, sample: np.ndarray | None) -> Any:
    from .index import new_index, normalize, train, train_cap

    index = new_index(dim, factory)
    if not index.is_trained:
        cap = train_cap(index)
        if sample is None:
            sample = training_sample(blocks, n, dim, cap)
        else:
            sample = normalize(sample)
            if len(sample) > cap:
                sample = sample[np.random.default_rng(0).choice(len(sample), cap, replace=False)]
        train(index, factory, sample, n)
    return index


def build_streaming(blocks: Blocks, n: int, dim: int, factory: str, *, sample: np.ndarray | None = None) -> Any:
    """The index of ``factory`` over the ``n`` rows of ``blocks``, filled block by block (see the module's notes).
    ``sample``: the rows to train on, when the caller has them (else drawn from the blocks as ``build`` draws)."""
    from .index import normalize

    index = _trained(blocks, n, dim, factory, sample)
    for block in _checked(blocks, n, dim):
        index.add(normalize(block))
    return index


def _plain_ivf(index: Any, factory: str) -> Any:
    import faiss

    from .errors import InputError

    if not isinstance(index, faiss.IndexIVF):  # (index_factory gives the subclass; a downcast would not own it)
        raise InputError(f"an on-disk index needs a plain IVF factory (IVF<nlist>,Flat / PQ<m> / SQ8), not {factory}")
    return index


def build_ondisk(blocks: Blocks, n: int, dim: int, factory: str, folder: Path, *, sample: np.ndarray | None = None,
                 shard_bytes: int = SHARD_BYTES, exact: Any = None) -> Path:
    """Build an IVF index with on-disk lists: ``folder/index.faiss`` + ``folder/index.ivfdata``; returns the first.

    Both are written under temporary names, synced, then renamed (the lists first). Give each build a folder of its
    own (e.g. named after the build) and let the manifest name the live one: a reader holding the previous pair
    keeps it, and never sees one file of each build. Open it with ``index.load_index`` (the lists are found beside
    the ``.faiss`` file, read-only). ``exact`` (an ``index.ExactTopK``): fed the blocks of both passes, so the index
    can be tuned on the whole space without reading it again."""
    import faiss

    from .index import normalize, save_index

    if n == 0:
        raise ValueError("an on-disk index of no rows")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trained = _plain_ivf(_trained(blocks, n, dim, factory, sample), factory)
    nlist, code_size = int(trained.nlist), int(trained.code_size)
    # pass 1: every row's list, which sizes the lists
    assign = np.empty(n, np.int32 if nlist < 2**31 else np.int64)
    start = 0
    for block in _checked(blocks, n, dim):
        x = normalize(block)
        _, lists = trained.quantizer.search(x, 1)
        assign[start:start + len(block)] = lists[:, 0]
        if exact is not None:
            exact.gather(start, x)
        start += len(block)
    sizes = np.bincount(assign, minlength=nlist).astype(np.uint64)
    entry = code_size + 8  # a list is its codes (capacity x code_size) then its ids (capacity x int64)
    offsets = np.concatenate([[0], np.cumsum(sizes * entry)[:-1]]).astype(np.int64)
    total = int((sizes * entry).sum())
    data, final_data = folder / ".index.ivfdata.tmp", folder / "index.ivfdata"
    # pass 2: encode a shard of rows at a time in a small in-memory IVF, write each list's part where it belongs
    shard = faiss.deserialize_index(faiss.serialize_index(trained))
    filled = np.zeros(nlist, np.int64)
    rows_per_shard = max(1, shard_bytes // (dim * 4))
    fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, total)

        def flush() -> None:
            lists = faiss.downcast_InvertedLists(shard.invlists)
            for j in np.flatnonzero(np.bincount(pending_lists, minlength=nlist)):
                m = lists.list_size(int(j))
                codes = faiss.rev_swig_ptr(lists.get_codes(int(j)), m * code_size)
                ids = faiss.rev_swig_ptr(lists.get_ids(int(j)), m)
                os.pwrite(fd, codes, int(offsets[j]) + int(filled[j]) * code_size)
                os.pwrite(fd, ids.view(np.uint8), int(offsets[j]) + int(sizes[j]) * code_size + int(filled[j]) * 8)
                filled[j] += m
            shard.reset()

        start = 0
        pending_lists = np.empty(0, np.int64)
        for block in _checked(blocks, n, dim):
            x = normalize(block)
            if exact is not None:
                exact.add(start, x)
            lists = assign[start:start + len(x)].astype(np.int64)
            ids = np.arange(start, start + len(x), dtype=np.int64)
            shard.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
            pending_lists = np.concatenate([pending_lists, lists])
            start += len(x)
            if shard.ntotal >= rows_per_shard:
                flush()
                pending_lists = np.empty(0, np.int64)
        if shard.ntotal:
            flush()
        if not np.array_equal(filled, sizes.astype(np.int64)):
            raise RuntimeError("on-disk build: the lists written do not match their sizes")
        os.fsync(fd)
    finally:
        os.close(fd)
    shard = None  # (the in-memory lists let go before the on-disk ones open)
    ondisk = faiss.OnDiskInvertedLists(nlist, code_size, str(final_data))
    ondisk.totsize = total
    ondisk.set_all_lists_sizes(faiss.swig_ptr(sizes))
    trained.replace_invlists(ondisk, True)
    ondisk.this.disown()
    trained.ntotal = n
    os.replace(data, final_data)
    save_index(trained, folder / "index.faiss")  # temp name, fsync, rename
    fsync_dir(folder)
    return folder / "index.faiss"



def list_bytes(n: int, dim: int, factory: str) -> int | None:
    """The bytes an IVF ``factory``'s inverted lists take for ``n`` rows (codes + int64 ids); None if not an IVF."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
    except RuntimeError:
        return None
    return n * (int(ivf.code_size) + 8)


def ondisk_when(n: int, dim: int, memory_bytes: int, factory: str | None = None) -> bool:
    """Whether the store should build (and keep) the space's index with on-disk lists (``build_ondisk``): a plain
    IVF ``factory`` (default: ``choose_factory``'s) whose lists would take more than ``ONDISK_SHARE`` of
    ``memory_bytes``. Below that, ``build_streaming`` holds the whole index in memory while building, and the
    saved file is searched mapped anyway (``load_index``)."""
    import faiss

    from .index import choose_factory

    factory = factory or choose_factory(n, dim, memory_bytes)
    if not factory.startswith("IVF"):
        return False
    if not isinstance(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT), faiss.IndexIVF):
        return False
    size = list_bytes(n, dim, factory)
    return size is not None and size > ONDISK_SHARE * memory_bytes
