"""``embstore serve``: a read-only HTTP service over a store (FastAPI + uvicorn, the ``serve`` extra). Imported only
by that command: ``create_app(store, token=None, ...)`` makes the ASGI app (``app.py``)."""
from __future__ import annotations

from typing import Any


def create_app(store: Any, token: str | None = None, **options: Any) -> Any:
    """The FastAPI app serving ``store`` (a path or a ``Store``); see ``app.create_app``."""
    from .app import create_app as make

    return make(store, token, **options)
