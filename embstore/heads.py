"""Heads: classifiers trained on a space's cached embeddings (fit, save, load, few-shot evaluation), saved without
pickle; the data they train on is labelled.py, applying one is predict.py, choosing one (``--model auto``) auto.py.

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

from .errors import InputError, NotFoundError
from .manifest import now, write_atomic
from .evaluation import evaluate, jsonable as _jsonable, paired_comparison, refuse_unknown_labels
from .labelled import train_test, unlabelled_sample
from .storage import check_name
from . import prototypes
from .prototypes import MODELS as PROTOTYPE_MODELS

MODELS = ("auto", "logreg", "knn", "centroid", "blend", "selftrain", "sklearn-logreg", *PROTOTYPE_MODELS)
LINEAR = ("logreg", "selftrain")  # heads whose learned state is a LinearProbe's (coef, intercept, C, temperature)
SERVED_BY_INDEX = ("knn", "blend")  # heads whose neighbours come from their space's index


# ------------------------------------------------------------------------------------------------- estimators
def make_estimator(model: str, params: dict[str, Any], device: str = "cpu") -> Any:
    from .auto import BlendHead
    from .estimators import CentroidHead, KNNHead, LinearProbe
    from .self_training import SelfTrainingHead

    if model == "auto":
        raise InputError("auto is a choice among heads, made by fit; the head it saves is the one it chose")
    if model == "sklearn-logreg":
        from sklearn.linear_model import LogisticRegression

        cls, defaults = LogisticRegression, {"max_iter": 1000}
    elif model in PROTOTYPE_MODELS:
        cls, defaults = prototypes.estimator_class(model), {}
        params = prototypes.split_params(params)[0]
    elif model in MODELS:
        cls = {"logreg": LinearProbe, "selftrain": SelfTrainingHead, "knn": KNNHead, "centroid": CentroidHead,
               "blend": BlendHead}[model]
        defaults = {"device": device} if model in (*LINEAR, "blend") else {}
    else:
        raise InputError(f"unknown head model {model!r}; choose one of: {', '.join(MODELS)}")
    valid = sorted(cls().get_params())
    unknown = sorted(set(params) - set(valid))
    if unknown:
        hint = " (class weights work with logreg, selftrain and sklearn-logreg)" if "class_weight" in unknown else ""
        raise InputError(f"{model} has no parameter {', '.join(map(repr, unknown))}{hint}; "
                         f"its parameters: {', '.join(valid)}")
    return cls(**{**defaults, **params})


def learned_state(model: str, est: Any, train_ids: Sequence[str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The fitted estimator as (arrays, scalars): everything ``rebuild`` needs, nothing pickled. A kNN head served
    from its space's index keeps its training items' ids (``train_ids``) instead of a copy of their vectors."""
    if model in PROTOTYPE_MODELS:
        return prototypes.state_of(est)
    if model == "blend":
        from .auto import blend_state

        return blend_state(est, train_ids)
    if model in (*LINEAR, "sklearn-logreg"):
        scalars = {"C_": est.C_, "multilabel_": bool(est.multilabel_), "temperature_": est.temperature_} \
            if model in LINEAR else {}
        return {"coef": est.coef_, "intercept": est.intercept_}, scalars
    if model == "knn":
        scalars = {"n_neighbors_": est.n_neighbors_, "sharpness_": est.sharpness_, "smoothing_": est.smoothing_}
        if train_ids is not None:
            return {"ids": np.asarray(list(train_ids), dtype=str), "y": est.fit_y_}, scalars
        return {"X": est.fit_X_, "y": est.fit_y_}, scalars
    return {"centroids": est.centroids_}, {"temperature_": est.temperature_}


