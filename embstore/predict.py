"""Applying a head: to new texts or images (embedded by the head's encoder), or to a collection a shard at a time,
its predictions written as shards of their own that SQL sees as the ``predictions`` view.

New images that cannot be used (missing, no regular file, not an image, over the pixel limit) are skipped with
their reason, as an ingest quarantines them, and the rest predicted: ``predicted + len(skipped) == given``. Only
when none can be used is it an error (the first one's reason)."""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from .errors import InputError, SpaceMismatchError
from .evaluation import jsonable as _jsonable
from .heads import latest_head, load_head
from .labelled import matching_space, require_items
from .manifest import now
from .storage import write_shard
from .sweep import release, reserve


def _probabilities(record: dict[str, Any], est: Any, X: np.ndarray) -> tuple[list[Any], np.ndarray, list[list[str]]]:
    """(top label, its probability, every label at probability >= 0.5 for multi-label heads) per row."""
    classes = np.asarray(record["classes"], dtype=object)
    proba = est.predict_proba(X)
    top = proba.argmax(1)
    if record.get("multilabel"):
        sets = [[str(c) for c in classes[row >= 0.5]] for row in proba]
    else:
        sets = [[str(classes[j])] for j in top]
    return [_jsonable(v) for v in classes[top]], proba.max(1), sets


def fitting_head(store: Any, collection: str | None, modality: str | None) -> str | None:
    """With no head named: the latest head that fits the input. For a collection, one trained on a space the
    collection has (the same fingerprint); for new texts or images, one whose encoder embeds that modality. None
    (the latest of all, or the error that there is none) when no head fits: load_head says what is wrong."""
    from .encoders import recorded_modalities

    heads = store.manifest["heads"]
    if collection is not None and collection in store.manifest["collections"]:
        prints = {sp["encoder"]["fingerprint"] for sp in store.collection(collection)["spaces"].values()}
        fits = [n for n, h in heads.items() if h["versions"] and h["versions"][-1]["space_fingerprint"] in prints]
    elif modality is not None:
        fits = [n for n, h in heads.items() if h["versions"] and modality in recorded_modalities(
            _encoder_of(store, h["versions"][-1]))]
    else:
        return None
    if not fits:
        return None
    return latest_head(heads, fits)


def _encoder_of(store: Any, version: dict[str, Any]) -> dict[str, Any]:
    """The recorded encoder of the space a head version was trained on (empty when the space is gone)."""
    coll = store.manifest["collections"].get(version["collection"], {})
    return coll.get("spaces", {}).get(version["space"], {}).get("encoder") or {}


def image_files(images: Sequence[Any]) -> tuple[list[Any], list[dict[str, str]]]:
    """The images to predict: each given one, a local folder replaced by the image files below it (sorted; hidden
    ones left out, as an ingest's walk does); and each subfolder that could not be listed, as a skipped input with
    its reason. An InputError when folders were given and hold no image."""
    from .ingest.locations import IMAGE_EXTENSIONS, Loc, walk_files

    files: list[Any] = []
    unlisted: list[dict[str, str]] = []
    folders = [i for i in images if isinstance(i, (str, os.PathLike)) and os.path.isdir(i)]
    for given in images:
        if not (isinstance(given, (str, os.PathLike)) and os.path.isdir(given)):
            files.append(given)
            continue
        root, bad = Loc(os.path.abspath(os.path.expanduser(os.fspath(given)))), []
        files += sorted(loc.path for loc in walk_files(root, bad) if loc.ext in IMAGE_EXTENSIONS)
        unlisted += [{"input": os.path.join(os.fspath(given), b["data"]), "reason": b["reason"]} for b in bad]
    if folders and not files and not unlisted:
        raise InputError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in "
                         f"{', '.join(map(os.fspath, folders))}")
    return files, unlisted


def usable_images(images: Sequence[Any], max_pixels: int | None = None) -> tuple[list[Any], list[str], list[dict[str, str]]]:
    """(the images that load, decoded; their names; each input skipped, with its reason). Folders are read through
    ``image_files``; bytes and PIL images are named by their place in the list (``#2``). An InputError when none
    loads."""
    from .encoders.base import load_user_image

    files, skipped = image_files(images)
    pictures, names = [], []
    for k, image in enumerate(files):
        name = os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"#{k + 1}"
        try:
            pictures.append(load_user_image(image, max_pixels, name=name))
            names.append(name)
        except InputError as e:
            skipped.append({"input": name, "reason": str(e)})
    if not pictures:
        first = skipped[0]["reason"] if skipped else "no image given"
        raise InputError(first if len(skipped) == 1 else f"none of the {len(skipped)} images can be read; the first: "
                         f"{first}")
    return pictures, names, skipped


