"""Richer frozen features (issue 13, point 5): the plain space against a multi-layer space (``?layers=all``) and, for
images, a flip-averaged space (``?flip``), on MNIST, scikit-learn's digits and TREC (coarse and fine), in one run.

Each dataset's store must already hold the plain space (``STORES/{mnist,digits,trec}.store``, as
``/work/bench-stores/build.sh`` makes them); the run ingests the other spaces into the same collections (so work on
a copy), then for every space:

- ``fit``: embstore's logreg head (C by cross-validation), scored on the test split, with the exact McNemar test
  against the plain space's head on the same test items;
- ``few-shot``: ``Store.eval`` (MTEB's protocol: LogisticRegression(max_iter=100)) at 1, 10 and 100 per label, 5 runs;
- ``blocks``: from the ``layers=all`` vectors, each subset of blocks (sliced and renormalised: exactly what that
  ``layers=`` option would store) under the same logreg estimator, so one ingest shows which layers help.

    python bench/rich_features.py --stores /tmp/copies --source-digits /work/bench-stores/digits_png
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

IMAGE_SPECS = {"plain": "efficientnet-lite0", "layers": "efficientnet-lite0?layers=all", "flip": "efficientnet-lite0?flip"}
TEXT_SPECS = {"plain": "minilm", "layers": "minilm?layers=all"}


def tasks(a: argparse.Namespace) -> list[dict]:
    mnist = SHARED / "datasets" / "mnist" / "labels.csv"
    trec = SHARED / "datasets" / "trec"
    return [
        {"task": "mnist", "store": "mnist.store", "specs": IMAGE_SPECS, "label": "label",
         "ingest": [(mnist, "mnist")], "fit": {"collection": "mnist", "test_where": "split = 'test'"}},
        {"task": "digits", "store": "digits.store", "specs": IMAGE_SPECS, "label": "folder",
         "ingest": [(a.source_digits, "digits")], "fit": {"collection": "digits", "test_size": 0.2, "seed": 0}},
        {"task": "trec_coarse", "store": "trec.store", "specs": TEXT_SPECS, "label": "label",
         "ingest": [(trec / "train.csv", "trec_train"), (trec / "test.csv", "trec_test")],
         "fit": {"collection": "trec_train", "test_collection": "trec_test"}},
        {"task": "trec_fine", "store": "trec.store", "specs": TEXT_SPECS, "label": "label",
         "ingest": [(trec / "train_fine.csv", "trec_fine_train"), (trec / "test_fine.csv", "trec_fine_test")],
         "fit": {"collection": "trec_fine_train", "test_collection": "trec_fine_test"}},
    ]


def space_of(store, collection: str, spec: str) -> str:
    return next(n for n, sp in store.collection(collection)["spaces"].items() if sp["encoder"]["spec"] == spec)


def ingest_spaces(store, task: dict, log) -> None:
    for variant, spec in task["specs"].items():
        for source, collection in task["ingest"]:
            if any(sp["encoder"]["spec"] == spec for sp in store.collection(collection)["spaces"].values()):
                continue
            t = time.perf_counter()
            r = store.ingest(source, collection, encoder=spec)
            log({"task": task["task"], "step": "ingest", "variant": variant, "spec": spec, "collection": collection,
                 "space": r.space, "embedded": r.embedded, "seconds": round(time.perf_counter() - t, 1),
                 "runtime": store.encoder_for(collection, r.space).runtime_in_use()})


def test_right(store, head: str) -> tuple[np.ndarray, str]:
    version = store.manifest["heads"][head]["versions"][-1]
    folder = store.root / version["path"]
    record = json.loads((folder / "head.json").read_text())
    return np.load(folder / record["test_outcomes"]), record["test_data_sha256"]


def fit_rows(store, task: dict, log) -> None:
    from embstore.evaluation import paired_comparison

    plain = None
    fit = dict(task["fit"])
    for variant, spec in task["specs"].items():
        space = space_of(store, fit["collection"], spec)
        head = f"{task['task']}_{variant}"
        t = time.perf_counter()
        rec = store.fit(label_column=task["label"], name=head, space=space, **fit)
        right, sha = test_right(store, head)
        row = {"task": task["task"], "step": "fit", "variant": variant, "spec": spec, "space": space,
               "dim": rec["encoder"]["dim"], "n_train": rec["n_train"], "n_test": int(len(right)),
               "accuracy": rec["accuracy"], "accuracy_ci95": rec["metrics"].get("accuracy_ci95"),
               "macro_f1": rec["macro_f1"], "C": rec["learned"].get("C_"), "seconds": round(time.perf_counter() - t, 1)}
        if plain is None:
            plain = (right, sha)
        elif plain[1] == sha:
            row["vs_plain"] = paired_comparison(right.astype(bool), plain[0].astype(bool))
        log(row)
        ev = store.eval(fit["collection"], task["label"], space=space, samples=(1, 10, 100),
                        repeats=5, **{k: v for k, v in fit.items() if k != "collection" and k != "seed"})
        for r in ev["results"]:
            log({"task": task["task"], "step": "few-shot", "variant": variant, "space": space,
                 "per_label": r["samples_per_label"], "runs": r["runs"], "accuracy": r["accuracy_mean"],
                 "accuracy_std": r["accuracy_std"], "macro_f1": r["macro_f1_mean"]})


def block_rows(store, task: dict, log) -> None:
    """Every contiguous run of blocks ending at the last one (last1 ... all), and all but the last, from the
    ``layers=all`` vectors: the same estimator as the logreg head, same split."""
    from embstore.estimators import LinearProbe

    fit = task["fit"]
    coll = fit["collection"]
    space = space_of(store, coll, task["specs"]["layers"])
    dims = store.space(coll, space)["encoder"]["config"]["block_dims"]
    Xtr, ytr, Xte, yte = split(store, task, space)
    bounds = np.cumsum([0, *dims])
    k = len(dims)
    subsets = {f"last{n}": list(range(k - n, k)) for n in range(1, k + 1)} | {"all_but_last": list(range(k - 1))}
    for variant, spec in task["specs"].items():  # the spaces' whole vectors under the same estimator and split
        if variant != "layers":
            t = time.perf_counter()
            Vtr, vtr, Vte, vte = split(store, task, space_of(store, coll, spec))
            est = LinearProbe(C="auto").fit(Vtr, vtr)
            log({"task": task["task"], "step": "blocks", "subset": variant, "dim": int(Vtr.shape[1]),
                 "accuracy": round(float((est.predict(Vte) == vte).mean()), 4), "C": float(est.C_),
                 "seconds": round(time.perf_counter() - t, 1)})
    for name, blocks in subsets.items():
        cols = np.concatenate([np.arange(bounds[b], bounds[b + 1]) for b in blocks])
        # stored: unit blocks * sqrt(D / k); the subset as its own layers= option stores it: * sqrt(D' / k')
        scale = np.sqrt(len(cols) / len(blocks)) / np.sqrt(bounds[-1] / k)
        t = time.perf_counter()
        est = LinearProbe(C="auto").fit(Xtr[:, cols] * scale, ytr)
        acc = float((est.predict(Xte[:, cols] * scale) == yte).mean())
        log({"task": task["task"], "step": "blocks", "subset": name, "blocks": blocks, "dim": int(len(cols)),
             "accuracy": round(acc, 4), "C": float(est.C_), "seconds": round(time.perf_counter() - t, 1)})


def split(store, task: dict, space: str):
    """Train and test arrays of a space, as the fit above splits them."""
    from sklearn.model_selection import train_test_split

    fit, label = task["fit"], task["label"]

    def labelled(collection: str, where: str | None = None):
        ids, X = store.embeddings(collection, space)
        q = f'SELECT id, CAST("{label}" AS VARCHAR) FROM "{collection}"' + (f" WHERE {where}" if where else "")
        lab = dict(store.sql(q).fetchall())
        keep = [i for i, x in enumerate(ids) if x in lab]
        return X[keep], np.array([lab[ids[i]] for i in keep])

    if "test_collection" in fit:
        return (*labelled(fit["collection"]), *labelled(fit["test_collection"]))
    if "test_where" in fit:
        return (*labelled(fit["collection"], f"NOT ({fit['test_where']})"),
                *labelled(fit["collection"], fit["test_where"]))
    X, y = labelled(fit["collection"])
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=fit["test_size"], random_state=fit["seed"], stratify=y)
    return Xtr, ytr, Xte, yte


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stores", type=Path, required=True, help="folder of mnist.store, digits.store, trec.store "
                   "(copies: the run adds spaces and heads to them)")
    p.add_argument("--source-digits", type=Path, required=True, help="the digits PNG folder the digits store was "
                   "ingested from (its paths are the items' ids)")
    p.add_argument("--tasks", default="mnist,digits,trec_coarse,trec_fine")
    p.add_argument("--log", type=Path, help="JSON lines out (default bench/logs/rich_features_<commit>.jsonl)")
    a = p.parse_args()
    sys.path.insert(0, str(REPO))
    from embstore import Store

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    out = a.log or REPO / "bench" / "logs" / f"rich_features_{commit}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)

    def log(row: dict) -> None:
        row = {**row, "load": round(__import__("os").getloadavg()[0], 1)}
        print(json.dumps(row), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")

    log({"step": "start", "commit": commit, "tasks": a.tasks})
    for task in tasks(a):
        if task["task"] not in a.tasks.split(","):
            continue
        store = Store.open(a.stores / task["store"])
        ingest_spaces(store, task, log)
        fit_rows(store, task, log)
        block_rows(store, task, log)


if __name__ == "__main__":
    main()
