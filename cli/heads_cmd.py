"""``embstore fit``, ``eval`` and ``predict``: train heads, measure them, apply them."""
from __future__ import annotations

from typing import Any

import click

from embstore.errors import InputError

from .checks import check_head_version, check_some_image, head_encoder_spec, load_encoder, warn_if_random
from .main import cli, device_option, friendly, json_option, no_wait_option, open_store, store_option
from .output import echo_json, echo_table
from .progress import Progress, spinner


# ------------------------------------------------------------------------------------------------------ fit
def label_options(f: Any) -> Any:
    """Where the labels come from (fit, eval, label-issues)."""
    f = click.option("--labels", "labels_file", type=click.Path(), multiple=True, callback=lambda c, p, v: v or None,
                     help="CSV of id,label instead of a label column; repeat it to take several together (one per "
                          "suggest round, say).")(f)
    return click.option("--label-column", metavar="COL", help="Item column holding the label.")(f)


def split_options(f: Any) -> Any:
    """Which labelled items train and which score (fit, eval)."""
    for opt in reversed([
        click.option("--test-collection", metavar="C2", help="Score on this collection instead of a held-out split."),
        click.option("--train-where", metavar="SQL", help="Train only on items matching this SQL predicate, e.g. "
                     "\"split = 'train'\" (default: every labelled item, less the --test-where ones)."),
        click.option("--test-where", metavar="SQL", help="Score on items matching this SQL predicate, e.g. "
                     "\"split = 'test'\"."),
        click.option("--test-size", type=float, default=0.2, show_default=True,
                     help="Held-out fraction when no test set is given.")]):
        f = opt(f)
    return f


def prompt_params(model: str, classes: str | None, templates_file: str | None,
                  label_names: tuple[str, ...]) -> dict[str, Any]:
    """--classes, --templates and --label-name as a prototype head's params; refused for the other heads."""
    given = [o for o, v in (("--classes", classes), ("--templates", templates_file), ("--label-name", label_names))
             if v]
    if given and model not in ("zeroshot", "fewshot"):
        raise InputError(f"{', '.join(given)} shape the prompts of a zeroshot or fewshot head; --model {model} has none")
    if classes and model != "zeroshot":
        raise InputError("--classes names the labels of a zeroshot head with no labelled items; a fewshot head "
                         "takes its labels from --label-column or --labels")
    out: dict[str, Any] = {}
    if classes:
        out["classes"] = classes
    if templates_file:
        try:
            with open(templates_file, encoding="utf-8") as f:
                out["templates"] = [line.rstrip("\n") for line in f if line.strip()]
        except OSError as e:
            raise InputError(f"cannot read templates file {templates_file}: {e.strerror or e}") from None
    if label_names:
        bad = [v for v in label_names if "=" not in v]
        if bad:
            raise InputError(f"--label-name takes LABEL=WORDS, e.g. 0=zero; got {bad[0]!r}")
        out["label_names"] = dict(v.split("=", 1) for v in label_names)
    return out


@cli.command()
@store_option
@click.option("--collection", "-c", required=True, help="Collection to train on.")
@label_options
@click.option("--name", metavar="HEAD", help="Head name (default: <collection>_<label>_<model>). Refitting adds a version.")
@click.option("--model", type=click.Choice(["auto", "logreg", "selftrain", "knn", "centroid", "blend", "sklearn-logreg",
                                           "zeroshot", "fewshot"]),
              default="auto", show_default=True,
              help="auto: logreg, knn, centroid and blend scored on the same cross-validation folds of the training "
              "items; logreg unless another is better by more than 2 standard errors (the choice and every score are "
              "kept in the head; --param candidates=logreg,knn narrows it, band=N sets the margin); "
              "logreg: C chosen by cross-validation (torch, GPU if any); selftrain: logreg that also learns from up "
              "to 20,000 of the space's unlabelled items, labelling those it is sure of (p >= 0.9) with its guess, "
              "two rounds, once every label has 3 labelled items (--param threshold=, rounds=, weight=, max_unlabelled=, "
              "min_per_label=; best with few labels); blend: the mean of logreg's and knn's "
              "probabilities; knn: k chosen by "
              "validation, neighbours searched within the space; centroid: nearest centroid (1 example per label is "
              "enough); sklearn-logreg: stock baseline; zeroshot: the label names' prompts embedded by the space's "
              "encoder (CLIP, or a text model), no examples (--classes when nothing is labelled); fewshot: those "
              "prompts plus the labelled examples (Tip-Adapter).")
