"""The ``embstore`` command. Every command takes ``--store PATH`` (or ``EMBSTORE_STORE``), prints a table by
default and JSON with ``--json`` (``sql``: its rows, as ``--format json``), and exits 2 with a one-line reason on bad
input; with ``--json`` that reason is also one JSON object on stdout, ``{"error", "type", "exit_code"}``.

Commands check their arguments and inputs (files, ``--where``, collection, space, head) before a model loads, and
import torch only for what needs it (a model, a fit, a GPU search)."""
from __future__ import annotations

import functools
import os
import shutil
import sys
from typing import Any, Callable

import click

from embstore.errors import EmbstoreError, InputError, NotFoundError

from .output import echo_json, echo_table, record_batches
from .progress import Progress, spinner

store_option = click.option("--store", "store_path", envvar="EMBSTORE_STORE", required=True, metavar="PATH",
                            help="Store directory (or set EMBSTORE_STORE).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table (an error "
                           "too: {\"error\": ..., \"type\": ..., \"exit_code\": ...}).")
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


def open_store(path: str, device: str | None = None, create: bool = False):
    from embstore import Store

    return Store.open(path, create=create, device=device)


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
              "hash:DIM (a fake for tests) | external:NAME (with --embedding-column).")
@click.option("--space", metavar="NAME", help="Space name (default: the collection's space made by this encoder, if any; else from the "
              "encoder, e.g. minilm).")
@click.option("--index", "index_factory", metavar="FACTORY", help="Force a FAISS index factory string for this space "
              "(e.g. HNSW32, IVF1024,Flat); default: chosen by size and memory (Flat < 50k, HNSW < 300k, IVF beyond).")
@click.option("--batch-size", type=int, default=None, help="Encoder batch size (default 64).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where to run read -> encode -> write: in this process, or as a Ray Data pipeline (pip install "
              "'embstore[ray]'; the store must be a folder every Ray node sees).")
@click.option("--address", metavar="ADDR", help="With --engine ray: the Ray cluster to join (ray://HOST:10001 or "
              "HOST:6379; default: RAY_ADDRESS, else a local Ray started for this ingest).")
@device_option
@json_option
@friendly
def ingest(path: str, store_path: str, collection: str, text_column: str | None, image_column: str | None,
           id_column: str | None, embedding_column: str | None, encoder: str | None, space: str | None,
           index_factory: str | None,
           batch_size: int | None, engine: str, address: str | None, device: str | None, as_json: bool) -> None:
    """Embed PATH into a collection: a CSV, TSV, Parquet or JSONL file, a folder of images or of tables (Hive
    partition folders too), a glob ('data/*.parquet', quoted), or a URL (s3://, gs://, hf://datasets/..., file://,
    with the filesystem's fsspec package installed). Read in a stream: memory holds a few chunks, whatever the size.

    Rows already in the collection are skipped; bad rows are quarantined with their reason
    (STORE/quarantine/...) and the rest goes on.
    """
    from pathlib import Path

    from embstore import Store
    from embstore.config import Settings
    from embstore.manifest import MANIFEST
    from embstore.storage import check_name

    check_name("collection", collection)  # bad input is refused before a new store is created
    if "://" not in path and not any(c in path for c in "*?[") and not Path(path).expanduser().exists():
        raise InputError(f"{path} does not exist; give a CSV, Parquet or JSONL file, a folder, a glob or a URL")
    settings = Settings.resolve(device=device, batch_size=batch_size)
    new_store = not (Path(store_path).expanduser() / MANIFEST).exists()
    store = Store.open(store_path, settings=settings)
    try:
        with Progress("ingest", waiting="reading the input, loading the model if one is needed") as progress:
            r = store.ingest(path, collection, text_column=text_column, image_column=image_column,
                             id_column=id_column, encoder=encoder, space=space, index=index_factory,
                             embedding_column=embedding_column, engine=engine, address=address, progress=progress)
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


# ------------------------------------------------------------------------------------------------------ fit
@cli.command()
@store_option
@click.option("--collection", "-c", required=True, help="Collection to train on.")
@click.option("--label-column", metavar="COL", help="Item column holding the label.")
@click.option("--labels", "labels_file", type=click.Path(), help="CSV of id,label instead of a label column.")
@click.option("--name", metavar="HEAD", help="Head name (default: <collection>_<label>_<model>). Refitting adds a version.")
@click.option("--model", type=click.Choice(["logreg", "knn", "centroid", "sklearn-logreg"]), default="logreg",
              show_default=True, help="logreg: C chosen by cross-validation (torch, GPU if any); knn: k chosen by "
              "validation, neighbours searched within the space; centroid: nearest centroid (1 example per label is enough); sklearn-logreg: stock baseline.")
