"""Checks the commands make before a model loads: image files, a ``--where`` predicate, a head and its version;
and the model loading itself, shown as a waiting line."""
from __future__ import annotations

from typing import Any

from embstore.errors import InputError, NotFoundError

from .progress import spinner


def image_problem(path: str, max_pixels: int | None = None) -> InputError | None:
    """Why an image file cannot be used (missing, no regular file, not an image, too many pixels), from its header
    (no pixel decoded), in the words of the library's own check; None when it can."""
    import os

    from embstore.encoders.base import open_image
    from embstore.errors import ImageTooLargeError
    from embstore.ingest.locations import special_kind

    try:
        kind = special_kind(os.stat(path).st_mode)  # (a named pipe is never opened: it would wait for a writer)
        if kind is not None:
            return InputError(f"image {path} is not a regular file ({kind}); give an image file")
        open_image(path, max_pixels).close()
    except FileNotFoundError:
        return InputError(f"image {path} does not exist")
    except ImageTooLargeError as e:
        return ImageTooLargeError(f"image {path} has {e}")
    except Exception as e:  # PIL raises many types for what is not an image
        return InputError(f"cannot read image {path}: {type(e).__name__}: {e}")
    return None


def check_images(paths: list[str], max_pixels: int | None = None) -> None:
    """Each image file exists and is an image: a one-line error before a model loads."""
    for path in paths:
        problem = image_problem(path, max_pixels)
        if problem is not None:
            raise problem


def check_some_image(paths: list[str], max_pixels: int | None = None) -> None:
    """At least one of the image files can be used (the others are the library's to skip, with their reasons):
    else the first one's problem, as one line before a model loads."""
    problems = []
    for path in paths:
        problem = image_problem(path, max_pixels)
        if problem is None:
            return
        problems.append(problem)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputError(f"none of the {len(problems)} images can be read; the first: {problems[0]}")


def check_where(store: Any, collection: str, where: str, option: str) -> None:
    """A SQL predicate over the collection's columns, bound by DuckDB and tried on its first rows (sql.CHECK_ROWS)."""
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


def load_encoder(spec: str, device: str, runtime: str = "auto") -> None:
    """Load the model now, under a progress line; the library's own call then finds it loaded (one per process)."""
    from embstore.encoders import get_encoder

    warn_if_random(spec)
    with spinner(f"loading {spec}"):
        get_encoder(spec, device, runtime)


def warn_if_random(spec: str | None) -> None:
    """Random weights (``...@random``) are for tests and throughput runs: said on stderr wherever their vectors
    are used (ingest, search, fit, eval, predict), so nobody mistakes their results for a model's."""
    import click

    if spec and (spec.endswith("@random") or spec.endswith("/random")):
        click.secho(f"warning: {spec} has RANDOM weights: its vectors, searches and heads mean nothing (for tests "
                    "and throughput runs only)", err=True, fg="yellow")