@click.option("--classes", metavar="A,B,...", help="zeroshot without labels: the label names.")
@click.option("--templates", "templates_file", type=click.Path(dir_okay=False),
              help="zeroshot/fewshot: a file of prompt templates, one a line, {} where the label goes (default: CLIP's "
              "photo prompts for images, '{}' and 'a text about {}.' for texts).")
@click.option("--label-name", "label_names", multiple=True, metavar="LABEL=WORDS",
              help="zeroshot/fewshot: prompt LABEL as WORDS, e.g. 0=zero (repeatable).")
@click.option("--class-weight", type=click.Choice(["balanced"]),
              help="Weigh labels inversely to their frequency (logreg, selftrain and sklearn-logreg).")
@click.option("--label-sep", metavar="SEP", help="Split string labels on SEP into several labels (multi-label head).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False),
              help="Write confusion-matrix (single-label heads) and learning-curve PNGs here.")
@click.option("--space", metavar="NAME", help="Space to train on (needed when the collection has several).")
@split_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Estimator parameter, e.g. C=0.5, n_neighbors=5 or calibrate=false (repeatable).")
@no_wait_option
@device_option
@json_option
@friendly
def fit(store_path: str, collection: str, label_column: str | None, labels_file: str | None, name: str | None,
        model: str, class_weight: str | None, label_sep: str | None, plot_dir: str | None, space: str | None,
        classes: str | None, templates_file: str | None, label_names: tuple[str, ...],
        test_collection: str | None, train_where: str | None, test_where: str | None, test_size: float, seed: int,
        params: tuple[str, ...], no_wait: bool, device: str | None, as_json: bool) -> None:
    """Train a head on a collection's embeddings; report accuracy and macro-F1 with 95% intervals, per-label
    precision/recall and calibration on a test set (--test-collection, --test-where, or a held-out split). A refit
    scored on the same test items is compared with the head's previous version item by item (McNemar's test)."""
    store = open_store(store_path, device, no_wait=no_wait)
    extra = parse_params(params)
    if class_weight:
        extra["class_weight"] = class_weight
    extra.update(prompt_params(model, classes, templates_file, label_names))
    with Progress(f"fit {model}", waiting="reading the labels") as progress:  # vectors read, then the solves
        rec = store.fit(collection, label_column, name, model=model, space=space, test_collection=test_collection,
                        labels=labels_file, test_size=test_size, seed=seed, params=extra, train_where=train_where,
                        test_where=test_where, label_sep=label_sep, plot_dir=plot_dir, progress=progress)
    warn_if_random(rec["encoder"]["spec"])
    if as_json:
        echo_json(rec)
        return
    unlabelled = f" ({rec['n_unlabelled']} without a label left out)" if rec.get("n_unlabelled") and \
        not rec.get("self_training") else ""
    chosen_by = " (chosen by auto)" if rec.get("auto") else ""
    click.echo(f"head {rec['name']} v{rec['version']}: {rec['model']}{chosen_by} on {rec['collection']}.{rec['space']}, "
               f"{rec['n_train']} training items{unlabelled}, {rec['n_classes']} labels; scored on {rec['evaluated_on']}")
    st = rec.get("self_training")
    if st:
        rounds = ", ".join(f"{n:,}" for n in st["pseudo_labelled"]) or "none"
        click.echo(f"self-training: of {st['unlabelled']:,} unlabelled items sampled, the head's guesses it was sure of "
                   f"(p >= {st['threshold']:g}) were learned too, at weight {st['weight']:g}: {rounds} by round")
    if rec.get("labels_file_unmatched"):
        files = "labels file" + ("s" if labels_file and len(labels_file) > 1 else "")
        click.echo(f"{rec['labels_file_unmatched']} ids of the {files} are items of neither collection; they were "
                   "ignored")
    if rec.get("prompts"):
        click.echo(f"prompts: {len(rec['prompts']['templates'])} templates (e.g. "
                   f"{rec['prompts']['templates'][0].format(rec['prompts']['label_names'][0])!r})")
    leak = rec.get("leakage") or {}
    if leak.get("near_duplicates"):
        sampled = "" if leak["test_items_checked"] == rec["metrics"].get("n_test") else \
            f" (of {leak['test_items_checked']:,} checked)"
        click.secho(f"warning: {leak['near_duplicates']:,} test items{sampled} have a near-duplicate among the training "
                    f"items (cosine >= {leak['threshold']}): the test score may be inflated; `embstore duplicates` "
                    "lists them", err=True, fg="yellow")
    if rec["accuracy"] is None:
        click.echo(f"not scored: no labelled items; `embstore predict --head {rec['name']} -c {rec['collection']}` "
                   "applies it")
        return
    cal = rec["metrics"].get("calibration", {})
    learned = ", ".join(f"{k.rstrip('_')}={v:.4g}" if isinstance(v, float) else f"{k.rstrip('_')}={v}"
                        for k, v in rec["learned"].items() if k != "multilabel_")
    echo_table(["accuracy", "95% interval", "macro_f1", "95% interval", "ece", "log_loss", "n_test", "chosen"],
               [[rec["accuracy"], interval(rec["metrics"].get("accuracy_ci95")), rec["macro_f1"],
                 interval(rec["metrics"].get("macro_f1_ci95")), cal.get("ece"), cal.get("log_loss"),
                 rec["metrics"]["n_test"], learned]])
    auto = rec.get("auto")
    if auto:
        echo_auto_choice(auto)
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
@label_options
@click.option("--space", metavar="NAME", help="Space to evaluate (needed when the collection has several).")
@split_options
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
    with Progress("eval", waiting="reading the labels") as progress:  # vectors read, then the protocol's runs
        out = store.eval(collection, label_column, space=space, test_collection=test_collection, labels=labels_file,
                         train_where=train_where, test_where=test_where, test_size=test_size, samples=samples,
                         repeats=repeats, seed=seed, plot_dir=plot_dir, progress=progress)
    warn_if_random(out["encoder"])
    if as_json:
        echo_json(out)
        return
    click.echo(f"{out['collection']}.{out['space']} ({out['encoder']}): {out['n_classes']} labels, "
               f"scored on {out['evaluated_on']} ({out['n_test']} items)")
    echo_table(["per_label", "train_items", "runs", "accuracy", "± std", "macro_f1", "± std "],
               [[r["samples_per_label"], round(r["train_size"]), r["runs"], r["accuracy_mean"], r["accuracy_std"],
                 r["macro_f1_mean"], r["macro_f1_std"]] for r in out["results"]])
    zs = out.get("zero_shot")
    if zs:
        click.echo(f"zero-shot (the label names, {zs['templates']} prompt templates, no training item): accuracy "
                   f"{zs['accuracy']:.4f}, macro_f1 {zs['macro_f1']:.4f}")
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
@no_wait_option
@device_option
@json_option
@friendly
def predict(store_path: str, head: str | None, version: int | None, collection: str | None, texts: tuple[str, ...],
            images: tuple[str, ...], no_wait: bool, device: str | None, as_json: bool) -> None:
    """Apply a head to a collection (stored; query it as the `predictions` SQL view) or to new inputs.

    New images that cannot be used (missing, broken, not a regular file, in a folder that cannot be listed) are
    skipped, each with its reason, and the rest predicted; only when none can be used is it an error."""
    import os

    from embstore.predict import image_files

    images = tuple(os.path.expanduser(i) for i in images)
    files, _ = image_files(images)  # a folder: every image below it, sorted
    store = open_store(store_path, device, no_wait=no_wait)
    # what can be checked without a model, before one loads: the head and version, the collection, the images
    if head is None:  # the latest head that fits the input (the library's choice, made here before a model loads)
        from embstore.predict import fitting_head

        head = fitting_head(store, collection, "text" if texts else "image" if files else None)
    if head is not None:
        check_head_version(store, head, version)
    if collection is not None:
        store.collection(collection)
    new_inputs = collection is None and bool(texts) != bool(files)  # else the library says what to give
    if new_inputs and files:
        check_some_image(files, store.settings.max_pixels)
    if new_inputs and all(t.strip() for t in texts):
        spec = head_encoder_spec(store, head, version)
        if spec is not None:
            load_encoder(spec, store.settings.device, store.settings.runtime)
    if collection:
        with Progress("predict", waiting="loading the head") as progress:  # count, rate and ETA, shard by shard
            out = store.predict(head, collection, texts=list(texts) or None, images=list(images) or None,
                                version=version, progress=progress)
    else:
        with spinner("predict"):
            out = store.predict(head, collection, texts=list(texts) or None, images=list(images) or None,
                                version=version)
    warn_if_random(head_encoder_spec(store, out["head"], out["version"]))
    if as_json:
        echo_json(out)
    elif "rows" not in out:
        click.echo(f"head {out['head']} v{out['version']} predicted {out['predicted']} items of "
                   f"{out['collection']}.{out['space']} (SQL view: predictions)")
        echo_table(["label", "items"], list(out["labels"].items()))
    else:
        if any("labels" in r for r in out["rows"]):  # multi-label: every label at >= 0.5
            echo_table(["input", "labels", "top", "confidence"],
                       [[r["input"], ", ".join(r["labels"]), r["label"], r["confidence"]] for r in out["rows"]])
        else:
            echo_table(["input", "label", "confidence"], [[r["input"], r["label"], r["confidence"]] for r in out["rows"]])
        for skip in out["skipped"]:
            click.echo(f"skipped {skip['input']}: {skip['reason']}")
        if out["skipped"]:
            click.echo(f"predicted {out['predicted']} of {out['given']}; {len(out['skipped'])} skipped (reasons above)")