def rebuild(model: str, params: dict[str, Any], classes: list[Any], arrays: dict[str, np.ndarray],
            scalars: dict[str, Any], device: str = "cpu") -> Any:
    est = make_estimator(model, params, device)
    if model in PROTOTYPE_MODELS:
        return prototypes.restore(est, classes, arrays, scalars)
    if model == "blend":
        from .auto import blend_restore

        return blend_restore(est, classes, arrays, scalars)
    est.classes_ = np.arange(len(classes)) if scalars.get("multilabel_") else np.asarray(classes)
    for key, value in scalars.items():
        setattr(est, key, value)
    if model in (*LINEAR, "sklearn-logreg"):
        est.coef_, est.intercept_ = arrays["coef"], arrays["intercept"]
    elif model == "knn":  # without "X", the caller serves it from the space's index (load_head)
        est.fit_X_, est.fit_y_, est._index = arrays.get("X"), arrays["y"], None
    else:
        est.centroids_ = arrays["centroids"]
    features = next((arrays[k] for k in ("coef", "centroids", "X") if k in arrays), None)
    if features is not None:
        est.n_features_in_ = features.shape[-1]
    return est


# ------------------------------------------------------------------------------------------------- fit
def fit_head(store: Any, collection: str, label_column: str | None, name: str | None, *, model: str,
             space: str | None, test_collection: str | None, labels: Any, test_size: float, seed: int,
             params: dict[str, Any], train_where: str | None = None, test_where: str | None = None,
             label_sep: str | None = None, plot_dir: str | os.PathLike | None = None,
             progress: Any = None) -> dict[str, Any]:
    """``progress(stage, done, total)``: the labelled vectors read ("vectors"), then the solves of the fit ("fit")."""
    name = check_name("head", name or f"{collection}_{label_column or 'labels'}_{model}".replace("-", "_"))
    if model not in MODELS:
        raise InputError(f"unknown head model {model!r}; choose one of: {', '.join(MODELS)}")
    space = store.space_name(collection, space)
    sp = store.space(collection, space)
    if model == "zeroshot" and label_column is None and labels is None:  # from label names alone
        return _zero_shot_from_names(store, collection, space, name, params)
    data = train_test(store, collection, space, label_column, labels, test_collection=test_collection,
                      train_where=train_where, test_where=test_where, test_size=test_size, seed=seed, sep=label_sep,
                      progress=progress)
    classes, multilabel = data["classes"], data["multilabel"]
    from .search import subset_searcher

    def make_searcher() -> Any:  # a kNN head's neighbours: the space's own index, restricted to the training items
        return subset_searcher(store, collection, space, data["train_ids"], data["Xtr"])

    choice, searcher, prepare, prompts = None, None, None, None
    if model == "auto" and multilabel:
        from .auto import check_params

        check_params(params)
        model, choice = "logreg", {"chosen": "logreg", "how": "multi-label targets: logreg, the one head that "
                                   "takes several labels per item", "scores": {}}
        params = {}
    if model == "auto":
        from .auto import fit_auto

        model, est, searcher, choice = fit_auto(data["Xtr"], data["ytr"], params, store.settings.device,
                                                make_searcher, progress)
        params = {}
    else:
        if multilabel and model != "logreg":
            raise InputError(f"multi-label targets need --model logreg (a sigmoid per label); {model} takes one "
                             "label")
        if model in SERVED_BY_INDEX:
            searcher = make_searcher()
        if model in PROTOTYPE_MODELS:  # label prototypes from the names, embedded by the space's encoder
            prepare, prompts = prototypes.prototype_setter(store, collection, space, model, classes,
                                                           prototypes.split_params(params)[1])
        unlabelled = None
        if model == "selftrain":  # the space's items that are neither training nor test items, a bounded sample
            try:
                cap = make_estimator(model, params, store.settings.device).checked().max_unlabelled
            except ValueError as e:
                raise InputError(f"cannot fit selftrain: {e}") from None
            unlabelled = unlabelled_sample(store, collection, space, [*data["train_ids"], *data["test_ids"]],
                                           int(cap), seed)
        est = _fit_estimator(model, params, classes, multilabel, data["Xtr"], data["ytr"], store.settings.device,
                             searcher, progress, prepare, unlabelled)
    metrics, right = evaluate(est, data["Xte"], list(data["yte"]), classes, multilabel, outcomes=True)
    test_hash = _pairs_hash(data["test_ids"], data["yte"])
    right = right[sorted(range(len(right)), key=data["test_ids"].__getitem__)]  # item by item, in id order
    arrays, scalars = learned_state(model, est, data["train_ids"] if searcher is not None else None)
    record = {
        "name": name, "model": model, "params": params, "classes": [_jsonable(c) for c in classes],
        "n_classes": len(classes), "multilabel": multilabel, "label_sep": label_sep, "label_column": label_column,
        "collection": collection, "space": space, "space_fingerprint": sp["encoder"]["fingerprint"],
        "encoder": sp["encoder"], "learned": {k: _jsonable(v) for k, v in scalars.items()},
        "n_train": len(data["ytr"]), "n_unlabelled": data["unlabelled"],
        **({"labels_file_unmatched": data["labels_unmatched"]} if data["labels_unmatched"] is not None else {}),
        "evaluated_on": data["evaluated_on"],
        "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "metrics": metrics,
        "train_data_sha256": _pairs_hash(data["train_ids"], data["ytr"]), "test_data_sha256": test_hash,
        "created": now(),
    }
    from .duplicates import leakage

    record["leakage"] = leakage(data["Xtr"], data["Xte"])  # test items with a near-copy among the training items
    if model == "selftrain":
        record["self_training"] = {"unlabelled": int(est.n_unlabelled_), "pseudo_labelled": list(est.pseudo_labelled_),
                                   "threshold": float(est.threshold), "weight": float(est.weight)}
    if choice is not None:
        record["auto"] = choice  # which head won, by how much, and every candidate's held-out scores
    selection = _selection(model, est.logreg_ if model == "blend" else est, len(data["ytr"]))
    if selection is not None:
        record["selection"] = selection
    previous = _compare_previous(store, name, test_hash, right)
    if previous is not None:
        record["vs_previous"] = previous
    if searcher is not None:
        record["served_by"] = searcher.how
    if prompts is not None:
        record["prompts"] = prompts
        if model == "zeroshot":
            record["n_train"] = 0  # (the training items were not used: only the label names)
    if plot_dir is not None:
        record["plots"] = _fit_plots(record, data, model, params, store.settings.device, plot_dir, prepare)
    # labels from a file name no column: the items they labelled are kept, so that `suggest` never offers them again
    labelled = None if label_column else sorted(set(data["train_ids"]) | set(data["test_ids"]))
    return save_head(store, record, arrays, right, labelled)


