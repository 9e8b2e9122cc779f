"""Ids and content hashes.

An item's id is the user's id column when there is one, else a hash of the whole row (column names and values), so
re-ingesting a file adds nothing while two rows with the same text but different labels both stay. The content hash
(text, or an image's bytes) decides which embeddings must be computed.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa


def content_hash(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def row_ids(table: pa.Table, exclude: tuple[str, ...] = ()) -> list[str]:
    names = sorted(n for n in table.column_names if n not in exclude)
    cols = [table.column(n).to_pylist() for n in names]
    out = []
    for values in zip(*cols):
        payload = json.dumps(dict(zip(names, values)), sort_keys=True, default=_json_default, ensure_ascii=False)
        out.append(hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32])
    return out if cols else [hashlib.sha256(b"{}").hexdigest()[:32]] * table.num_rows


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