# ------------------------------------------------------------------------------------------------------ suggest
@cli.command()
@store_option
@click.option("--collection", "-c", required=True, help="Collection to pick from.")
@click.option("-n", "n", type=int, default=50, show_default=True, help="How many items.")
@click.option("--head", metavar="HEAD", help="Pick what this head is least sure of (spread out); without it, a "
              "diverse sample of the space.")
@click.option("--space", metavar="NAME", help="Space to pick in (needed when the collection has several).")
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed gives the same picks.")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write a CSV of id,content[,guess,confidence],label to fill in; `fit --labels FILE` takes it back.")
@device_option
@json_option
@friendly
def suggest(store_path: str, collection: str, n: int, head: str | None, space: str | None, seed: int,
            output: str | None, device: str | None, as_json: bool) -> None:
    """Which items to label next: with no head, a diverse, representative sample (k-means over the embeddings, the
    item nearest each centre); with --head, the items it is least sure of, spread out in the space (the least sure
    of each of n clusters of the 5n least sure)."""
    store = open_store(store_path, device)
    if head is not None:
        check_head_version(store, head, None)
    out = store.suggest(collection, n, head=head, space=space, seed=seed)
    if output:
        import csv

        columns = ["id", "content", *(["guess", "confidence"] if head else []), "label"]
        with open(output, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, columns)
            w.writeheader()
            w.writerows({**r, "label": ""} for r in out["rows"])
        out["output"] = output
    if as_json:
        echo_json(out)
        return
    click.echo(f"{len(out['rows'])} items of {out['collection']}.{out['space']} to label next: {out['how']}")
    columns = ["id", "content", *(["guess", "confidence"] if head else [])]
    echo_table(columns, [[r.get(c) for c in columns] for r in out["rows"]])
    if output:
        click.echo(f"wrote {output}: fill in its label column, then `embstore fit ... --labels {output}`")


