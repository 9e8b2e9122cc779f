"""Indexes built without holding the space (block by block, on disk), recall measured block by block, and indexes
opened mapped. Small random data, real FAISS: each streaming path is checked against the in-memory one."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embstore import InputError
from embstore import index as ix
from embstore.index_build import gather_rows, training_sample

DIM = 16


def clustered(n: int, dim: int = DIM, clusters: int = 40, seed: int = 0) -> np.ndarray:
    centers = np.random.default_rng(1).standard_normal((clusters, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    return centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim), dtype=np.float32) * 0.5


def blocks_of(X: np.ndarray, size: int):
    """Blocks of uneven sizes (a shard of ``size``, then one of a third of it, ...), re-read from the start per call;
    counts the passes."""
    calls = []

    def blocks():
        calls.append(1)
        i, sizes = 0, [size, max(1, size // 3)]
        while i < len(X):
            m = sizes[len(calls) % 2 and (i // size) % 2]
            yield X[i:i + m]
            i += m
    blocks.calls = calls
    return blocks


def queries(X: np.ndarray) -> np.ndarray:
    base = X[::53][:40]
    return ix.normalize(base + np.random.default_rng(9).standard_normal(base.shape).astype(np.float32) * 0.2)


@pytest.mark.parametrize("factory", ["Flat", "IVF32,Flat", "IVF32,PQ4x4", "PCA8,Flat"])
def test_streaming_build_is_the_in_memory_build(factory):
    X = clustered(6_000)
    a = ix.build(X, factory)
    b = ix.build_streaming(blocks_of(X, 1_000), len(X), DIM, factory)
    assert b.ntotal == len(X)
    ix.set_param(a, factory, 4)
    ix.set_param(b, factory, 4)
    q = queries(X)
    (Da, Ia), (Db, Ib) = a.search(q, 10), b.search(q, 10)
    np.testing.assert_array_equal(Ia, Ib)  # same training rows in the same order: the same index
    np.testing.assert_allclose(Da, Db, rtol=1e-5)


def test_training_sample_is_builds_when_the_space_exceeds_the_cap():
    X = clustered(3_000)
    chosen = np.random.default_rng(0).choice(len(X), 500, replace=False)
    got = training_sample(blocks_of(X, 700), len(X), DIM, cap=500)
    np.testing.assert_allclose(got, ix.normalize(X)[chosen], rtol=1e-6)
    rows = np.array([0, 5, 699, 700, 2_999])
    np.testing.assert_allclose(gather_rows(blocks_of(X, 700), len(X), DIM, rows), ix.normalize(X[rows]), rtol=1e-6)


def test_streaming_hnsw_is_searchable_and_a_given_sample_is_used():
    X = clustered(4_000)
    hnsw = ix.build_streaming(blocks_of(X, 900), len(X), DIM, "HNSW32")
    assert ix.tune(hnsw, "HNSW32", X)["recall_at_10"] >= 0.95
    blocks = blocks_of(X, 1_000)
    ivf = ix.build_streaming(blocks, len(X), DIM, "IVF16,Flat", sample=X[:2_000])
    assert len(blocks.calls) == 1  # no pass to draw a sample
    assert ix.tune(ivf, "IVF16,Flat", X)["recall_at_10"] >= 0.95


def test_streaming_build_refuses_as_build_does():
    X = clustered(300)
    with pytest.raises(InputError, match="FAISS cannot train IVF512,Flat on 300 vectors"):
        ix.build_streaming(blocks_of(X, 100), len(X), DIM, "IVF512,Flat")
    with pytest.raises(InputError, match="FAISS cannot train IVF512,Flat on 300 vectors"):
        ix.build_ondisk(blocks_of(X, 100), len(X), DIM, "IVF512,Flat", "unused")
    with pytest.raises(ValueError, match="300 rows, 301 announced"):
        ix.build_streaming(blocks_of(X, 100), 301, DIM, "Flat")
    with pytest.raises(ValueError, match="more than the 200 rows"):
        ix.build_streaming(blocks_of(X, 100), 200, DIM, "Flat")
    assert ix.build_streaming(lambda: iter(()), 0, DIM, "Flat").ntotal == 0


@pytest.mark.parametrize("factory", ["IVF32,Flat", "HNSW32", "IVF32,PQ4x4", "PCA8,Flat"])
def test_tune_streaming_gives_tunes_numbers(factory):
    X = clustered(5_000, seed=2)
    index = ix.build(X, factory)
    want = ix.tune(index, factory, X)
    got = ix.tune_streaming(index, factory, blocks_of(X, 800), len(X), DIM)
    assert got == want
    small = X[:7]  # fewer rows than k and than n_queries
    tiny = ix.build(small, "HNSW32")
    assert ix.tune_streaming(tiny, "HNSW32", blocks_of(small, 3), 7, DIM) == ix.tune(tiny, "HNSW32", small)
    assert ix.tune_streaming(index, "Flat", blocks_of(X, 800), len(X), DIM)["recall_at_10"] == 1.0


@pytest.mark.parametrize("factory", ["IVF32,Flat", "IVF32,PQ4x4", "IVF32,SQ8"])
def test_ondisk_build_matches_the_in_memory_index_and_moves_with_its_folder(tmp_path, factory):
    X = clustered(6_000, seed=3)
    memory = ix.build(X, factory)
    path = ix.build_ondisk(blocks_of(X, 1_000), len(X), DIM, factory, tmp_path / "b1", shard_bytes=40_000)
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.faiss", "index.ivfdata"]
    (tmp_path / "b1").rename(tmp_path / "moved")  # the lists are found beside the index, not at the build's path
    disk = ix.load_index(tmp_path / "moved" / "index.faiss", mmap=True)
    assert ix.is_mapped(disk) and disk.ntotal == len(X)
    q = queries(X)
    for index in (memory, disk):
        ix.set_param(index, factory, 8)
    (Dm, Im), (Dd, Id) = memory.search(q, 10), disk.search(q, 10)
    np.testing.assert_array_equal(Im, Id)
    np.testing.assert_allclose(Dm, Dd, rtol=1e-5)
    assert ix.tune(disk, factory, X) == ix.tune(memory, factory, X)
    # a lagging reader's rows go to an in-memory copy; the files are not touched
    before = (tmp_path / "moved" / "index.ivfdata").read_bytes()
    grown = ix.add_rows(disk, tmp_path / "moved" / "index.faiss", X[:5])
    assert grown is not disk and grown.ntotal == len(X) + 5 and disk.ntotal == len(X) and not ix.is_mapped(grown)
    memory.add(ix.normalize(X[:5]))
    for index in (memory, grown):  # (tune left its own nprobe)
        ix.set_param(index, factory, 8)
    np.testing.assert_array_equal(grown.search(q, 10)[1], memory.search(q, 10)[1])
    assert (tmp_path / "moved" / "index.ivfdata").read_bytes() == before


def test_ondisk_needs_a_plain_ivf(tmp_path):
    X = clustered(2_000)
    with pytest.raises(InputError, match="on-disk index needs a plain IVF factory"):
        ix.build_ondisk(blocks_of(X, 500), len(X), DIM, "PCA8,IVF16,Flat", tmp_path / "x")


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF16,Flat", "IVF16,PQ4x4", "PCA8,Flat"])
def test_mapped_load_searches_the_same_and_adds_go_to_a_copy(tmp_path, factory):
    X = clustered(3_000, seed=4)
    index = ix.build(X, factory)
    path = tmp_path / "index.faiss"
    ix.save_index(index, path)
    mapped = ix.load_index(path, mmap=True)
    plain = ix.load_index(path)
    assert ix.is_mapped(mapped) and not ix.is_mapped(plain) and not ix.is_mapped(index)
    q = queries(X)
    for i in (index, mapped):
        ix.set_param(i, factory, 8)
    np.testing.assert_array_equal(mapped.search(q, 5)[1], index.search(q, 5)[1])
    assert ix.writable(plain, path) is plain  # in memory already: no copy
    grown = ix.add_rows(mapped, path, X[:4])  # never mapped.add (faiss aborts the process on a mapped Flat)
    assert grown is not mapped and grown.ntotal == 3_004 and mapped.ntotal == 3_000
    assert ix.add_rows(plain, path, X[:4]) is plain and plain.ntotal == 3_004
    assert ix.add_rows(mapped, path, X[:0]) is mapped


def test_adding_to_a_mapped_flat_index_would_kill_the_process(tmp_path):
    """Why add_rows exists: faiss aborts (not raises) when a mapped index is added to."""
    ix.save_index(ix.build(clustered(100), "Flat"), tmp_path / "i.faiss")
    code = textwrap.dedent(f"""
        import numpy as np
        from embstore import index as ix
        i = ix.load_index({str(tmp_path / 'i.faiss')!r}, mmap=True)
        i.add(np.ones((1, {DIM}), np.float32))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "viewed vector" in r.stderr


def test_ondisk_when_follows_the_lists_size():
    gb = 1 << 30
    assert ix.list_bytes(10_000_000, 64, "IVF4096,Flat") == 10_000_000 * (64 * 4 + 8)
    assert ix.list_bytes(1_000, 64, "HNSW32") is None
    assert ix.ondisk_when(10_000_000, 64, 8 * gb)  # 2.6 GB of lists > a quarter of 8 GB
    assert not ix.ondisk_when(1_000_000, 64, 8 * gb)
    assert not ix.ondisk_when(100_000, 64, 8 * gb)  # HNSW
    assert ix.ondisk_when(10_000_000, 64, 1 * gb)  # IVF4096,PQ64: 0.7 GB of lists
    assert not ix.ondisk_when(10_000_000, 64, 1 * gb, factory="IVF4096,PQ8")  # 0.16 GB
    assert not ix.ondisk_when(10_000_000, 64, 8 * gb, factory="PCA16,IVF1024,Flat")
