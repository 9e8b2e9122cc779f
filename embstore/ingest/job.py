"""An ingest job: open the source, decide where its rows go (collection, space, encoder) and check all of it before
anything is written, run it with an engine (in this process, or on Ray), and finish it (key tables, index, the
ingest's record) under the store's writer lock."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
from ..encoders import RecordedEncoder, canonical_spec, get_encoder
from ..errors import InputError, SpaceMismatchError
from ..index import check_factory
from ..manifest import now
from ..storage import check_name, conform, stored_schema
from ..writer import SpaceWriter

ENGINES = ("local", "ray")


def ingest(store: Any, source: Any, collection: str, *, text_column: str | None = None,
           image_column: str | None = None, id_column: str | None = None, encoder: str | None = None,
           space: str | None = None, index: str | None = None, embedding_column: str | None = None,
           engine: str = "local", address: str | None = None, progress: Any = None, encoding: str = "utf-8") -> Any:
    from .csv_stream import is_utf8
    from .sources import open_source
    from .runner import plan_for

    check_name("collection", collection)
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; use {' or '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise InputError("--address is the address of a Ray cluster: give it with --engine ray")
    if embedding_column is not None or _is_npy(source):
        src = Path(os.path.abspath(Path(source).expanduser()))
        return ingest_vector_file(store, src, collection, embedding_column, id_column, encoder, space, index)
    if engine == "ray" and not is_utf8(encoding):
        raise InputError(f"--encoding {encoding} works with the local engine only; convert the file to UTF-8 "
                         "(iconv -f ENCODING -t UTF-8) to ingest it on Ray")
    src = open_source(source, encoding=encoding)
    known = store.manifest["collections"].get(collection)
    if known and text_column is None and image_column is None and src.kind != "folder":
        # a later file of the collection: its content comes from the collection's column, unless told otherwise
        text_column = known["content_column"] if known["modality"] == "text" else None
        image_column = known["content_column"] if known["modality"] == "image" else None
    plan = plan_for(src.columns, src.kind, Path(src.name).name or src.name, src.base_dir, text_column, image_column,
                    id_column)
    with store.writing():
        existing = store.manifest["collections"].get(collection)
        enc, space = choose_encoder(store, collection, existing, plan.modality, encoder, space)
        if index is not None:
            check_factory(index, enc.dim)  # before the manifest is touched
        stored = None
        if existing:
            if existing.get("content_column") not in (None, plan.content_column):
                option = "--text-column" if plan.modality == "text" else "--image-column"
                raise InputError(f"collection {collection!r} takes its {plan.modality} from column "
                                 f"{existing['content_column']!r}, not {plan.content_column!r}; pass {option} "
                                 f"{existing['content_column']} (renaming the column in the file), or ingest "
                                 "into another collection")
            stored = stored_schema(store.root, existing["item_shards"])
        store.ensure_space(collection, space, enc, plan.modality, plan.content_column, plan.id_column)
        writer = SpaceWriter(store, collection, space)
        try:
            report = _run(store, writer, enc, plan, src, stored, existing, collection, space, source, engine,
                          address, progress, index)
        finally:
            writer.close()
    return report


def _run(store: Any, writer: SpaceWriter, enc: Any, plan: Any, src: Any, stored: Any, existing: Any,
         collection: str, space: str, source: Any, engine: str, address: str | None, progress: Any,
         index: str | None) -> Any:
    """Run the ingest with its engine and finish it (writer lock held)."""
    from .runner import IngestRun

    types = Types(stored, collection)
    quarantined_before = quarantine_files(store.root, collection)
    try:
        if engine == "ray":
            from .ray_engine import run_ray

            report = run_ray(store, writer, enc, plan, src, types, address=address, progress=progress,
                             factory=index, spec=source)
        else:
            report = IngestRun(store, writer, enc, plan, src, store.settings, types.conform, progress,
                               factory=index).run()
    except BaseException:
        store.drop_growing(collection, space)
        coll = store.manifest["collections"].get(collection)
        if existing is None and coll is not None and not coll["item_shards"]:
            del store.manifest["collections"][collection]  # refused while streaming, before any commit:
            store.commit()  # no empty collection is left behind, nor its quarantine records (the error stopped
            discard_quarantine(store.root, collection, quarantined_before)  # the whole input: a re-run finds them)
        raise
    if existing and existing["item_shards"] and stored is not None and report.added:
        report.new_columns = [c for c in types.seen if c not in stored.names and c != plan.id_column]
    finish(store, writer, report, created=existing is None, factory=index)
    return report


def quarantine_files(root: Path, collection: str) -> set[str]:
    folder = root / "quarantine" / collection
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def discard_quarantine(root: Path, collection: str, before: set[str]) -> None:
    """Delete the quarantine files written since ``before`` (this run's) for a collection that is not kept."""
    from .quarantine import Quarantine

    for name in sorted(quarantine_files(root, collection) - before):
        Quarantine.take_back(root, f"quarantine/{collection}/{name}", keep=0)


class Types:
    """Each piece's columns in types the collection's shards (earlier ones, and this ingest's) read together with:
    see ``storage.conform``. Remembers every column seen."""

    def __init__(self, stored: pa.Schema | None, collection: str):
        self.schema, self.collection = stored, collection
        self.seen: list[str] = []

    def conform(self, table: pa.Table, file: str) -> pa.Table:
        table = conform(table, self.schema, Path(file).name or file, self.collection)
        self.seen += [c for c in table.column_names if c not in self.seen]
        self.schema = table.schema if self.schema is None else pa.unify_schemas(
            [self.schema, table.schema], promote_options="permissive")
        return table


def choose_encoder(store: Any, collection: str, existing: dict[str, Any] | None, modality: str,
                   encoder: str | None, space: str | None) -> tuple[Any, str]:
    """The encoder and the space an ingest writes: the collection's one space (or the one the encoder made) unless
    told otherwise; a recorded space's encoder is loaded only if something needs embedding, and checked."""
    if existing and existing["modality"] != modality:
        raise InputError(f"collection {collection!r} holds {existing['modality']} items; ingest "
                         f"{modality} into another collection")
    encoder = canonical_spec(encoder) if encoder is not None else None  # options in one order
    if encoder is None and space is not None and existing and space in existing["spaces"]:
        encoder = existing["spaces"][space]["encoder"]["spec"]
    if encoder is None and existing and len(existing["spaces"]) == 1 and space is None:
        space, recorded = next(iter(existing["spaces"].items()))
        encoder = recorded["encoder"]["spec"]
    if encoder is not None and space is None and existing:  # the one space this encoder already made
        same = [n for n, sp in existing["spaces"].items() if sp["encoder"]["spec"] == encoder]
        space = same[0] if len(same) == 1 else None
    default = DEFAULT_TEXT_ENCODER if modality == "text" else DEFAULT_IMAGE_ENCODER
    spec = encoder or default
    if existing and space in existing["spaces"] and existing["spaces"][space]["encoder"]["spec"] == spec:
        enc = RecordedEncoder(existing["spaces"][space]["encoder"], store.settings.device, store.settings.runtime)
    else:
        enc = get_encoder(spec, store.settings.device, store.settings.runtime)
        if modality not in enc.modalities:
            raise InputError(f"encoder {spec!r} does not embed {modality}; choose one that does (default: {default})")
        space = check_name("space", space or enc.default_space)
    if existing and space in existing["spaces"]:
        recorded = existing["spaces"][space]["encoder"]
        if recorded["fingerprint"] != enc.fingerprint():
            raise SpaceMismatchError(
                f"space {space!r} of {collection!r} was built with {recorded['spec']!r} "
                f"({recorded['fingerprint']}), not {spec!r} ({enc.fingerprint()}); pass --space NEW_NAME")
    return enc, space


def finish(store: Any, writer: SpaceWriter, report: Any, *, created: bool, factory: str | None) -> None:
    """After an ingest's chunks are committed (writer lock held): save the key tables, index the space and record
    the ingest in one last commit. A collection this ingest created and added no row to (none, or all
    quarantined) is not left behind empty, nor is its quarantine file (no quarantine folder for a collection that
    does not exist): the file's first records are in the report's ``quarantined_rows``, ``quarantine_file`` None."""
    from .quarantine import Quarantine

    collection, space = writer.collection, writer.space
    if created and report.added == 0:
        del store.manifest["collections"][collection]
        store.drop_growing(collection, space)
        store.commit()
        if report.quarantine_file:
            report.quarantined_rows = Quarantine.take_back(store.root, report.quarantine_file)
            report.quarantine_file = None
        return
    writer.finish()
    store.commit()  # the key tables are listed now: readers use them while the index is built
    try:
        store.sync_index(collection, space, save=True, factory=factory)
    except InputError as e:  # a forced factory that cannot be built at this size: the rows are in all the same
        store.commit()  # (with the key tables)
        raise InputError(f"the rows are committed ({report.added} added), but not indexed: {e}; then run "
                         "embstore index") from None
    store.manifest["collections"][collection]["ingests"].append(
        {k: v for k, v in report.to_dict().items() if k not in ("collection", "quarantined_rows")} | {"at": now()})
    store.commit()


def _is_npy(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(".npy")


def ingest_vector_file(store: Any, src: Path, collection: str, column: str | None, id_column: str | None,
                       encoder: str | None, space: str | None, index: str | None = None) -> Any:
    """A ``.npy`` array, or a table with a column of vectors: into a space of an ``external`` encoder."""
    from .vectors import vector_row_ids, vectors_from_table

    name = (encoder or "external").removeprefix("external:")
    if src.suffix.lower() == ".npy":
        if not src.exists():
            raise InputError(f"{src} does not exist")
        try:
            vectors = np.load(src, allow_pickle=False)
        except ValueError as e:
            raise InputError(f"cannot read {src.name} as a NumPy array: {e}") from None
        if vectors.ndim != 2:
            raise InputError(f"{src.name} holds an array of shape {vectors.shape}; give one vector per row (n, dim)")
        return store.ingest_vectors(collection, vectors, vector_row_ids(vectors), name=name, space=space,
                                    source=str(src), index=index)
    from .readers import read_source

    table = read_source(src).table
    vectors = vectors_from_table(table, column or "embedding")
    id_column = id_column or ("id" if "id" in table.column_names else None)
    if id_column and id_column not in table.column_names:
        raise InputError(f"id column {id_column!r} is not in {src.name}; its columns are: "
                         f"{', '.join(table.column_names)}")
    meta = table.drop_columns([c for c in (column or "embedding", id_column) if c])
    ids = table.column(id_column).to_pylist() if id_column else vector_row_ids(vectors, meta)
    return store.ingest_vectors(collection, vectors, ids, metadata=meta, name=name, space=space, source=str(src),
                                index=index)
