"""The ``embstore`` command. Every command takes ``--store PATH`` (or ``EMBSTORE_STORE``), prints a table by
default and JSON with ``--json`` (``sql``: its rows, as ``--format json``), and exits 2 with a one-line reason on bad
input; with ``--json`` that reason is also one JSON object on stdout, ``{"error", "type", "exit_code"}``.

Commands check their arguments and inputs (files, ``--where``, collection, space, head) before a model loads, and
import torch only for what needs it (a model, a fit, a GPU search)."""
from __future__ import annotations

import functools
import shutil
import sys
from typing import Any, Callable

import click

from embstore.errors import EmbstoreError, InputError

from .output import echo_json, echo_table
from .progress import Progress
from .checks import warn_if_random

store_option = click.option("--store", "store_path", envvar="EMBSTORE_STORE", required=True, metavar="PATH",
                            help="Store directory (or set EMBSTORE_STORE).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table (an error "
                           "too: {\"error\": ..., \"type\": ..., \"exit_code\": ...}).")
no_wait_option = click.option("--no-wait", is_flag=True, help="Stop with an error when another process is writing the "
                               "store, instead of waiting for it to finish (default: wait; EMBSTORE_LOCK_WAIT "
                               "seconds at most when set).")
SHOWN_ROWS = 10  # quarantined rows an ingest that made no collection lists (its --json: the first 100)
device_option = click.option("--device", default=None, metavar="D",
                             help="cpu, cuda, cuda:N, mps or auto (default: EMBSTORE_DEVICE, else cuda > mps > cpu).")


class BadInput(click.ClickException):
    """Printed as `Error: <one line>`; exits 2, like click's usage errors. ``kind`` names the library error (the
    JSON error's "type")."""

    exit_code = 2

    def __init__(self, message: str, kind: str = "InputError"):
        super().__init__(message)
        self.kind = kind


def friendly(fn: Callable) -> Callable:
    """Library errors -> one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EmbstoreError as e:
            raise BadInput(str(e), type(e).__name__) from None
        except OSError as e:  # a file or folder of the user's that cannot be read or written: say which, and why
            if e.filename is None:
                raise
            raise BadInput(f"cannot use {e.filename}: {e.strerror or e}; check the path, and that you may read or "
                           "write there", type(e).__name__) from None

    return wrapper


def open_store(path: str, device: str | None = None, create: bool = False, no_wait: bool = False, **settings: Any):
    """The store at ``path``; a write waits for another writer (saying so on stderr), or with ``no_wait`` stops."""
    from embstore import Store
    from embstore.config import Settings

    settings = Settings.resolve(device=device, lock_wait=0 if no_wait else None, **settings)
    return Store.open(path, create=create, settings=settings, notify=notice)


def notice(message: str) -> None:
    """A line for the user on stderr that is no error (a wait for another writer)."""
    click.echo(message, err=True)


class OneLineErrors(click.Group):
    """Usage errors (a missing option, a value of the wrong kind) print one line like every other error,
    `Error: ... (see: embstore CMD -h)`, instead of click's usage block; exit code 2 as click gives them. With
    ``--json`` (or ``sql --format json``) every error is also one JSON object on stdout (``fail``)."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        as_json = json_requested(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as e:
            if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # bare `embstore`: its help
                click.echo(e.format_message())
                sys.exit(0)
            where = f" (see: {e.ctx.command_path} -h)" if e.ctx is not None else ""
            message = e.format_message()
            if isinstance(e, click.MissingParameter) and e.param is not None and e.param.name == "store_path":
                message = message.rstrip(".") + " (or set EMBSTORE_STORE)."
            fail(f"{message}{where}", e.exit_code, "UsageError", as_json)
        except click.ClickException as e:
            fail(e.format_message(), e.exit_code, getattr(e, "kind", "Error"), as_json)
        except click.Abort:
            fail("Aborted!", 1, "Aborted", as_json, prefix="")
        sys.exit(rv if isinstance(rv, int) else 0)


def json_requested(args: Any) -> bool:
    """Did the command line ask for JSON: ``--json``, or ``--format json`` (sql)? Read from the words as typed, so a
    usage error (one raised before the options are parsed) is JSON too; words after ``--`` are arguments."""
    words = [str(a) for a in args]
    words = words[:words.index("--")] if "--" in words else words
    return "--json" in words or "--format=json" in words or any(
        a == "--format" and b == "json" for a, b in zip(words, words[1:]))