# ------------------------------------------------------------------------------------------------------ label-issues
@cli.command("label-issues")
@store_option
@click.option("--collection", "-c", required=True, help="Collection whose labels to check.")
@label_options
@click.option("--space", metavar="NAME", help="Space to score in (needed when the collection has several).")
@click.option("--model", type=click.Choice(["logreg", "knn", "centroid", "sklearn-logreg"]), default="logreg",
              show_default=True, help="The head that gives each item its out-of-fold probabilities.")
@click.option("--limit", type=int, default=50, show_default=True, help="Show the worst N.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the folds.")
@device_option
@json_option
@friendly
def label_issues(store_path: str, collection: str, label_column: str | None, labels_file: str | None,
                 space: str | None, model: str, limit: int, seed: int, device: str | None, as_json: bool) -> None:
    """Labels that are likely wrong: confident learning on out-of-fold probabilities (each item scored by a head
    trained without it), worst first, each with the label it more likely has."""
    store = open_store(store_path, device)
    out = store.label_issues(collection, label_column, labels=labels_file, space=space, model=model, limit=limit,
                             seed=seed)
    if as_json:
        echo_json(out)
        return
    echo_listing(f"{out['issues']} of {out['labelled']} labels of {out['collection']}.{out['space']} are likely "
                 f"wrong ({out['how']})", "the worst", ["id", "content", "label", "suggested", "score"],
                 [[r["id"], r["content"], r["label"], r["suggested"], r["score"]] for r in out["rows"]])


