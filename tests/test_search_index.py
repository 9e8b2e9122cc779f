"""Search at size (P3): index choice by size and memory, growth and rebuild, filtered search that still returns k,
every search mode, SQL similarity functions, precomputed vectors. Real stores, real FAISS and DuckDB."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embstore import InputError, Store
from embstore import filtered
from embstore import index as ix
from embstore.config import Settings
from embstore.errors import EncoderError
from embstore_cli.main import cli

from conftest import HASH, quarantine_lines, topic_rows, write_csv


def clustered(n: int, dim: int = 32, clusters: int = 50, seed: int = 0) -> np.ndarray:
    centers = np.random.default_rng(1).standard_normal((clusters, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    X = centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim), dtype=np.float32) * 0.5
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def exact_top(X: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[int]:
    s = ix.normalize(X) @ ix.normalize(q[None])[0]
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    return [int(i) for i in np.argsort(-s)[:k]]


def test_choose_factory_by_size_and_memory():
    assert ix.choose_factory(1_000, 384) == "Flat"
    assert ix.choose_factory(100_000, 384) == "HNSW32"
    assert ix.choose_factory(1_000_000, 384) == "IVF2048,Flat"
    tight = ix.choose_factory(1_000_000, 384, memory_bytes=200 << 20)  # raw vectors (1.5 GB) do not fit
    assert tight.startswith("IVF2048,PQ") and int(tight.split("PQ")[1]) * 1_000_000 <= 200 << 20


@pytest.fixture()
def big(tmp_path, monkeypatch):
    """4,000 clustered vectors; thresholds lowered so the store picks HNSW at this size."""
    monkeypatch.setattr(ix, "FLAT_MAX", 1_000)
    X = clustered(4_000)
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    groups = np.arange(len(X)) % 100  # group 7 holds 1% of the items
    store.ingest_vectors("v", X, metadata={"grp": groups.tolist()}, name="clusters")
    return store, X, groups


def test_auto_index_is_recorded_with_measured_recall(big):
    store, X, _ = big
    entry = store.space("v")["index"]
    assert entry["factory"] == "HNSW32" and entry["param"] == "efSearch"
    assert entry["recall_at_10"] >= 0.95 and entry["ntotal"] == len(X)
    info = store.info()["collections"]["v"]["spaces"]["clusters"]
    assert info["index"] == "HNSW32" and info["recall_at_10"] == entry["recall_at_10"]
    hits = store.search("v", vector=X[10], k=10)
    truth = exact_top(X, X[10], 10)
    assert len({int(h["id"]) for h in hits} & set(truth)) >= 8


def test_index_grows_with_ingest_and_is_rebuilt_when_its_type_no_longer_fits(tmp_path, monkeypatch):
    monkeypatch.setattr(ix, "FLAT_MAX", 1_500)
    X = clustered(2_000, seed=3)
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    store.ingest_vectors("v", X[:1_000], ids=range(1_000), name="c")
    assert store.space("v")["index"]["factory"] == "Flat"
    store.ingest_vectors("v", X[1_000:1_200], ids=range(1_000, 1_200), name="c")
    assert store.space("v")["index"] == store.space("v")["index"] | {"factory": "Flat", "ntotal": 1_200}
    assert store.search("v", vector=X[1_150], k=1)[0]["id"] == "1150"  # added vectors are searchable
    store.ingest_vectors("v", X[1_200:], ids=range(1_200, 2_000), name="c")
    entry = store.space("v")["index"]
    assert entry["factory"] == "HNSW32" and entry["ntotal"] == 2_000  # rebuilt: Flat no longer fits the size
    assert store.search("v", vector=X[1_999], k=1)[0]["id"] == "1999"
    # a reader of an older snapshot ignores rows it does not know
    old = Store.open(tmp_path / "s")
    assert old.search("v", vector=X[5], k=3)[0]["id"] == "5"


def test_user_can_force_a_factory_string(big):
    store, X, _ = big
    entry = store.reindex("v", factory="IVF16,Flat")
    assert entry["factory"] == "IVF16,Flat" and entry["param"] == "nprobe" and entry["recall_at_10"] >= 0.95
    assert store.search("v", vector=X[3], k=1)[0]["id"] == "3"
    with pytest.raises(InputError, match="FAISS cannot build index"):
        store.reindex("v", factory="NotAnIndex")


@pytest.mark.parametrize("factory", ["HNSW32", "Flat", "IVF16,Flat"])
def test_filtered_search_returns_k_when_one_percent_matches(big, factory):
    store, X, groups = big
    store.reindex("v", factory=factory)
    q = X[123]
    hits = store.search("v", vector=q, k=10, where="grp = 7")
    assert len(hits) == 10 and all(h["grp"] == 7 for h in hits)
    assert [int(h["id"]) for h in hits] == exact_top(X, q, 10, groups == 7)
    # a broad filter goes through the index's own selector and still returns k matching items
    broad = store.search("v", vector=q, k=10, where="grp < 60")
    assert len(broad) == 10 and all(h["grp"] < 60 for h in broad)
    assert store.search("v", vector=q, k=10, where="grp = 1000") == []


def test_filtered_search_runs_the_predicate_once(big, monkeypatch):
    """The exact path searches the items the predicate chose, not the items a second run of it would choose (a
    predicate may be costly, or hold random())."""
    store, X, groups = big
    seen = []
    sql = store.sql
    monkeypatch.setattr(store, "sql", lambda query, **kw: (seen.append(query), sql(query, **kw))[1])
    hits = store.search("v", vector=X[123], k=10, where="grp = 7")
    assert [int(h["id"]) for h in hits] == exact_top(X, X[123], 10, groups == 7)
    assert sum("grp = 7" in q for q in seen) == 1


def paths_taken(monkeypatch) -> list[str]:
    """The filtered-search paths (``filtered.choose``) the searches after this call take."""
    taken: list[str] = []
    choose = filtered.choose
    monkeypatch.setattr(filtered, "choose", lambda *a: (lambda p: (taken.append(p.path), p)[1])(choose(*a)))
    return taken


@pytest.mark.parametrize("factory, read, path", [
    ("Flat", 0, "positions"), ("Flat", 10**12, "index"),
    ("IVF64,Flat", 0, "positions"), ("IVF64,Flat", 10**12, "index"),
    ("HNSW32", 0, "positions"), ("HNSW32", 10**12, "stored")])
def test_filtered_search_equals_exact_search_on_each_exact_path(big, monkeypatch, factory, read, path):
    """Whatever the path a filtered search takes where it is exact (the matches' vectors read by position, a Flat
    index or an IVF over all its lists with a selector, an HNSW's stored vectors), its ids and scores are those of
    an exact search among the matching items."""
    store, X, groups = big
    store.reindex("v", factory=factory)
    monkeypatch.setattr(filtered, "POSITION_READ", read)
    monkeypatch.setattr(filtered, "IVF_WIDEN", 2.0)  # an IVF's probe widened to all its lists: exact
    taken = paths_taken(monkeypatch)
    for where, allowed in [("grp = 7", groups == 7), ("grp < 3", groups < 3), ("grp % 20 = 4", groups % 20 == 4)]:
        for row in (123, 3_999):
            hits = store.search("v", vector=X[row], k=10, where=where)
            truth = exact_top(X, X[row], 10, allowed)
            assert [int(h["id"]) for h in hits] == truth, (where, row)
            exact = ix.normalize(X[truth]) @ ix.normalize(X[row][None])[0]
            assert np.allclose([h["score"] for h in hits], exact, atol=2e-6)
    assert set(taken) == {path}
    if factory.startswith("IVF") and path == "index":  # nprobe x (n / matches) ** IVF_WIDEN, at most all lists
        index, nprobe = store.sync_index("v", "clusters")[0], store.space("v")["index"]["value"]
        assert filtered.choose(index, factory, nprobe, 4_000, 40).param == 64
        monkeypatch.setattr(filtered, "IVF_WIDEN", 1 / 3)
        assert [filtered.choose(index, factory, 8, 4_000, m).param for m in (40, 500, 4_000)] == [38, 16, 8]


def test_filtered_search_through_a_graph_or_a_narrow_ivf_keeps_k_and_the_filter(big, monkeypatch):
    """Broad filters on HNSW go through the graph (at a wider efSearch), near the exact answer; an IVF whose probe
    misses matches (nprobe 1 here) falls back to the exact answer rather than return fewer than k."""
    store, X, groups = big
    store.reindex("v", factory="HNSW32")
    taken = paths_taken(monkeypatch)
    overlap = []
    for row in range(0, 4_000, 400):
        hits = store.search("v", vector=X[row], k=10, where="grp < 50")
        assert len(hits) == 10 and all(h["grp"] < 50 for h in hits)
        overlap.append(len({int(h["id"]) for h in hits} & set(exact_top(X, X[row], 10, groups < 50))) / 10)
    assert taken == ["graph"] * 10 and np.mean(overlap) >= 0.95
    store.reindex("v", factory="IVF16,Flat")
    monkeypatch.setattr(filtered, "IVF_WIDEN", 0.0)
    monkeypatch.setattr(filtered, "POSITION_READ", 10**12)
    monkeypatch.setattr(store, "space", lambda *a, **kw: {**Store.space(store, *a, **kw), "index": {
        "factory": "IVF16,Flat", "value": 1}})  # a tuned nprobe of 1: one list of 16 holds ~3 of the 40 matches
    seen = []
    exact_at = filtered.exact_at
    monkeypatch.setattr(filtered, "exact_at", lambda *a: (seen.append(len(a[-1])), exact_at(*a))[1])
    hits = store.search("v", vector=X[123], k=10, where="grp = 7")
    assert [int(h["id"]) for h in hits] == exact_top(X, X[123], 10, groups == 7) and seen == [40]


def test_a_long_running_reader_runs_a_repeated_filter_once_per_snapshot(tmp_path, monkeypatch):
    """With the SQL shared (embstore serve's way), a predicate that repeats is not scanned again while the shards
    are the same; one naming random() is run every time; an ingest (new shards) makes it run anew, and right."""
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    X = clustered(600, seed=6)
    store.ingest_vectors("v", X[:300], ids=[f"a{i}" for i in range(300)], metadata={"grp": [i % 3 for i in range(300)]},
                         name="c")
    store.share_sql()
    seen, sql = [], store.sql
    monkeypatch.setattr(store, "sql", lambda query, **kw: (seen.append(query), sql(query, **kw))[1])
    scans = lambda text: sum(text in q for q in seen)
    first = store.search("v", vector=X[1], k=5, where="grp = 2")
    assert store.search("v", vector=X[2], k=5, where="grp = 2") != first  # another query, the same filter
    assert [int(h["id"][1:]) % 3 for h in store.search("v", vector=X[1], k=5, where="grp = 2")] == [2] * 5
    assert scans("grp = 2") == 1
    for _ in range(2):
        assert len(store.search("v", vector=X[1], k=5, where="grp = 1 AND random() < 2")) == 5
    assert scans("random()") == 2
    from embstore import sql_shared

    db = store.shared_sql()
    monkeypatch.setattr(sql_shared, "MEMO_ENTRIES", 3)  # empty results count too: the memo stays bounded
    for i in range(10):
        assert store.search("v", vector=X[1], k=5, where=f"grp = {100 + i}") == []
    assert len(db._memo) <= 3 and db._memo_bytes > 0
    assert len(store.search("v", vector=X[1], k=5, where="grp = 1 USING SAMPLE 50%")) >= 0  # (run, never kept)
    assert not any("SAMPLE" in k[2] for k in db._memo)
    store.ingest_vectors("v", X[300:], ids=[f"b{i}" for i in range(300)], metadata={"grp": [2] * 300}, name="c")
    hits = store.search("v", vector=X[450], k=5, where="grp = 2")
    assert scans("grp = 2") == 2
    allowed = np.r_[np.arange(300) % 3 == 2, np.ones(300, bool)]
    assert [h["id"] for h in hits] == [(f"a{i}" if i < 300 else f"b{i - 300}") for i in exact_top(X, X[450], 5, allowed)]


def test_filter_positions_follow_new_shards_and_a_column_named_like_duckdbs_own(tmp_path):
    """The predicate's matches become index positions through a map kept per snapshot: made anew when an ingest
    adds shards; a collection with a column named file_row_number (which would hide DuckDB's) goes by ids."""
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    X = clustered(600, seed=5)
    store.ingest_vectors("v", X[:300], ids=[f"a{i}" for i in range(300)], metadata={"grp": [i % 3 for i in range(300)]},
                         name="c")
    assert [int(h["id"][1:]) % 3 for h in store.search("v", vector=X[0], k=5, where="grp = 2")] == [2] * 5
    store.ingest_vectors("v", X[300:], ids=[f"b{i}" for i in range(300)], metadata={"grp": [3] * 300}, name="c")
    hits = store.search("v", vector=X[450], k=5, where="grp = 3")
    assert [h["id"] for h in hits] == [f"b{i - 300}" for i in exact_top(X, X[450], 5, np.arange(600) >= 300)]
    assert list(filtered.positions_where(store, "v", "c", "true")) == list(range(600))
    odd = Store.open(tmp_path / "o", settings=Settings.resolve(device="cpu"))
    odd.ingest_vectors("w", X, metadata={"file_row_number": list(range(600, 0, -1))}, name="c")
    assert list(filtered.positions_where(odd, "w", "c", "file_row_number <= 3")) == [597, 598, 599]
    hits = odd.search("w", vector=X[10], k=3, where="file_row_number > 100")
    assert [int(h["id"]) for h in hits] == exact_top(X, X[10], 3, np.arange(600) < 500)


def test_search_modes_text_like_vector_and_image(tmp_path, docs_store=None):
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    store.ingest(write_csv(tmp_path / "t.csv", topic_rows()), "docs", encoder=HASH)
    by_text = store.search("docs", "tennis match with the striker", k=3)
    assert all(h["label"] == "sports" for h in by_text)
    first = by_text[0]["id"]
    like = store.search("docs", item_id=first, k=3)
    assert first not in [h["id"] for h in like] and len(like) == 3
    ids, X = store.embeddings("docs")
    by_vec = store.search("docs", vector=X[ids.index(first)], k=1)
    assert by_vec[0]["id"] == first
    with pytest.raises(InputError, match="exactly one"):
        store.search("docs", "x", item_id=first)
    with pytest.raises(InputError, match="dimensions"):
        store.search("docs", vector=[1.0, 2.0])
    filtered = store.search("docs", "tennis match", k=5, where="label = 'finance'")
    assert len(filtered) == 5 and {h["label"] for h in filtered} == {"finance"}
    with pytest.raises(InputError, match="bad --where"):
        store.search("docs", "x", where="nonexistent_column = 1")


def test_sql_embed_similarity_and_nearest_macro(tmp_path):
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    store.ingest(write_csv(tmp_path / "t.csv", topic_rows()), "docs", encoder=HASH)
    store.fit("docs", "label", "topic", model="centroid")
    store.predict("topic", "docs")
    near = store.sql("SELECT text, label, score FROM docs_nearest('stock bank shares', 4)").fetchall()
    assert len(near) == 4 and all(r[1] == "finance" for r in near)
    assert [r[2] for r in near] == sorted((r[2] for r in near), reverse=True)
    # "the k items nearest to a text among those predicted as X" in one statement, joining items, space, predictions
    rows = store.sql(
        "SELECT d.text, p.label, similarity(e.embedding, embed('docs', 'goal by the striker')) AS score "
        "FROM docs d JOIN docs__hash64 e USING (id) JOIN predictions p USING (id) "
        "WHERE p.label = 'animals' ORDER BY score DESC LIMIT 3").fetchall()
    assert len(rows) == 3 and all(r[1] == "animals" for r in rows)
    dim = store.sql("SELECT len(embed('docs.hash64', 'cat')) AS n").fetchall()[0][0]
    assert dim == 64
    cos = store.sql("SELECT array_cosine_similarity(embedding, embedding) FROM docs__hash64 LIMIT 1").fetchall()
    assert cos[0][0] == pytest.approx(1.0, abs=1e-5)


def test_sql_exports_csv_json_parquet(tmp_path):
    store_dir = tmp_path / "s"
    Store.open(store_dir).ingest(write_csv(tmp_path / "t.csv", topic_rows()), "docs", encoder=HASH)
    runner = CliRunner()
    q = "SELECT label, count(*) AS n FROM docs GROUP BY label ORDER BY label"
    for fmt, name in (("csv", "out.csv"), ("json", "out.json"), ("parquet", "out.parquet")):
        r = runner.invoke(cli, ["sql", q, "--store", str(store_dir), "--format", fmt, "-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
    assert (tmp_path / "out.csv").read_text().splitlines()[1] == "animals,12"
    assert json.loads((tmp_path / "out.json").read_text())[0] == {"label": "animals", "n": 12}
    assert pq.read_table(tmp_path / "out.parquet").to_pylist()[2] == {"label": "sports", "n": 12}


def test_precomputed_vectors_from_parquet_and_npy(tmp_path):
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    X = clustered(300, dim=8, seed=4)
    t = pa.table({"id": [f"doc{i}" for i in range(300)],
                  "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 8),
                  "tag": [i % 3 for i in range(300)]})
    pq.write_table(t, tmp_path / "vecs.parquet")
    r = store.ingest(tmp_path / "vecs.parquet", "pre", embedding_column="embedding", encoder="external:mine")
    assert (r.read, r.added, r.embedded) == (300, 300, 0)
    assert store.space("pre")["encoder"]["spec"] == "external:mine"
    ids, got = store.embeddings("pre")
    np.testing.assert_array_equal(got[ids.index("doc7")], X[7])
    nearest = store.search("pre", vector=X[7], k=2)
    assert nearest[0]["id"] == "doc7" and store.search("pre", item_id="doc7", k=1)[0]["id"] == nearest[1]["id"]
    assert store.sql("SELECT count(*) FROM pre WHERE tag = 1").fetchall()[0][0] == 100
    with pytest.raises(InputError, match="--vector or --like"):
        store.search("pre", "a text query")
    again = store.ingest(tmp_path / "vecs.parquet", "pre", embedding_column="embedding", encoder="external:mine")
    assert (again.added, again.duplicates) == (0, 300)
    bad = X[:10].copy()
    bad[4, 2] = np.nan
    np.save(tmp_path / "v.npy", bad)
    r = store.ingest(tmp_path / "v.npy", "npy")
    assert (r.read, r.added, r.quarantined) == (10, 9, 1) and "NaN" in next(iter(r.reasons))
    with pytest.raises(InputError, match="not vectors"):
        store.ingest(tmp_path / "vecs.parquet", "pre2", embedding_column="tag")
    with pytest.raises(EncoderError):
        store.encoder_for("pre")


def test_vectors_without_ids_are_named_by_their_row_and_a_known_id_never_drops_new_values(tmp_path):
    """Files of vectors without ids: a second file's rows are new items, the same file again adds nothing. An
    array without ids is named by row number, so a second array's rows are quarantined, not silently dropped."""
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    X = clustered(30, dim=8, seed=5)
    np.save(tmp_path / "a.npy", X[:20])
    np.save(tmp_path / "b.npy", X[20:])
    assert (store.ingest(tmp_path / "a.npy", "n").added, store.ingest(tmp_path / "b.npy", "n").added) == (20, 10)
    r = store.ingest(tmp_path / "a.npy", "n")
    assert (r.read, r.added, r.duplicates) == (20, 0, 20)
    t = pa.table({"embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 8),
                  "label": ["x"] * 10 + ["y"] * 20})
    pq.write_table(t, tmp_path / "p.parquet")
    pq.write_table(t.slice(10), tmp_path / "tail.parquet")
    relabelled = t.set_column(1, "label", pa.array(["z"] * 30))
    pq.write_table(relabelled, tmp_path / "z.parquet")
    store.ingest(tmp_path / "p.parquet", "p", embedding_column="embedding")
    assert store.ingest(tmp_path / "tail.parquet", "p", embedding_column="embedding").duplicates == 20
    r = store.ingest(tmp_path / "z.parquet", "p", embedding_column="embedding")  # another label: another row
    assert (r.added, r.duplicates) == (30, 0)
    # an array: ids 0..n-1 unless given; the same ids with other vectors are refused, saying why
    store.ingest_vectors("arr", X[:10], metadata={"label": ["x"] * 10})
    r = store.ingest_vectors("arr", np.vstack([X[10:15], X[5:10]]), metadata={"label": ["x"] * 9 + ["w"]})
    assert (r.read, r.added, r.duplicates, r.quarantined) == (10, 0, 4, 6)
    reasons = {x["row"]: x["reason"] for x in quarantine_lines(store.root, r.quarantine_file)}
    assert reasons[1].startswith("id already in collection with a different vector: 0; give it a new id")
    assert reasons[10].startswith("id already in collection with other values in label: 9;")
    assert store.ingest_vectors("arr", X[10:15], ids=range(10, 15)).added == 5
    with pytest.raises(InputError, match="space 'external' holds external:external vectors of 8 dimensions; these are "
                                         "external:external with 5"):
        store.ingest_vectors("arr", X[:2, :5], ids=["p", "q"])


def test_gpu_exact_search_matches_exact_cpu(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine (run bench/gpu.sh on one)")
    X = clustered(2_000, seed=5)
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cuda"))
    store.ingest_vectors("v", X, name="c")
    hits = store.search("v", vector=X[9], k=10)
    assert [int(h["id"]) for h in hits] == exact_top(X, X[9], 10)


def test_factories_that_do_not_fit_the_space_are_one_line_errors_and_approximate_ones_are_measured(tmp_path):
    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    X = clustered(300, dim=16, seed=6)
    with pytest.raises(InputError, match="the rows are committed \\(300 added\\), but not indexed: FAISS cannot train "
                                         "IVF512,Flat on 300 vectors"):
        store.ingest(_npy(tmp_path, X), "v", index="IVF512,Flat")
    assert store.sql("SELECT count(*) FROM v").fetchall() == [(300,)]
    with pytest.raises(InputError, match="FAISS cannot train IVF8192,Flat on 300 vectors"):
        store.reindex("v", factory="IVF8192,Flat")
    entry = store.reindex("v", factory="PCA4,Flat")  # approximate, with no knob: its recall is measured, not assumed
    assert entry["recall_queries"] == 200 and entry["recall_at_10"] < 1.0


def _npy(tmp_path, X):
    np.save(tmp_path / "x.npy", X)
    return tmp_path / "x.npy"


def test_search_through_a_pq_index_says_its_scores_are_approximate(tmp_path):
    from click.testing import CliRunner

    store = Store.open(tmp_path / "s", settings=Settings.resolve(device="cpu"))
    store.ingest_vectors("v", clustered(2_000, dim=16, seed=7), name="c")
    store.reindex("v", factory="IVF16,PQ4")
    out = CliRunner().invoke(cli, ["search", "--store", str(tmp_path / "s"), "-c", "v", "--like", "5", "-k", "3"])
    assert out.exit_code == 0 and "scores are approximate: the IVF16,PQ4 index compresses the vectors" in out.stdout
    store.reindex("v", factory="IVF16,Flat")
    out = CliRunner().invoke(cli, ["search", "--store", str(tmp_path / "s"), "-c", "v", "--like", "5", "-k", "3"])
    assert "approximate" not in out.stdout


def test_tuning_stops_near_the_smallest_setting_that_reaches_the_target():
    """Doubling nprobe overshoots by up to 2x; the tuned value is within an eighth of the smallest that reaches the
    recall target (IVF recall only grows with nprobe), and that value reaches it."""
    import faiss

    rng = np.random.default_rng(3)
    x = ix.normalize(rng.standard_normal((20_000, 24)).astype(np.float32))  # no clusters: IVF needs many probes
    index = ix.build(x, "IVF256,Flat")
    got = ix.tune(index, "IVF256,Flat", x, target=0.95)
    value = got["value"]
    assert got["recall_at_10"] >= 0.95 and 16 < value < 256
    q_rng, rows, other = ix._query_rows(len(x), 200)
    q = ix._queries(q_rng, x[rows], x[other])
    flat = faiss.IndexFlatIP(24)
    flat.add(x)
    _, truth = flat.search(q, 10)
    below = value - max(value // 8, 1)
    ix.set_param(index, "IVF256,Flat", below)
    assert ix._recall(index.search(q, 10)[1], truth, 10) < 0.95
