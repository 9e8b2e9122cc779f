"""Shared by the bench scripts: where the reference lives, running it, and comparing vectors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"  # ../shared on developer machines and in CI, not in a user's clone


def base_parser(doc: str, data: Path):
    import argparse

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=data, help=f"input file (default: {data})")
    p.add_argument("--stock", type=Path, default=SHARED / "bench" / "stock.py", help="the stock reference script")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (both sides use it)")
    p.add_argument("--batch-size", type=int, default=64, help="both sides (default 64)")
    p.add_argument("--repeat", type=int, default=1, help="runs per side, alternating; the fastest of each counts")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out", help="scratch folder (default bench/out)")
    return p


def workdir(out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=out))


def run_stock(stock: Path, args: list[str]) -> dict:
    """One run of the stock reference in its own process; its JSON line."""
    if not stock.exists():
        sys.exit(f"stock reference {stock} not found; pass --stock PATH")
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    out = subprocess.run([sys.executable, str(stock), *args], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def vectors_by(store, collection: str, key: str) -> dict:
    """Map an item column's value (the text, the image path) to the item's vector in the collection's one space."""
    ids, X = store.embeddings(collection)
    row = {i: n for n, i in enumerate(ids)}
    pairs = store.sql(f'SELECT id, "{key}" FROM "{collection}"').fetchall()
    return {value: X[row[item_id]] for item_id, value in pairs}


def throughput_report(bench: str, a, device: str, rows: int, seconds: float, rep, best: dict, cos: np.ndarray,
                      **extra) -> None:
    """The one JSON line of an embedding benchmark: both sides' speed, their ratio, and the vectors' cosine."""
    report({
        "bench": bench, "data": str(a.data), "device": device, "batch_size": a.batch_size, **extra,
        "repeat": a.repeat, "rows": rows,
        "embstore": {"seconds": round(seconds, 3), "embedded": rep.embedded, "per_s": round(rep.read / seconds, 1),
                     "stages": rep.seconds},
        "stock": {"seconds": round(best["seconds"], 3), "per_s": round(best["per_s"], 1)},
        "ratio_per_s": round((rep.read / seconds) / best["per_s"], 3),
        "cosine_rows": len(cos), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
    })


def report(result: dict, min_cosine: float = 0.999) -> None:
    """Print the one JSON line; exit 1 when embstore's vectors are not the stock library's."""
    result["cosine_ok"] = result["cosine_min"] >= min_cosine
    print(json.dumps(result))
    if not result["cosine_ok"]:
        sys.exit(1)


def cv_sweep(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, folds: int = 3, seed: int = 0) -> list[dict]:
    """Per C of the default grid, on the same stratified folds: the held-out log-loss after temperature scaling (what
    LinearProbe scores C by), its standard error over items, the held-out accuracy, and the test accuracy of a fit on
    all of X (plain logistic regression at that C). A held-out item of a label missing from its fold's training
    scores as impossible (log-loss clipped at 1e-12)."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import LabelEncoder

    from embstore.estimators import DEFAULT_CS, LinearProbe, _fit_temperature, _softmax

    t = LabelEncoder().fit(y).transform(y)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, t))
    out = []
    for C in DEFAULT_CS:
        Z = np.full((len(X), t.max() + 1), -1e9)
        for tr, te in splits:
            m = LinearProbe(C=C, tol=1e-5, calibrate=False).fit(X[tr], t[tr])
            Z[np.ix_(te, m.classes_)] = X[te] @ m.coef_.T + m.intercept_
        P = _softmax(Z / _fit_temperature(Z, t, False))
        per_item = -np.log(np.clip(P[np.arange(len(t)), t], 1e-12, 1))
        full = LinearProbe(C=C, tol=1e-5, calibrate=False).fit(X, y)  # accuracy only: no temperature needed
        out.append({"C": C, "cv_log_loss": float(per_item.mean()), "cv_se": float(per_item.std() / np.sqrt(len(t))),
                    "cv_accuracy": float((Z.argmax(1) == t).mean()),
                    "test_accuracy": float((full.predict(Xt) == yt).mean())})
    return out


def image_files(data: Path, limit: int | None, work: Path) -> tuple[list[str], Path]:
    """The first ``limit`` rows (all when 0/None) of an image labels CSV (a ``path`` column relative to its folder),
    written to ``work/input.csv`` with absolute paths, so both sides read the same files: (paths, that CSV)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(data)
    if limit:
        table = table.slice(0, limit)
    root = Path(data).resolve().parent
    paths = [str(root / p) for p in table.column("path").to_pylist()]
    source = work / "input.csv"
    pcsv.write_csv(table.set_column(table.column_names.index("path"), "path", pa.array(paths)), source)
    return paths, source


BENCH_STORES = Path(os.environ.get("EMBSTORE_BENCH_STORES", "/work/bench-stores"))  # prebuilt (bench-stores/build.sh)
TASKS = {  # name: (store, train collection, test collection or None, label column, split column or None)
    "trec": ("trec.store", "trec_train", "trec_test", "label", None),
    "trec_fine": ("trec.store", "trec_fine_train", "trec_fine_test", "label", None),
    "mnist": ("mnist.store", "mnist", None, "label", "split"),
    "digits": ("digits.store", "digits", None, "folder", None),
}


def task_data(name: str, stores: Path = BENCH_STORES) -> dict:
    """A labelled task's vectors, read through the Store API from a prebuilt store (opened without writing): train
    and test vectors, their labels (strings) and ids. MNIST splits by its ``split`` column; digits, which has none,
    by a stratified 0.3 test split (seed 0)."""
    from embstore import Store

    file, train, test, label, split = TASKS[name]
    store = Store.open(stores / file, create=False)

    def xy(collection: str, where: str | None = None):
        ids, X = store.embeddings(collection)
        cols = f'id, "{label}"' + (f', "{split}"' if split else "")
        meta = {r[0]: r[1:] for r in store.sql(f'SELECT {cols} FROM "{collection}"').fetchall()}
        keep = [k for k, i in enumerate(ids) if where is None or meta[i][1] == where]
        return X[keep], np.asarray([str(meta[ids[k]][0]) for k in keep]), [ids[k] for k in keep]

    if test is not None:
        (Xtr, ytr, itr), (Xte, yte, ite) = xy(train), xy(test)
    elif split is not None:
        (Xtr, ytr, itr), (Xte, yte, ite) = xy(train, "train"), xy(train, "test")
    else:
        from sklearn.model_selection import train_test_split

        X, y, ids = xy(train)
        a, b = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=0)
        (Xtr, ytr, itr), (Xte, yte, ite) = (X[a], y[a], [ids[k] for k in a]), (X[b], y[b], [ids[k] for k in b])
    return {"name": name, "store": store, "collection": train, "label_column": label, "Xtr": Xtr, "ytr": ytr,
            "train_ids": itr, "Xte": Xte, "yte": yte, "test_ids": ite}