def fail(message: str, code: int, kind: str, as_json: bool, prefix: str = "Error: ") -> None:
    """The end of a command that failed: the one line on stderr; with JSON asked for, also
    ``{"error": <the line>, "type": <the error's kind>, "exit_code": <code>}`` on stdout; exit ``code``."""
    click.echo(f"{prefix}{message}", err=True)
    if as_json:
        echo_json({"error": message, "type": kind, "exit_code": code})
    sys.exit(code)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="embstore")
def cli() -> None:
    """embstore: embed a corpus once with a frozen encoder, then train heads, search and query it with SQL.

    \b
    Typical session:
      embstore ingest questions.csv --store s --collection q --text-column text
      embstore fit --store s --collection q --label-column label --name topic
      embstore predict --store s --head topic --collection q
      embstore search --store s --collection q "where is the eiffel tower"
      embstore sql --store s "SELECT label, count(*) FROM predictions GROUP BY label"
    """


# ------------------------------------------------------------------------------------------------------ ingest
@cli.command()
@click.argument("path")
@store_option
@click.option("--collection", "-c", required=True, help="Collection to add the items to (created if new).")
@click.option("--text-column", metavar="COL", help="Column holding the text (default: text).")
@click.option("--image-column", metavar="COL", help="Column of image paths (relative to the table's folder).")
@click.option("--id-column", metavar="COL", help="Column of unique item ids (default: `id` if present, else a row hash).")
@click.option("--embedding-column", metavar="COL", help="Take precomputed vectors from this list column (Parquet/JSONL); "
              "the space records an external encoder (--encoder external:NAME). A .npy file is read the same way.")
@click.option("--encoder", metavar="SPEC", help="Encoder spec (default: minilm for text, efficientnet-lite0 for images): "
              "minilm | efficientnet-lite0 | sentence-transformers:NAME | timm:ARCH[@FILE] | open_clip:ARCH@PRETRAINED | "
              "hash:DIM (a fake for tests) | external:NAME (with --embedding-column). timm and sentence-transformers "
              "specs take options: 'efficientnet-lite0?layers=all', 'minilm?layers=last4', 'efficientnet-lite0?flip', "
              "'minilm?precision=int8' (int8 on the CPU, pip install 'embstore[int8]') (a space of their own; see README, "
              "Encoders).")
@click.option("--space", metavar="NAME", help="Space name (default: the collection's space made by this encoder, if any; else from the "
              "encoder, e.g. minilm).")
@click.option("--index", "index_factory", metavar="FACTORY", help="Force a FAISS index factory string for this space "
              "(e.g. HNSW32, IVF1024,Flat); default: chosen by size and memory (Flat < 50k, HNSW < 300k, IVF beyond).")
@click.option("--batch-size", type=int, default=None, help="Encoder batch size (default 64).")
@click.option("--encoding", default="utf-8", show_default=True, metavar="CODEC",
              help="Text encoding of CSV, TSV and JSONL input (latin-1, cp1252, utf-16 ...); rows that do not decode "
              "are quarantined.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where to run read -> encode -> write: in this process, or as a Ray Data pipeline (pip install "
              "'embstore[ray]'; the store must be a folder every Ray node sees).")
@click.option("--address", metavar="ADDR", help="With --engine ray: the Ray cluster to join (ray://HOST:10001 or "
              "HOST:6379; default: RAY_ADDRESS, else a local Ray started for this ingest).")
@click.option("--runtime", type=click.Choice(["auto", "torch", "openvino", "onnx"]), default=None,
              help="What runs the model on the CPU (default: EMBSTORE_RUNTIME, else auto: OpenVINO when installed, "
                   "else ONNX Runtime, else torch; on a GPU torch). Vectors match torch's (cosine >= 0.999); the "
                   "space is the same whichever runs.")
