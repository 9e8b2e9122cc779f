"""The Store: a directory holding collections, their spaces and indexes, heads and predictions.

Readers work on the manifest snapshot taken when the store was opened (``refresh()`` takes a new one). Writers hold
the writer lock, re-read the manifest, and commit each step with an atomic manifest replace.
"""
from __future__ import annotations

import copy
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from . import index as ix
from .config import Settings
from .encoders import Encoder, get_encoder
from .errors import InputError, NotFoundError, SpaceMismatchError
from .manifest import MANIFEST, empty_manifest, now, read_manifest, write_manifest, writer_lock
from .row_copies import copy_files
from .space_index import SpaceIndexes, index_files
from .storage import check_name, embedding_matrix, read_shards



class Store:
    """Open with ``Store.open(path)``; every verb of the CLI is a method here."""

    def __init__(self, root: Path, manifest: dict[str, Any], settings: Settings,
                 notify: Callable[[str], None] | None = None):
        self.root = root
        self.manifest = manifest
        self.settings = settings
        self.notify = notify  # told when a writer waits for the lock, or takes over one a killed writer left
        # what was derived from this snapshot (indexes, key tables, vectors on a GPU): key -> (version, value, extra)
        self.derived: dict[tuple, tuple[Any, Any, Any]] = {}
        self.indexes = SpaceIndexes(self)
        self.swept: list[str] = []  # what the last writer's sweep removed (store-relative paths)
        self._sql_sharing: Any = None  # set by share_sql

    # ------------------------------------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = True, device: str | None = None,
             settings: Settings | None = None, notify: Callable[[str], None] | None = None) -> "Store":
        """Open the store at ``path``; create it (an empty directory with a manifest) when missing and ``create``.

        A write waits for another process's (``settings.lock_wait`` seconds; ``notify(message)`` is told, once, who
        it waits for), then raises StoreLockedError."""
        root = Path(path).expanduser().absolute()
        settings = settings or Settings.resolve(device=device)
        if not (root / MANIFEST).exists():
            if not create:
                raise NotFoundError(f"no store at {root} (no {MANIFEST}); run `embstore ingest` to create one")
            if root.exists() and not root.is_dir():
                raise InputError(f"{root} is a file, not a store directory")
            # (the lock and a manifest's temporary file are what a run killed while making the store leaves)
            if root.exists() and any(p.name != ".writer.lock" and not (p.name.startswith(f".{MANIFEST}.")
                                                                      and p.name.endswith(".tmp"))
                                     for p in root.iterdir()):
                raise InputError(f"{root} is a non-empty directory without {MANIFEST}; choose an empty or new folder")
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # a parent that is a file, no permission, a read-only disk ...
                raise InputError(f"cannot create a store at {root}: {e.strerror or e}; choose another --store path") from None
            with writer_lock(root, settings.lock_wait, notify):
                if not (root / MANIFEST).exists():
                    for left in root.glob(f".{MANIFEST}.*.tmp"):
                        left.unlink()
                    write_manifest(root, empty_manifest())
        return cls(root, read_manifest(root), settings, notify)

    def refresh(self) -> "Store":
        """Take a new snapshot; what was derived from the old one (indexes, key tables) is dropped."""
        self.manifest = read_manifest(self.root)
        self.derived.clear()
        return self

    @contextmanager
    def writing(self) -> Iterator[dict[str, Any]]:
        """Hold the writer lock on a fresh snapshot; what a killed writer left (temporary files, files the manifest
        does not name) is swept first (``sweep``)."""
        from .sweep import sweep

        with writer_lock(self.root, self.settings.lock_wait, self.notify):
            self.manifest = read_manifest(self.root)
            self.swept = sweep(self.root, self.manifest)
            yield self.manifest

    def commit(self) -> None:
        """Write the manifest atomically; then delete the retired files whose retention has passed."""
        retired = self.manifest.get("retired") or []
        cutoff = time.time() - self.settings.retention_s
        due = [r for r in retired if r["unix"] <= cutoff]
        if due:
            self.manifest["retired"] = [r for r in retired if r["unix"] > cutoff]
        write_manifest(self.root, self.manifest)
        root = self.root.resolve()
        for r in due:  # after the commit: a crash here leaves a stray file, never a listed file missing
            path = self._own_path(r["file"], "collections") or self._own_path(r["file"], "heads")
            if path is None:
                continue  # a manifest from elsewhere never makes embstore delete outside the store's own files
            path.unlink(missing_ok=True)
            for parent in path.parents:  # folders it leaves empty, up to the store's own
                if parent == root or parent.parent == root:
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break

    def _own_path(self, rel: str, folder: str) -> Path | None:
        """``rel`` (a path from the manifest) resolved inside the store's ``folder``, or None when it points
        elsewhere: what embstore deletes is only ever its own files, whatever a received manifest says."""
        path = (self.root / rel).resolve()
        inside = str(rel).startswith(folder + "/") and path.is_relative_to(self.root.resolve() / folder)
        return path if inside else None

    def retire(self, files: Sequence[str]) -> None:
        """Files the manifest stops listing at the next commit: deleted by a commit ``retention_s`` later, so a
        reader still on an older snapshot finds them (``EMBSTORE_RETENTION_SECONDS``, default an hour)."""
        stamp, unix = now(), time.time()
        self.manifest.setdefault("retired", []).extend({"file": f, "retired": stamp, "unix": unix} for f in files)

    def new_part(self) -> int:
        n = self.manifest["next_part"]
        self.manifest["next_part"] = n + 1
        return n

    # ------------------------------------------------------------------------------------------------ lookup
    def collection(self, name: str) -> dict[str, Any]:
        try:
            return self.manifest["collections"][name]
        except KeyError:
            have = ", ".join(sorted(self.manifest["collections"])) or "none yet"
            raise NotFoundError(f"no collection {name!r} in {self.root} (collections: {have})") from None

    def space_name(self, collection: str, space: str | None = None) -> str:
        spaces = self.collection(collection)["spaces"]
        if space is None:
            if len(spaces) == 1:
                return next(iter(spaces))
            raise InputError(f"collection {collection!r} has spaces {', '.join(sorted(spaces))}; pass --space")
        if space not in spaces:
            raise NotFoundError(f"collection {collection!r} has no space {space!r} "
                                f"(spaces: {', '.join(sorted(spaces)) or 'none'})")
        return space

    def space(self, collection: str, space: str | None = None) -> dict[str, Any]:
        return self.collection(collection)["spaces"][self.space_name(collection, space)]

    def encoder_for(self, collection: str, space: str | None = None) -> Encoder:
        """The space's own encoder, rebuilt from its spec and checked against its recorded fingerprint."""
        entry = self.space(collection, space)["encoder"]
        enc = get_encoder(entry["spec"], self.settings.device, self.settings.runtime)
        if enc.fingerprint() != entry["fingerprint"]:
            raise SpaceMismatchError(
                f"encoder {entry['spec']!r} now loads as fingerprint {enc.fingerprint()}, but the space was built with "
                f"{entry['fingerprint']}; install the same model version or re-ingest into a new --space")
        return enc

    # ------------------------------------------------------------------------------------------------ ingest
    def ingest(self, source: Any, collection: str, *, text_column: str | None = None,
               image_column: str | None = None, id_column: str | None = None, encoder: str | None = None,
               space: str | None = None, index: str | None = None, embedding_column: str | None = None,
               engine: str = "local", address: str | None = None, progress: Any = None,
               encoding: str = "utf-8") -> "IngestReport":
        """Read ``source`` (a CSV/TSV/Parquet/JSONL file, a folder of images or of tables, a glob, a URL fsspec
        knows, or a list of those), streamed; embed what is new, commit chunk by chunk, index.

        ``engine="ray"`` runs read -> encode -> write as a Ray Data pipeline (``address``: an existing cluster's,
        else a local Ray). With ``embedding_column`` (or a ``.npy`` file) the vectors are taken as given: see
        ``ingest_vectors``. ``encoding``: of CSV/TSV/JSONL text; rows that do not decode are quarantined."""
        from .ingest.job import ingest

        return ingest(self, source, collection, text_column=text_column, image_column=image_column,
                      id_column=id_column, encoder=encoder, space=space, index=index,
                      embedding_column=embedding_column, engine=engine, address=address, progress=progress,
                      encoding=encoding)

    def ingest_vectors(self, collection: str, vectors: Any, ids: Sequence[Any] | None = None, *,
                       metadata: Any = None, name: str = "external", space: str | None = None,
                       source: str = "<array>", index: str | None = None) -> "IngestReport":
        """Precomputed embeddings (n, dim) with their ids and optional metadata (an Arrow table, a dict of columns,
        a list of row dicts or a pandas DataFrame). The space records an ``external:<name>`` encoder. Ids default to row numbers: give
        ids when adding a second array, since an id already stored with another vector is quarantined."""
        from .ingest.vectors import ingest_vectors

        check_name("collection", collection)
        if metadata is not None and not isinstance(metadata, pa.Table):
            if isinstance(metadata, dict):
                metadata = pa.table(metadata)
            elif isinstance(metadata, list) and all(isinstance(r, dict) for r in metadata):
                metadata = pa.Table.from_pylist(metadata)
            elif hasattr(metadata, "columns") and hasattr(metadata, "iloc"):
                metadata = pa.Table.from_pandas(metadata, preserve_index=False)
            else:
                raise InputError(f"metadata must be an Arrow table, a dict of columns, a list of row dicts or a pandas "
                                 f"DataFrame, not {type(metadata).__name__}")
        return ingest_vectors(self, collection, vectors, ids, metadata, name, space, source, index)

    def ensure_space(self, collection: str, space: str, enc: Any, modality: str, content_column: str | None,
                      id_column: str | None) -> dict[str, Any]:
        """The manifest entries of a collection and one of its spaces, created empty when new; the collection's."""
        from .sql import space_view, taken_names

        taken = taken_names(self.manifest)
        existing = self.manifest["collections"].get(collection)
        if existing is None and collection.lower() in taken:
            raise InputError(f"collection name {collection!r} is taken in SQL by {taken[collection.lower()]} (SQL "
                             "names ignore case); choose another --collection")
        view = space_view(collection, space)
        if (existing is None or space not in existing["spaces"]) and view.lower() in taken:
            raise InputError(f"space {space!r} of {collection!r} would be the SQL view {view!r}, which is taken by "
                             f"{taken[view.lower()]}; pass --space ANOTHER_NAME")
        new_views = ([collection] if existing is None else []) + ([view] if existing is None or space not in
                                                                   existing["spaces"] else [])
        mine = self._user_tables() if new_views else {}
        for name in new_views:
            if name.lower() in mine:
                raise InputError(f"your SQL table {mine[name.lower()]!r} (in STORE/sql.duckdb) has the name of the new "
                                 f"view {name!r}, which would hide it; rename the table (embstore sql --write \"ALTER "
                                 f"TABLE {mine[name.lower()]} RENAME TO another_name\") or choose another name")
        coll = self.manifest["collections"].setdefault(collection, {
            "modality": modality, "content_column": content_column, "id_column": id_column, "created": now(),
            "item_shards": [], "spaces": {}, "predictions": {}, "ingests": []})
        coll["spaces"].setdefault(space, {"encoder": enc.describe(), "created": now(), "rows": 0, "shards": [],
                                          "index": None})
        return coll

    def _user_tables(self) -> dict[str, str]:
        """The tables a user made with ``embstore sql --write`` (lower-cased name -> name)."""
        db = self.root / "sql.duckdb"
        if not db.exists():
            return {}
        import duckdb

        try:
            with duckdb.connect(str(db), read_only=True) as con:
                names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary")
                         .fetchall()]
        except duckdb.Error:  # held by a writer right now: nothing to check against
            return {}
        return {n.lower(): n for n in names}

    def cached(self, key: tuple, version: Any, build: Any) -> Any:
        """Derived data kept for this snapshot (vectors on a GPU, say): ``build()``'s result, made anew when
        ``version`` (e.g. the space's row count) is not the one it was made for."""
        hit = self.derived.get(key)
        if not hit or hit[0] != version:
            hit = self.derived[key] = (version, build(), None)
        return hit[1]

    def drop_growing(self, collection: str, space: str) -> None:
        """Forget an index grown during an ingest that did not finish (the next one starts from the saved one)."""
        self.indexes.drop_growing(collection, space)

    def key_table(self, collection: str, space: str | None = None) -> Any:
        """The sorted key table of a collection's items (or, with ``space``, of the space by id) as of this
        snapshot: memory-mapped from the store, the shards committed after it read from Parquet (``keys.py``)."""
        from . import keys as kt

        coll = self.collection(collection)
        key = ("keys", collection, space or "")
        shards = coll["item_shards"] if space is None else coll["spaces"][space]["shards"]
        entry = coll.get("keys") if space is None else (coll["spaces"][space].get("keys") or {}).get("by_id")
        version = (len(shards), shards[-1]["file"] if shards else None, (entry or {}).get("file"),
                   (entry or {}).get("rows"))  # a collection deleted and made again has other shards
        fields = kt.ITEM_FIELDS if space is None else kt.BY_ID_FIELDS
        return self.cached(key, version, lambda: kt.open_table(self.root, entry, shards, fields))

    def known_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        """The ids (given) that are items of the collection, found through its key table."""
        if collection not in self.manifest["collections"] or not ids:
            return set()
        ids = [str(i) for i in ids]
        found, _ = self.key_table(collection).find_ids(ids)
        return {ids[n] for n in np.flatnonzero(found)}

    # ------------------------------------------------------------------------------------------------ vectors
    def embeddings(self, collection: str, space: str | None = None) -> tuple[list[str], np.ndarray]:
        """All committed ``(ids, float32 array)`` of a space, in the same order (the index's order)."""
        sp = self.space(collection, space)
        t = read_shards(self.root, sp["shards"], ["id", "embedding"])
        if t is None:
            return [], np.zeros((0, sp["encoder"]["dim"]), np.float32)
        return t.column("id").to_pylist(), embedding_matrix(t.column("embedding"), sp["encoder"]["dim"])

    def vector_shards(self, collection: str, space: str | None = None) -> Iterator[tuple[list[str], np.ndarray]]:
        """The space's ``(ids, float32 vectors)`` a shard at a time, in index order: for work over a whole space in
        bounded memory."""
        sp = self.space(collection, space)
        for shard in sp["shards"]:
            t = read_shards(self.root, [shard], ["id", "embedding"])
            yield t.column("id").to_pylist(), embedding_matrix(t.column("embedding"), sp["encoder"]["dim"])

    def vector_blocks(self, collection: str, space: str, progress: Any = None) -> Any:
        """``blocks()``: the space's vectors a shard at a time, in index order (what the index builders take);
        ``progress(stage, done, total)`` after each shard of each pass."""
        return self.indexes.vector_blocks(collection, space, progress)

    def sync_index(self, collection: str, space: str, save: bool = False, factory: str | None = None,
                   target_recall: float | None = None, progress: Any = None) -> tuple[Any, Any]:
        """The space's FAISS index holding exactly the snapshot's rows, and its ids in index order (a
        ``lookup.SpaceIds``); a writer (``save``) builds, extends, tunes and saves it (``space_index.py``)."""
        return self.indexes.sync(collection, space, save, factory, target_recall, progress)

    def grow_index(self, collection: str, space: str, expect_rows: int, factory: str | None = None) -> None:
        """During an ingest, after each committed chunk: bring an in-memory index up to the committed rows."""
        self.indexes.grow(collection, space, expect_rows, factory)

    def reindex(self, collection: str, space: str | None = None, *, factory: str | None = None,
                target_recall: float | None = None, progress: Any = None) -> dict[str, Any]:
        """Rebuild a space's index: auto-chosen by size and memory, or the FAISS ``factory`` string given;
        ``progress(stage, done, total)`` after each shard of each pass over the vectors."""
        if target_recall is not None and not 0 < target_recall <= 1:
            raise InputError(f"target recall must be a fraction in (0, 1], got {target_recall}")
        with self.writing():
            space = self.space_name(collection, space)
            sp = self.manifest["collections"][collection]["spaces"][space]
            if factory is None:
                sp.pop("index_factory", None)
            else:
                ix.check_factory(factory, sp["encoder"]["dim"])
            replaced = (sp.get("index") or {}).get("file")
            sp["index"] = None  # forces the rebuild
            if replaced:  # retired, not orphaned: readers of older snapshots keep it for a while
                self.retire(index_files(replaced))
            self.derived.pop((collection, space), None)
            self.sync_index(collection, space, save=True, factory=factory, target_recall=target_recall,
                            progress=progress)
            self.commit()
            return {"collection": collection, "space": space, **sp["index"]}

    # ------------------------------------------------------------------------------------------------ search
    def search(self, collection: str, query: str | None = None, *, image: Any = None, item_id: str | None = None,
               vector: Sequence[float] | np.ndarray | None = None, k: int = 10, space: str | None = None,
               where: str | None = None) -> list[dict]:
        """Top-``k`` items by cosine similarity to a text, an image (path/bytes/PIL), an item's id, or a vector.

        ``where`` is a SQL predicate over the collection's columns (predictions via a subquery, e.g.
        ``id IN (SELECT id FROM predictions WHERE collection = 'q' AND label = 'HUM')``); k results come back whenever k items match."""
        from .search import run_search

        return run_search(self, collection, query=query, image=image, item_id=item_id, vector=vector, k=k,
                          space=space, where=where)

    # ------------------------------------------------------------------------------------------------ heads
    def fit(self, collection: str, label_column: str | None = None, name: str | None = None, *,
            model: str = "auto", space: str | None = None, test_collection: str | None = None,
            labels: str | os.PathLike | Sequence[str | os.PathLike] | None = None, test_size: float = 0.2, seed: int = 0,
            params: dict[str, Any] | None = None, train_where: str | None = None,
            test_where: str | None = None, label_sep: str | None = None,
            plot_dir: str | os.PathLike | None = None, progress: Any = None) -> dict[str, Any]:
        """Train a head on a space; score it on ``test_collection``/``test_where`` items or a held-out split; save it.

        ``train_where``/``test_where`` are SQL predicates over the collection's columns (e.g. ``split = 'test'``).
        Labels that are lists (or strings split by ``label_sep``) train a multi-label head. ``plot_dir`` gets a
        confusion matrix and a learning curve as PNG. ``progress(stage, done, total)``, when given, counts the
        labelled vectors read ("vectors"), then the fit's solves ("fit"). Returns the head's record (metrics
        included)."""
        from .heads import fit_head

        return fit_head(self, collection, label_column, name, model=model, space=space,
                        test_collection=test_collection, labels=labels, test_size=test_size, seed=seed,
                        params=params or {}, train_where=train_where, test_where=test_where, label_sep=label_sep,
                        plot_dir=plot_dir, progress=progress)

    def eval(self, collection: str, label_column: str | None = None, *, space: str | None = None,
             test_collection: str | None = None, labels: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
             train_where: str | None = None, test_where: str | None = None, test_size: float = 0.2,
             samples: Any = (1, 2, 4, 8, 16, 32, "all"), repeats: int = 10, seed: int = 42,
             plot_dir: str | os.PathLike | None = None, progress: Any = None) -> dict[str, Any]:
        """MTEB's few-shot protocol on a space: per n in ``samples``, ``repeats`` times undersample training to n
        per label, fit LogisticRegression(max_iter=100), score on the whole test set; mean and spread per n.
        ``progress(stage, done, total)`` counts the labelled vectors read ("vectors"), then the runs ("runs")."""
        from .heads import few_shot_eval

        return few_shot_eval(self, collection, label_column, space=space, test_collection=test_collection,
                             labels=labels, train_where=train_where, test_where=test_where, test_size=test_size,
                             samples=samples, repeats=repeats, seed=seed, plot_dir=plot_dir, progress=progress)

    def label_issues(self, collection: str, label_column: str | None = None, *, labels: Any = None,
                     space: str | None = None, model: str = "logreg", params: dict[str, Any] | None = None,
                     limit: int | None = None, seed: int = 0) -> dict[str, Any]:
        """Labelled items whose label is likely wrong (confident learning on out-of-fold probabilities of a
        ``model`` head), worst first, each with the suggested label. See ``label_issues.py``."""
        from .label_issues import label_issues

        return label_issues(self, collection, label_column, labels=labels, space=space, model=model, params=params,
                            limit=limit, seed=seed)

    def duplicates(self, collection: str, *, space: str | None = None, threshold: float = 0.99,
                   limit: int | None = None) -> dict[str, Any]:
        """Groups of near-duplicate items (cosine >= ``threshold``), through the space's index, largest first."""
        from .duplicates import find_duplicates

        return find_duplicates(self, collection, space=space, threshold=threshold, limit=limit)

    def suggest(self, collection: str, n: int = 50, *, head: str | None = None, space: str | None = None,
                seed: int = 0) -> dict[str, Any]:
        """Items to label next: a diverse sample of the space, or (``head``) those it is least sure of, spread out;
        ``rows`` of id, content (and the head's guess and confidence). See ``suggest.py``."""
        from .suggest import suggest

        return suggest(self, collection, n, head=head, space=space, seed=seed)

    def predict(self, head: str | None = None, collection: str | None = None, *, texts: Sequence[str] | None = None,
                images: Sequence[Any] | None = None, version: int | None = None,
                progress: Any = None) -> dict[str, Any]:
        """Apply a head to a whole collection (stored, visible to SQL; a shard at a time, ``progress(stage, done,
        total)`` after each) or to new texts/images (returned)."""
        from .predict import predict

        return predict(self, head, collection, texts=texts, images=images, version=version, progress=progress)

    # ------------------------------------------------------------------------------------------------ SQL
    def sql(self, query: str, *, write: bool = False, allow_files: bool = False,
            allow_paths: Sequence[str | os.PathLike] = ()) -> Any:
        """Run DuckDB SQL over the store's views; returns a DuckDB relation (or None for statements).

        ``write`` allows statements that change data (your tables, in ``STORE/sql.duckdb``). Unless
        ``allow_files``, the query can open no file but the store's shards and ``allow_paths`` (a file to write the
        result to), and change only harmless settings (``sql_guard.HARMLESS_SETTINGS``)."""
        from .sql import run_sql

        return run_sql(self, query, write=write, allow_files=allow_files, allow_paths=[str(p) for p in allow_paths])

    def connect(self, *, write: bool = False, allow_files: bool = False) -> Any:
        """A DuckDB connection with a view per collection, per space and for predictions (confined to the store's
        shards unless ``allow_files``); read-only, a cursor of the shared database when there is one (``share_sql``)."""
        from .sql import connect

        shared = None if write or allow_files else self.shared_sql()
        return shared.cursor() if shared is not None else connect(self, write=write, allow_files=allow_files)

    def share_sql(self) -> None:
        """Keep one read-only DuckDB database with this store's views for every later read-only, confined query
        (``sql``, ``connect``, ``where``) instead of a connection each: for a long-running reader (``embstore
        serve``). Made at the first query; made again when the manifest names other shards; not used while
        ``STORE/sql.duckdb`` (your tables) exists, which a reader that kept it open would lock against writes."""
        from .sql_shared import Sharing

        if self._sql_sharing is None:
            self._sql_sharing = Sharing()

    def shared_sql(self) -> Any:
        """The shared database (``sql_shared.SharedSql``) for this manifest, or None when not sharing."""
        if self._sql_sharing is None or (self.root / "sql.duckdb").exists():
            return None
        return self._sql_sharing.database(self)

    # ------------------------------------------------------------------------------------------------ info
    def info(self) -> dict[str, Any]:
        m = self.manifest
        out: dict[str, Any] = {"store": str(self.root), "format_version": m["format_version"], "collections": {},
                               "heads": {}}
        for name, c in sorted(m["collections"].items()):
            out["collections"][name] = {
                "modality": c["modality"], "items": _item_rows(c),
                "content_column": c["content_column"],
                "quarantined": _quarantined_now(c["ingests"]),
                "spaces": {s: {"encoder": e["encoder"]["spec"], "model": e["encoder"]["model"],
                               "dim": e["encoder"]["dim"], "rows": e["rows"], "fingerprint": e["encoder"]["fingerprint"],
                               "index": (e["index"] or {}).get("factory"),
                               "index_param": {(e["index"] or {}).get("param"): (e["index"] or {}).get("value")}
                               if (e["index"] or {}).get("param") else {},
                               "recall_at_10": (e["index"] or {}).get("recall_at_10")}
                           for s, e in sorted(c["spaces"].items())},
                "predictions": {h: p["rows"] for h, p in sorted(c["predictions"].items())},
            }
        for name, h in sorted(m["heads"].items()):
            latest = h["versions"][-1]
            out["heads"][name] = {"versions": len(h["versions"]), **{k: latest[k] for k in (
                "version", "model", "collection", "space", "label_column", "n_classes", "accuracy", "macro_f1",
                "evaluated_on")}}
        return out

    def head_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a head, oldest first: model, collection, space, labels, scores, test set, when."""
        return [{k: v for k, v in version.items() if k not in ("seq", "path")}
                for version in self._head_entry(name)["versions"]]

    def _head_entry(self, name: str) -> dict[str, Any]:
        heads = self.manifest["heads"]
        if name not in heads:
            raise NotFoundError(f"no head {name!r} in {self.root} (heads: {', '.join(sorted(heads)) or 'none'})")
        return heads[name]

    def _head_versions(self, name: str, version: int | None = None) -> list[dict[str, Any]]:
        """A head's versions in the manifest, oldest first, or only the one numbered ``version`` (an error naming
        the versions there are when it has none so numbered)."""
        versions = self._head_entry(name)["versions"]
        chosen = [v for v in versions if version is None or v["version"] == version]
        if not chosen:
            raise NotFoundError(f"head {name!r} has no version {version} "
                                f"(versions: {[v['version'] for v in versions]})")
        return chosen

    def delete_collection(self, collection: str) -> dict[str, Any]:
        """Drop a collection. Its shards are retired (readers of older snapshots still find them for
        ``retention_s``); its index files, key tables and quarantine records go now (such a reader rebuilds an
        exact index and its key tables from the shards). Heads trained on it stay (a kNN head needs its training
        items and will ask to be fit again). Returns what went."""
        with self.writing():
            coll = self.collection(collection)
            gone = {"collection": collection, "items": _item_rows(coll),
                    "spaces": sorted(coll["spaces"]),
                    "predictions": sorted(coll.get("predictions", {}))}
            files = [f for s in coll["item_shards"] for f in copy_files(s)]  # (with their row copies)
            for sp in coll["spaces"].values():
                files += [s["file"] for s in sp["shards"]] + ([sp["projection"]["file"]] if sp.get("projection") else [])
            for pred in coll.get("predictions", {}).values():
                files += [s["file"] for s in pred["shards"]]
            for sp_dir in (self.root / "collections" / collection / "spaces").glob("*/index"):
                shutil.rmtree(sp_dir, ignore_errors=True)  # safe before the commit: a missing index is rebuilt
            keys = [coll.get("keys")] + [(sp.get("keys") or {}).get(k) for sp in coll["spaces"].values()
                                         for k in ("by_id", "by_hash", "by_position")]
            for entry in keys:  # derived too: a reader of an older snapshot rebuilds its key table from the shards
                path = self._own_path(entry["file"], "collections") if entry else None
                if path is not None:
                    path.unlink(missing_ok=True)
            del self.manifest["collections"][collection]
            self.retire(files)
            self.commit()
            # its quarantine records (bad rows and why) describe inputs of a collection that is gone
            shutil.rmtree(self.root / "quarantine" / collection, ignore_errors=True)
        self.derived = {k: v for k, v in self.derived.items() if collection not in k}
        return gone

    def delete_head(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Drop a head (every version, or one) and the predictions it stored. The predictions' shards and the
        version's own files (head.json, its arrays) are retired like any shard, so a reader of an older snapshot
        can still load that version and read those predictions for ``retention_s``. Version numbers are not given
        twice while any version of the head or a retired folder of one is left. Returns what went."""
        with self.writing():
            heads = self.manifest["heads"]
            versions = self._head_entry(name)["versions"]
            dropped = self._head_versions(name, version)
            numbers = {v["version"] for v in dropped}
            files: list[str] = []
            predictions: dict[str, int] = {}
            for cname, coll in self.manifest["collections"].items():
                pred = coll.get("predictions", {}).get(name)
                if pred is not None and pred["version"] in numbers:
                    files += [s["file"] for s in pred["shards"]]
                    predictions[cname] = pred["rows"]
                    del coll["predictions"][name]
            for v in dropped:
                folder = self._own_path(v["path"], "heads")
                if folder is not None and folder.is_dir():
                    files += sorted(f"{v['path']}/{f.name}" for f in folder.iterdir() if f.is_file())
            kept = [v for v in versions if v["version"] not in numbers]
            if kept:
                heads[name]["versions"] = kept
            else:
                del heads[name]
            self.retire(files)
            self.commit()
        return {"head": name, "versions": sorted(numbers), "predictions": predictions}

    def check(self, *, repair: bool = False, quick: bool = False) -> "CheckReport":
        """``embstore check``: the store's files against its manifest (``check.py``); with ``repair``, what can be
        fixed without losing data is fixed under the writer lock (``repair.py``) and the store checked again."""
        from .check import check_store

        report = check_store(self.root, repair, quick=quick, settings=self.settings)
        if repair:
            self.refresh()
        return report

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.manifest)


def _item_rows(coll: dict[str, Any]) -> int:
    """How many items a collection's manifest entry holds."""
    return sum(s["rows"] for s in coll["item_shards"])


def _quarantined_now(ingests: list[dict[str, Any]]) -> int:
    """Rows of a collection's inputs that are quarantined as things stand: each source counts with its latest
    ingest, so re-ingesting a file with a bad row counts that row once (every ingest's own count stays in
    ``ingests``, and each has its quarantine file)."""
    latest: dict[str, int] = {}
    for n, i in enumerate(ingests):
        latest[i.get("source") or f"#{n}"] = i.get("quarantined", 0)
    return sum(latest.values())


from .check import CheckReport  # noqa: E402,F401  (for the annotations above; no heavy imports)
from .ingest.runner import IngestReport  # noqa: E402
