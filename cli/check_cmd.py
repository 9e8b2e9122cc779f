"""``embstore check [--repair]``: the store's files against its manifest, each problem in plain words."""
from __future__ import annotations

import sys

import click

from .main import cli, friendly, json_option, store_option
from .output import echo_json


@cli.command()
@store_option
@click.option("--repair", is_flag=True, help="Fix what can be fixed without losing data (under the writer lock), "
              "say what was done, and check again.")
@click.option("--quick", is_flag=True, help="Compare shard sizes, not checksums (no shard is read through: for "
              "very large stores).")
@json_option
@friendly
def check(store_path: str, repair: bool, quick: bool, as_json: bool) -> None:
    """Verify a store: every shard there, whole (size, checksum) and of the rows the manifest says; ids unique;
    every item with a vector in each space; each index and key table against its space; heads and predictions;
    leftovers of a killed writer. Exit 1 when a problem is left. Plain check only reads (a read-only store folder
    works); --repair takes the writer lock."""
    from embstore.check import check_store

    report = check_store(store_path, repair, quick=quick)
    if as_json:
        echo_json(report.to_dict())
    else:
        if report.found is not None:
            for p in report.found:
                click.echo(f"found: {p.message}")
            for line in report.repairs or (["nothing to repair"] if not report.found else []):
                click.echo(f"repaired: {line}")
        for p in report.problems:
            click.echo(f"problem: {p.message}")
        for note in report.notes:
            click.echo(f"note: {note}")
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)
