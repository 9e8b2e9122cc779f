"""Similarity search over a space: by text, image, an item's id, or a raw vector; results carry item metadata."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import index as ix
from .errors import InputError, NotFoundError


def query_vector(store: Any, collection: str, space: str, *, query: str | None, image: Any, item_id: str | None,
                 vector: Sequence[float] | np.ndarray | None) -> np.ndarray:
    given = [name for name, v in (("query", query), ("image", image), ("item_id", item_id), ("vector", vector))
             if v is not None]
    if len(given) != 1:
        raise InputError("search needs exactly one of: a text query, --image FILE, --like ID or a vector"
                         + (f" (got {', '.join(given)})" if given else ""))
    sp = store.space(collection, space)
    dim = sp["encoder"]["dim"]
    if vector is not None:
        v = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if v.shape[1] != dim:
            raise InputError(f"query vector has {v.shape[1]} dimensions; space {space!r} has {dim}")
        return v
    if item_id is not None:
        ids, vectors = store.embeddings(collection, space)
        try:
            return vectors[ids.index(str(item_id))][None]
        except ValueError:
            raise NotFoundError(f"no item {item_id!r} in space {space!r} of {collection!r}") from None
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
    from .encoders import load_image

    try:
        img = load_image(image)
    except FileNotFoundError:
        raise InputError(f"image {image} does not exist") from None
    except Exception as e:  # PIL's many decode errors
        raise InputError(f"cannot read image {image}: {e}") from None
    return enc.encode_preprocessed([enc.preprocess(img)])


def run_search(store: Any, collection: str, *, query: str | None = None, image: Any = None,
               item_id: str | None = None, vector: Any = None, k: int = 10, space: str | None = None) -> list[dict]:
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    space = store.space_name(collection, space)
    q = query_vector(store, collection, space, query=query, image=image, item_id=item_id, vector=vector)
    index, ids = store._sync_index(collection, space)
    if index.ntotal == 0:
        return []
    scores, rows = ix.search(index, q, k, limit=len(ids))
    hits = [(str(ids[r]), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]
    meta = items_by_id(store, collection, [h[0] for h in hits])
    return [{"rank": n + 1, "id": i, "score": round(s, 6), **meta.get(i, {})} for n, (i, s) in enumerate(hits)]


def items_by_id(store: Any, collection: str, ids: list[str]) -> dict[str, dict]:
    """Item rows (all metadata, no content hash) for these ids."""
    if not ids:
        return {}
    import pyarrow.dataset as ds

    shards = store.collection(collection)["item_shards"]
    t = ds.dataset([str(store.root / s["file"]) for s in shards], format="parquet").to_table(
        filter=ds.field("id").isin(ids))
    rows = t.drop_columns(["content_hash"]).to_pylist()
    return {r.pop("id"): r for r in rows}