@click.option("--class-weight", type=click.Choice(["balanced"]),
              help="Weigh labels inversely to their frequency (logreg and sklearn-logreg).")
@click.option("--label-sep", metavar="SEP", help="Split string labels on SEP into several labels (multi-label head).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False),
              help="Write confusion-matrix (single-label heads) and learning-curve PNGs here.")
@click.option("--space", metavar="NAME", help="Space to train on (needed when the collection has several).")
@click.option("--test-collection", metavar="C2", help="Score on this collection instead of a held-out split.")
@click.option("--train-where", metavar="SQL", help="Train only on items matching this SQL predicate, e.g. \"split = 'train'\" "
              "(default: every labelled item, less the --test-where ones).")
@click.option("--test-where", metavar="SQL", help="Score on items matching this SQL predicate, e.g. \"split = 'test'\".")
@click.option("--test-size", type=float, default=0.2, show_default=True, help="Held-out fraction when no test set is given.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Estimator parameter, e.g. C=0.5, n_neighbors=5 or calibrate=false (repeatable).")
@device_option
@json_option
@friendly
def fit(store_path: str, collection: str, label_column: str | None, labels_file: str | None, name: str | None,
        model: str, class_weight: str | None, label_sep: str | None, plot_dir: str | None, space: str | None,
        test_collection: str | None, train_where: str | None, test_where: str | None, test_size: float, seed: int,
        params: tuple[str, ...], device: str | None, as_json: bool) -> None:
    """Train a head on a collection's embeddings; report accuracy and macro-F1 with 95% intervals, per-label
    precision/recall and calibration on a test set (--test-collection, --test-where, or a held-out split). A refit
    scored on the same test items is compared with the head's previous version item by item (McNemar's test)."""
    store = open_store(store_path, device)
    extra = parse_params(params)
    if class_weight:
        extra["class_weight"] = class_weight
    with spinner(f"fit {model} on {collection}"):
        rec = store.fit(collection, label_column, name, model=model, space=space, test_collection=test_collection,
                        labels=labels_file, test_size=test_size, seed=seed, params=extra, train_where=train_where,
                        test_where=test_where, label_sep=label_sep, plot_dir=plot_dir)
    if as_json:
        echo_json(rec)
        return
    unlabelled = f" ({rec['n_unlabelled']} without a label left out)" if rec.get("n_unlabelled") else ""
    click.echo(f"head {rec['name']} v{rec['version']}: {rec['model']} on {rec['collection']}.{rec['space']}, "
               f"{rec['n_train']} training items{unlabelled}, {rec['n_classes']} labels; scored on {rec['evaluated_on']}")
    if rec.get("labels_file_unmatched"):
        click.echo(f"{rec['labels_file_unmatched']} ids of the labels file are items of neither collection; they were "
                   "ignored")
    cal = rec["metrics"].get("calibration", {})
    learned = ", ".join(f"{k.rstrip('_')}={v:.4g}" if isinstance(v, float) else f"{k.rstrip('_')}={v}"
                        for k, v in rec["learned"].items() if k != "multilabel_")
    echo_table(["accuracy", "95% interval", "macro_f1", "95% interval", "ece", "log_loss", "n_test", "chosen"],
               [[rec["accuracy"], interval(rec["metrics"].get("accuracy_ci95")), rec["macro_f1"],
                 interval(rec["metrics"].get("macro_f1_ci95")), cal.get("ece"), cal.get("log_loss"),
                 rec["metrics"]["n_test"], learned]])
    sel = rec.get("selection")
    if sel:
        tried = "  ".join(f"{k}: {v:.4g}" + (" (chosen)" if float(k) == float(sel["chosen"]) else "")
                          for k, v in sel["scores"].items())
        click.echo(f"\n{sel['parameter']} by {sel['how']}, {sel['criterion']}: {tried}")
        from embstore.estimators import DEFAULT_CS

        if sel["parameter"] == "C" and float(sel["chosen"]) == max(map(float, sel["scores"])) == max(DEFAULT_CS):
            click.echo(f"C={sel['chosen']:g} is the weakest regularisation tried: a weaker one may do better "
                       f"(--param C={3 * sel['chosen']:g} to try one)")
    prev = rec.get("vs_previous")
    if prev:
        verdict = ("more than the luck of the test set" if prev["p_value"] < 0.05
                   else "not distinguishable from the luck of the test set")
        items = lambda n: f"{n} item{'' if n == 1 else 's'}"  # noqa: E731
        click.echo(f"\nvs v{prev['version']} on the same test items: accuracy {prev['accuracy']:.4f} -> {rec['accuracy']:.4f}; "
                   f"{items(prev['only_this_right'])} only v{rec['version']} gets right, "
                   f"{items(prev['only_previous_right'])} only v{prev['version']} (McNemar p = {prev['p_value']:.3g}: {verdict})")
    elif rec["version"] > 1:
        click.echo("\nnot compared with the previous version: it was scored on other test items (or other labels)")
    per = rec["metrics"]["per_label"]
    click.echo("")
    echo_table(["label", "precision", "recall", "f1", "support"],
               [[k, v["precision"] if v.get("predicted", 1) else "",
                 *((v["recall"], v["f1"]) if v["support"] else ("", "")), v["support"]]
                for k, v in per.items()])  # no test item of a label (or none predicted): unknown, not 0
    for kind, path in rec.get("plots", {}).items():
        click.echo(f"{kind.replace('_', ' ')}: {path}")