def predict(store: Any, head: str | None, collection: str | None, *, texts: Sequence[str] | None,
            images: Sequence[Any] | None, version: int | None, progress: Any = None) -> dict[str, Any]:
    if head is None:
        head = fitting_head(store, collection, "text" if texts is not None else "image" if images is not None else None)
    record, est = load_head(store, head, version)
    fp = record["space_fingerprint"]
    if collection is not None and (texts is not None or images is not None):
        raise InputError("predict takes a collection or new inputs (texts or images), not both")
    if texts is not None and images is not None:
        raise InputError("predict takes texts or images, not both: predict each with its own call")
    texts = [texts] if isinstance(texts, str) else texts  # one text, not its letters
    images = [images] if isinstance(images, (str, bytes, os.PathLike)) else images
    if collection is None and texts is None and images is None:
        raise InputError("predict needs a collection (--collection) or new inputs (--text / --image)")
    if collection is None:
        from .encoders import get_encoder

        spec = record["encoder"]["spec"]
        if record["encoder"].get("library") == "external" or spec.startswith("external:"):
            raise InputError(f"head {record['name']!r} was trained on vectors made outside embstore ({spec}): "
                             "nothing here can embed new inputs for it; ingest their vectors into a collection and "
                             "predict that (--collection)")
        if texts is not None and any(not str(t).strip() for t in texts):
            raise InputError("a text to predict is empty; give some text")
        enc = get_encoder(spec, store.settings.device, store.settings.runtime)
        if enc.fingerprint() != fp:
            raise SpaceMismatchError(f"head {record['name']!r} was trained on fingerprint {fp}; encoder "
                                     f"{spec!r} now loads as {enc.fingerprint()}")
        wanted = "text" if texts is not None else "image"
        if wanted not in enc.modalities:
            other = "--image image files" if texts is not None else "--text texts"
            raise InputError(f"head {record['name']!r} was trained on {record['space']!r} ({spec}), which embeds "
                             f"{' and '.join(m + 's' for m in sorted(enc.modalities))} only, not {wanted}s: predict {other} with it, "
                             f"or a collection (--collection)")
        skipped: list[dict[str, str]] = []
        if texts is not None:
            X = enc.encode_text(list(texts))
            inputs = list(texts)
        else:
            pictures, inputs, skipped = usable_images(images or [], store.settings.max_pixels)
            X = enc.encode_images(pictures)
        label, conf, sets = _probabilities(record, est, X)
        rows = [{"input": i, "label": l, "confidence": float(c), **({"labels": ls} if record.get("multilabel") else {})}
                for i, l, c, ls in zip(inputs, label, conf, sets)]
        return {"head": record["name"], "version": record["version"], "rows": rows, "given": len(rows) + len(skipped),
                "predicted": len(rows), "skipped": skipped}

    space = matching_space(store, collection, fp, f"head {record['name']!r}")
    require_items(store, collection)
    # a space shard at a time: memory holds one shard's vectors and predictions, whatever the collection's size
    total = store.space(collection, space)["rows"]
    progress = progress or (lambda stage, done, total: None)
    progress("predict", 0, total)
    counts: dict[str, int] = {}  # items per label: the top label, or every label an item gets (multi-label)
    n_shards = len(store.space(collection, space)["shards"])
    with store.writing():  # shard numbers reserved under the lock; the work itself is done without it, so an
        first = store.manifest["next_part"]  # ingest or a fit may go on meanwhile (a crash leaves unlisted
        store.manifest["next_part"] = first + n_shards  # files, which do not exist for readers)
        reserve(store.manifest, first, n_shards)  # (the next writer's sweep leaves them alone while this one lives)
        store.commit()
    shards, done = [], 0
    for n, (ids, X) in enumerate(store.vector_shards(collection, space)):
        if n == n_shards:
            break  # (shards committed since the numbers were reserved: predicted the next time)
        label, conf, sets = _probabilities(record, est, X)
        table = pa.table({"id": pa.array(ids, pa.string()),
                          "head": pa.array([record["name"]] * len(ids), pa.string()),
                          "version": pa.array([record["version"]] * len(ids), pa.int32()),
                          "label": pa.array([str(v) for v in label], pa.string()),
                          "confidence": pa.array(conf, pa.float32()),
                          "labels": pa.array(sets, pa.list_(pa.string()))})
        rel = f"collections/{collection}/predictions/{record['name']}/part-{first + n:06d}.parquet"
        shards.append(write_shard(store.root, rel, table))
        for v in (sets if record.get("multilabel") else [str(x) for x in label]):
            for one in (v if isinstance(v, list) else [v]) or ["(none)"]:  # multi-label: none at 0.5 or more
                counts[one] = counts.get(one, 0) + 1
        done += len(ids)
        progress("predict", done, total)
    with store.writing():
        coll = store.collection(collection)
        old = coll["predictions"].get(record["name"])
        coll["predictions"][record["name"]] = {"version": record["version"], "shards": shards, "rows": done,
                                               "created": now()}
        if old:  # replaced: no longer listed, deleted once readers of older snapshots have had their time
            listed = {s["file"] for s in shards}
            store.retire([s["file"] for s in old["shards"] if s["file"] not in listed])
        release(store.manifest, first)
        store.commit()
    return {"head": record["name"], "version": record["version"], "collection": collection, "space": space,
            "predicted": done, "labels": dict(sorted(counts.items()))}