@no_wait_option
@device_option
@json_option
@friendly
def ingest(path: str, store_path: str, collection: str, text_column: str | None, image_column: str | None,
           id_column: str | None, embedding_column: str | None, encoder: str | None, space: str | None,
           index_factory: str | None,
           batch_size: int | None, encoding: str, engine: str, address: str | None, runtime: str | None,
           no_wait: bool, device: str | None, as_json: bool) -> None:
    """Embed PATH into a collection: a CSV, TSV, Parquet or JSONL file, a folder of images or of tables (Hive
    partition folders too), a glob ('data/*.parquet', quoted), or a URL (s3://, gs://, hf://datasets/..., file://,
    with the filesystem's fsspec package installed). Read in a stream: memory holds a few chunks, whatever the size.

    Rows already in the collection are skipped; bad rows are quarantined with their reason
    (STORE/quarantine/...) and the rest goes on. An ingest that makes no collection (every row bad) keeps no
    quarantine file: it lists the rows and reasons instead.
    """
    from pathlib import Path

    from embstore import Store
    from embstore.manifest import MANIFEST
    from embstore.storage import check_name

    check_name("collection", collection)  # bad input is refused before a new store is created
    if "://" not in path and not any(c in path for c in "*?[") and not Path(path).expanduser().exists():
        raise InputError(f"{path} does not exist; give a CSV, Parquet or JSONL file, a folder, a glob or a URL")
    new_store = not (Path(store_path).expanduser() / MANIFEST).exists()
    store = open_store(store_path, device, create=True, no_wait=no_wait, batch_size=batch_size, runtime=runtime)
    try:
        with Progress("ingest", waiting="reading the input, loading the model if one is needed") as progress:
            r = store.ingest(path, collection, text_column=text_column, image_column=image_column,
                             id_column=id_column, encoder=encoder, space=space, index=index_factory,
                             embedding_column=embedding_column, engine=engine, address=address, progress=progress,
                             encoding=encoding)
    except EmbstoreError:
        # refused before anything was kept, into a store this command made: no empty store is left behind
        if new_store and {p.name for p in store.root.iterdir()} <= {MANIFEST, ".writer.lock"} \
                and not Store.open(store.root).manifest["collections"]:
            shutil.rmtree(store.root, ignore_errors=True)
        raise
    except KeyboardInterrupt:
        kept = Store.open(store.root).info()["collections"].get(collection, {}).get("items", 0)
        fail(f"interrupted: what was committed stays ({kept} items now in {collection!r}); run the same ingest "
             "again to add the rest", 130, "Interrupted", as_json, prefix="")
    warn_if_random(r.encoder)
    refused = r.read and not (r.added or r.embedded or r.reused or r.duplicates)  # every row was quarantined
    refusal = (f"no row was added: all {r.read} rows were quarantined (reasons above); fix them and ingest again"
               if refused else None)
    if as_json:  # the report, and when every row was refused its "error" (and exit code 1, as the table's)
        echo_json(r.to_dict() | {"quarantine_file": str(store.root / r.quarantine_file) if r.quarantine_file else None}
                  | ({"error": refusal.replace(" (reasons above)", ""), "type": "Refused", "exit_code": 1}
                     if refused else {}))
        if refused:
            sys.exit(1)
        return
    click.echo(f"{r.collection}.{r.space} ({r.encoder}) from {r.source}")
    echo_table(["read", "added", "duplicates", "quarantined", "embedded", "reused"],
               [[r.read, r.added, r.duplicates, r.quarantined, r.embedded, r.reused]])
    for reason, n in r.reasons.items():
        click.echo(f"quarantined {n}: {reason}")
    if r.quarantine_file:
        click.echo(f"quarantined rows and reasons: {store.root / r.quarantine_file}")
    elif r.quarantined_rows:  # no collection was made, so no quarantine file is kept for it: the rows are here
        click.echo(f"not kept in the store (no collection {r.collection!r} was made); the quarantined rows:")
        for q in r.quarantined_rows[:SHOWN_ROWS]:
            where = f"line {q['line']}" if q.get("line") is not None else f"row {q['row']}" if q.get("row") else ""
            click.echo(f"  {q['source']}{' ' + where if where else ''}: {q['reason']}")
        if r.quarantined > SHOWN_ROWS:
            click.echo(f"  ... and {r.quarantined - SHOWN_ROWS} more (--json lists the first "
                       f"{len(r.quarantined_rows)})")
    if r.ignored_files:
        click.echo(f"ignored {r.ignored_files} {'file that is not an image' if r.ignored_files == 1 else 'files that are not images'}")
    if r.new_columns:
        click.echo(f"new columns: {', '.join(r.new_columns)} (the collection's earlier items have no values in them; "
                   "a misspelt column name shows here)")
    if refused:  # a failure, though nothing was lost
        raise click.ClickException(refusal)
    if r.added == 0 and r.embedded == 0 and r.reused == 0:
        if r.read == 0:
            click.echo("nothing to ingest: the input has no data rows")
        else:
            click.echo(f"nothing new: {r.duplicates} {'row is' if r.duplicates == 1 else 'rows are'} already in the "
                       "collection" + (f", {r.quarantined} were quarantined" if r.quarantined else ""))


