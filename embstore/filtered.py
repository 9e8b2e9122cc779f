"""Filtered search: the top-k of a space among the items a SQL predicate matches (``search --where``).

The predicate runs once, in DuckDB over the collection's item shards, and returns where its matches are (the
shard's place and the row in it: DuckDB's virtual columns ``file_index`` and ``file_row_number``, so no id crosses
into Python), turned into the space's index positions by a map kept per snapshot (``item_positions``). The search
is then restricted to those positions by the cheapest path that is exact, or at the index's tuned recall:

- by position: read the matches' vectors (``lookup.vectors_at``) and rank them exactly;
- else the space's index with a FAISS ``IDSelectorBitmap`` over the positions, inside its own search:
  ``Flat``: exact; ``IVF``: nprobe widened to ``nprobe * (n / matches) ** IVF_WIDEN``, at most all the lists
  (which is exact for ``IVF,Flat``); ``HNSW``: below ``HNSW_GRAPH_SHARE`` of the space exact over its stored
  vectors (the graph with a selector loses the matches of a selective filter), from there the graph at
  ``HNSW_WIDEN`` times its efSearch; any other index as is;
- and by position whenever the index returns fewer than k while at least k match.

Measured on the 1M-item ``hash:64`` store (IVF2048,Flat, nprobe 88 tuned to recall@10 0.95; the 2-core VM, shared,
load 3-6; bench/RESULTS.md "Filtered search"). Reading one vector by position decodes its row group
(``storage.ROW_GROUP`` = 1,024 vectors): 0.2-1.4 ms a row (100 scattered rows 145 ms, 1,000: 0.9 s), where the index
passes over a vector in about 0.015 us (all 2,048 lists with a selector: 15-50 ms at 0.01-50% matching): one read by
position costs about ``POSITION_READ`` = 100,000 scanned vectors, so it wins only for a handful of matches (about 10
at 1M). Recall@10 of that IVF with a selector over random matches, against exact, at nprobe 88: 0.32 at 0.01%
matching (x16: 0.99), 0.64 at 0.1% (x8: 0.98), 0.84 at 1% (x4: 0.98), 0.88 at 5% (x2: 0.94, x4: 0.99), 0.94 at 10%
(x2: 0.98), 0.96 at 50%; the cube root of n / matches widens by x22, x10, x4.6, x2.7, x2.2, x1.3, and searches with
it gave 1.0, 1.0, 0.995, 0.975, 0.965 at 0.01, 0.1, 1, 10, 50% (bench/where_search.py). HNSW32 over 200k of those
vectors (efSearch 36): 0.09 at 0.1% matching (x32: 0.84), 0.49 at 1% (x8: 0.96), 0.90 at 10% (x4: 0.99), 0.97 at 50%
(x4: 1.0): the graph loses a selective filter's matches, while an exact scan of its stored vectors with the selector
took 0.7-10 ms a query below 10%.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from . import index as ix
from . import keys as kt
from .lookup import positions_of, shard_columns, vectors_at
from .sql import ids_where, items_source, predicate_errors
from .storage import ROW_GROUP

POSITION_READ = 100_000  # vectors an index scan passes over in the time one vector is read by position
IVF_WIDEN = 1 / 3  # nprobe x (n / matches) ** IVF_WIDEN keeps the tuned recall@10 (measured, above)
HNSW_GRAPH_SHARE = 0.1  # HNSW: matches below this share of the space are searched exactly over its stored vectors
HNSW_WIDEN = 4  # ... and from it through the graph, at this many times its efSearch
OTHER_EXACT = 20_000  # an index of another kind (PCA, bare PQ, ...): up to this many matches read by position
VIRTUAL = ("file_index", "file_row_number")  # DuckDB's columns of where a row is; a real column would hide one


class Plan(NamedTuple):
    """How a filtered search runs: ``path`` ("positions", "index", "stored" vectors of an HNSW or "graph"), the
    FAISS index it searches (None by position), that index's kind and search parameter."""
    path: str
    index: Any
    factory: str
    param: int | None