def echo_listing(head: str, which: str, columns: list[str], rows: list[list[Any]]) -> None:
    """``head; <which> N:`` over a table of the rows, or ``head.`` alone when there are none."""
    if not rows:
        click.echo(head + ".")
        return
    click.echo(f"{head}; {which} {len(rows)}:")
    echo_table(columns, rows)


# ------------------------------------------------------------------------------------------------------ duplicates
@cli.command()
@store_option
@click.option("--collection", "-c", required=True, help="Collection to look in.")
@click.option("--space", metavar="NAME", help="Space to compare in (needed when the collection has several).")
@click.option("--threshold", type=float, default=0.99, show_default=True, help="Cosine at or above which two items "
              "are near-duplicates (0.99: copies; lower it to find paraphrases or look-alikes).")
@click.option("--limit", type=int, default=20, show_default=True, help="Show the largest N groups.")
@device_option
@json_option
@friendly
def duplicates(store_path: str, collection: str, space: str | None, threshold: float, limit: int, device: str | None,
               as_json: bool) -> None:
    """Groups of near-duplicate items (embeddings closer than --threshold), through the space's index."""
    from embstore.duplicates import find_duplicates

    store = open_store(store_path, device)
    with Progress("duplicates", waiting="loading the index") as progress:
        out = find_duplicates(store, collection, space=space, threshold=threshold, limit=limit, progress=progress)
    if as_json:
        echo_json(out)
        return
    echo_listing(f"{out['groups_found']:,} groups of near-duplicates ({out['items_in_groups']:,} of "
                 f"{out['items']:,} items of {out['collection']}.{out['space']} at cosine >= {out['threshold']})",
                 "the largest", ["size", "min_score", "ids", "contents"],
                 [[g["size"], g["min_score"], ", ".join(g["ids"][:3]) + (" ..." if g["size"] > 3 else ""),
                   " | ".join(str(c) for c in g["contents"][:3])] for g in out["groups"]])


def echo_auto_choice(auto: dict) -> None:
    """What --model auto chose, on what evidence: each candidate's held-out accuracy, and the margin."""
    scores = auto.get("scores") or {}
    if not scores:
        click.echo(f"\nauto: {auto['chosen']} ({auto['how']})")
        return
    m = auto.get("margin", {})
    if "over" in m:
        why = f"held-out accuracy {m['accuracy']:+.4f} over {m['over']} (paired standard error {m['se']:.4f})"
    elif m.get("runner_up"):
        why = (f"the default; no other beat it by more than the rule's margin (next best: {m['runner_up']}, "
               f"{abs(m['accuracy']):.4f} {'lower' if m['accuracy'] >= 0 else 'higher, within the margin'})")
    else:
        why = "the default"
    click.echo(f"\nauto chose {auto['chosen']}: {why}; {auto['how']}")
    echo_table(["candidate", "held-out accuracy", "se", "log_loss", "vs logreg"],
               [[c, s["accuracy"], s["se"], s["log_loss"], f"{s['vs_default']:+.4f}" if "vs_default" in s else ""]
                for c, s in scores.items()])
