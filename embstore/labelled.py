"""The labelled data a head is trained and scored on: labels from an item column or an id,label file, normalised to
one type (multi-label lists too), the labelled items' vectors read through the key tables (only those), and the
test set: another collection, the items matching a SQL predicate, or a stratified held-out split."""
from __future__ import annotations

import bisect
import os
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import InputError, LabelError, SpaceMismatchError
from .lookup import positions_of, shard_columns, vectors_at
from .sql import ids_where
from .storage import ROW_GROUP, read_shards

def normalize_labels(values: list[Any], sep: str | None = None) -> list[Any]:
    """One type for all labels: ints stay ints; anything else (or a mix) becomes strings. A list (or a string
    split by ``sep``) is a multi-label target: a sorted list of strings. Missing or empty -> None (unlabelled)."""
    if sep is not None:
        if not sep:
            raise InputError("--label-sep is empty; give the string that separates labels, e.g. \"|\"")
        values = [v.split(sep) if isinstance(v, str) else v for v in values]
    if any(isinstance(v, (list, tuple, np.ndarray)) for v in values):
        out = []
        for v in values:
            items = [] if v is None else [str(x).strip() for x in (v if isinstance(v, (list, tuple, np.ndarray)) else [v])]
            items = sorted({x for x in items if x})
            out.append(items or None)
        return out
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
        return [None if v is None else int(v) for v in values]
    return [None if v is None or (isinstance(v, str) and not v.strip()) else str(v) for v in values]


def require_items(store: Any, collection: str) -> None:
    if not any(s["rows"] for s in store.collection(collection)["item_shards"]):
        raise InputError(f"collection {collection!r} has no items yet; ingest some into it first")


def labels_from_file(labels_file: Any, sep: str | None) -> dict[str, Any]:
    """id -> label from an id,label CSV, or from several (a list: e.g. one per `suggest` round, their columns may
    differ beyond id,label); the labels of all files get one type together (``normalize_labels``), and an id given
    two different labels, in one file or two, is refused."""
    import pyarrow.csv as pcsv

    files = _files(labels_file)
    ids: list[Any] = []
    raw: list[Any] = []
    starts = [0]  # where each file's rows begin in ids
    for path in files:
        if isinstance(path, (str, os.PathLike)) and not os.path.isfile(path):
            raise InputError(f"labels file {path} does not exist" if not os.path.exists(path) else
                             f"labels file {path} is not a file")
        try:
            t = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types={"id": pa.string()}))
        except (OSError, pa.ArrowInvalid) as e:
            raise InputError(f"cannot read labels file {path}: {str(e).splitlines()[0]}") from None
        if not {"id", "label"} <= set(t.column_names):
            raise InputError(f"labels file {path} needs columns id,label; it has {', '.join(t.column_names)}")
        ids += t.column("id").to_pylist()
        raw += t.column("label").to_pylist()
        starts.append(len(ids))

    def line(k: int) -> str:  # row k of ids as the user sees it: the line in its file (after the header)
        f = bisect.bisect_right(starts, k) - 1
        return f"line {k - starts[f] + 2}" if len(files) == 1 else f"{files[f]} line {k - starts[f] + 2}"

    by_id: dict[str, tuple[int, Any]] = {}
    for k, (item_id, label) in enumerate(zip(ids, normalize_labels(raw, sep))):  # one type over all the files
        if item_id in by_id and by_id[item_id][1] != label:
            raise LabelError(f"labels file{'' if len(files) == 1 else 's'} {describe_labels(labels_file)} "
                             f"give{'s' if len(files) == 1 else ''} id {item_id!r} two labels "
                             f"({by_id[item_id][1]!r} on {line(by_id[item_id][0])}, {label!r} on {line(k)}); "
                             "keep one")
        by_id.setdefault(item_id, (k, label))
    return {k: v for k, (_, v) in by_id.items()}


def _files(labels_file: Any) -> list[Any]:
    single = isinstance(labels_file, (str, os.PathLike)) or hasattr(labels_file, "read")  # (a path, an open file)
    return [labels_file] if single else list(labels_file)


def _source(label_column: str | None, labels: Any) -> str:
    return repr(label_column) if label_column else describe_labels(labels)


def describe_labels(labels_file: Any) -> str:
    """The labels file(s) as a user named them: ``a.csv`` or ``a.csv, b.csv``."""
    return ", ".join(str(f) for f in _files(labels_file))


