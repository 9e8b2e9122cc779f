"""Export a collection's embeddings and labels as .npy files, for scikit-learn or any other tool.

    python examples/export_npy.py STORE COLLECTION LABEL_COLUMN OUT_PREFIX [--where SQL]
    python examples/export_npy.py STORE COLLECTION --labels ID_LABEL.csv OUT_PREFIX

writes OUT_PREFIX.X.npy (float32, n x dim) and OUT_PREFIX.y.npy (labels, same order); items without a label are left
out. The labels come from a column of the collection, or from a CSV of id,label (as `embstore fit --labels` takes).
--where keeps only the items matching a SQL predicate over the collection's columns, e.g. "split = 'test'".
"""
from __future__ import annotations

import argparse

import numpy as np

from embstore import Store


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store")
    p.add_argument("collection")
    p.add_argument("label_column", nargs="?")
    p.add_argument("out_prefix")
    p.add_argument("--labels", metavar="CSV", help="id,label CSV instead of a label column")
    p.add_argument("--where", default="true")
    a = p.parse_args()
    if (a.label_column is None) == (a.labels is None):
        p.error("give a LABEL_COLUMN or --labels CSV (one of them)")
    store = Store.open(a.store, create=False)
    ids, X = store.embeddings(a.collection)
    if a.labels:
        source = f"(SELECT c.id, l.label FROM \"{a.collection}\" c JOIN read_csv('{a.labels}', all_varchar=true) l " \
                 f"ON c.id = l.id WHERE ({a.where}))"
        rows = store.sql(f"SELECT id, label FROM {source} WHERE label IS NOT NULL").fetchall()
    else:
        rows = store.sql(f'SELECT id, "{a.label_column}" FROM "{a.collection}" '
                         f'WHERE ({a.where}) AND "{a.label_column}" IS NOT NULL').fetchall()
    label = dict(rows)
    keep = [i for i, item_id in enumerate(ids) if item_id in label]
    y = np.asarray([label[ids[i]] for i in keep])
    np.save(f"{a.out_prefix}.X.npy", X[keep])
    np.save(f"{a.out_prefix}.y.npy", y, allow_pickle=False)
    print(f"{a.collection}: {len(keep)} of {len(ids)} items -> {a.out_prefix}.X.npy {X[keep].shape}, "
          f"{a.out_prefix}.y.npy ({len(set(y.tolist()))} labels)")


if __name__ == "__main__":
    main()
