"""Repairing a store (``embstore check --repair``): what ``check.py`` found, fixed under the writer lock without
losing what can be kept, then checked again.

- Leftovers of a killed writer (files no commit names, temporaries, its lock) are swept, as the next writer does.
- The manifest is corrected from the files where the files are whole: a row count, a shard listed twice, the
  checksum of an item shard that reads but changed.
- A shard whose rows cannot be read is dropped from the manifest (the file is retired, not deleted, for
  ``EMBSTORE_RETENTION_SECONDS``). Items it held that have no other copy are lost: their vectors go too, their ids
  go to ``quarantine/<collection>/`` with the reason. Vectors it held are embedded again from their items by the
  space's own encoder (checked against the recorded fingerprint; the hash encoder always loads); where no encoder
  can (``external:`` vectors, a model that no longer loads), those items are removed, their rows quarantined.
- Repeated ids keep their first row; vectors without an item, or made from other content, go (and are embedded
  again where an item needs them).
- Key tables and the index of every space whose shards changed, or that check found wrong, are built anew.
- A head version that cannot be loaded leaves the manifest with its predictions; predictions whose shards are
  damaged are made again by predicting the collection (after the lock is released: predict takes it itself).

Row work goes through DuckDB (``read_parquet`` with file names and row numbers) and a shard at a time, so the
memory it takes follows the damage, not the corpus.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .check import CheckReport, Problem, inspect
from .errors import EmbstoreError
from .manifest import lock_state, read_manifest, writer_lock
from .row_copies import copy_files
from .shard_sql import Joins, empty_or, sql_list

EMBED_BATCH = 20_000  # rows embedded and committed as one shard


def repair_store(root: Path, *, quick: bool, settings: Any = None) -> CheckReport:
    from .store import Store

    store = Store.open(root, create=False, settings=settings)
    before = lock_state(root)  # (taking the lock overwrites a killed writer's name)
    fixer = _Fixer(store)
    with writer_lock(root):
        store.refresh()
        found = inspect(root, store.manifest, quick=quick, lock=before if before[0] == "stale" else ("free", ""))
        fixer.run(found.problems)
    fixer.predict_again()
    after = inspect(root, read_manifest(root), quick=quick, lock=lock_state(root))
    after.found, after.repairs = found.problems, fixer.done
    return after


class _Fixer:
    def __init__(self, store: Any):
        self.store, self.root = store, store.root
        self.done: list[str] = []
        self.redo: set[tuple[str, str, int]] = set()  # (collection, head, version) to predict again
        self.quarantine: dict[str, Any] = {}
        self.shrunk: set[str] = set()  # collections that lost items

    @property
    def m(self) -> dict[str, Any]:
        return self.store.manifest

    def run(self, problems: list[Problem]) -> None:
        from .sweep import sweep

        kinds = {p.kind for p in problems}
        for p in problems:
            if p.kind == "stale-lock":
                self.done.append(f"took over the writer lock left by {p.data['holder']}")
        if kinds & {"stray", "temporary", "stale-lock"}:
            gone = sweep(self.root, self.m)
            if gone:
                self.done.append(f"deleted {len(gone)} file{'s' if len(gone) != 1 else ''} no commit names or "
                                 f"left half-written: {', '.join(sorted(gone)[:8])}" + (" …" if len(gone) > 8 else ""))
        rows_work: set[str] = set()  # collections whose rows must be compared again (and keys, indexes rebuilt)
        rebuild: set[tuple[str, str]] = set()
        for p in problems:
            c = p.data.get("collection")
            if p.kind in ("listed-twice", "rows", "changed", "lost-items", "lost-vectors"):
                self.entry(p)
                rows_work.add(c)
            elif p.kind == "rows-copy":
                self.entry(p)
            elif p.kind in ("duplicate-ids", "missing-vectors", "orphan-vectors", "other-content", "keys"):
                rows_work.add(c)
            elif p.kind == "index":
                rebuild.add((c, p.data["space"]))
            elif p.kind == "predictions":
                self.drop_predictions(c, p.data["head"])
                if p.data["redo"]:
                    self.redo.add((c, p.data["head"], p.data["version"]))
            elif p.kind == "head":
                self.drop_head_version(p.data["head"], p.data["version"])
        for c in sorted(x for x in rows_work if x in self.m["collections"]):
            for sp in self.m["collections"][c]["spaces"].values():
                sp["rows"] = sum(s["rows"] for s in sp["shards"])
        self.store.commit()
        for c in sorted(x for x in rows_work if x in self.m["collections"]):
            self.rows(c)
            rebuild |= {(c, s) for s in self.m["collections"][c]["spaces"]}
        for c, s in sorted(rebuild):
            self.reindex(c, s)
        self.store.commit()

    # -------------------------------------------------------------------------------------------- the manifest
    def entry(self, p: Problem) -> None:
        """A shard's manifest entry corrected from its file, or dropped when the file's rows are lost."""
        from .storage import checksum

        d = p.data
        coll = self.m["collections"][d["collection"]]
        shards = coll["item_shards"] if d["space"] is None else coll["spaces"][d["space"]]["shards"]
        at = [n for n, s in enumerate(shards) if s["file"] == d["file"]]
        if not at:
            return
        entry = shards[at[-1]]
        if p.kind == "rows-copy":  # bad or missing (an older embstore): made anew from the shard, which is whole
            self.rows_copy(entry)
            return
        if p.kind == "listed-twice":
            del shards[at[-1]]
            self.done.append(f"listed {d['file']} once (it was listed twice)")
        elif p.kind == "rows":
            self.done.append(f"recorded {d['rows']:,} rows for {d['file']} (the manifest said {entry['rows']:,})")
            entry["rows"] = d["rows"]
        elif p.kind == "changed":
            path = self.root / d["file"]
            entry.update(bytes=path.stat().st_size, blake2b=checksum(path))
            self.done.append(f"kept {d['file']} as it reads now and recorded its new checksum")
        else:  # lost: its rows are recovered below where they can be
            del shards[at[0]]
            if entry.get("rows_copy") and (self.root / entry["rows_copy"]["file"]).exists():
                self.store.retire([entry["rows_copy"]["file"]])
            if d["space"] is None:
                self.shrunk.add(d["collection"])
            if (self.root / d["file"]).exists():
                self.store.retire([d["file"]])
            what = "items" if d["space"] is None else f"vectors of {d['collection']}.{d['space']}"
            self.done.append(f"dropped {d['file']} ({entry['rows']:,} {what}) from the manifest")
        if p.kind in ("rows", "changed") and d["space"] is None and entry.get("rows_copy"):
            self.rows_copy(entry)  # from the shard as it reads now

    def rows_copy(self, entry: dict[str, Any]) -> None:
        """An item shard's row copy written from the shard (``row_copies.py``) under a new name; the old one, if
        any, retired (a reader of an older snapshot may still map it)."""
        from .row_copies import write_copy

        old = (entry.get("rows_copy") or {}).get("file")
        if old and (self.root / old).exists():
            self.store.retire([old])
        entry["rows_copy"] = write_copy(self.root, entry["file"], self.root / entry["file"], self.store.new_part())
        self.done.append(f"wrote the row copy {entry['rows_copy']['file']} of {entry['file']} from the shard")

    def drop_predictions(self, collection: str, head: str) -> None:
        pred = self.m["collections"][collection]["predictions"].pop(head, None)
        if pred is None:
            return
        self.store.retire([s["file"] for s in pred["shards"] if (self.root / s["file"]).exists()])
        self.done.append(f"dropped the predictions of head {head} v{pred['version']} on {collection}")

    def drop_head_version(self, name: str, version: int) -> None:
        head = self.m["heads"].get(name)
        if head is None:
            return
        gone = [v for v in head["versions"] if v["version"] == version]
        head["versions"] = [v for v in head["versions"] if v["version"] != version]
        if not head["versions"]:
            del self.m["heads"][name]
        for v in gone:
            folder = self.root / v["path"]
            if folder.is_dir():
                self.store.retire([f"{v['path']}/{f.name}" for f in sorted(folder.iterdir()) if f.is_file()])
        for cname, coll in self.m["collections"].items():
            if coll["predictions"].get(name, {}).get("version") == version:
                self.drop_predictions(cname, name)
        self.done.append(f"removed head {name} version {version} from the manifest (it could not be loaded)")

    # -------------------------------------------------------------------------------------------- rows
    def rows(self, cname: str) -> None:
        """Make the collection's items and each space's vectors match one to one: repeated items and vectors that
        no item needs go, vectors an item lacks are embedded again (or the item goes where none can be)."""
        coll = self.m["collections"][cname]
        self.forget_keys(coll)
        joins = Joins()
        try:
            self.drop_rows(joins, cname, None, self.repeated(joins, coll["item_shards"]),
                           "a repeated id: the first row with this id is kept")
            unembeddable: set[str] = set()
            encoders: dict[str, Any] = {}
            for space, sp in coll["spaces"].items():
                need = self.needed(joins, coll, sp)
                if not need:
                    continue
                enc, why = self.encoder(cname, space)
                if enc is None:
                    unembeddable |= need
                    self.done.append(f"{len(need):,} items of {cname} lost their vectors in {space} and {why}")
                else:
                    encoders[space] = enc
            if unembeddable:
                self.remove_items(joins, cname, unembeddable, "its vectors were lost and cannot be made again here; "
                                  "ingest it again with its vectors")
            for space in coll["spaces"]:
                self.drop_vectors(joins, cname, space)
            failed: set[str] = set()
            for space, enc in encoders.items():
                failed |= self.embed(joins, cname, space, enc)
            if failed:
                self.remove_items(joins, cname, failed, "its content could not be embedded again (a missing or "
                                  "changed image file)")
                for space in coll["spaces"]:
                    self.drop_vectors(joins, cname, space)
        finally:
            joins.close()
        self.forget_keys(coll)  # (an embedding pass saved them before items were removed: written anew below)
        for head, pred in list(coll["predictions"].items()) if cname in self.shrunk else []:
            if any(v["version"] == pred["version"] for v in self.m["heads"].get(head, {}).get("versions", [])):
                self.redo.add((cname, head, pred["version"]))  # made for the rows as they were: made again

    def paths(self, shards: list[dict[str, Any]]) -> list[Path]:
        return [self.root / s["file"] for s in shards]

    def repeated(self, joins: Joins, shards: list[dict[str, Any]], extra: str = "") -> str:
        """SQL of (file, row) of every row whose id an earlier row (in manifest order) has, ``extra`` ORed in."""
        if not shards:
            return "SELECT NULL::VARCHAR AS filename, NULL::BIGINT AS file_row_number WHERE false"
        order = ", ".join(f"('{str(p).replace(chr(39), chr(39) * 2)}', {n})" for n, p in enumerate(self.paths(shards)))
        return (f"SELECT filename, file_row_number FROM (SELECT r.*, row_number() OVER (PARTITION BY id ORDER BY "
                f"o.k, file_row_number) AS nth FROM read_parquet({sql_list(self.paths(shards))}, filename = true, "
                f"file_row_number = true, union_by_name = true) r JOIN (VALUES {order}) o(f, k) ON r.filename = o.f) "
                f"WHERE nth > 1{extra}")

    def needed(self, joins: Joins, coll: dict[str, Any], sp: dict[str, Any]) -> set[str]:
        """Ids of items without a vector in the space made from their content."""
        items = empty_or(self.paths(coll["item_shards"]), "id, content_hash")
        vectors = empty_or(self.paths(sp["shards"]), "id, content_hash")
        q = (f"SELECT i.id FROM {items} i ANTI JOIN (SELECT v.* FROM {vectors} v JOIN {items} i2 ON v.id = i2.id AND "
             f"v.content_hash = i2.content_hash) v ON i.id = v.id")
        return {r[0] for r in joins.con.execute(q).fetchall()}

    def drop_vectors(self, joins: Joins, cname: str, space: str) -> None:
        """Drop a space's repeated vectors, those of no item, and those made from other content than the item's."""
        coll = self.m["collections"][cname]
        sp = coll["spaces"][space]
        if not sp["shards"]:
            return
        items = empty_or(self.paths(coll["item_shards"]), "id, content_hash")
        files = sql_list(self.paths(sp["shards"]))
        stray = (f" UNION ALL SELECT filename, file_row_number FROM read_parquet({files}, filename = true, "
                 f"file_row_number = true) v ANTI JOIN {items} i ON v.id = i.id AND v.content_hash = i.content_hash")
        self.drop_rows(joins, cname, space, self.repeated(joins, sp["shards"], stray),
                       "a vector without an item, repeated, or made from other content than its item's")

    def drop_rows(self, joins: Joins, cname: str, space: str | None, which: str, reason: str) -> None:
        """Rewrite the shards that hold the rows ``which`` (SQL of filename, file_row_number) without them, under
        new names (the old files retired); the rows go to quarantine (for vectors: their ids and content hash)."""
        import pyarrow.parquet as pq

        from .storage import write_shard

        drops: dict[str, list[int]] = {}
        for f, row in joins.con.execute(f"SELECT DISTINCT filename, file_row_number FROM ({which})").fetchall():
            drops.setdefault(f, []).append(int(row))
        if not drops:
            return
        coll = self.m["collections"][cname]
        shards = coll["item_shards"] if space is None else coll["spaces"][space]["shards"]
        kept, removed = [], 0
        for entry in shards:
            rows = drops.get(str(self.root / entry["file"]))
            if not rows:
                kept.append(entry)
                continue
            table = pq.read_table(self.root / entry["file"])
            gone = table.take(sorted(rows))
            columns = [c for c in gone.column_names if c != "embedding"]
            for row in gone.select(columns).to_pylist():
                self.quarantined(cname, reason, row)
            keep = np.setdiff1d(np.arange(table.num_rows), rows)
            removed += len(rows)
            if len(keep):
                part = self.store.new_part()
                rel = f"{Path(entry['file']).parent.as_posix()}/part-{part:06d}.parquet"
                kept.append(write_shard(self.root, rel, table.take(keep), rows_copy=space is None) | {"part": part})
            self.store.retire(copy_files(entry))
        shards[:] = kept
        if space is None:
            self.shrunk.add(cname)
        else:
            coll["spaces"][space]["rows"] = sum(s["rows"] for s in shards)
        self.store.commit()
        what = ("item" if space is None else "vector") + ("" if removed == 1 else "s") + \
            ("" if space is None else f" of {cname}.{space}")
        self.done.append(f"removed {removed:,} {what} ({reason}); their rows are in {self.quarantine[cname].rel}")

    def remove_items(self, joins: Joins, cname: str, ids: set[str], reason: str) -> None:
        coll = self.m["collections"][cname]
        joins.con.execute("CREATE OR REPLACE TEMP TABLE gone(id VARCHAR)")
        joins.con.executemany("INSERT INTO gone VALUES (?)", [[i] for i in sorted(ids)])
        files = sql_list(self.paths(coll["item_shards"]))
        self.drop_rows(joins, cname, None, f"SELECT filename, file_row_number FROM read_parquet({files}, filename = "
                       "true, file_row_number = true) WHERE id IN (SELECT id FROM gone)", reason)

    def quarantined(self, cname: str, reason: str, row: dict[str, Any]) -> None:
        from .ingest.quarantine import Quarantine

        if cname not in self.quarantine:
            self.quarantine[cname] = Quarantine(self.root, cname, "embstore check --repair")
        self.quarantine[cname].add(None, reason, row)

    # -------------------------------------------------------------------------------------------- vectors
    def encoder(self, cname: str, space: str) -> tuple[Any, str]:
        """The space's own encoder, or (None, why not)."""
        spec = self.m["collections"][cname]["spaces"][space]["encoder"]["spec"]
        if str(spec).startswith("external:"):
            return None, f"were made outside embstore ({spec}): nothing here can make them again"
        try:
            return self.store.encoder_for(cname, space), ""
        except (EmbstoreError, ImportError, OSError) as e:
            return None, f"its encoder {spec} cannot embed them again here ({e})"

    def embed(self, joins: Joins, cname: str, space: str, enc: Any) -> set[str]:
        """Embed the items that lack a vector in the space, committed a shard at a time through the writer;
        returns the ids that could not be (an image that is gone or changed)."""
        import pyarrow as pa

        from .ingest.hashing import content_hash
        from .writer import SpaceWriter

        coll = self.m["collections"][cname]
        column = coll["content_column"]
        need = self.needed(joins, coll, coll["spaces"][space])
        if not need:
            return set()
        joins.con.execute("CREATE OR REPLACE TEMP TABLE need(id VARCHAR)")
        joins.con.executemany("INSERT INTO need VALUES (?)", [[i] for i in sorted(need)])
        items = sql_list(self.paths(coll["item_shards"]))
        rel = joins.con.execute(f'SELECT id, "{column}" AS content, content_hash FROM read_parquet({items}, '
                                "union_by_name = true) WHERE id IN (SELECT id FROM need) ORDER BY id")
        writer = SpaceWriter(self.store, cname, space)
        failed: set[str] = set()
        done = 0
        try:
            while batch := rel.fetchmany(EMBED_BATCH):
                ids, content, hashes = (list(x) for x in zip(*batch))
                if coll["modality"] == "text":
                    vectors = enc.encode_text([str(t) for t in content], self.store.settings.batch_size)
                else:
                    ok = [n for n, path in enumerate(content) if _same_file(path, hashes[n], content_hash)]
                    failed |= {ids[n] for n in set(range(len(ids))) - set(ok)}
                    ids, hashes = [ids[n] for n in ok], [hashes[n] for n in ok]
                    vectors = enc.encode_images([content[n] for n in ok], self.store.settings.batch_size)
                if not ids:
                    continue
                writer.write(None, pa.table({"id": pa.array(ids, pa.string()),
                                             "content_hash": pa.array(hashes, pa.string())}), vectors)
                done += len(ids)
            writer.finish()
            self.store.commit()
        finally:
            writer.close()
        self.done.append(f"embedded {done:,} items of {cname} again in space {space} ({enc.spec})")
        return failed

    # -------------------------------------------------------------------------------------------- derived data
    def forget_keys(self, coll: dict[str, Any]) -> None:
        """Drop the collection's saved key tables (retired): they are written anew from the shards."""
        entries = [coll.pop("keys", None)]
        for sp in coll["spaces"].values():
            entries += list((sp.pop("keys", None) or {}).values())
        self.store.retire([e["file"] for e in entries if e and (self.root / e["file"]).exists()])

    def reindex(self, cname: str, space: str) -> None:
        """The space's key tables and index, written anew from its shards."""
        from .space_index import index_files
        from .writer import SpaceWriter

        coll = self.m["collections"][cname]
        sp = coll["spaces"][space]
        writer = SpaceWriter(self.store, cname, space)
        try:
            writer.finish()
        finally:
            writer.close()
        old = (sp.get("index") or {}).get("file")
        if old:
            self.store.retire([f for f in index_files(old) if (self.root / f).exists()])
        sp["index"] = None
        self.store.drop_growing(cname, space)
        self.store.sync_index(cname, space, save=True)
        self.store.commit()
        self.done.append(f"wrote the key tables and a new {sp['index']['factory']} index of {cname}.{space} "
                         f"({sp['rows']:,} vectors)")

    def predict_again(self) -> None:
        """Predictions made again (predict takes the writer lock: after the repair has let go of it)."""
        for cname, head, version in sorted(self.redo):
            self.store.refresh()
            if cname not in self.store.manifest["collections"]:
                continue
            try:
                out = self.store.predict(head, cname, version=version)
            except EmbstoreError as e:
                self.done.append(f"could not predict {cname} again with head {head} v{version}: {e}")
                continue
            self.done.append(f"predicted {out['predicted']:,} items of {cname} again with head {head} v{version}")


def _same_file(path: Any, digest: str, content_hash: Any) -> bool:
    """Whether the image file at ``path`` still has the bytes the item was embedded from."""
    try:
        with open(path, "rb") as f:
            return content_hash(f.read()) == digest
    except (OSError, TypeError):
        return False
