"""``embstore serve``: the read-only HTTP service over a store (the library's ``embstore.serve``), run by uvicorn."""
from __future__ import annotations

import os

import click

from embstore.errors import InputError

from .main import cli, device_option, friendly, store_option

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@cli.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but localhost exposes the store to the network (use --token).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on.")
@click.option("--token", envvar="EMBSTORE_TOKEN", metavar="T", help="Require 'Authorization: Bearer T' on every data "
              "endpoint (or set EMBSTORE_TOKEN; the environment keeps it out of the process list).")
@click.option("--max-body", type=int, default=8 << 20, show_default=True, help="Largest request body, bytes (413 over it).")
@click.option("--max-k", type=int, default=1000, show_default=True, help="Most search results a request may ask for.")
@click.option("--max-rows", type=int, default=10_000, show_default=True, help="Most SQL result rows a request may ask for.")
@click.option("--max-sql", type=int, default=20_000, show_default=True, help="Longest SQL text, characters.")
@click.option("--threads", type=int, default=None, metavar="N",
              help="Threads that run requests (default: 40, anyio's).")
@click.option("--reload", "reload", type=click.Choice(["background", "inline"]), default="background",
              show_default=True, help="After a commit: make the next snapshot beside the requests, which go on from "
              "the current one (background), or in the first request after it, the others waiting (inline: a "
              "request after a commit always sees it).")
@device_option
@friendly
def serve(store_path: str, host: str, port: int, token: str | None, max_body: int, max_k: int, max_rows: int,
          max_sql: int, threads: int | None, reload: str, device: str | None) -> None:
    """Serve the store over HTTP, read-only: JSON endpoints for search (text, image upload, item id, vector,
    where), predict, SQL (read-only, the store's tables only) and info; the OpenAPI page at /docs, a search page at
    /, the map at /map?collection=C. An ingest running beside it is seen once it commits (the store's next snapshot
    is made when the manifest changes, see --reload), never half-written. Needs the serve extra: pip install 'embstore[serve]'."""
    try:
        import uvicorn

        from embstore.serve import create_app
        from embstore.serve.limits import Limits
    except ImportError as e:
        raise InputError(f"embstore serve needs the serve extra ({e.name} is missing): pip install "
                         "'embstore[serve]'") from None
    from embstore.config import Settings

    for name, value in (("--max-body", max_body), ("--max-k", max_k), ("--max-rows", max_rows),
                        ("--max-sql", max_sql)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    if host not in LOCAL_HOSTS and not token:
        click.echo(f"warning: serving {store_path} on {host}:{port} without a token: anyone who can reach it can "
                   "read the store; pass --token or set EMBSTORE_TOKEN", err=True)
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    limits = Limits(body_bytes=max_body, k=max_k, rows=max_rows, sql_chars=max_sql)
    app = create_app(store_path, token=token, limits=limits, settings=Settings.resolve(device=device),
                     threads=threads, reload=reload)
    click.echo(f"serving {app.state.service.snapshots.root} at http://{host}:{port}/ (API: /docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=os.environ.get("EMBSTORE_LOG_LEVEL", "warning"))
