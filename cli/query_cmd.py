"""``embstore search``, ``index`` and ``sql``: nearest items, a space's index, DuckDB over the store."""
from __future__ import annotations

import os
import sys
from typing import Any

import click

from embstore.errors import InputError
from embstore.sql_guard import error_line

from .checks import check_images, check_where, load_encoder
from .main import (BadInput, cli, device_option, friendly, json_option, no_wait_option, open_store,
                   store_option)
from .output import echo_json, echo_table, record_batches
from .progress import Progress


# ------------------------------------------------------------------------------------------------------ search
@cli.command()
@click.argument("query", required=False)
@store_option
@click.option("--collection", "-c", required=True, help="Collection to search.")
@click.option("-k", "k", type=int, default=10, show_default=True, help="Number of results.")
@click.option("--space", metavar="NAME", help="Space to search (needed when the collection has several).")
@click.option("--text", "text", metavar="TEXT", help="The text query, as an option (same as QUERY).")
@click.option("--image", type=click.Path(), help="Search by this image file instead of text.")
@click.option("--like", "like", metavar="ID", help="Search by an item already in the collection: the others most like it.")
@click.option("--vector", metavar="JSON|FILE.npy", help="Search by a raw vector: a JSON list or a .npy file.")
@click.option("--where", metavar="SQL", help="Only items matching this SQL predicate over the collection's columns, "
              "e.g. \"label = 'HUM'\" or \"id IN (SELECT id FROM predictions WHERE collection = 'q' AND label = 'x')\".")
@device_option
@json_option
@friendly
def search(query: str | None, store_path: str, collection: str, k: int, space: str | None, text: str | None,
           image: str | None, like: str | None, vector: str | None, where: str | None, device: str | None,
           as_json: bool) -> None:
    """Top-k items most similar to QUERY (text), --image FILE, --like ID or --vector, with scores and metadata.

    With --where, k results come back whenever at least k items match (the filter runs before or inside the
    search, not after it)."""
    if query is not None and text is not None:
        raise InputError("give the text query once: as QUERY or as --text, not both")
    query = text if query is None else query
    vec = parse_vector(vector)
    store = open_store(store_path, device)
    # what can be checked without a model, before one loads: the collection and space, the image, --where
    from embstore.search import query_vector, space_for_query

    given = [v for v in (query, image, like, vec) if v is not None]  # not one: the library says what to give
    if len(given) != 1:  # (refused before the space is looked at)
        query_vector(store, collection, "", query=query, image=image, item_id=like, vector=vec)
    space_name = space_for_query(store, collection, space, query=query, image=image, vector=vec)
    if len(given) == 1 and image is not None:
        check_images([image], store.settings.max_pixels)
    if where is not None:
        check_where(store, collection, where, "--where")
    if len(given) == 1 and (image is not None or (query is not None and query.strip())) \
            and store.space(collection, space_name)["encoder"]["library"] != "external":
        load_encoder(store.space(collection, space_name)["encoder"]["spec"], store.settings.device,
                     store.settings.runtime)
    hits = store.search(collection, query, image=image, item_id=like, vector=vec, k=k, space=space_name, where=where)
    if as_json:
        echo_json({"collection": collection, "k": k, "results": hits})
        return
    if not hits:
        click.echo("no results: " + ("no item matches --where" if where else f"collection {collection!r} has no items"))
        return
    cols = list(dict.fromkeys(c for h in hits for c in h))
    echo_table(cols, [[h.get(c) for c in cols] for h in hits])
    entry = store.space(collection, space).get("index") or {}
    if "PQ" in (entry.get("factory") or "") and not store.settings.device.startswith("cuda"):
        click.echo(f"scores are approximate: the {entry['factory']} index compresses the vectors (recall@10 "
                   f"{entry.get('recall_at_10')}); embstore index --factory with ',Flat' in place of ',PQ…' for "
                   "exact ones, if the memory allows")












def parse_vector(value: str | None) -> Any:
    if value is None:
        return None
    import json

    import numpy as np

    if value.endswith(".npy"):
        try:
            return np.load(value, allow_pickle=False)  # its shape is checked by the search (one vector)
        except (OSError, ValueError) as e:
            raise click.BadParameter(f"cannot read {value}: {e}", param_hint="--vector") from None
    try:
        return np.asarray(json.loads(value), dtype=np.float32)
    except (json.JSONDecodeError, ValueError, TypeError):
        raise click.BadParameter("give a JSON list of numbers, e.g. [0.1, 0.2, ...], or a .npy file",
                                 param_hint="--vector") from None


# ------------------------------------------------------------------------------------------------------ index
@cli.command()
@store_option
@click.option("--collection", "-c", required=True, help="Collection whose space to index.")
@click.option("--space", metavar="NAME", help="Space to index (needed when the collection has several).")
@click.option("--factory", metavar="FACTORY", help="FAISS factory string (Flat, HNSW32, IVF4096,Flat, IVF4096,PQ32, ...); "
              "default: chosen by size and memory.")
@click.option("--target-recall", type=float, default=0.95, show_default=True,
              help="Raise efSearch/nprobe until recall@10 against exact search reaches this.")
