"""Heads: scikit-learn classifiers trained on a space's cached embeddings, saved without pickle.

A head's folder holds ``head.json`` (model, parameters, label set, metrics, the space fingerprint it was trained on)
and its learned arrays as ``.npy`` files loaded with ``allow_pickle=False``. Loading rebuilds the estimator from them.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from .errors import InputError, LabelError, NotFoundError, SpaceMismatchError
from .manifest import now, write_atomic
from .storage import check_name, read_shards, write_shard

MODELS = ("logreg", "knn", "centroid")


# ------------------------------------------------------------------------------------------------- estimators
def make_estimator(model: str, params: dict[str, Any], n_train: int) -> Any:
    if model == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(**{"max_iter": 1000, **params})
    if model == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(**{"n_neighbors": min(10, n_train), "metric": "cosine", "weights": "distance",
                                       **params})
    if model == "centroid":
        from sklearn.neighbors import NearestCentroid

        return NearestCentroid(**params)
    raise InputError(f"unknown head model {model!r}; choose one of: {', '.join(MODELS)}")


def estimator_arrays(model: str, est: Any) -> dict[str, np.ndarray]:
    if model == "logreg":
        return {"coef": est.coef_, "intercept": est.intercept_}
    if model == "knn":
        return {"X": est._fit_X, "y": est._y}
    return {"centroids": est.centroids_}


def rebuild(model: str, params: dict[str, Any], classes: list[Any], arrays: dict[str, np.ndarray]) -> Any:
    est = make_estimator(model, params, n_train=len(arrays.get("y", classes)))
    classes_ = np.asarray(classes)
    if model == "knn":  # kNN keeps its training set: refit is exact and instant
        return est.fit(arrays["X"], classes_[arrays["y"]])
    est.classes_ = classes_
    if model == "logreg":
        est.coef_, est.intercept_ = arrays["coef"], arrays["intercept"]
        est.n_features_in_ = arrays["coef"].shape[1]
    else:
        est.centroids_ = arrays["centroids"]
        est.n_features_in_ = arrays["centroids"].shape[1]
    return est


# ------------------------------------------------------------------------------------------------- labels
def _normalize_labels(values: list[Any]) -> list[Any]:
    """One type for all labels: ints stay ints; anything else (or a mix) becomes strings."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
        return [None if v is None else int(v) for v in values]
    return [None if v is None or (isinstance(v, str) and not v.strip()) else str(v) for v in values]


def labelled(store: Any, collection: str, space: str, label_column: str | None,
             labels_file: str | os.PathLike | None, where: str | None = None) -> tuple[np.ndarray, list[Any], list[str], int]:
    """``(X, y, ids, n_unlabelled)`` for the items of ``collection`` that have a label (and match ``where``)."""
    coll = store.collection(collection)
    if labels_file is not None:
        import pyarrow.csv as pcsv

        try:
            t = pcsv.read_csv(labels_file, convert_options=pcsv.ConvertOptions(column_types={"id": pa.string()}))
        except (FileNotFoundError, pa.ArrowInvalid) as e:
            raise InputError(f"cannot read labels file {labels_file}: {str(e).splitlines()[0]}") from None
        if t.column_names[:2] != ["id", "label"] and not {"id", "label"} <= set(t.column_names):
            raise InputError(f"labels file {labels_file} needs columns id,label; it has {', '.join(t.column_names)}")
        by_id = dict(zip(t.column("id").to_pylist(), _normalize_labels(t.column("label").to_pylist())))
    else:
        if label_column is None:
            raise InputError("give a label column (--label-column) or a labels file (--labels id,label CSV)")
        items = read_shards(store.root, coll["item_shards"])
        if items is None or label_column not in items.column_names:
            cols = [] if items is None else [c for c in items.column_names if c not in ("id", "content_hash")]
            raise InputError(f"column {label_column!r} is not in collection {collection!r}; "
                             f"its columns are: {', '.join(cols) or 'none'}")
        by_id = dict(zip(items.column("id").to_pylist(), _normalize_labels(items.column(label_column).to_pylist())))
    ids, X = store.embeddings(collection, space)
    if where is not None:
        chosen = set(r[0] for r in store.sql(f'SELECT id FROM "{collection}" WHERE {where}').fetchall())
        if not chosen:
            raise LabelError(f"no item of {collection!r} matches {where!r}")
        by_id = {k: v for k, v in by_id.items() if k in chosen}
    keep = [i for i, item_id in enumerate(ids) if by_id.get(item_id) is not None]
    y = [by_id[ids[i]] for i in keep]
    return X[keep], y, [ids[i] for i in keep], len(ids) - len(keep)


def matching_space(store: Any, collection: str, fingerprint: str, what: str) -> str:
    spaces = store.collection(collection)["spaces"]
    for name, sp in spaces.items():
        if sp["encoder"]["fingerprint"] == fingerprint:
            return name
    have = "; ".join(f"{n}: {sp['encoder']['spec']} ({sp['encoder']['fingerprint']})" for n, sp in spaces.items())
    raise SpaceMismatchError(f"{what} needs a space embedded with fingerprint {fingerprint}, but collection "
                             f"{collection!r} has {have or 'no spaces'}; ingest it with the same --encoder")