def labelled(store: Any, collection: str, space: str, label_column: str | None,
             from_file: dict[str, Any] | None, where: str | None = None,
             sep: str | None = None, where_option: str = "--train-where",
             progress: Any = None) -> tuple[np.ndarray, list[Any], list[str], int]:
    """``(X, y, ids, n_unlabelled)`` for the items of ``collection`` that have a label (and match ``where``, given
    as ``where_option``: named in the error when it is not valid SQL), in the space's index order. The labels are
    the ``label_column``'s, or ``from_file`` (a labels file's, ``labels_from_file``). Only the labelled items'
    vectors are read (through the key tables, from the row groups that hold them): 100 labels in a space of 10^7
    read a few MB, not the space."""
    coll = store.collection(collection)
    require_items(store, collection)
    if from_file is not None:
        ids, y = list(from_file), list(from_file.values())
    else:
        if label_column is None:
            raise InputError("give a label column (--label-column) or a labels file (--labels id,label CSV)")
        ids, y = _column_labels(store, collection, coll, label_column, sep)
    chosen = None
    if where is not None:
        chosen = ids_where(store, collection, where, where_option)
        if not chosen:
            raise LabelError(f"no item of {collection!r} matches {where_option} {where!r}")
        inside = set(chosen)
        keep = [n for n, item_id in enumerate(ids) if item_id in inside]
        ids, y = [ids[n] for n in keep], [y[n] for n in keep]
    keep = [n for n, v in enumerate(y) if v is not None]
    ids, y = [ids[n] for n in keep], [y[n] for n in keep]
    pos = positions_of(store, collection, space, ids)
    order = np.argsort(pos, kind="stable")
    order = order[pos[order] >= 0]  # items without a vector in this space are not its training items
    stored_ids, X = vectors_at(store, collection, space, pos[order], with_ids=True, progress=progress)
    same = np.asarray([a == ids[n] for a, n in zip(stored_ids, order)], bool)  # the ids, not only their 64 bits
    order, X = order[same], X[same]
    in_space = store.space(collection, space)["rows"] if chosen is None else \
        int((positions_of(store, collection, space, chosen) >= 0).sum())
    return X, [y[n] for n in order], [ids[n] for n in order], in_space - len(order)  # unlabelled: of ``where``'s


def _column_labels(store: Any, collection: str, coll: dict[str, Any], label_column: str,
                   sep: str | None) -> tuple[list[str], list[Any]]:
    """The ids and labels of the items whose ``label_column`` is set: two columns of the item shards, the unset
    rows dropped in Arrow before any Python object is made."""
    import pyarrow.compute as pc

    shards = [s for s in coll["item_shards"] if s["rows"]]
    columns = {s["file"]: shard_columns(store.root / s["file"]) for s in shards}
    having = [s for s in shards if label_column in columns[s["file"]]]  # a later ingest may have added the column
    if not having or label_column in ("id", "content_hash"):
        cols = list(dict.fromkeys(c for names in columns.values() for c in names if c not in ("id", "content_hash")))
        raise InputError(f"column {label_column!r} is not in collection {collection!r}; "
                         f"its columns are: {', '.join(cols) or 'none'}")
    t = read_shards(store.root, having, ["id", label_column])
    values = t.column(label_column)
    keep = pc.is_valid(values)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        keep = pc.and_(keep, pc.not_equal(pc.utf8_trim_whitespace(values), ""))
    t = t.filter(keep)
    return t.column("id").to_pylist(), normalize_labels(t.column(label_column).to_pylist(), sep)


def matching_space(store: Any, collection: str, fingerprint: str, what: str) -> str:
    spaces = store.collection(collection)["spaces"]
    for name, sp in spaces.items():
        if sp["encoder"]["fingerprint"] == fingerprint:
            return name
    have = "; ".join(f"{n}: {sp['encoder']['spec']} ({sp['encoder']['fingerprint']})" for n, sp in spaces.items())
    raise SpaceMismatchError(f"{what} needs a space embedded with fingerprint {fingerprint}, but collection "
                             f"{collection!r} has {have or 'no spaces'}; ingest it with the same --encoder")