@no_wait_option
@json_option
@friendly
def index(store_path: str, collection: str, space: str | None, factory: str | None, target_recall: float,
          no_wait: bool, as_json: bool) -> None:
    """Rebuild a space's FAISS index and measure its recall@10 against exact search."""
    store = open_store(store_path, no_wait=no_wait)
    with Progress("index", waiting="reading the space") as progress:  # count, rate, ETA a pass at a time
        out = store.reindex(collection, space, factory=factory, target_recall=target_recall, progress=progress)
    if as_json:
        echo_json(out)
        return
    click.echo(f"{out['collection']}.{out['space']}")
    echo_table(["factory", "vectors", "param", "value", "recall@10", "queries"],
               [[out["factory"], out["ntotal"], out["param"], out["value"], out["recall_at_10"], out["recall_queries"]]])
    if out["recall_at_10"] is not None and out["recall_at_10"] < target_recall:
        click.echo(f"recall@10 {out['recall_at_10']} is below the target {target_recall}: {out['param']} stopped at "
                   f"its ceiling ({out['value']}); try another --factory, or Flat for exact search")


# ------------------------------------------------------------------------------------------------------ sql
@cli.command()
@click.argument("query")
@store_option
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default=None,
              help="table (default), csv, json (an array of row objects) or parquet (needs --output).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json: the rows as a JSON array of objects; "
              "anything else is one JSON object ({\"wrote\": FILE}, {\"ok\": true}, or an error: {\"error\": ...}).")
@click.option("--output", "-o", type=click.Path(), help="Write the result to this file (needed for parquet).")
@click.option("--write", is_flag=True, help="Allow statements that change data (tables persist in STORE/sql.duckdb).")
@click.option("--allow-files", is_flag=True, help="Let the query read and write any file (read_csv, COPY, ATTACH ...) "
              "and change any setting; without it SQL sees only the store's tables.")
@click.option("--limit", type=int, default=1000, show_default=True, help="Rows shown in table format.")
@friendly
def sql(query: str, store_path: str, fmt: str | None, as_json: bool, output: str | None, write: bool,
        allow_files: bool, limit: int) -> None:
    """Run DuckDB SQL. Views: one per collection (its items), <collection>__<space> (id, content_hash, embedding)
    and predictions (collection, id, head, version, label, confidence, labels). Functions: embed('collection[.space]',
    'text') (the text embedded by the space's own encoder), embed_image('collection[.space]', 'path') (an image file:
    needs --allow-files), similarity(a, b) (cosine), and per collection the table macros <collection>_nearest('text',
    k) (a space that embeds text) and <collection>_nearest_image('path', k) (one that embeds images). Read-only
    unless --write; no file outside the store unless --allow-files."""
    import duckdb

    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json is --format json; give one of them, not --format {fmt} too")
    fmt = "json" if as_json else fmt or "table"
    store = open_store(store_path)
    rel = store.sql(query, write=write, allow_files=allow_files,
                    allow_paths=[os.path.abspath(output)] if output else [])
    if rel is None:
        echo_json({"ok": True}) if fmt == "json" else click.echo("ok")
        return
    try:
        show_result(rel, output, fmt, limit)
    except duckdb.Error as e:  # raised while the rows are computed (a function's error, a bad cast ...)
        raise BadInput(error_line(e)) from None


def show_result(rel: Any, output: str | None, fmt: str, limit: int) -> None:
    if output or fmt == "parquet":
        if not output:
            raise click.UsageError("--format parquet needs --output FILE")
        folder = os.path.dirname(os.path.abspath(output))
        if os.path.isdir(output) or not os.path.isdir(folder):
            raise BadInput(f"cannot write {output}: " + ("it is a folder; give a file name" if os.path.isdir(output)
                                                         else f"folder {folder} does not exist; create it first"))
        write_result(rel, output, fmt)
        echo_json({"wrote": output}) if fmt == "json" else click.echo(f"wrote {output}")
    elif fmt == "csv":
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")  # as -o writes it, and as shell tools expect
        w.writerow(rel.columns)
        for batch in record_batches(rel):
            for row in zip(*[c.to_pylist() for c in batch.columns]):
                w.writerow(row)
    elif fmt == "json":
        write_json_rows(rel, sys.stdout)
        sys.stdout.write("\n")
    else:
        rows = rel.limit(limit + 1).fetchall()
        echo_table(rel.columns, rows[:limit])
        if len(rows) > limit:
            click.echo(f"(showing the first {limit} rows; use --limit or --format csv for all)")


def write_result(rel: Any, output: str, fmt: str) -> None:
    """Stream a result to a file; the format is --format, or the file's extension when --format is table."""
    kind = fmt if fmt != "table" else (os.path.splitext(output)[1].lstrip(".").lower() or "csv")
    if kind == "parquet":
        rel.write_parquet(os.path.abspath(output))  # the path the query was allowed to write
    elif kind == "json":
        with open(output, "w", encoding="utf-8") as f:
            write_json_rows(rel, f)
    else:
        rel.write_csv(os.path.abspath(output))


def write_json_rows(rel: Any, out: Any) -> None:
    """A JSON array of row objects, streamed from Arrow record batches (large results never sit in memory whole).
    Nothing is written before the first batch is computed, so an error computing it leaves only the error's JSON."""
    import json

    from .output import _default

    first = True
    for batch in record_batches(rel):
        for row in batch.to_pylist():
            out.write(("[" if first else ",\n") + json.dumps(row, default=_default, ensure_ascii=False))
            first = False
    out.write("[]" if first else "]")