def _zero_shot_from_names(store: Any, collection: str, space: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A zero-shot head with no labelled item: its labels are the ``classes`` param; nothing to score it on."""
    params = dict(params)
    classes = params.pop("classes", None)
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",")]
    classes = list(dict.fromkeys(str(c).strip() for c in classes or [] if str(c).strip()))
    if len(classes) < 2:
        raise InputError("a zero-shot head without labelled items needs the label names: --classes 'cat,dog,...' "
                         "(two at least), or a label column / labels file to take them from")
    sp = store.space(collection, space)
    prepare, prompts = prototypes.prototype_setter(store, collection, space, "zeroshot", classes,
                                                   prototypes.split_params(params)[1])
    est = make_estimator("zeroshot", params, store.settings.device)
    prepare(est)
    arrays, scalars = learned_state("zeroshot", est)
    record = {
        "name": name, "model": "zeroshot", "params": params, "classes": classes, "n_classes": len(classes),
        "multilabel": False, "label_sep": None, "label_column": None, "collection": collection, "space": space,
        "space_fingerprint": sp["encoder"]["fingerprint"], "encoder": sp["encoder"], "learned": scalars,
        "n_train": 0, "n_unlabelled": int(sp["rows"]), "evaluated_on": "nothing: no labelled items (label names only)",
        "accuracy": None, "macro_f1": None, "metrics": {}, "train_data_sha256": _pairs_hash([], []),
        "prompts": prompts, "created": now(),
    }
    return save_head(store, record, arrays)


def _selection(model: str, est: Any, n_train: int) -> dict[str, Any] | None:
    """How the head chose its hyperparameter, with the score of every value tried (what the choice rests on)."""
    scores = getattr(est, "cv_scores_", None)
    if not scores:
        return None
    if model in LINEAR:
        return {"parameter": "C", "chosen": est.C_, "how": est.cv_how_,
                "criterion": "held-out log-loss after temperature scaling (lower is better)",
                "scores": {c: -v for c, v in scores.items()}}
    if model == "knn":
        return {"parameter": "n_neighbors", "chosen": est.n_neighbors_,
                "how": f"leave-one-out over {min(n_train, est.loo_max_rows):,} training items",
                "criterion": "accuracy (higher is better)", "scores": dict(scores)}
    return None


def _compare_previous(store: Any, name: str, test_hash: str, right: np.ndarray) -> dict[str, Any] | None:
    """This fit against the head's latest version, item by item, when both were scored on the same test items with
    the same labels (same ``test_data_sha256``): is the change in accuracy more than the luck of the test set?"""
    versions = store.manifest["heads"].get(name, {}).get("versions", [])
    if not versions:
        return None
    folder = store.root / versions[-1]["path"]
    try:
        prev = json.loads((folder / "head.json").read_text(encoding="utf-8"))
        if prev.get("test_data_sha256") != test_hash or "test_outcomes" not in prev:
            return None
        other = np.load(folder / prev["test_outcomes"], allow_pickle=False)
    except (OSError, ValueError):  # a version written before outcomes were kept, or a file gone: no comparison
        return None
    if other.shape != right.shape:
        return None
    paired = paired_comparison(right, other.astype(bool))
    return {"version": prev["version"], "accuracy": prev["accuracy"], "only_this_right": paired["only_this_right"],
            "only_previous_right": paired["only_other_right"], "p_value": paired["p_value"]}


def _fit_estimator(model: str, params: dict[str, Any], classes: list[Any], multilabel: bool, X: np.ndarray,
                   y: list[Any], device: str, searcher: Any = None, progress: Any = None,
                   prepare: Any = None, unlabelled: np.ndarray | None = None) -> Any:
    est = make_estimator(model, params, device)
    if prepare is not None:  # a prototype head's label prototypes
        prepare(est)
    if searcher is not None:
        est.serve_from(searcher)
    if multilabel:
        from sklearn.preprocessing import MultiLabelBinarizer

        target = MultiLabelBinarizer(classes=classes).fit_transform(y)
    else:
        target = np.asarray(y)
    try:
        if model == "selftrain":  # it counts its solves, round by round
            return est.fit(X, target, unlabelled=unlabelled, progress=progress)
        if progress is not None and model == "logreg":  # the one head with a long fit: it counts its solves
            return est.fit(X, target, progress=progress)
        if progress is not None:
            progress("fit", 0, 1)
        est = est.fit(X, target)
        if progress is not None:
            progress("fit", 1, 1)
        return est
    except ValueError as e:  # scikit-learn's checks on params and labels
        raise InputError(f"cannot fit {model}: {str(e).splitlines()[0]}") from None


def _fit_plots(record: dict[str, Any], data: dict[str, Any], model: str, params: dict[str, Any], device: str,
               plot_dir: str | os.PathLike, prepare: Any = None) -> dict[str, str]:
    """Confusion matrix, and a learning curve: the same head refit on growing shares of the training set."""
    from .evaluation import plot_confusion, plot_learning_curve

    out = Path(plot_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = {}
    title = f"{record['name']} ({model}) on {record['collection']}.{record['space']}"
    if "confusion" in record["metrics"]:
        plots["confusion"] = plot_confusion(record["metrics"], out / f"{record['name']}_confusion.png", title)
    multilabel = record["multilabel"]
    if multilabel:  # scored as subset accuracy: every label of the item right
        from sklearn.preprocessing import MultiLabelBinarizer

        Yte = MultiLabelBinarizer(classes=record["classes"]).fit_transform(data["yte"])
    rng = np.random.default_rng(0)
    n = len(data["ytr"])
    points = []
    for share in (0.05, 0.1, 0.25, 0.5, 1.0):
        rows = np.sort(rng.permutation(n)[: max(int(n * share), 2)])
        ys = [data["ytr"][i] for i in rows]
        if len({v for row in ys for v in row} if multilabel else set(ys)) < 2:
            continue
        if not getattr(make_estimator(model, params, device), "fits_on", lambda n: True)(len(rows)):
            continue  # e.g. a fixed k needs more than k items: this share is too small for it
        est = _fit_estimator(model, params, record["classes"], multilabel, data["Xtr"][rows], ys, device,
                             prepare=prepare)
        if multilabel:
            acc = float((np.asarray(est.predict(data["Xte"])) == Yte).all(1).mean())
        else:
            seen = set(est.classes_.tolist())
            known = [i for i, v in enumerate(data["yte"]) if v in seen]
            acc = float((est.predict(data["Xte"][known]) == np.asarray(data["yte"], dtype=object)[known]).mean())
        points.append({"train_size": len(rows), "accuracy_mean": acc, "accuracy_std": 0.0})
    what = "subset accuracy (every label right)" if multilabel else "accuracy"
    plots["learning_curve"] = plot_learning_curve(points, out / f"{record['name']}_learning_curve.png",
                                                  f"{title}: test {what} by training size")
    return plots


def few_shot_eval(store: Any, collection: str, label_column: str | None, *, space: str | None,
                  test_collection: str | None, labels: Any, train_where: str | None, test_where: str | None,
                  test_size: float, samples: Any, repeats: int, seed: int,
                  plot_dir: str | os.PathLike | None, progress: Any = None) -> dict[str, Any]:
    """``progress(stage, done, total)``: the labelled vectors read ("vectors"), then the protocol's runs ("runs")."""
    from .evaluation import few_shot, parse_samples, plot_learning_curve

    if repeats < 1:
        raise InputError(f"repeats must be at least 1, got {repeats}")
    space = store.space_name(collection, space)
    data = train_test(store, collection, space, label_column, labels, test_collection=test_collection,
                      train_where=train_where, test_where=test_where, test_size=test_size, seed=0, sep=None,
                      progress=progress)
    if data["multilabel"]:
        raise InputError("the few-shot protocol scores one label per item; this label column holds lists")
    refuse_unknown_labels(sorted(set(data["yte"]) - set(data["ytr"]), key=str))  # as fit does: never scored as wrong
    points = few_shot(data["Xtr"], data["ytr"], data["Xte"], data["yte"], parse_samples(samples), repeats, seed,
                      progress=progress)
    out = {"collection": collection, "space": space, "encoder": store.space(collection, space)["encoder"]["spec"],
           "label_column": label_column, "evaluated_on": data["evaluated_on"], "n_train": len(data["ytr"]),
           "n_test": len(data["yte"]), "n_classes": len(data["classes"]), "repeats": repeats, "seed": seed,
           "protocol": "MTEB classification: undersample train to n per label, LogisticRegression(max_iter=100)",
           "results": points}
    enc = store.encoder_for(collection, space)
    if {"text", "image"} <= set(enc.modalities):  # a CLIP space: what the label names alone get, beside the curve
        out["zero_shot"] = prototypes.zero_shot_score(store, collection, space, data["classes"], data["Xte"],
                                                      data["yte"])
    if plot_dir is not None:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
        zs = out.get("zero_shot")
        out["plot"] = plot_learning_curve(points, Path(plot_dir) / f"{collection}_{space}_few_shot.png",
                                          f"few-shot logistic regression on {collection}.{space}",
                                          baseline=("zero-shot (label names)", zs["accuracy"]) if zs else None)
    return out


def _pairs_hash(ids: list[str], y: list[Any]) -> str:
    """sha256 over the sorted (id, label) pairs of a training or test set: equal hashes, the same items and labels."""
    h = hashlib.sha256()
    for i, label in sorted(zip(ids, map(str, y))):
        h.update(f"{i}\t{label}\n".encode())
    return h.hexdigest()


def save_head(store: Any, record: dict[str, Any], arrays: dict[str, np.ndarray],
              test_right: np.ndarray | None = None, labelled_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """Write a head's next version: head.json, its learned arrays, (``test_right``) whether it got each test
    item right, in id order, for the next version's paired comparison, and (``labelled_ids``) the ids of the items
    its labels file labelled."""
    with store.writing():
        entry = store.manifest["heads"].setdefault(record["name"], {"versions": []})
        # numbers are never given twice while the head exists, even after its latest version was deleted
        version = max(entry.get("next_version", 1), (entry["versions"][-1]["version"] + 1) if entry["versions"] else 1)
        while any((store.root / f"heads/{record['name']}/v{version}").glob("*")):
            # a deleted version's files, retired but still kept for readers of older snapshots (a folder a killed
            # fit left is empty once swept: its number is free)
            version += 1
        entry["next_version"] = version + 1
        rel = f"heads/{record['name']}/v{version}"
        folder = store.root / rel
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for key, arr in arrays.items():
            np.save(folder / f"{key}.npy", np.ascontiguousarray(arr), allow_pickle=False)
            files[key] = f"{key}.npy"
        record = {**record, "version": version, "path": rel, "arrays": files, "format_version": 1}
        if test_right is not None:
            np.save(folder / "test_right.npy", np.asarray(test_right, dtype=bool), allow_pickle=False)
            record["test_outcomes"] = "test_right.npy"
        if labelled_ids is not None:
            np.save(folder / "labelled_ids.npy", np.asarray(list(labelled_ids), dtype=str), allow_pickle=False)
            record["labelled_ids"] = "labelled_ids.npy"
        write_atomic(folder / "head.json", (json.dumps(record, indent=1, default=_jsonable) + "\n").encode())
        entry["versions"].append({k: record[k] for k in (
            "version", "path", "model", "collection", "space", "space_fingerprint", "label_column", "n_classes",
            "accuracy", "macro_f1", "evaluated_on", "created")} | {"seq": store.new_part()})
        store.commit()
    return record


def latest_head(heads: dict[str, Any], names: Any) -> str:
    """Of these head names, the most recently trained: by commit order (seq), not by a timestamp two fits can share."""
    return max(names, key=lambda n: (heads[n]["versions"][-1].get("seq", -1), heads[n]["versions"][-1]["created"]))


def load_head(store: Any, name: str | None, version: int | None = None) -> tuple[dict[str, Any], Any]:
    heads = store.manifest["heads"]
    if name is None:
        if not heads:
            raise NotFoundError(f"no heads in {store.root}; train one with `embstore fit`")
        name = latest_head(heads, heads)
    chosen = store._head_versions(name, version)[-1]
    folder = store.root / chosen["path"]
    try:
        record = json.loads((folder / "head.json").read_text(encoding="utf-8"))
        arrays = {k: np.load(folder / f, allow_pickle=False) for k, f in record["arrays"].items()}
    except FileNotFoundError:  # deleted since this snapshot was read, and its retention has passed since
        raise NotFoundError(f"head {name!r} version {chosen['version']} was deleted from {store.root}; "
                            "open the store again to see the heads it has now") from None
    est = rebuild(record["model"], record["params"], record["classes"], arrays, record["learned"],
                  store.settings.device)
    if record["model"] in SERVED_BY_INDEX and "ids" in arrays:
        from .search import subset_searcher

        if record["collection"] not in store.manifest["collections"]:
            raise NotFoundError(f"head {name!r} finds neighbours among the items of collection "
                                f"{record['collection']!r}, which is no longer in the store; fit it again")
        est.n_features_in_ = record["encoder"]["dim"]
        est.serve_from(subset_searcher(store, record["collection"], record["space"], arrays["ids"].tolist()))
    return record, est
