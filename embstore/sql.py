"""DuckDB over the store: a view per collection (its items), per space (``<collection>__<space>``: id, content_hash,
embedding) and ``predictions`` (every head's predictions: collection, id, head, version, label, confidence, labels). Read-only unless asked,
and confined to the store's shards unless files are allowed (``sql_guard``); a view whose shards cannot be read
fails only the queries that use it."""
from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Sequence

from .encoders import recorded_modalities
from .errors import InputError, ReadOnlyError
from .sql_guard import check_statements, confine, error_line
PREDICTION_COLUMNS = "NULL::VARCHAR AS collection, NULL::VARCHAR AS id, NULL::VARCHAR AS head, NULL::INTEGER AS " \
                     "version, NULL::VARCHAR AS label, NULL::FLOAT AS confidence, NULL::VARCHAR[] AS labels"


def _files(store: Any, shards: list[dict]) -> str:
    return "[" + ", ".join(_quote(str(store.root / s["file"])) for s in shards) + "]"


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def space_view(collection: str, space: str) -> str:
    """The SQL view of a space: ``<collection>__<space>`` (collection names never hold ``__``)."""
    return f"{collection}__{space}"


CHECK_ROWS = 1_000  # items a predicate is tried on before a model loads


def ids_where(store: Any, collection: str, where: str, option: str, check_only: bool = False) -> list[str]:
    """The ids of the items of ``collection`` that match the SQL condition ``where`` (given as ``option``, named in
    the one-line error when it is not a valid condition); ``check_only``: the condition is bound and run on the
    first ``CHECK_ROWS`` items only (a bad cast, say ``label = 1`` on a text column, fails there, before a model
    loads), nothing is returned."""
    with predicate_errors(store, collection, where, option):
        if check_only:
            store.sql(f'SELECT id FROM (SELECT * FROM "{collection}" LIMIT {CHECK_ROWS}) AS "{collection}" '
                      f'WHERE {where}').fetchall()
            return []
        return [r[0] for r in store.sql(f'SELECT id FROM "{collection}" WHERE {where}').fetchall()]


@contextlib.contextmanager
def predicate_errors(store: Any, collection: str, where: str, option: str) -> Iterator[None]:
    """A query running the condition ``where`` (given as ``option``) over ``collection``'s items fails in one line
    that names the option and, for a column it does not have, the collection's columns."""
    import duckdb

    try:
        yield
    except (duckdb.DataError, duckdb.ProgrammingError) as e:  # raised while rows are read: a bad cast (label = 1
        # on text), a value out of range, a function's bad input; a shard that cannot be read is not the predicate's
        raise InputError(f"bad {option} predicate {where!r}: {str(e).splitlines()[0]}") from None
    except InputError as e:
        hint = ""
        if "Referenced column" in str(e):
            cols = store.sql(f'SELECT * FROM "{collection}" LIMIT 0').columns
            hint = f"; the columns of {collection!r} are: {', '.join(c for c in cols if c != 'content_hash')}"
        raise InputError(f"bad {option} predicate {where!r}: {e}{hint}") from None
    except ReadOnlyError:
        raise InputError(f"bad {option} predicate {where!r}: give one SQL condition over the collection's columns, "
                         "not statements") from None


def items_source(store: Any, collection: str) -> str:
    """What a collection's view reads: its item shards, by column name (shards written before a column was added
    lack it). A query over it can also ask which shard and row each item is in (DuckDB's ``file_index``, the shard's
    place in ``item_shards``, and ``file_row_number``), which the view does not show."""
    return f'read_parquet({_files(store, store.collection(collection)["item_shards"])}, union_by_name = true)'