def interval(ci: Any) -> str:
    return f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else ""


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        if value.lower() in ("true", "false"):  # as typed in a shell: True, false, FALSE ...
            out[key] = value.lower() == "true"
            continue
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------------------ eval
@cli.command(name="eval")
@store_option
@click.option("--collection", "-c", required=True, help="Collection to train on.")
@click.option("--label-column", metavar="COL", help="Item column holding the label.")
@click.option("--labels", "labels_file", type=click.Path(), help="CSV of id,label instead of a label column.")
@click.option("--space", metavar="NAME", help="Space to evaluate (needed when the collection has several).")
@click.option("--test-collection", metavar="C2", help="Score on this collection.")
@click.option("--train-where", metavar="SQL", help="Train only on items matching this SQL predicate (default: every "
              "labelled item, less the --test-where ones).")
@click.option("--test-where", metavar="SQL", help="Score on items matching this SQL predicate.")
@click.option("--test-size", type=float, default=0.2, show_default=True, help="Held-out fraction when no test set is given.")
@click.option("--samples", default="1,2,4,8,16,32,all", show_default=True, help="Training items per label to try.")
@click.option("--repeats", type=int, default=10, show_default=True, help="Undersampling runs per n.")
@click.option("--seed", type=int, default=42, show_default=True,
              help="Seed of the undersampling (MTEB's is 42). A held-out split (no test set given) uses seed 0, as fit's.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), help="Write the learning-curve PNG here.")
@device_option
@json_option
@friendly
def eval_(store_path: str, collection: str, label_column: str | None, labels_file: str | None, space: str | None,
          test_collection: str | None, train_where: str | None, test_where: str | None, test_size: float,
          samples: str, repeats: int, seed: int, plot_dir: str | None, device: str | None, as_json: bool) -> None:
    """Few-shot evaluation (MTEB's classification protocol): accuracy by training items per label.

    For each n, --repeats times: undersample the training set to n items per label (fixed seed), fit
    LogisticRegression(max_iter=100), score on the whole test set. Shows what the frozen encoder buys you.
    """
    store = open_store(store_path, device)
    with spinner(f"eval {collection}"):
        out = store.eval(collection, label_column, space=space, test_collection=test_collection, labels=labels_file,
                         train_where=train_where, test_where=test_where, test_size=test_size, samples=samples,
                         repeats=repeats, seed=seed, plot_dir=plot_dir)
    if as_json:
        echo_json(out)
        return
    click.echo(f"{out['collection']}.{out['space']} ({out['encoder']}): {out['n_classes']} labels, "
               f"scored on {out['evaluated_on']} ({out['n_test']} items)")
    echo_table(["per_label", "train_items", "runs", "accuracy", "± std", "macro_f1", "± std "],
               [[r["samples_per_label"], round(r["train_size"]), r["runs"], r["accuracy_mean"], r["accuracy_std"],
                 r["macro_f1_mean"], r["macro_f1_std"]] for r in out["results"]])
    for r in out["results"]:
        if r["every_item"] and r["samples_per_label"] != "all":
            n = r["samples_per_label"]
            click.echo(f"per_label {n}: no label has more than {n} training items, so every run trained on all of them "
                       "(in another order)")
    stopped = [f"{r['stopped_at_max_iter']} of {r['runs']} at per_label {r['samples_per_label']}"
               for r in out["results"] if r.get("stopped_at_max_iter")]
    if stopped:
        click.echo(f"runs that stopped at max_iter=100 before converging, as the protocol has them: {', '.join(stopped)}")
    if "plot" in out:
        click.echo(f"learning curve: {out['plot']}")


# ------------------------------------------------------------------------------------------------------ predict
@cli.command()
@store_option
@click.option("--head", metavar="HEAD", help="Head name (default: the most recently trained).")
@click.option("--version", type=int, help="Head version (default: latest).")
@click.option("--collection", "-c", help="Predict every item of this collection; results land in the store.")
@click.option("--text", "texts", multiple=True, help="Predict this text (repeatable) instead of a collection.")
@click.option("--image", "images", multiple=True, type=click.Path(),
              help="Predict this image file, or every image in this folder (repeatable).")
@device_option
@json_option
@friendly
def predict(store_path: str, head: str | None, version: int | None, collection: str | None, texts: tuple[str, ...],
            images: tuple[str, ...], device: str | None, as_json: bool) -> None:
    """Apply a head to a collection (stored; query it as the `predictions` SQL view) or to new inputs."""
    from pathlib import Path

    from embstore.ingest.readers import IMAGE_EXTENSIONS

    files: list[str] = []
    for given in images:  # a folder: every image below it, in a stable order
        p = Path(given).expanduser()
        files += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS) if p.is_dir() else [given]
    if images and not files:
        raise InputError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {', '.join(images)}")
    store = open_store(store_path, device)
    # what can be checked without a model, before one loads: the head and version, the collection, the images
    if head is not None:
        check_head_version(store, head, version)
    if collection is not None:
        store.collection(collection)
    new_inputs = collection is None and bool(texts) != bool(files)  # else the library says what to give
    if new_inputs and files:
        check_images(files)
    if new_inputs and all(t.strip() for t in texts):
        spec = head_encoder_spec(store, head, version)
        if spec is not None:
            load_encoder(spec, store.settings.device)
    if collection:
        with Progress("predict", waiting="loading the head") as progress:  # count, rate and ETA, shard by shard
            out = store.predict(head, collection, texts=list(texts) or None, images=files or None, version=version,
                                progress=progress)
    else:
        with spinner("predict"):
            out = store.predict(head, collection, texts=list(texts) or None, images=files or None, version=version)
    if as_json:
        echo_json(out)
    elif "rows" in out and any("labels" in r for r in out["rows"]):  # multi-label: every label at >= 0.5
        echo_table(["input", "labels", "top", "confidence"],
                   [[r["input"], ", ".join(r["labels"]), r["label"], r["confidence"]] for r in out["rows"]])
    elif "rows" in out:
        echo_table(["input", "label", "confidence"], [[r["input"], r["label"], r["confidence"]] for r in out["rows"]])
    else:
        click.echo(f"head {out['head']} v{out['version']} predicted {out['predicted']} items of "
                   f"{out['collection']}.{out['space']} (SQL view: predictions)")
        echo_table(["label", "items"], list(out["labels"].items()))


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
    space_name = store.space_name(collection, space)
    given = [v for v in (query, image, like, vec) if v is not None]  # not one: the library says what to give
    if len(given) == 1 and image is not None:
        check_images([image])
    if where is not None:
        check_where(store, collection, where, "--where")
    if len(given) == 1 and (image is not None or (query is not None and query.strip())) \
            and store.space(collection, space_name)["encoder"]["library"] != "external":
        load_encoder(store.space(collection, space_name)["encoder"]["spec"], store.settings.device)
    hits = store.search(collection, query, image=image, item_id=like, vector=vec, k=k, space=space, where=where)
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


