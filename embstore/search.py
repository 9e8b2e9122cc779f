"""Similarity search over a space: by text, image, an item's id, or a raw vector; results carry item metadata."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import index as ix
from .encoders import recorded_modalities
from .errors import InputError, NotFoundError
from .filtered import search_where
from .lookup import item_rows, item_rows_by_key, positions_of, vectors_at


def query_vector(store: Any, collection: str, space: str, *, query: str | None, image: Any, item_id: str | None,
                 vector: Sequence[float] | np.ndarray | None) -> np.ndarray:
    given = [name for name, v in (("a text query", query), ("--image", image), ("--like", item_id),
                                  ("--vector", vector)) if v is not None]
    if len(given) != 1:
        raise InputError("search needs exactly one of: a text query, --image FILE, --like ID or a vector"
                         + (f" (got {', '.join(given)})" if given else ""))
    sp = store.space(collection, space)
    dim = sp["encoder"]["dim"]
    if vector is not None:
        v = np.asarray(vector, dtype=np.float32)
        if v.ndim > 1 and v.shape[0] != 1:
            raise InputError(f"the query holds {v.shape[0]} vectors (shape {tuple(v.shape)}); give one")
        v = v.reshape(1, -1)
        if v.shape[1] != dim:
            raise InputError(f"query vector has {v.shape[1]} dimensions; space {space!r} has {dim}")
        if not np.isfinite(v).all() or not np.abs(v).max() > 0:
            raise InputError("the query vector is all zeros (or not finite): it points nowhere; give another")
        return v
    if item_id is not None:
        pos = positions_of(store, collection, space, [str(item_id)])
        if pos[0] < 0 or pos[0] >= sp["rows"]:
            raise NotFoundError(f"no item {item_id!r} in space {space!r} of {collection!r}")
        return vectors_at(store, collection, space, pos)
    if sp["encoder"]["library"] == "external":
        raise InputError(f"space {space!r} holds vectors made outside embstore ({sp['encoder']['spec']}): nothing here "
                         "can embed a query for it; search it with --vector or --like ID")
    enc = store.encoder_for(collection, space)
    if query is not None:
        if not str(query).strip():
            raise InputError("the search query is empty; give some text")
        if "text" not in enc.modalities:
            raise InputError(f"space {space!r} ({sp['encoder']['spec']}) embeds images only; search it with "
                             "--image FILE or --like ID, or ingest a CLIP space for text-to-image search")
        return enc.encode_text([str(query)])
    if "image" not in enc.modalities:
        raise InputError(f"space {space!r} ({sp['encoder']['spec']}) embeds text only; search it with a text query")
    from .encoders.base import load_user_image

    img = load_user_image(image, store.settings.max_pixels)
    return enc.encode_preprocessed([enc.preprocess(img)])


def space_for_query(store: Any, collection: str, space: str | None, *, query: Any = None, image: Any = None,
                    vector: Any = None) -> str:
    """The space a query runs in: the one named; else the collection's only space; else the one space whose
    encoder can embed this kind of query (from the manifest: no model loads). Asks for --space only when several
    can (an image query on a collection with a CLIP space and an EfficientNet space)."""
    spaces = store.collection(collection)["spaces"]
    if space is not None or len(spaces) <= 1:
        return store.space_name(collection, space)
    if query is not None or image is not None:
        kind = "text" if query is not None else "image"
        able = [n for n, sp in spaces.items() if kind in recorded_modalities(sp["encoder"])]
        what = f"{'a text' if kind == 'text' else 'an image'} query"
    elif vector is not None:
        dim = np.asarray(vector).reshape(-1).shape[0]
        able = [n for n, sp in spaces.items() if sp["encoder"]["dim"] == dim]
        what = f"a vector of {dim} dimensions"
    else:
        able, what = sorted(spaces), "this query"
    if len(able) == 1:
        return able[0]
    if not able:
        raise InputError(f"no space of collection {collection!r} can embed {what} (spaces: "
                         + ", ".join(f"{n}: {sp['encoder']['spec']}" for n, sp in sorted(spaces.items())) + ")")
    raise InputError(f"collection {collection!r} has several spaces that can take {what}: {', '.join(sorted(able))}; "
                     "pass --space")


def run_search(store: Any, collection: str, *, query: str | None = None, image: Any = None,
               item_id: str | None = None, vector: Any = None, k: int = 10, space: str | None = None,
               where: str | None = None) -> list[dict]:
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    space = space_for_query(store, collection, space, query=query, image=image, vector=vector)
    q = query_vector(store, collection, space, query=query, image=image, item_id=item_id, vector=vector)
    want = k + (item_id is not None)  # more like an item: the item itself is not an answer
    if where is not None:
        found = search_where(store, collection, space, q, want, where)
        hits, meta = hits_at(store, collection, store.sync_index(collection, space)[1], found) if found else ([], {})
    elif store.settings.device.startswith("cuda"):
        hits, meta = gpu_exact_search(store, collection, space, q, want), None
    else:
        index, ids = store.sync_index(collection, space)
        if index.ntotal == 0:
            return []
        factory, param = index_setting(store, collection, space)
        scores, rows = ix.search(index, q, want, limit=len(ids), factory=factory, param=param)
        hits, meta = hits_at(store, collection, ids, [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0])
    if item_id is not None:
        hits = [h for h in hits if h[0] != str(item_id)][:k]
    if meta is None:
        meta = items_by_id(store, collection, [h[0] for h in hits])
    return [{"rank": n + 1, "id": i, "score": round(s, 6), **meta.get(i, {})} for n, (i, s) in enumerate(hits)]


def hits_at(store: Any, collection: str, ids: Any, found: list[tuple[int, float]]) -> tuple[list[tuple], dict | None]:
    """``(id, score)`` of the index rows found, and the hits' item rows when read on the way (else None): index
    rows -> id keys -> item rows, without reading the space's ids, where the saved position keys cover them."""
    keys = ids.keys_at([r for r, _ in found])
    if keys is not None and store.key_table(collection).ambiguous(keys).any():
        keys = None  # two ids share a hit's 64-bit key: read the hits' ids instead
    if keys is None:
        return list(zip(ids.take([r for r, _ in found]), (s for _, s in found))), None
    items = item_rows_by_key(store, collection, keys)
    hits = [(row["id"], s) for row, (_, s) in zip(items, found) if row is not None]
    return hits, {row["id"]: {c: v for c, v in row.items() if c != "id"} for row in items if row is not None}


