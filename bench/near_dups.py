"""Near-duplicates on TREC: are the train set's exact repeats all found by `embstore duplicates` at the default
threshold, and how many test questions have a near-duplicate in train (what `fit` warns about as leakage)?

    python bench/near_dups.py [--csv ../shared/datasets/trec/train.csv] [--stores /work/bench-stores]

"Exact repeats" is counted two ways from the CSV itself: texts that occur more than once, and the extra copies
(occurrences beyond the first). Ingest keeps one item per distinct row (id = hash of the row), so rows repeated
with the same label are one item in the prebuilt `trec_train` collection; to check that `duplicates` finds every
repeat, every CSV row is put in a scratch store of its own (a temporary folder) as an item of its own, with the
prebuilt store's vector for its text (`ingest_vectors`: nothing is re-embedded), and `duplicates` runs there at its
default threshold. The prebuilt store is only read. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_STORES, SHARED, vectors_by  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", type=Path, default=SHARED / "datasets" / "trec" / "train.csv")
    p.add_argument("--stores", type=Path, default=BENCH_STORES)
    a = p.parse_args()

    from embstore import Store
    from embstore.duplicates import THRESHOLD, leakage

    rows = list(csv.DictReader(open(a.csv, encoding="utf-8")))
    texts = Counter(r["text"] for r in rows)
    pairs = Counter((r["text"], r["label"]) for r in rows)
    repeated = {t for t, c in texts.items() if c > 1}
    relabelled = {t for t in repeated if len({r["label"] for r in rows if r["text"] == t}) > 1}
    out = {"rows": len(rows), "distinct_texts": len(texts), "distinct_rows": len(pairs),
           "texts_occurring_more_than_once": len(repeated), "extra_copies_of_a_text": len(rows) - len(texts),
           "extra_copies_of_a_row": len(rows) - len(pairs), "repeated_texts_with_two_labels": len(relabelled),
           "threshold": THRESHOLD}

    prebuilt = Store.open(a.stores / "trec.store", create=False)
    vec = vectors_by(prebuilt, "trec_train", "text")
    on_items = prebuilt.duplicates("trec_train")  # the collection as ingested: one item per distinct row
    out["prebuilt_collection"] = {"items": on_items["items"], "groups": on_items["groups_found"],
                                  "items_in_groups": on_items["items_in_groups"]}

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Store.open(Path(tmp) / "rows.store")
        X = np.stack([vec[r["text"]] for r in rows]).astype(np.float32)
        scratch.ingest_vectors("rows", X, [f"row{k}" for k in range(len(rows))],
                               metadata={"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]},
                               name="minilm_copy")
        found = scratch.duplicates("rows")
    group_of = {i: g for g, grp in enumerate(found["groups"]) for i in grp["ids"]}
    missed, merged_with_other = [], 0
    for t in repeated:
        members = {group_of.get(f"row{k}") for k, r in enumerate(rows) if r["text"] == t}
        if None in members or len(members) > 1:
            missed.append(t)
    for grp in found["groups"]:
        if len({rows[int(i[3:])]["text"] for i in grp["ids"]}) > 1:
            merged_with_other += 1  # a group that also holds a near-copy with other words
    out["every_row_as_an_item"] = {"items": found["items"], "groups": found["groups_found"],
                                   "items_in_groups": found["items_in_groups"],
                                   "repeated_texts_found_whole": len(repeated) - len(missed),
                                   "repeated_texts_missed": sorted(missed),
                                   "groups_with_more_than_one_distinct_text": merged_with_other}

    test_ids, Xte = prebuilt.embeddings("trec_test")
    train_ids, Xtr = prebuilt.embeddings("trec_train")
    out["test_vs_train"] = {f"{t}": leakage(Xtr, Xte, threshold=t)["near_duplicates"]
                            for t in (THRESHOLD, 0.97, 0.95, 0.9)}
    from embstore.index import normalize

    S = normalize(Xte) @ normalize(Xtr).T
    best = S.argmax(1)
    text_te = dict(prebuilt.sql("SELECT id, text FROM trec_test").fetchall())
    text_tr = dict(prebuilt.sql("SELECT id, text FROM trec_train").fetchall())
    hits = [k for k in np.argsort(-S.max(1)) if S[k, best[k]] >= THRESHOLD - 1e-6]
    out["test_near_duplicates_at_threshold"] = [
        {"test": text_te[test_ids[k]], "train": text_tr[train_ids[best[k]]], "cosine": round(float(S[k, best[k]]), 4)}
        for k in hits]
    out["test_exact_text_in_train"] = len(set(text_te.values()) & set(texts))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