def check_images(paths: list[str]) -> None:
    """Each image file exists and is an image (its header read, not its pixels): a one-line error before a model
    loads, in the words of the library's own check."""
    if not paths:
        return
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path):
                pass
        except FileNotFoundError:
            raise InputError(f"image {path} does not exist") from None
        except Exception as e:  # PIL raises many types for what is not an image
            raise InputError(f"cannot read image {path}: {type(e).__name__}: {e}") from None


def check_where(store: Any, collection: str, where: str, option: str) -> None:
    """A SQL predicate over the collection's columns, bound by DuckDB without reading a row."""
    from embstore.sql import ids_where

    ids_where(store, collection, where, option, check_only=True)


def check_head_version(store: Any, head: str, version: int | None) -> None:
    """The head exists (and has that version): a one-line error naming those there are."""
    versions = [v["version"] for v in store.head_versions(head)]
    if version is not None and version not in versions:
        raise NotFoundError(f"head {head!r} has no version {version} (versions: {versions})")


def head_encoder_spec(store: Any, head: str | None, version: int | None) -> str | None:
    """The encoder a head embeds new inputs with, when the manifest says it without loading the head: its
    training space's, when that space is still there with the head's fingerprint."""
    if head is None:
        return None
    chosen = [v for v in store.head_versions(head) if version is None or v["version"] == version][-1]
    space = (store.manifest["collections"].get(chosen["collection"]) or {}).get("spaces", {}).get(chosen["space"])
    if not space or space["encoder"]["fingerprint"] != chosen["space_fingerprint"] \
            or space["encoder"]["library"] == "external":  # vectors made elsewhere: the library says what to do
        return None
    return space["encoder"]["spec"]