# ------------------------------------------------------------------------------------------------------ info
@cli.command()
@store_option
@click.option("--head", metavar="HEAD", help="List every version of this head instead (model, scores, test set, when).")
@json_option
@friendly
def info(store_path: str, head: str | None, as_json: bool) -> None:
    """What the store holds: collections, spaces (encoder, dim, rows, index), predictions, heads and their metrics."""
    store = open_store(store_path)
    if head is not None:
        versions = store.head_versions(head)
        if as_json:
            echo_json({"head": head, "versions": versions})
            return
        echo_table(["version", "model", "collection", "space", "labels", "accuracy", "macro_f1", "evaluated_on",
                    "created"], [[v["version"], v["model"], v["collection"], v["space"], v["n_classes"], v["accuracy"],
                                  v["macro_f1"], v["evaluated_on"], v["created"]] for v in versions])
        return
    data = store.info()
    if as_json:
        echo_json(data)
        return
    click.echo(f"store {data['store']}")
    rows = []
    for c, ci in data["collections"].items():
        for s, si in ci["spaces"].items() or [(None, {})]:
            param = ", ".join(f"{k}={v}" for k, v in si.get("index_param", {}).items())
            index = " ".join(x for x in (si.get("index"), param) if x)
            if si.get("rows") and not index:  # an interrupted ingest committed vectors but saved no index yet
                index = "none saved: run embstore index"
            rows.append([c, ci["modality"], ci["items"], ci["quarantined"], s, si.get("encoder"), si.get("dim"),
                         si.get("rows"), index, si.get("recall_at_10")])
    echo_table(["collection", "modality", "items", "quarantined", "space", "encoder", "dim", "vectors", "index",
                "recall@10"], rows)
    if data["heads"]:
        click.echo("")
        echo_table(["head", "version", "model", "collection", "space", "labels", "accuracy", "macro_f1"],
                   [[h, v["version"], v["model"], v["collection"], v["space"], v["n_classes"], v["accuracy"],
                     v["macro_f1"]] for h, v in data["heads"].items()])
        for h, v in data["heads"].items():
            if v["model"] in ("knn", "blend") and v["collection"] not in data["collections"]:
                click.echo(f"head {h}: its training collection {v['collection']} was deleted, and a {v['model']} head "
                           "needs those items: fit it again to use it")
    preds = [[c, h, n] for c, ci in data["collections"].items() for h, n in ci.get("predictions", {}).items()]
    if preds:
        click.echo("")
        echo_table(["collection", "head", "predicted items (SQL view: predictions)"], preds)


@cli.command()
@store_option
@click.option("--collection", "-c", metavar="NAME", help="Delete this collection: its items, vectors, index and stored predictions.")
@click.option("--head", metavar="HEAD", help="Delete this head (every version unless --version) and the predictions it stored.")
@click.option("--version", type=int, help="With --head: only this version.")
@click.option("--yes", is_flag=True, help="Do not ask; needed when not run from a terminal.")
@no_wait_option
@json_option
@friendly
def delete(store_path: str, collection: str | None, head: str | None, version: int | None, yes: bool,
           no_wait: bool, as_json: bool) -> None:
    """Delete a collection (--collection) or a head (--head [--version N]). Data shards (items, vectors,
    predictions) and head files stay on disk for EMBSTORE_RETENTION_SECONDS (default 3600) so that queries and
    predictions already running finish, then a later write removes them; index files and quarantine records go at
    once. Heads trained on a deleted collection stay; a kNN head among them must be fit again."""
    if version is not None and head is None:
        raise InputError("--version goes with --head")
    if (collection is None) == (head is None):
        raise InputError("give --collection NAME or --head HEAD (one of them)")
    store = open_store(store_path, no_wait=no_wait)
    what = (f"collection {collection!r}" if collection
            else f"head {head!r}" + (f" version {version}" if version is not None else ""))
    if not yes:
        if not interactive():
            raise InputError(f"refusing to delete {what} without confirmation; add --yes")
        if not click.confirm(f"delete {what} from {store.root}?"):
            click.echo("nothing deleted")
            return
    if collection:
        out = store.delete_collection(collection)
        msg = (f"deleted collection {collection}: {out['items']} items, spaces {', '.join(out['spaces']) or 'none'}"
               + (f", predictions of {', '.join(out['predictions'])}" if out["predictions"] else ""))
    else:
        out = store.delete_head(head, version)
        preds = ", ".join(f"{c} ({n} rows)" for c, n in out["predictions"].items())
        msg = (f"deleted head {head} version{'s' if len(out['versions']) > 1 else ''} "
               f"{', '.join(map(str, out['versions']))}" + (f" and its predictions in {preds}" if preds else ""))
    if as_json:
        echo_json(out)
    else:
        click.echo(msg)


def interactive() -> bool:
    """Is someone at a terminal to answer a question?"""
    return sys.stdin.isatty()


def main() -> None:
    cli()


if __name__ == "__main__":  # python -m embstore_cli.main: the module as imported, which the other commands join
    from embstore_cli.main import main as imported_main

    imported_main()


from . import check_cmd, heads_cmd, map_cmd, query_cmd, serve_cmd  # noqa: E402,F401  (their commands join the group)

