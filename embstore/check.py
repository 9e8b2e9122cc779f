"""Checking a store (``embstore check``): does what the manifest says hold for the files?

Each committed shard: there, of the size and checksum recorded at commit (``--quick``: the size only), readable, of
the rows the manifest says (vectors: of the space's width); an item shard's row copy (``row_copies.py``) likewise. Each collection: row counts add up, ids are unique and
every item has a vector in each space made from its content (DuckDB joins over the shards' id columns, spilling to
a temporary folder outside the store, so no Python structure holds a corpus' ids). Each space's index: its file
reads, is of the kind, width and size the manifest says, and at the first, middle and last row of up to
``SAMPLE_SHARDS`` shards holds the very vector the shard has (a reordered or replaced shard gives wrong hits); the
key tables the same way. Heads load (head.json and arrays) and agree with their spaces; predictions name a head
version that exists. Files no commit names, temporaries and a lock left by a killed writer are reported too.

Plain check reads only: it works on a read-only store folder and takes no lock. ``check_store(root, repair=True)``
hands what it finds to ``repair.py``. Every problem is a ``Problem`` in plain words with what to do.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import keys as kt
from .errors import DamagedStoreError
from .manifest import MANIFEST, lock_state, read_manifest
from .row_copies import copy_status
from .shard_sql import Joins
from .storage import checksum

SAMPLE_SHARDS = 256  # shards per space whose first, middle and last rows are compared with the index and keys
REPAIR = "`embstore check --repair`"


@dataclass
class Problem:
    """One thing wrong: its ``kind`` (a short tag), ``where`` (a store-relative file, or collection[.space], or a
    head version), the ``message`` (what is wrong and what to do), and whether ``--repair`` fixes it without losing
    anything (``fixable``). ``data`` is what the repair needs (not shown)."""

    kind: str
    where: str
    message: str
    fixable: bool
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self.where, "message": self.message, "fixable": self.fixable}


@dataclass
class CheckReport:
    """What ``check_store`` found. With ``repair``: ``found`` is what was wrong before, ``repairs`` what was done,
    and ``problems`` what is still wrong after (empty when the store is whole again)."""

    root: str
    problems: list[Problem]
    notes: list[str]
    counts: dict[str, int]
    quick: bool = False
    repairs: list[str] = field(default_factory=list)
    found: list[Problem] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        c = self.counts
        what = (f"{c['collections']} collection{_s(c['collections'])}, {c['items']:,} item{_s(c['items'])}, "
                f"{c['spaces']} space{_s(c['spaces'])} ({c['vectors']:,} vectors), {c['heads']} head "
                f"version{_s(c['heads'])}, {c['predictions']} prediction set{_s(c['predictions'])}")
        how = "sizes, not checksums (--quick)" if self.quick else "shards checksummed"
        if self.ok:
            return f"store OK: {what}; {how}"
        n = len(self.problems)
        return f"{n} problem{_s(n)} in store {self.root} ({what}; {how})"

    def to_dict(self) -> dict[str, Any]:
        out = {"store": self.root, "ok": self.ok, "summary": self.summary(), "counts": self.counts,
               "quick": self.quick, "problems": [p.to_dict() for p in self.problems], "notes": self.notes}
        if self.found is not None:
            out["found"] = [p.to_dict() for p in self.found]
            out["repairs"] = self.repairs
        return out


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def check_store(root: str | Path, repair: bool = False, *, quick: bool = False, settings: Any = None) -> CheckReport:
    """Check the store at ``root``; with ``repair``, fix what can be fixed (under the writer lock) and check again.
    ``quick`` compares shard sizes, not checksums (no shard is read through)."""
    from .errors import NotFoundError

    root = Path(root).expanduser().absolute()
    if not (root / MANIFEST).is_file():
        raise NotFoundError(f"no store at {root} (no {MANIFEST})")
    if repair:
        from .repair import repair_store

        return repair_store(root, quick=quick, settings=settings)
    return inspect(root, read_manifest(root), quick=quick, lock=lock_state(root))


def inspect(root: Path, manifest: dict[str, Any], *, quick: bool, lock: tuple[str, str]) -> CheckReport:
    """The problems of ``manifest`` against the files under ``root`` (read only)."""
    checker = _Checker(root, manifest, quick)
    try:
        checker.run(lock)
    finally:
        checker.close()
    return CheckReport(str(root), checker.problems, checker.notes, checker.counts, quick)


# ------------------------------------------------------------------------------------------------ files
def file_status(root: Path, entry: dict[str, Any], quick: bool, dim: int | None = None) -> tuple[str, str, int]:
    """(status, what is wrong in words, rows in the file) of a committed shard: status is ``ok``, ``missing``,
    ``size``, ``unreadable``, ``changed`` (checksum), ``dim`` (vectors of another width) or ``rows`` (reads, with
    another row count than the manifest's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rel = entry["file"]
    path = root / rel
    if Path(rel).is_absolute() or ".." in Path(rel).parts or not path.is_file():
        return "missing", "is missing", 0
    size = path.stat().st_size
    if "bytes" in entry and size != entry["bytes"]:
        return "size", f"has {size:,} bytes, not the {entry['bytes']:,} it had when committed (cut short or " \
                       "overwritten)", 0
    try:
        f = pq.ParquetFile(path)
        rows, schema = f.metadata.num_rows, f.schema_arrow
    except (OSError, pa.ArrowException) as e:
        return "unreadable", f"cannot be read ({str(e).splitlines()[0][:120]})", 0
    if not quick and "blake2b" in entry and checksum(path) != entry["blake2b"]:
        return "changed", "does not match the checksum recorded when it was committed (its bytes changed)", rows
    if dim is not None:
        kind = schema.field("embedding").type if "embedding" in schema.names else None
        if kind is None or not pa.types.is_fixed_size_list(kind) or kind.list_size != dim:
            return "dim", f"holds no {dim}-wide vectors (its embedding column is {kind})", rows
    if rows != entry["rows"]:
        return "rows", f"holds {rows:,} rows where the manifest says {entry['rows']:,}", rows
    return "ok", "", rows


def lost(status: str) -> bool:
    """Whether a shard's rows cannot be read back as they were committed."""
    return status in ("missing", "size", "unreadable", "dim")


# ------------------------------------------------------------------------------------------------ the checker
class _Checker:
    def __init__(self, root: Path, manifest: dict[str, Any], quick: bool):
        self.root, self.manifest, self.quick = root, manifest, quick
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self.counts = {"collections": 0, "items": 0, "spaces": 0, "vectors": 0, "heads": 0, "predictions": 0}
        self._joins: Joins | None = None
        self.unsummed = 0  # shards committed before checksums were recorded

    @property
    def joins(self) -> Joins:
        if self._joins is None:
            self._joins = Joins()
        return self._joins

    def close(self) -> None:
        if self._joins is not None:
            self._joins.close()

    def add(self, kind: str, where: str, message: str, fixable: bool, **data: Any) -> None:
        self.problems.append(Problem(kind, where, message, fixable, data))

    def run(self, lock: tuple[str, str]) -> None:
        state, holder = lock
        if state == "held":
            self.notes.append(f"a writer is at work ({holder}): files it has not committed yet are not reported; "
                              "check again when it is done")
        elif state == "stale" and " host " not in f" {holder} ":  # an older embstore never emptied its lock
            self.notes.append(f"the writer lock names {holder}, as an older embstore left it after every write")
        elif state == "stale":
            self.add("stale-lock", ".writer.lock", f"the writer lock names {holder}, a writer that was killed "
                     f"before it finished (the OS has released its lock); {REPAIR}, or the next write, takes it over "
                     "and sweeps what it left", True, holder=holder)
        for name, coll in sorted(self.manifest["collections"].items()):
            try:
                self.collection(name, coll)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                self.add("manifest", name, f"the manifest's entry of collection {name} is malformed ({e!r}); "
                         "restore embstore.json from a backup", False)
        self.heads()
        if state != "held":
            self.leftovers()
        if self.unsummed:
            self.notes.append(f"{self.unsummed:,} shard{_s(self.unsummed)} of items or vectors were committed by an "
                              "older embstore, without a size and checksum: their bytes are not compared")

    # -------------------------------------------------------------------------------------------- collections
    def collection(self, name: str, coll: dict[str, Any]) -> None:
        self.counts["collections"] += 1
        self.counts["items"] += sum(s["rows"] for s in coll["item_shards"])
        readable, good = self.shards(name, None, coll["item_shards"], None, coll)
        paths = [self.root / s["file"] for s in readable]
        n, rows, some = self.joins.duplicates(paths)
        if n:
            self.add("duplicate-ids", name, f"collection {name} holds {n:,} ids more than once ({rows:,} rows; e.g. "
                     f"{', '.join(map(str, some))}); {REPAIR} keeps the first row of each and writes the others to "
                     f"quarantine/{name}/", True, collection=name)
        self.key_table(name, coll, None, good)
        for space, sp in sorted(coll["spaces"].items()):
            self.space(name, coll, space, sp, paths)
        for head, pred in sorted(coll.get("predictions", {}).items()):
            self.predictions(name, head, pred, paths)

    def shards(self, cname: str, space: str | None, shards: list[dict[str, Any]], dim: int | None,
               coll: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Check each shard's file; returns the shards that read (their rows can be compared), and those that read
        as committed."""
        good, readable, seen = [], [], set()
        where = cname if space is None else f"{cname}.{space}"
        external = space is not None and str(coll["spaces"][space]["encoder"]["spec"]).startswith("external:")
        for entry in shards:
            rel = entry["file"]
            what = "item shard" if space is None else f"vector shard of {where}"
            if rel in seen:
                self.add("listed-twice", rel, f"{what} {rel} is listed twice in the manifest, so its rows count "
                         f"twice; {REPAIR} lists it once", True, collection=cname, space=space, file=rel)
                continue
            seen.add(rel)
            self.unsummed += "blake2b" not in entry
            status, detail, rows = file_status(self.root, entry, self.quick, dim)
            if status == "ok":
                good.append(entry)
                readable.append(entry)
                wrong = copy_status(self.root, entry, self.quick) if space is None else None
                if wrong:
                    copy = entry["rows_copy"]["file"]
                    self.add("rows-copy", copy, f"{copy}, the row copy of item shard {rel}, {wrong}; searches read "
                             f"the shard instead (slower); {REPAIR} writes it anew from the shard", True,
                             collection=cname, space=None, file=rel)
                elif space is None and not entry.get("rows_copy"):
                    self.add("rows-copy", rel, f"item shard {rel} has no row copy (an older embstore wrote it): "
                             f"searches decode the shard instead (slower); {REPAIR} writes one", True,
                             collection=cname, space=None, file=rel)
            elif status == "rows":
                readable.append(entry)
                self.add("rows", rel, f"{what} {rel} {detail}: the manifest was edited or is from another store; "
                         f"{REPAIR} records {rows:,}", True, collection=cname, space=space, file=rel, rows=rows)
            elif status == "changed" and (space is None or external):
                self.add("changed", rel, f"{what} {rel} {detail}, though it still reads as {rows:,} rows; restore it "
                         f"from a backup if you have one; {REPAIR} keeps it as it reads now and records its new "
                         "checksum", True, collection=cname, space=None, file=rel)
                readable.append(entry)
            elif space is None:
                self.add("lost-items", rel, f"{what} {rel} {detail}: its {entry['rows']:,} items (their content "
                         "and columns) cannot be read. Restore the file from a backup and check again; otherwise "
                         f"{REPAIR} removes them (and their vectors), listing their ids in quarantine/{cname}/",
                         False, collection=cname, space=None, file=rel)
            else:
                spec = coll["spaces"][space]["encoder"]["spec"]
                then = (f"their vectors were made outside embstore ({spec}), so restore the file from a backup; "
                        f"otherwise {REPAIR} removes those items, writing their rows to quarantine/{cname}/"
                        if external else f"{REPAIR} embeds those items again with the space's encoder ({spec})")
                self.add("lost-vectors", rel, f"{what} {rel} {detail}: {entry['rows']:,} items have no usable "
                         f"vector in {space}; {then}", not external, collection=cname, space=space, file=rel)
        return readable, good

    def space(self, cname: str, coll: dict[str, Any], space: str, sp: dict[str, Any], items: list[Path]) -> None:
        where = f"{cname}.{space}"
        self.counts["spaces"] += 1
        self.counts["vectors"] += sp["rows"]
        dim = sp["encoder"]["dim"]
        readable, good = self.shards(cname, space, sp["shards"], dim, coll)
        total = sum(s["rows"] for s in sp["shards"])
        if sp["rows"] != total:
            self.add("rows", where, f"space {where} says it holds {sp['rows']:,} vectors, its shards {total:,}; "
                     f"{REPAIR} records {total:,}", True, collection=cname, space=space, rows=total)
        paths = [self.root / s["file"] for s in readable]
        n, rows, some = self.joins.duplicates(paths)
        if n:
            self.add("duplicate-ids", where, f"space {where} holds {n:,} ids more than once ({rows:,} rows; e.g. "
                     f"{', '.join(map(str, some))}); {REPAIR} keeps the first", True, collection=cname, space=space)
        external = str(sp["encoder"]["spec"]).startswith("external:")
        diff = self.joins.versus(items, paths)
        (missing, m_ids), (orphan, o_ids), (other, x_ids) = diff["missing"], diff["orphan"], diff["other"]
        if missing:
            how = (f"{REPAIR} cannot embed them again (vectors made outside embstore) and removes them, writing "
                   f"their rows to quarantine/{cname}/" if external else f"{REPAIR} embeds them with the space's "
                   f"encoder ({sp['encoder']['spec']})")
            self.add("missing-vectors", where, f"{missing:,} items of {cname} have no vector in space {space} (e.g. "
                     f"{', '.join(m_ids)}); {how}", not external, collection=cname, space=space)
        if orphan:
            self.add("orphan-vectors", where, f"{orphan:,} vectors of space {where} belong to no item of {cname} "
                     f"(e.g. {', '.join(o_ids)}): a search could return them but not show them; {REPAIR} removes "
                     f"them, listing their ids in quarantine/{cname}/", True, collection=cname, space=space)
        if other:
            self.add("other-content", where, f"{other:,} vectors of space {where} were made from other content than "
                     f"their item's (e.g. {', '.join(x_ids)}); {REPAIR} embeds those items again", not external,
                     collection=cname, space=space)
        sample = self.sample(cname, space, sp) if len(good) == len(sp["shards"]) and sp["rows"] == total else []
        self.index(cname, space, sp, sample)
        self.key_table(cname, coll, space, good, sample)

    def sample(self, cname: str, space: str, sp: dict[str, Any]) -> list[tuple[int, int, str, np.ndarray]]:
        """(shard number, row in it, id, vector) at the first, middle and last row of up to SAMPLE_SHARDS shards."""
        from .lookup import read_rows
        from .storage import embedding_matrix

        shards = sp["shards"]
        picked = sorted(set(np.linspace(0, len(shards) - 1, min(len(shards), SAMPLE_SHARDS)).round().astype(int)))
        out = []
        for k in picked if shards else []:
            n = shards[k]["rows"]
            if not n:
                continue
            rows = sorted({0, n // 2, n - 1})
            try:
                t = read_rows(self.root / shards[k]["file"], rows, ["id", "embedding"], fresh=True)
            except DamagedStoreError as e:  # (a footer that reads over pages that do not: found without checksums)
                self.add("lost-vectors", shards[k]["file"], f"{e}", False, collection=cname, space=space,
                         file=shards[k]["file"])
                return []
            vectors = embedding_matrix(t.column("embedding"), sp["encoder"]["dim"])
            out += [(int(k), r, i, v) for r, i, v in zip(rows, t.column("id").to_pylist(), vectors)]
        return out

    def index(self, cname: str, space: str, sp: dict[str, Any], sample: list) -> None:
        from . import index as ix

        where, entry, rows = f"{cname}.{space}", sp.get("index") or {}, sp["rows"]
        fix = f"{REPAIR} (or `embstore index -c {cname} --space {space}`) builds it anew from the shards"

        def bad(what: str) -> None:
            self.add("index", where, f"the index of space {where} {what}; {fix}", True, collection=cname, space=space)

        if not entry.get("file"):
            if rows:
                bad("was never saved (an ingest was interrupted): each search builds an exact one in memory")
            return
        path = self.root / entry["file"]
        if not path.is_file():
            return bad(f"({entry['file']}) is missing: each search builds an exact one in memory")
        try:
            index = ix.load_index(path, mmap=True)
        except (RuntimeError, OSError) as e:
            reason = "cut short, or not a FAISS index" if "read" in str(e) else str(e).strip().splitlines()[-1][:100]
            return bad(f"({entry['file']}) cannot be read ({reason}): each search builds an exact one in memory")
        dim, factory = sp["encoder"]["dim"], entry.get("factory", "Flat")
        kind = index_kind_mismatch(index, factory, dim)
        if kind:
            return bad(f"({entry['file']}) is {kind}, but the manifest says {factory} at {dim} dimensions (the file "
                       "and the manifest disagree)")
        if index.ntotal != entry.get("ntotal"):
            return bad(f"file holds {index.ntotal:,} vectors where the manifest says {entry.get('ntotal')}")
        if index.ntotal < rows:
            return bad(f"holds {index.ntotal:,} of the space's {rows:,} vectors (an ingest was interrupted): each "
                       "search adds the rest from the shards")
        if index.ntotal > rows:
            return bad(f"holds {index.ntotal:,} vectors, more than the space's {rows:,}")
        wrong = index_rows_disagree(index, sp, entry, sample)
        if wrong:
            bad(f"holds other vectors than the space's shards at {wrong} of {len(sample)} rows compared (shards "
                "reordered or replaced after it was built): searches return wrong items and scores")

    def key_table(self, cname: str, coll: dict[str, Any], space: str | None, good: list[dict[str, Any]],
                  sample: list | None = None) -> None:
        """A collection's (or a space's) saved key tables: there, whole, and right at sampled rows."""
        shards = coll["item_shards"] if space is None else coll["spaces"][space]["shards"]
        entries = {"items": coll.get("keys")} if space is None else dict((coll["spaces"][space].get("keys") or {}))
        where = cname if space is None else f"{cname}.{space}"
        if not shards:
            return
        if space is not None and not entries:
            entries = {"by_id": None}
        unsaved, broken, behind = [], [], []
        for name, entry in entries.items():
            if not entry:
                unsaved.append(name)
                continue
            if name == "by_position":
                keys = kt.load_positions(self.root, entry, shards)
                wrong = keys is None or any(k < entry["shards"] and kt.id_keys([i])[0] != keys[int(
                    _offset(shards, k) + r)] for k, r, i, _ in sample or [])
            else:
                fields = kt.ITEM_FIELDS if name == "items" else kt.BY_ID_FIELDS if name == "by_id" \
                    else kt.BY_HASH_FIELDS
                table = kt.load_table(self.root / entry["file"], fields)
                wrong = table is None or table.shape[1] != entry.get("rows") or entry.get("shards", 0) > len(shards)
                if not wrong and name != "by_hash":
                    wrong = self.keys_disagree(kt.KeyTable(fields, table), shards, entry["shards"], good)
            if wrong:
                broken.append(f"{name} ({entry['file']})")
            elif entry["shards"] < len(shards):
                behind.append(f"{name} covers {entry['shards']} of {len(shards)} shards")
        said = [f"{', '.join(unsaved)} never saved (an ingest was interrupted)"] if unsaved else []
        said += [f"{', '.join(broken)} missing, damaged or disagreeing with the shards"] if broken else []
        said += [f"{'; '.join(behind)} (an ingest was interrupted)"] if behind else []
        if said:
            self.add("keys", where, f"the key tables of {where}: {'; '.join(said)}; lookups read the shards "
                     f"instead (slow at size); {REPAIR}, or the next ingest, writes them anew", True,
                     collection=cname)

    def keys_disagree(self, table: kt.KeyTable, shards: list[dict[str, Any]], covered: int,
                      good: list[dict[str, Any]]) -> bool:
        """Whether the table misplaces an id at the first, middle and last row of sampled shards it covers."""
        from .lookup import read_rows

        files = {s["file"] for s in good}
        picked = sorted(set(np.linspace(0, covered - 1, min(covered, SAMPLE_SHARDS)).round().astype(int))) \
            if covered else []
        for k in picked:
            shard = shards[k]
            if shard["file"] not in files or not shard["rows"]:
                continue
            rows = sorted({0, shard["rows"] // 2, shard["rows"] - 1})
            try:
                ids = read_rows(self.root / shard["file"], rows, ["id"], fresh=True).column("id").to_pylist()
            except DamagedStoreError:
                return True
            found, rec = table.find_ids(ids)
            loc = rec[table.fields.index("loc")]
            if not found.all() or not np.array_equal(loc, kt.locations(kt.part_of(shard), np.array(rows))):
                return True
        return False

    def predictions(self, cname: str, head: str, pred: dict[str, Any], items: list[Path]) -> None:
        self.counts["predictions"] += 1
        where = f"{cname} predictions of {head}"
        versions = [v["version"] for v in self.manifest["heads"].get(head, {}).get("versions", [])]
        if pred["version"] not in versions:
            self.add("predictions", where, f"collection {cname} stores predictions of head {head} version "
                     f"{pred['version']}, which the store does not have (deleted, or the manifest was edited); "
                     f"{REPAIR} drops them", True, collection=cname, head=head, redo=False)
            return
        status = [(s, *file_status(self.root, s, self.quick)) for s in pred["shards"]]
        bad = [f"{s['file']} {d}" for s, st, d, _ in status if st != "ok"]
        total = sum(s["rows"] for s in pred["shards"])
        if total != pred["rows"]:
            bad.append(f"its shards hold {total:,} rows where the manifest says {pred['rows']:,}")
        if not bad:
            n, some = self.joins.strays(items, [self.root / s["file"] for s in pred["shards"]])
            if n:
                bad.append(f"{n:,} of them are for ids that are no items of {cname} (e.g. {', '.join(some)})")
        if bad:
            self.add("predictions", where, f"the predictions of head {head} v{pred['version']} on {cname}: "
                     f"{'; '.join(bad)}; {REPAIR} predicts the collection again", True, collection=cname, head=head,
                     redo=True, version=pred["version"])

    # -------------------------------------------------------------------------------------------- heads
    def heads(self) -> None:
        for name, h in sorted(self.manifest["heads"].items()):
            for v in h.get("versions", []):
                self.counts["heads"] += 1
                self.head(name, v)

    def head(self, name: str, v: dict[str, Any]) -> None:
        where = f"head {name} v{v['version']}"
        folder = self.root / v["path"]

        def bad(what: str) -> None:
            self.add("head", where, f"{where} {what}: it cannot be loaded; fit it again (restore its folder "
                     f"{v['path']} from a backup first if you want this version); {REPAIR} removes the version "
                     "from the manifest, with its stored predictions", False, head=name, version=v["version"])

        try:
            record = json.loads((folder / "head.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return bad(f"has no {v['path']}/head.json")
        except (OSError, ValueError) as e:
            return bad(f"has a {v['path']}/head.json that cannot be read ({str(e)[:100]})")
        if record.get("version") != v["version"] or record.get("space_fingerprint") != v["space_fingerprint"]:
            return bad(f"has a head.json of another version or space ({record.get('version')}, "
                       f"{record.get('space_fingerprint')})")
        width = None
        for key, file in (record.get("arrays") or {}).items():
            try:
                arr = np.load(folder / file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                return bad(f"has an array {file} that cannot be read ({str(e)[:80]})")
            if key in ("coef", "centroids", "X"):
                width = arr.shape[-1]
        dim = (record.get("encoder") or {}).get("dim")
        if width is not None and dim is not None and width != dim:
            return bad(f"has {width}-wide parameters for a {dim}-dimensional space")
        sp = self.manifest["collections"].get(v["collection"], {}).get("spaces", {}).get(v["space"])
        if sp is None:
            self.notes.append(f"{where} was trained on {v['collection']}.{v['space']}, which is no longer in the "
                              "store: it still predicts new inputs" + (", but a head with kNN needs its training items: "
                                                                       "fit it again" if v["model"] in ("knn", "blend") else ""))
        elif sp["encoder"]["fingerprint"] != v["space_fingerprint"]:
            self.notes.append(f"{where} was trained on another encoder than space {v['collection']}.{v['space']} "
                              "has now: predicting that collection with it is refused; fit it again")

    # -------------------------------------------------------------------------------------------- leftovers
    def leftovers(self) -> None:
        from .sweep import TEMP, leftovers

        for path in leftovers(self.root, copy.deepcopy(self.manifest)):
            rel = path.relative_to(self.root).as_posix()
            if rel.startswith("quarantine/"):
                self.add("stray", rel, f"{rel} holds quarantine records of a collection the store does not have (an "
                         f"ingest or a delete was killed); {REPAIR}, or the next write, deletes it", True)
            elif TEMP.match(path.name) or rel == ".tmp":
                self.add("temporary", rel, f"{rel} is a temporary file left by a writer that was killed or failed; "
                         f"{REPAIR}, or the next write, deletes it", True)
            else:
                self.add("stray", rel, f"{rel} is named by no commit (written by a writer killed before its commit, "
                         f"or copied in), so no reader uses it; {REPAIR}, or the next write, deletes it", True)


def _offset(shards: list[dict[str, Any]], k: int) -> int:
    return sum(s["rows"] for s in shards[:k])


def index_kind_mismatch(index: Any, factory: str, dim: int) -> str | None:
    """How ``index`` differs from an index the ``factory`` string makes at ``dim`` (type, lists, metric), or None."""
    import faiss

    got = faiss.downcast_index(index)
    name = f"an index of type {type(got).__name__} at {index.d} dimensions"
    if index.d != dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return name + ("" if index.metric_type == faiss.METRIC_INNER_PRODUCT else " (not inner product)")
    try:
        want = faiss.downcast_index(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
    except RuntimeError:
        return name
    if not isinstance(got, type(want)):
        return name
    if isinstance(got, faiss.IndexIVF) and got.nlist != want.nlist:
        return f"{name} with {got.nlist} lists"
    return None


def index_rows_disagree(index: Any, sp: dict[str, Any], entry: dict[str, Any], sample: list) -> int:
    """At how many sampled rows the index holds another vector than the shard: compared through the index's own
    reconstruction (the nearest of the sampled vectors must be its own; exact kinds: cosine >= 0.999), or, where
    the index cannot reconstruct, a search for each that must find its row."""
    from . import index as ix

    if not sample:
        return 0
    offsets = np.cumsum([0] + [s["rows"] for s in sp["shards"]])
    rows = np.array([offsets[k] + r for k, r, _, _ in sample], np.int64)
    stored = ix.normalize(np.stack([v for _, _, _, v in sample]))
    factory = entry.get("factory", "Flat")
    recon = _reconstruct(index, rows)
    if recon is None:
        ix.set_param(index, factory, entry.get("value"))
        _, found = index.search(stored, 10)
        return int(sum(r not in hits for r, hits in zip(rows, found)))
    sims = ix.normalize(recon) @ stored.T
    own = np.diag(sims)
    exact = "PQ" not in factory and "SQ" not in factory
    wrong = (own < sims.max(axis=1) - 1e-5) | ((own < 0.999) if exact else False)
    return int(wrong.sum())


def _reconstruct(index: Any, rows: np.ndarray) -> np.ndarray | None:
    import faiss

    for attempt in range(2):
        try:
            return np.asarray(index.reconstruct_batch(rows), np.float32)
        except RuntimeError:
            if attempt:
                return None
            try:
                faiss.extract_index_ivf(index).make_direct_map()
            except RuntimeError:
                return None
    return None