def load_encoder(spec: str, device: str) -> None:
    """Load the model now, under a progress line; the library's own call then finds it loaded (one per process)."""
    from embstore.encoders import get_encoder

    with spinner(f"loading {spec}"):
        get_encoder(spec, device)


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
@json_option
@friendly
def index(store_path: str, collection: str, space: str | None, factory: str | None, target_recall: float,
          as_json: bool) -> None:
    """Rebuild a space's FAISS index and measure its recall@10 against exact search."""
    store = open_store(store_path)
    with spinner(f"index {collection}"):
        out = store.reindex(collection, space, factory=factory, target_recall=target_recall)
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
@click.option("--limit", type=int, default=1000, show_default=True, help="Rows shown in table format.")
@friendly
def sql(query: str, store_path: str, fmt: str | None, as_json: bool, output: str | None, write: bool,
        limit: int) -> None:
    """Run DuckDB SQL. Views: one per collection (its items), <collection>__<space> (id, content_hash, embedding)
    and predictions (collection, id, head, version, label, confidence, labels). Functions: embed('collection',
    'text') (the text embedded by the space's own encoder), similarity(a, b) (cosine), and per collection with a
    text space the table macro <collection>_nearest('text', k). Read-only unless --write."""
    import duckdb

    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json is --format json; give one of them, not --format {fmt} too")
    fmt = "json" if as_json else fmt or "table"
    store = open_store(store_path)
    rel = store.sql(query, write=write)
    if rel is None:
        echo_json({"ok": True}) if fmt == "json" else click.echo("ok")
        return
    try:
        show_result(rel, output, fmt, limit)
    except duckdb.Error as e:  # raised while the rows are computed (a function's error, a bad cast ...)
        raise BadInput(f"SQL error: {str(e).splitlines()[0]}") from None


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
        rel.write_parquet(output)
    elif kind == "json":
        with open(output, "w", encoding="utf-8") as f:
            write_json_rows(rel, f)
    else:
        rel.write_csv(output)


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
            if v["model"] == "knn" and v["collection"] not in data["collections"]:
                click.echo(f"head {h}: its training collection {v['collection']} was deleted, and a kNN head "
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
@json_option
@friendly
def delete(store_path: str, collection: str | None, head: str | None, version: int | None, yes: bool,
           as_json: bool) -> None:
    """Delete a collection (--collection) or a head (--head [--version N]). Data shards (items, vectors,
    predictions) and head files stay on disk for EMBSTORE_RETENTION_SECONDS (default 3600) so that queries and
    predictions already running finish, then a later write removes them; index files and quarantine records go at
    once. Heads trained on a deleted collection stay; a kNN head among them must be fit again."""
    if version is not None and head is None:
        raise InputError("--version goes with --head")
    if (collection is None) == (head is None):
        raise InputError("give --collection NAME or --head HEAD (one of them)")
    store = open_store(store_path)
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


if __name__ == "__main__":
    main()