def search_where(store: Any, collection: str, space: str, q: np.ndarray, k: int, where: str) -> list[tuple[int, float]]:
    """Top-``k`` ``(index position, similarity)`` of the space among the items matching the SQL predicate
    ``where``; k of them whenever at least k match."""
    from .search import index_setting

    rows = positions_where(store, collection, space, where)
    if not len(rows):
        return []
    index, ids = store.sync_index(collection, space)
    n = len(ids)
    factory, param = index_setting(store, collection, space)
    plan = choose(index, factory, param, n, len(rows))
    if plan.path == "positions":
        return exact_at(store, collection, space, q, k, rows)
    scores, found = ix.search(plan.index, q, k, limit=n, selector=bitmap_selector(rows, n), factory=plan.factory,
                              param=plan.param)
    hits = [(int(r), float(s)) for r, s in zip(found[0], scores[0]) if r >= 0]
    if len(hits) < min(k, len(rows)):  # (an approximate index missed some: rank all the matches exactly)
        return exact_at(store, collection, space, q, k, rows)
    return hits


def choose(index: Any, factory: str, param: int | None, n: int, matches: int) -> Plan:
    """The path for ``matches`` of the ``n`` rows of a space with this index (see the module's opening)."""
    import faiss

    share = matches / max(n, 1)
    read = min(matches, -(-n // ROW_GROUP)) * POSITION_READ  # what reading them by position costs, in scanned rows
    if factory.startswith("HNSW"):
        stored = faiss.downcast_index(index.storage)
        if share >= HNSW_GRAPH_SHARE:
            plan, scanned = Plan("graph", index, factory, int(param or 16) * HNSW_WIDEN), 0
        elif isinstance(stored, faiss.IndexFlat):
            plan, scanned = Plan("stored", stored, "Flat", None), n
        else:  # (compressed vectors: no exact scan in the index)
            return Plan("positions", None, factory, None)
    elif factory.startswith("IVF"):
        nlist = faiss.extract_index_ivf(index).nlist
        probe = min(nlist, math.ceil(int(param or 8) * (n / matches) ** IVF_WIDEN))
        plan, scanned = Plan("index", index, factory, probe), n * probe // nlist
    elif isinstance(index, faiss.IndexFlat):
        plan, scanned = Plan("index", index, factory, None), n
    else:
        if matches <= OTHER_EXACT:
            return Plan("positions", None, factory, None)
        plan, scanned = Plan("index", index, factory, param), n
    return Plan("positions", None, factory, None) if read <= scanned else plan


def bitmap_selector(rows: np.ndarray, n: int) -> Any:
    """A FAISS selector of these index rows (of ``n``): one bit a row, made in a few ms at any count (an
    ``IDSelectorBatch`` hashes each row: 50 ms for 500k)."""
    import faiss

    mask = np.zeros(n, bool)
    mask[rows] = True
    bits = np.packbits(mask, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
    selector.referenced_objects = [bits]  # (FAISS keeps a pointer: the bits live as long as the selector)
    return selector


def exact_at(store: Any, collection: str, space: str, q: np.ndarray, k: int,
             rows: np.ndarray) -> list[tuple[int, float]]:
    """Exact top-k among the vectors at these positions, read from the row groups that hold them."""
    X = ix.normalize(vectors_at(store, collection, space, rows))
    scores = X @ ix.normalize(q)[0]
    top = np.argsort(-scores, kind="stable")[:k]
    return [(int(rows[i]), float(scores[i])) for i in top]


def positions_where(store: Any, collection: str, space: str, where: str, option: str = "--where") -> np.ndarray:
    """The sorted index positions in ``space`` of the items of ``collection`` matching ``where`` (given as
    ``option``, named in a bad predicate's one-line error); the predicate runs once."""
    items = store.collection(collection)["item_shards"]
    if not items or any(c in VIRTUAL for s in items for c in shard_columns(store.root / s["file"])):
        return _sorted(positions_of(store, collection, space, ids_where(store, collection, where, option)))
    query = f'SELECT file_index, file_row_number FROM {items_source(store, collection)} AS "{collection}" WHERE {where}'

    def rows() -> np.ndarray:  # the matches' rows across the item shards
        with predicate_errors(store, collection, where, option):
            got = store.sql(query).fetchnumpy()
        starts = np.cumsum([0] + [s["rows"] for s in items])
        return starts[np.asarray(got["file_index"], np.int64)] + np.asarray(got["file_row_number"], np.int64)

    shared = store.shared_sql()  # a long-running reader: a predicate that repeats is run once per snapshot
    at = rows() if shared is None else shared.memo(("where", collection, where), where, rows)
    return _sorted(item_positions(store, collection, space)[at])


def _sorted(rows: np.ndarray) -> np.ndarray:
    """The positions (>= 0) once each, in order: through a mask, linear in the space (np.unique took 0.4 s for
    500k)."""
    rows = rows[rows >= 0]
    if not len(rows):
        return np.zeros(0, np.int64)
    mask = np.zeros(int(rows.max()) + 1, bool)
    mask[rows] = True
    return np.flatnonzero(mask)


MAP_BLOCK = 1 << 20  # key records mapped at a time (memory stays a few blocks at any size)


def item_positions(store: Any, collection: str, space: str) -> np.ndarray:
    """For each row of the collection's item shards (in ``item_shards`` order), its index position in ``space``,
    -1 where it has no vector there; made once per snapshot from the two key tables (150 ms at 1M items)."""
    coll = store.collection(collection)
    items, shards = coll["item_shards"], coll["spaces"][space]["shards"]
    version = (len(items), items[-1]["file"] if items else None, len(shards), shards[-1]["file"] if shards else None)
    return store.cached(("where-positions", collection, space), version,
                        lambda: _item_positions(store, collection, space, items, shards))


def _item_positions(store: Any, collection: str, space: str, items: list[dict], shards: list[dict]) -> np.ndarray:
    item_start, space_start = _starts(items), _starts(shards)
    total = sum(s["rows"] for s in items)
    out = np.full(total, -1, np.int32 if sum(s["rows"] for s in shards) < 2**31 else np.int64)
    by_id = store.key_table(collection, space)
    key, loc, check = (kt.ITEM_FIELDS.index(f) for f in ("key", "loc", "check"))
    for table in store.key_table(collection).tables():
        for start in range(0, table.shape[1], MAP_BLOCK):
            keys = np.asarray(table[key, start:start + MAP_BLOCK])
            checks = np.asarray(table[check, start:start + MAP_BLOCK])
            at = _rows(item_start, np.asarray(table[loc, start:start + MAP_BLOCK]))
            mine = at >= 0  # (records of shards this snapshot does not list are left out)
            found, rec = by_id.find(keys[mine], checks[mine])  # by key and check: colliding keys stay apart
            pos = _rows(space_start, rec[kt.BY_ID_FIELDS.index("loc")])
            out[at[mine]] = np.where(found, pos, -1)
    return out


def _starts(shards: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(the shards' part numbers, sorted; the first row of each, in the order of the list)."""
    parts = np.asarray([kt.part_of(s) for s in shards], np.int64)
    starts = np.cumsum([0] + [s["rows"] for s in shards])[:-1]
    order = np.argsort(parts)
    return parts[order], starts[order]


def _rows(starts: tuple[np.ndarray, np.ndarray], loc: np.ndarray) -> np.ndarray:
    """The row number across the shards of each ``loc`` (part << 32 | row), -1 where the part is not listed."""
    parts, first = starts
    part, row = kt.split_loc(loc)
    if not len(parts):
        return np.full(len(loc), -1, np.int64)
    n = np.minimum(np.searchsorted(parts, part), len(parts) - 1)
    return np.where(parts[n] == part, first[n] + row, -1)
