"""Shared helpers for the test suite: small corpora and images written into pytest's tmp folders.

Fast tests use the deterministic ``hash:64`` encoder (a signed bag of words for text, a projected 8x8 thumbnail for
images) on real temporary stores with real DuckDB, FAISS and scikit-learn. Nothing here reads ``../shared``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pytest

import browser as browser_fixtures

browser, page = browser_fixtures.browser, browser_fixtures.page  # fixtures: a real headless Chromium for page tests

HASH = "hash:64"

# A tiny open_clip configuration (random weights): fast on a CPU, the same code paths as a real CLIP
TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def tiny_clip_config(folder: Path) -> Path:
    """TINY_CLIP written as ``folder/tiny_clip.json`` (open_clip names the model after the file: tiny_clip)."""
    path = Path(folder) / "tiny_clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    return path

# Three topics with disjoint vocabularies, 12 texts each, so the hash encoder (a bag of words) separates them well.
VOCAB: dict[str, list[str]] = {
    "animals": ["cat", "dog", "horse", "cow", "sheep", "goat", "mouse", "barn"],
    "finance": ["stock", "bond", "bank", "shares", "rates", "yields", "investors", "earnings"],
    "sports": ["goal", "match", "team", "striker", "tennis", "race", "coach", "referee"],
}
TOPICS: dict[str, list[str]] = {
    topic: [f"the {w[i % 8]} and the {w[(i + 1 + i // 8) % 8]} near the {w[(i + 3 + 2 * (i // 8)) % 8]} {w[(i + 4) % 8]}"
            for i in range(12)]
    for topic, w in VOCAB.items()
}


def topic_rows() -> list[dict[str, Any]]:
    """36 rows: text, label (the topic) and a deterministic split (every 4th row of a topic is test)."""
    rows = []
    for topic, texts in TOPICS.items():
        for i, text in enumerate(texts):
            rows.append({"text": text, "label": topic, "split": "test" if i % 4 == 0 else "train"})
    return rows


def write_csv(path: Path, rows: Sequence[dict[str, Any]], delimiter: str = ",",
              columns: Sequence[str] | None = None) -> Path:
    columns = list(columns or rows[0].keys())
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, columns, delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    return path


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def make_png(path: Path, pattern: int, size: int = 24) -> Path:
    """A small RGB PNG whose 8x8 thumbnail differs per ``pattern`` (so the hash encoder tells them apart)."""
    from PIL import Image

    rng = np.random.default_rng(pattern)
    coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse, "RGB").resize((size, size), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def store_contents(store: Any, collection: str = "docs") -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """What a store holds (on a fresh snapshot): items (sorted by id, as rows), vectors by id (one per id, checked),
    the space's row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store.refresh()
    coll = store.manifest["collections"][collection]
    items = pa.concat_tables([pq.read_table(store.root / s["file"]) for s in coll["item_shards"]],
                             promote_options="permissive")
    items = sorted(items.to_pylist(), key=lambda r: r["id"])
    ids, vectors = store.embeddings(collection)
    assert len(set(ids)) == len(ids)  # one vector per id
    return items, dict(zip(ids, vectors)), next(iter(coll["spaces"].values()))["rows"]


def committed(root: Path, collection: str = "docs") -> int:
    """Rows of ``collection`` the store's manifest names (0 before the store or the collection is made)."""
    from embstore.manifest import read_manifest

    if not (root / "embstore.json").exists():
        return 0  # (killed while it made the store)
    coll = read_manifest(root)["collections"].get(collection)
    return sum(s["rows"] for s in coll["item_shards"]) if coll else 0


def quarantine_lines(store_root: Path, rel: str) -> list[dict[str, Any]]:
    # lines end at "\n" only (str.splitlines would also split a text holding U+2028)
    return [json.loads(line) for line in (store_root / rel).read_text(encoding="utf-8").split("\n") if line]


@pytest.fixture()
def store(tmp_path):
    from embstore import Store

    return Store.open(tmp_path / "store")


@pytest.fixture()
def topics_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "topics.csv", topic_rows())


@pytest.fixture(scope="module")
def topic_store(tmp_path_factory):
    """A store shared by read-only tests of a module: collection ``docs`` (36 topic rows, hash:64) with a logreg head
    ``topic`` and its predictions. Tests must not change it."""
    from embstore import Store

    tmp = tmp_path_factory.mktemp("topic_store")
    src = write_csv(tmp / "topics.csv", topic_rows())
    s = Store.open(tmp / "store")
    s.ingest(src, "docs", encoder=HASH)
    s.fit("docs", "label", "topic", model="logreg", params={"C": 10.0})  # a fixed C: the CV over C is exercised in test_heads
    s.predict("topic", "docs")
    return s