def view_names(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """Every view the store's SQL has, as (name, what it shows): predictions, then each collection and its spaces."""
    names = [("predictions", "the predictions view")]
    for name, c in sorted(manifest["collections"].items()):
        names.append((name, f"collection {name!r}"))
        names += [(space_view(name, space), f"the view of space {space!r} of collection {name!r}")
                  for space in sorted(c["spaces"])]
    return names


def taken_names(manifest: dict[str, Any]) -> dict[str, str]:
    """Every view name the store's SQL uses, lower-cased (SQL names ignore case), and what it shows: a new
    collection or space must not take one, or one view would hide another."""
    return {name.lower(): what for name, what in view_names(manifest)}


def view_statements(store: Any, temp: bool = True) -> list[str]:
    """The statements making the store's views: TEMP views (a connection's own, never written into STORE/sql.duckdb)
    unless ``temp`` is false (a database of embstore's own: ``sql_shared``)."""
    view = "TEMP VIEW" if temp else "VIEW"
    out = []
    preds = []
    for name, c in sorted(store.manifest["collections"].items()):
        if c["item_shards"]:
            out.append(f'CREATE OR REPLACE {view} "{name}" AS SELECT * FROM {items_source(store, name)}')
        else:  # every row was quarantined (or none yet): an empty view, not a missing table
            content = f', NULL::VARCHAR AS "{c["content_column"]}"' if c.get("content_column") not in (None, "id") else ""
            out.append(f'CREATE OR REPLACE {view} "{name}" AS SELECT NULL::VARCHAR AS id{content}, '
                       "NULL::VARCHAR AS content_hash WHERE false")
        for space, sp in sorted(c["spaces"].items()):
            if sp["shards"]:
                dim = sp["encoder"]["dim"]  # Parquet's fixed-size lists read as lists: make them arrays again
                out.append(f'CREATE OR REPLACE {view} "{space_view(name, space)}" AS SELECT id, content_hash, '
                           f'embedding::FLOAT[{dim}] AS embedding FROM read_parquet({_files(store, sp["shards"])})')
        for head, p in sorted(c["predictions"].items()):
            if not p["shards"]:  # a head predicted over an empty space: nothing to read
                continue
            preds.append(f"SELECT {_quote(name)} AS collection, id, head, version, label, confidence, labels "
                         f"FROM read_parquet({_files(store, p['shards'])})")
    body = " UNION ALL ".join(preds) if preds else f"SELECT {PREDICTION_COLUMNS} WHERE false"
    out.append(f"CREATE OR REPLACE {view} predictions AS {body}")
    return out


def connect(store: Any, *, write: bool = False, allow_files: bool = False, allow_paths: Sequence[str] = (),
            settings: Sequence[Any] = ()) -> Any:
    """A DuckDB connection with the store's views; unless ``allow_files``, it can open only the store's shards and
    ``allow_paths`` (a result file), and ``settings`` (checked SET statements) are its last changes of setting."""
    import duckdb

    # the user's own tables live in STORE/sql.duckdb: opened for writing with --write, read-only otherwise
    db = store.root / "sql.duckdb"
    if write:
        con = duckdb.connect(str(db))
    elif db.exists():
        con = duckdb.connect(str(db), read_only=True)
    else:
        con = duckdb.connect(":memory:")
    try:
        make_views(store, con)
        register_udfs(store, con, allow_files=allow_files)
        create_macros(store, con)
        if not allow_files:
            confine(con, [*shard_files(store), *map(str, allow_paths)], settings)
    except BaseException:
        con.close()
        raise
    return con


def make_views(store: Any, con: Any, temp: bool = True) -> None:
    """The store's views in ``con`` (see ``view_statements``); a view whose shards cannot be read fails only the
    queries that use it."""
    import duckdb

    for stmt in view_statements(store, temp):
        try:
            con.execute(stmt)
        except duckdb.Error as e:  # a shard missing or damaged: this view fails when used, the others work
            con.execute(_damaged_view(stmt, e))


def shard_files(store: Any) -> list[str]:
    """Every file a view of the store reads (as the views name them)."""
    out = []
    for c in store.manifest["collections"].values():
        out += [str(store.root / s["file"]) for s in c["item_shards"]]
        for sp in c["spaces"].values():
            out += [str(store.root / s["file"]) for s in sp["shards"]]
        for p in c["predictions"].values():
            out += [str(store.root / s["file"]) for s in p["shards"]]
    return out


def _damaged_view(stmt: str, e: Exception) -> str:
    """A view in place of one whose files cannot be read: any query reading it fails with the reason."""
    kind, name = re.match(r'CREATE OR REPLACE ((?:TEMP )?VIEW) ("[^"]+"|\w+)', stmt).groups()
    reason = f"view {name} cannot be read: {str(e).splitlines()[0]}; restore the file from a backup, or delete the collection and ingest it again"
    return (f"CREATE OR REPLACE {kind} {name} AS SELECT NULL::VARCHAR AS id FROM range(1) "
            f"WHERE error({_quote(reason)}) IS NULL")


def register_udfs(store: Any, con: Any, allow_files: bool = False) -> None:
    """``embed(target, text)``: the text embedded by the space's own encoder (target: ``collection`` or
    ``collection.space``), as FLOAT[]; ``embed_image(target, path)`` the same for an image file (a CLIP space takes
    both). The last ``EMBED_CACHE`` embeddings are kept (a shared database serves many queries)."""
    import threading

    import duckdb

    try:
        from duckdb import sqltypes as t  # duckdb >= 1.4
    except ImportError:  # pragma: no cover
        from duckdb import typing as t

    cache = _Cache(EMBED_CACHE, threading.Lock())

    def embed(target: str, text: str) -> list[float]:
        key = (target, text)
        if (hit := cache.get(key)) is None:
            if target in store.manifest["collections"]:  # the exact name first: an older store's may hold "__"
                collection, space = target, ""
            else:
                collection, _, space = target.replace("__", ".", 1).partition(".") if "." not in target \
                    else target.partition(".")
            enc = store.encoder_for(collection, space or None)
            if "text" not in enc.modalities:
                raise ValueError(f"{target!r} is a space of {collection!r} made by {enc.spec}, which does not embed "
                                 "text")
            return cache.put(key, enc.encode_text([text])[0].tolist())
        return hit

    def embed_image(target: str, path: str) -> list[float]:
        key = (target, "\0image\0" + path)
        if (hit := cache.get(key)) is None:
            collection, _, space = target.partition(".") if target not in store.manifest["collections"] \
                else (target, "", "")
            if not allow_files:  # (a Python function: DuckDB's file lock does not cover what it opens)
                from .sql_guard import ALLOW_FILES

                raise ValueError(f"embed_image reads an image file outside the store: {ALLOW_FILES}")
            enc = store.encoder_for(collection, space or None)
            if "image" not in enc.modalities:
                raise ValueError(f"{target!r} is a space of {collection!r} made by {enc.spec}, which does not embed "
                                 "images")
            from .encoders.base import load_user_image

            return cache.put(key, enc.encode_preprocessed([enc.preprocess(load_user_image(path, store.settings.max_pixels))])[0].tolist())
        return hit

    con.create_function("embed", embed, [t.VARCHAR, t.VARCHAR], duckdb.list_type(t.FLOAT), side_effects=False)
    con.create_function("embed_image", embed_image, [t.VARCHAR, t.VARCHAR], duckdb.list_type(t.FLOAT),
                        side_effects=False)


def create_macros(store: Any, con: Any, temp: bool = True) -> None:
    """``similarity(embedding, vector)``: cosine; and per collection with one text space, the table macro
    ``<collection>_nearest(text, k)``: the k items nearest to the text, with ``score``; ``<collection>_nearest_image(path,
    k)`` the same for an image file (texts find images and images find texts in a CLIP space). TEMP macros unless
    ``temp`` is false (see ``view_statements``)."""
    import duckdb

    macro = "TEMP MACRO" if temp else "MACRO"
    con.execute(f"CREATE OR REPLACE {macro} similarity(a, b) AS list_cosine_similarity(a::FLOAT[], b::FLOAT[])")
    for name, c in store.manifest["collections"].items():
        text_spaces = [s for s, sp in c["spaces"].items()
                       if sp["shards"] and "text" in recorded_modalities(sp["encoder"])]
        if len(text_spaces) >= 1 and c["item_shards"]:
            space = text_spaces[0]
            try:
                con.execute(f'CREATE OR REPLACE {macro} "{name}_nearest"(q, k) AS TABLE '
                            f'SELECT i.*, s.score FROM (SELECT id, similarity(embedding, embed({_quote(name + "." + space)}, q)) '
                            f'AS score FROM "{space_view(name, space)}" ORDER BY score DESC LIMIT k) s JOIN "{name}" i USING (id) '
                            "ORDER BY s.score DESC")
            except duckdb.Error:  # a damaged view (see connect): the macro reads it, to fail with its reason
                con.execute(f'CREATE OR REPLACE {macro} "{name}_nearest"(q, k) AS TABLE '
                            f'SELECT * FROM "{space_view(name, space)}", "{name}" LIMIT k')
        image_spaces = [s for s, sp in c["spaces"].items()
                        if sp["shards"] and "image" in recorded_modalities(sp["encoder"])]
        if image_spaces and c["item_shards"]:  # an image query: a CLIP space first (it also answers texts)
            space = sorted(image_spaces, key=lambda s: c["spaces"][s]["encoder"].get("library") != "open_clip")[0]
            try:
                con.execute(f'CREATE OR REPLACE {macro} "{name}_nearest_image"(path, k) AS TABLE '
                            f'SELECT i.*, s.score FROM (SELECT id, similarity(embedding, embed_image('
                            f'{_quote(name + "." + space)}, path)) AS score FROM "{space_view(name, space)}" '
                            f'ORDER BY score DESC LIMIT k) s JOIN "{name}" i USING (id) ORDER BY s.score DESC')
            except duckdb.Error:  # a damaged view (see connect)
                con.execute(f'CREATE OR REPLACE {macro} "{name}_nearest_image"(path, k) AS TABLE '
                            f'SELECT * FROM "{space_view(name, space)}", "{name}" LIMIT k')


EMBED_CACHE = 1024  # embeddings embed() and embed_image() keep, the last used


class _Cache(dict):
    """A dict keeping at most ``size`` entries (the oldest go first), safe to fill from several threads."""

    def __init__(self, size: int, lock: Any):
        super().__init__()
        self.size, self.lock = size, lock

    def put(self, key: Any, value: Any) -> Any:
        with self.lock:
            self[key] = value
            while len(self) > self.size:
                del self[next(iter(self))]
        return value


def run_sql(store: Any, query: str, *, write: bool = False, allow_files: bool = False,
            allow_paths: Sequence[str] = ()) -> Any:
    import duckdb

    if not query or not query.strip():
        raise InputError("the SQL query is empty")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise InputError(f"SQL error: {str(e).splitlines()[0]}") from None
    settings = check_statements(statements, write=write, allow_files=allow_files)
    taken = taken_names(store.manifest)
    for st in statements:  # the store's views are made anew by every call: changing one would seem to work, then not
        m = re.match(r'\s*(DROP|ALTER)\s+VIEW\s+(?:IF\s+EXISTS\s+)?"?([A-Za-z_][A-Za-z0-9_]*)"?', st.query, re.I)
        if m and m.group(2).lower() in taken:
            raise InputError(f"{m.group(2)!r} is {taken[m.group(2).lower()]}, which embstore makes anew for every "
                             "query: it cannot be dropped or changed in SQL (embstore delete removes collections and "
                             "heads)")
    # a plain read-only query runs on a cursor of the store's shared database when it keeps one (Store.share_sql);
    # settings apply to a whole database, so a query with some gets a connection of its own
    shared = None if write or allow_files or allow_paths or settings else store.shared_sql()
    con = shared.cursor() if shared is not None else \
        connect(store, write=write, allow_files=allow_files, allow_paths=allow_paths, settings=settings)
    statements = statements[len(settings):] or statements[-1:]  # (the settings ran before the lock)
    try:
        for st in statements[:-1]:
            con.execute(st.query)
            if st.type.name in ("SELECT", "EXPLAIN", "PRAGMA"):
                con.fetchall()  # only the last statement's rows are shown: finish this one's
        last = statements[-1]
        shows_rows = last.type.name in ("SELECT", "EXPLAIN", "PRAGMA")
        if settings and last is settings[-1]:
            return None  # only settings: they are applied
        if not shows_rows:
            con.execute(last.query)  # a statement: nothing to show
        if write:
            _refuse_hidden_tables(store, con)
        return con.sql(last.query) if shows_rows else None
    except duckdb.Error as e:
        con.close()
        line = error_line(e)
        if "Table with name" in line and "does not exist" in line:  # (DuckDB's guess is often a system table)
            views = [name for name, _ in view_names(store.manifest)]
            more = f" and {len(views) - 20} more" if len(views) > 20 else ""
            line += f"; the store's views: {', '.join(views[:20])}{more}"
        raise InputError(line) from None
    except BaseException:
        con.close()  # a failed write must not hold STORE/sql.duckdb open (the next connection would share it)
        raise


def _refuse_hidden_tables(store: Any, con: Any) -> None:
    """A table of the user's named like one of the store's views cannot be read (the view hides it): say so, and how
    to rename it, rather than print ok."""
    taken = taken_names(store.manifest)
    for db, name in con.execute("SELECT database_name, table_name FROM duckdb_tables() WHERE NOT temporary").fetchall():
        if name.lower() in taken:
            raise InputError(f"your table {name!r} is hidden in SQL by {taken[name.lower()]}, which has the same name; "
                             f"rename it: embstore sql --write \"ALTER TABLE {db}.main.{name} RENAME TO another_name\"")