# ------------------------------------------------------------------------------------------------- metrics
def evaluate(est: Any, X: np.ndarray, y: list[Any]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(est.classes_)
    unknown = sorted({v for v in y} - set(labels), key=str)
    if unknown:
        raise LabelError(f"the test set has labels the head never saw in training: {unknown[:10]}; "
                         "add training examples for them or drop those rows")
    pred = est.predict(X)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_label": {str(c): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, c in enumerate(labels)},
        "confusion": {"labels": [_jsonable(c) for c in labels],
                      "matrix": confusion_matrix(y, pred, labels=labels).tolist()},
        "n_test": len(y),
    }


def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


# ------------------------------------------------------------------------------------------------- fit
def fit_head(store: Any, collection: str, label_column: str | None, name: str | None, *, model: str,
             space: str | None, test_collection: str | None, labels: Any, test_size: float, seed: int,
             params: dict[str, Any], train_where: str | None = None, test_where: str | None = None) -> dict[str, Any]:
    name = check_name("head", name or f"{collection}_{label_column or 'labels'}_{model}")
    if model not in MODELS:
        raise InputError(f"unknown head model {model!r}; choose one of: {', '.join(MODELS)}")
    space = store.space_name(collection, space)
    sp = store.space(collection, space)
    X, y, train_ids, unlabelled = labelled(store, collection, space, label_column, labels, train_where)
    if len(y) == 0:
        raise LabelError(f"no item of {collection!r} has a label in {label_column or labels!r}; nothing to train on")
    classes = sorted(set(y), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise LabelError(f"all {len(y)} labelled items have the label {classes[0]!r}; a head needs at least 2 labels")

    if test_collection is not None or test_where is not None:
        test_coll = test_collection or collection
        test_space = matching_space(store, test_coll, sp["encoder"]["fingerprint"], f"head on {collection}.{space}")
        Xte, yte, test_ids, _ = labelled(store, test_coll, test_space, label_column, labels, test_where)
        if not yte:
            raise LabelError(f"no item of test collection {test_coll!r} has a label in {label_column!r}")
        if test_coll == collection and set(test_ids) & set(train_ids):
            raise InputError("the test items overlap the training items; give --train-where too, e.g. "
                             "--train-where \"split = 'train'\" --test-where \"split = 'test'\"")
        Xtr, ytr = X, y
        evaluated_on = f"collection {test_coll}" + (f" where {test_where}" if test_where else "")
    else:
        Xtr, Xte, ytr, yte = holdout_split(X, y, test_size, seed)
        evaluated_on = f"held-out {test_size:g} of {collection} (seed {seed})"

    est = make_estimator(model, params, len(ytr)).fit(Xtr, np.asarray(ytr))
    metrics = evaluate(est, Xte, list(yte))
    record = {
        "name": name, "model": model, "params": params, "classes": [_jsonable(c) for c in est.classes_],
        "n_classes": len(est.classes_), "label_column": label_column, "collection": collection, "space": space,
        "space_fingerprint": sp["encoder"]["fingerprint"], "encoder": sp["encoder"],
        "n_train": len(ytr), "n_unlabelled": unlabelled, "evaluated_on": evaluated_on,
        "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "metrics": metrics,
        "train_data_sha256": _train_hash(train_ids, y), "created": now(),
    }
    return save_head(store, record, estimator_arrays(model, est))


def holdout_split(X: np.ndarray, y: list[Any], test_size: float, seed: int) -> tuple:
    """Stratified split; a label with a single example stays in training (it cannot be both learned and scored)."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise InputError(f"test size must be between 0 and 1, got {test_size}")
    counts: dict[Any, int] = {}
    for v in y:
        counts[v] = counts.get(v, 0) + 1
    single = [i for i, v in enumerate(y) if counts[v] == 1]
    rest = [i for i, v in enumerate(y) if counts[v] > 1]
    if len(rest) < 2:
        raise LabelError(f"only {len(y)} labelled items and no label has two: too few to hold out a test split; "
                         "label more or pass --test-collection")
    y_rest = [y[i] for i in rest]
    n_labels = len(set(y_rest))
    stratify = y_rest if round(len(rest) * test_size) >= n_labels and len(rest) - round(len(rest) * test_size) >= n_labels else None
    tr, te = train_test_split(rest, test_size=test_size, random_state=seed, stratify=stratify)
    tr = sorted(tr + single)
    if len({y[i] for i in tr}) < 2:
        raise LabelError("the training split has a single label; label more items or pass --test-collection")
    return X[tr], X[te], [y[i] for i in tr], [y[i] for i in te]


def _train_hash(ids: list[str], y: list[Any]) -> str:
    h = hashlib.sha256()
    for i, label in sorted(zip(ids, map(str, y))):
        h.update(f"{i}\t{label}\n".encode())
    return h.hexdigest()


def save_head(store: Any, record: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    with store._writing():
        entry = store.manifest["heads"].setdefault(record["name"], {"versions": []})
        version = (entry["versions"][-1]["version"] + 1) if entry["versions"] else 1
        rel = f"heads/{record['name']}/v{version}"
        folder = store.root / rel
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for key, arr in arrays.items():
            np.save(folder / f"{key}.npy", np.ascontiguousarray(arr), allow_pickle=False)
            files[key] = f"{key}.npy"
        record = {**record, "version": version, "path": rel, "arrays": files, "format_version": 1}
        write_atomic(folder / "head.json", (json.dumps(record, indent=1, default=_jsonable) + "\n").encode())
        entry["versions"].append({k: record[k] for k in (
            "version", "path", "model", "collection", "space", "space_fingerprint", "label_column", "n_classes",
            "accuracy", "macro_f1", "evaluated_on", "created")})
        store._commit()
    return record


def load_head(store: Any, name: str | None, version: int | None = None) -> tuple[dict[str, Any], Any]:
    heads = store.manifest["heads"]
    if name is None:
        if not heads:
            raise NotFoundError(f"no heads in {store.root}; train one with `embstore fit`")
        name = max(heads, key=lambda n: heads[n]["versions"][-1]["created"])
    if name not in heads:
        raise NotFoundError(f"no head {name!r} in {store.root} (heads: {', '.join(sorted(heads)) or 'none'})")
    versions = heads[name]["versions"]
    chosen = versions[-1] if version is None else next((v for v in versions if v["version"] == version), None)
    if chosen is None:
        raise NotFoundError(f"head {name!r} has no version {version} (versions: {[v['version'] for v in versions]})")
    folder = store.root / chosen["path"]
    record = json.loads((folder / "head.json").read_text(encoding="utf-8"))
    arrays = {k: np.load(folder / f, allow_pickle=False) for k, f in record["arrays"].items()}
    return record, rebuild(record["model"], record["params"], record["classes"], arrays)


# ------------------------------------------------------------------------------------------------- predict
def _probabilities(est: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(est, "predict_proba") and not type(est).__name__ == "NearestCentroid":
        proba = est.predict_proba(X)
        return est.classes_[proba.argmax(1)], proba.max(1)
    pred = est.predict(X)
    return pred, np.full(len(pred), np.nan)


def predict(store: Any, head: str | None, collection: str | None, *, texts: Sequence[str] | None,
            images: Sequence[Any] | None, version: int | None) -> dict[str, Any]:
    record, est = load_head(store, head, version)
    fp = record["space_fingerprint"]
    if (collection is None) == (texts is None and images is None):
        raise InputError("predict needs a collection, or new inputs (texts or images), not both")
    if collection is None:
        from .encoders import get_encoder

        enc = get_encoder(record["encoder"]["spec"], store.settings.device)
        if enc.fingerprint() != fp:
            raise SpaceMismatchError(f"head {record['name']!r} was trained on fingerprint {fp}; encoder "
                                     f"{record['encoder']['spec']!r} now loads as {enc.fingerprint()}")
        if texts is not None:
            X = enc.encode_text(list(texts))
            inputs = list(texts)
        else:
            X = enc.encode_images(list(images or []))
            inputs = [str(i) for i in images or []]
        label, conf = _probabilities(est, X)
        rows = [{"input": i, "label": _jsonable(l), "confidence": None if np.isnan(c) else float(c)}
                for i, l, c in zip(inputs, label, conf)]
        return {"head": record["name"], "version": record["version"], "rows": rows}

    space = matching_space(store, collection, fp, f"head {record['name']!r}")
    ids, X = store.embeddings(collection, space)
    label, conf = _probabilities(est, X)
    table = pa.table({"id": pa.array(ids, pa.string()), "head": pa.array([record["name"]] * len(ids), pa.string()),
                      "version": pa.array([record["version"]] * len(ids), pa.int32()),
                      "label": pa.array([_jsonable(v) for v in label]).cast(pa.string()),
                      "confidence": pa.array(conf, pa.float32())})
    with store._writing():
        coll = store.collection(collection)
        rel = f"collections/{collection}/predictions/{record['name']}/part-{store._new_part():06d}.parquet"
        shard = write_shard(store.root, rel, table)
        old = coll["predictions"].get(record["name"])
        coll["predictions"][record["name"]] = {"version": record["version"], "shards": [shard], "rows": len(ids),
                                               "created": now()}
        store._commit()
    if old:  # replaced: the old shards are no longer listed, so remove them
        for s in old["shards"]:
            if s["file"] != rel:
                Path(store.root / s["file"]).unlink(missing_ok=True)
    counts: dict[str, int] = {}
    for v in table.column("label").to_pylist():
        counts[v] = counts.get(v, 0) + 1
    return {"head": record["name"], "version": record["version"], "collection": collection, "space": space,
            "predicted": len(ids), "labels": dict(sorted(counts.items()))}