def index_setting(store: Any, collection: str, space: str) -> tuple[str, int | None]:
    """The space's index type and its tuned search parameter (efSearch / nprobe), as the manifest records them."""
    entry = store.space(collection, space).get("index") or {}
    return entry.get("factory", "Flat"), entry.get("value")


EXACT_SUBSET = 20_000  # a kNN head trained on at most this many items (or 5%) searches their vectors exactly
HNSW_STEP = 330_000  # multiply-adds of an exact batch search that cost as much as one HNSW efSearch step


def subset_searcher(store: Any, collection: str, space: str, ids: Sequence[str],
                    vectors: np.ndarray | None = None) -> Any:
    """``searcher(Q, k) -> (similarities, rows into ids)``: nearest neighbours among the given items of a space
    (a kNN head's neighbour search), with ``searcher.how`` saying how. Exact, over their stored vectors, when they
    are at most ``EXACT_SUBSET`` (or 5%) of a larger space, or when that costs less than an HNSW graph at its tuned
    efSearch; else through the space's index: as is for all the space, with a FAISS IDSelector for a share of it.
    ``vectors``: the items' vectors in the order of ``ids``, when the caller has them (else read from the space)."""
    import faiss

    index, all_ids = store.sync_index(collection, space)
    rows = positions_of(store, collection, space, ids)
    missing = [i for i, r in zip(ids, rows) if r < 0]
    if missing:
        raise NotFoundError(f"{len(missing)} of the {len(ids)} items this head was trained on are not in "
                            f"{collection}.{space} (e.g. {missing[0]!r}); fit the head again")
    n = len(all_ids)
    factory, param = index_setting(store, collection, space)

    few = len(rows) <= max(EXACT_SUBSET, 0.05 * n) and len(rows) < n
    # an HNSW search costs about efSearch graph steps per query, an exact batch search the rows times the dims:
    # on a 2-core CPU one step costs about as much as HNSW_STEP multiply-adds (measured: bench/RESULTS.md)
    cheaper = factory.startswith("HNSW") and len(rows) * index.d <= int(param or 16) * HNSW_STEP
    if few or cheaper:
        if vectors is None:
            vectors = vectors_at(store, collection, space, rows)
        flat = faiss.IndexFlatIP(index.d)
        flat.add(ix.normalize(vectors))

        def exact(Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            return flat.search(ix.normalize(Q), k)

        exact.how = (f"exact search over the {len(rows)} training items' vectors in {collection}.{space} "
                     f"(cheaper here than the space's {factory} index)")
        return exact

    to_train = np.full(max(index.ntotal, n), -1, np.int64)  # index row -> training row
    to_train[rows] = np.arange(len(rows))
    selector = None if len(rows) == n else faiss.IDSelectorBatch(rows)  # built once, used by every search

    def served(Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, found = ix.search(index, Q, k, limit=n, selector=selector, factory=factory, param=param)
        return scores, np.where(found >= 0, to_train[np.maximum(found, 0)], -1)

    served.how = f"the index of {collection}.{space} ({factory})" + (
        "" if len(rows) == n else ", restricted to the training items")
    return served


def gpu_exact_search(store: Any, collection: str, space: str, q: np.ndarray, k: int) -> list[tuple]:
    """Exact cosine top-k on the GPU: the normalised vectors stay on the device (fp32, so the ranking is the exact
    one), one matmul + topk."""
    import torch

    def upload() -> tuple[Any, np.ndarray]:
        ids, X = store.embeddings(collection, space)
        dev = torch.device(store.settings.device)
        return torch.as_tensor(ix.normalize(X)).to(dev, torch.float32), np.asarray(ids, dtype=object)

    M, ids = store.cached(("gpu", collection, space), store.space(collection, space)["rows"], upload)
    if len(ids) == 0:
        return []
    qt = torch.as_tensor(ix.normalize(q)).to(M.device, M.dtype)
    scores, top = torch.topk((qt @ M.T).float(), min(k, len(ids)), dim=1)
    return [(str(ids[r]), float(s)) for r, s in zip(top[0].tolist(), scores[0].tolist())]


def items_by_id(store: Any, collection: str, ids: list[str]) -> dict[str, dict]:
    """Item rows (all metadata, no content hash) for these ids: found through the collection's key table and read
    from the shards they are in, so a search reads a few row groups, not every item."""
    return item_rows(store, collection, ids)