def train_test(store: Any, collection: str, space: str, label_column: str | None, labels: Any, *,
               test_collection: str | None, train_where: str | None, test_where: str | None, test_size: float,
               seed: int, sep: str | None, progress: Any = None) -> dict[str, Any]:
    """The training and test sets of a fit or an eval: X/y/ids for each, the label set and where the test came
    from. ``progress`` counts the labelled vectors read."""
    if label_column is not None and labels is not None:
        raise InputError("give a label column (--label-column) or a labels file (--labels), not both")
    sp = store.space(collection, space)
    from_file = None if labels is None else labels_from_file(labels, sep)  # read once, for both sets
    X, y, train_ids, unlabelled = labelled(store, collection, space, label_column, from_file, train_where, sep,
                                           progress=progress)
    same = test_collection in (None, collection)
    if same and test_where is not None and train_where is None:  # training takes the items the test does not
        chosen = set(ids_where(store, collection, test_where, "--test-where"))
        keep = [i for i, item_id in enumerate(train_ids) if item_id not in chosen]
        X, y, train_ids = X[keep], [y[i] for i in keep], [train_ids[i] for i in keep]
        if not y:
            raise LabelError(f"every labelled item of {collection!r} matches --test-where {test_where!r}: none is "
                             "left to train on")
    elif test_collection == collection and test_where is None:
        raise InputError(f"--test-collection is the training collection {collection!r}: pick its test items with "
                         "--test-where (training takes the rest), or give another collection")
    if len(y) == 0:
        raise LabelError(f"no item of {collection!r} has a label in {_source(label_column, labels)}; nothing to "
                         "train on")
    multilabel = isinstance(y[0], list)
    flat = [v for row in y for v in row] if multilabel else y
    classes = sorted(set(flat), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise LabelError(f"all {len(y)} labelled items have the label {classes[0]!r}; a head needs at least 2 labels")
    if test_collection is not None or test_where is not None:
        test_coll = test_collection or collection
        test_space = matching_space(store, test_coll, sp["encoder"]["fingerprint"], f"a head on {collection}.{space}")
        Xte, yte, test_ids, _ = labelled(store, test_coll, test_space, label_column, from_file, test_where, sep,
                                         "--test-where", progress=progress)
        if not yte:
            raise LabelError(f"no item of test collection {test_coll!r} has a label in "
                             f"{_source(label_column, labels)}")
        shared = set(test_ids) & set(train_ids) if test_coll == collection else set()
        if shared:
            raise InputError(f"--train-where and --test-where share {len(shared)} items; make them disjoint, or "
                             "leave out --train-where (training then takes the items outside --test-where)")
        Xtr, ytr = X, y
        evaluated_on = f"collection {test_coll}" + (f" where {test_where}" if test_where else "")
    else:
        strat = [row[0] for row in y] if multilabel else y
        tr, te = holdout_split(strat, test_size, seed)
        Xtr, Xte, ytr, yte = X[tr], X[te], [y[i] for i in tr], [y[i] for i in te]
        train_ids, test_ids = [train_ids[i] for i in tr], [train_ids[i] for i in te]
        evaluated_on = f"held-out {test_size:g} of {collection} (seed {seed})"
    unmatched = None
    if from_file is not None:  # ids of the labels file that are items of neither collection: ignored, and counted
        ids = list(from_file)
        known = store.known_ids(collection, ids) | store.known_ids(test_collection or collection, ids)
        unmatched = sum(1 for item_id in ids if item_id not in known)
    return {"labels_unmatched": unmatched, "Xtr": Xtr, "ytr": ytr, "Xte": Xte, "yte": yte, "train_ids": train_ids, "test_ids": test_ids,
            "classes": classes, "multilabel": multilabel, "unlabelled": unlabelled, "evaluated_on": evaluated_on}


def unlabelled_sample(store: Any, collection: str, space: str, exclude: Any, n: int, seed: int) -> np.ndarray:
    """The vectors of a seeded random sample of at most ``n`` of the space's items that are not in ``exclude`` (the
    training and test ids, all items of the space): what a self-training head (and ``fit --model auto``) learns from
    beyond its labels.

    The draw takes enough positions that after dropping the excluded ``n`` are left in expectation (with a margin),
    but never more than ``4 n``: where most of the space is labelled, fewer than ``n`` come back rather than the whole
    space being read. The positions lie in a seeded random set of blocks of ``storage.ROW_GROUP`` positions, at most
    a quarter of each block drawn, so a draw of 20,000 reads about 90 of the space's row groups wherever it has more.
    Drawn from anywhere, 20,000 positions touch a row group each: on 10^6 384-dim vectors here 4.3 s (nearly every
    group), and on 10^9 twenty thousand groups, 30 GB; in blocks, 1.2 s, and the same on 10^9. A block's items were
    ingested together and may be alike; 90 blocks across the space still sample every part of it."""
    total = int(store.space(collection, space)["rows"])
    skip = set(exclude)
    free = total - len(skip)
    if n <= 0 or free <= 0:
        return np.zeros((0, int(store.space(collection, space)["encoder"]["dim"])), np.float32)
    take = min(total, int(np.ceil(1.1 * n * total / free)) + 64, 4 * n + 64)
    rng = np.random.default_rng(seed)
    blocks = -(-total // ROW_GROUP)
    wanted = -(-4 * take // ROW_GROUP)  # blocks enough to draw ``take`` at a quarter of each
    if wanted < blocks:
        starts = rng.choice(blocks, wanted, replace=False) * ROW_GROUP
        cand = (starts[:, None] + np.arange(ROW_GROUP)).ravel()
        pos = np.sort(rng.choice(cand[cand < total], take, replace=False))
    else:
        pos = np.sort(rng.choice(total, take, replace=False))
    ids, X = vectors_at(store, collection, space, pos, with_ids=True)
    keep = np.flatnonzero([item_id not in skip for item_id in ids])[:n]
    return X[keep]


def holdout_split(y: list[Any], test_size: float, seed: int) -> tuple[list[int], list[int]]:
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
    n_labels, n_test = len(set(y_rest)), round(len(rest) * test_size)
    stratify = y_rest if n_test >= n_labels and len(rest) - n_test >= n_labels else None
    tr, te = train_test_split(rest, test_size=test_size, random_state=seed, stratify=stratify)
    # unstratified (few items, many labels), a label can land wholly in the test split: one item of it trains
    trained = {y[i] for i in tr}
    for i in sorted(te):
        if y[i] not in trained:
            trained.add(y[i])
            tr.append(i)
    moved = set(tr)
    te = [i for i in te if i not in moved]
    tr = sorted(tr + single)
    if len({y[i] for i in tr}) < 2:
        raise LabelError("the training split has a single label; label more items or pass --test-collection")
    return tr, sorted(te)
