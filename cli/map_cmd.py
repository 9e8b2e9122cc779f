"""``embstore map``: one offline HTML page mapping a space in 2D (embstore/space_map.py)."""
from __future__ import annotations

from pathlib import Path

import click

from .main import cli, friendly, json_option, open_store, store_option
from .output import echo_json
from .progress import spinner


@cli.command(name="map")
@store_option
@click.option("--collection", "-c", required=True, help="Collection to map.")
@click.option("--space", metavar="NAME", help="Space to map (needed when the collection has several).")
@click.option("--color", default="label", show_default=True, metavar="label|COLUMN|prediction:HEAD",
              help="Colour by the collection's label (a `label` column, else the latest head's label column, else an "
              "image folder), any column, or a head's stored predictions (mistakes are ringed).")
@click.option("--sample", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Points at most (a seeded sample of a larger space, stated on the page).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample and the projection.")
@click.option("--method", type=click.Choice(["auto", "umap", "pca"]), default="auto", show_default=True,
              help="2D projection: auto is UMAP when umap-learn is installed, else PCA. Computed once and kept in "
              "the store; computed again when the space has changed.")
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@json_option
@friendly
def map_(store_path: str, collection: str, space: str | None, color: str, sample: int, seed: int, method: str,
         out: str, as_json: bool) -> None:
    """Write one self-contained HTML page (it works offline) with a 2D map of a space: hover shows an item's text
    or image thumbnail and its columns, a box filters by text. Needs the serve extra (pip install
    'embstore[serve]')."""
    from embstore.space_map import map_page

    store = open_store(store_path)
    with spinner("map: projecting and drawing"):
        page = map_page(store, collection, space=space, color=color, sample=sample, seed=seed, method=method)
    path = Path(out)
    path.write_text(page.html, encoding="utf-8")
    report = page.report() | {"out": str(path.absolute())}
    if as_json:
        echo_json(report)
        return
    how = "kept in the store" if page.kept and not page.reused else "reused from the store" if page.reused else \
        f"not kept: {page.not_kept}"
    click.echo(f"wrote {path} ({report['bytes'] / 1e6:.1f} MB): showing {page.shown:,} of {page.items:,} items of "
               f"{page.collection}.{page.space}; {page.method.upper()} projection {how}")
    if page.color_column or page.head:
        click.echo(f"colour: {page.color_column or f'predictions of {page.head}'}"
                   + (f"; {page.mismatches:,} items whose prediction by {page.head} differs from their label are "
                      "ringed" if page.mismatches is not None else ""))
    if page.thumbnails:
        click.echo(f"thumbnails (on hover): {page.thumbnails:,} of the {page.shown:,} points")
