"""The HTTP service over a store (``embstore serve``): JSON endpoints for search, predict, read-only SQL and info, an
OpenAPI page, a search page, item thumbnails and the map. Read-only: nothing here writes into the store.

Every endpoint is a plain (sync) function, so FastAPI runs it in its thread pool and the event loop never waits for
an encoder, FAISS or DuckDB. Each request takes the current snapshot once (``snapshots.py``); an error raised on
purpose comes back as ``{"error": <one line>, "kind": <the library's exception>}`` with a 4xx/5xx status.
"""
from __future__ import annotations

import math
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, time as dtime
from decimal import Decimal
from importlib import resources
from typing import Any, AsyncIterator

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (DamagedStoreError, EmbstoreError, InputError, NotFoundError, ReadOnlyError, StoreLockedError,
                      StoreWriteError)
from .limits import BodyLimit, Limits, TooLargeError, error_response
from .snapshots import Snapshot, Snapshots

STATUS = {TooLargeError: 413, NotFoundError: 404, ReadOnlyError: 403, StoreLockedError: 503, DamagedStoreError: 500,
          StoreWriteError: 500}
THUMB_MAX = 512  # pixels: the largest thumbnail side the image endpoint makes


class SearchBody(BaseModel):
    collection: str
    text: str | None = None
    id: str | None = None
    vector: list[float] | None = None
    where: str | None = None
    k: int = 10
    space: str | None = None


class PredictBody(BaseModel):
    texts: list[str]
    head: str | None = None
    version: int | None = None


class SqlBody(BaseModel):
    query: str
    limit: int | None = None


@dataclass
class Service:
    snapshots: Snapshots
    limits: Limits
    token: str | None


def create_app(store: str | Any, token: str | None = None, *, limits: Limits | None = None,
               settings: Any = None, threads: int | None = None, reload: str = "background") -> FastAPI:
    """The service's ASGI app over the store at ``store`` (a path, or an opened ``Store``: its folder is served).
    ``token``: when given, every data endpoint needs ``Authorization: Bearer <token>`` (the page and the OpenAPI
    page do not: they hold no data). ``threads``: how many requests run at once (anyio's default: 40). ``reload``:
    ``background`` (a commit is seen once its snapshot is made, no request waits) or ``inline`` (a request after a
    commit sees it; the requests behind the reload wait): ``snapshots.py``."""
    from ..store import Store

    root, settings = (store.root, settings or store.settings) if isinstance(store, Store) else (store, settings)
    svc = Service(Snapshots(root, settings, reload), limits or Limits(), token or None)
    app = FastAPI(title="embstore", version=_version(),
                  description=f"Read-only service over the store {svc.snapshots.root}.", docs_url=None,
                  redoc_url=None, lifespan=_lifespan(threads))
    app.state.service = svc
    app.add_middleware(BodyLimit, max_bytes=svc.limits.body_bytes)

    @app.exception_handler(EmbstoreError)
    def embstore_error(request: Request, exc: EmbstoreError) -> JSONResponse:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
        kind = type(exc).__name__
        return error_response(status, str(exc), kind)

    @app.exception_handler(RequestValidationError)
    def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        return error_response(400, f"{where or 'request'}: {first.get('msg', 'invalid')}", "InputError")

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed", 501: "NotImplemented"}.get(
            exc.status_code, "HTTPError")
        return error_response(exc.status_code, str(exc.detail), kind, getattr(exc, "headers", None))

    def authorized(request: Request) -> None:
        if svc.token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(value.strip().encode(), svc.token.encode()):
            raise StarletteHTTPException(401, "this service needs a token: send the header "
                                              "'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"})

    def snapshot(_: None = Depends(authorized)) -> Snapshot:
        return svc.snapshots.current()

    _add_pages(app, svc)

    @app.get("/api/info", summary="What the store holds (collections, spaces, heads) and the snapshot served")
    def info(snap: Snapshot = Depends(snapshot)) -> dict[str, Any]:
        out = snap.store.info()
        out["snapshot"] = {"serial": snap.serial, "updated": snap.store.manifest.get("updated"),
                           "reload": svc.snapshots.reload, "reloading": svc.snapshots.reloading,
                           "reload_error": svc.snapshots.reload_error}
        out["limits"] = svc.limits.describe()
        return out

    @app.get("/api/search", summary="Nearest items to a text (q) or an item (id)")
    def search_get(collection: str, q: str | None = None, id: str | None = None, where: str | None = None,
                   k: int = 10, space: str | None = None, snap: Snapshot = Depends(snapshot)) -> dict[str, Any]:
        return _search(svc, snap, collection, k=k, space=space, where=where, query=q, item_id=id)

    @app.post("/api/search", summary="Nearest items to a text, an item id or a raw vector, with an optional where")
    def search_post(body: SearchBody, snap: Snapshot = Depends(snapshot)) -> dict[str, Any]:
        vector = None if body.vector is None else np.asarray(body.vector, np.float32)
        return _search(svc, snap, body.collection, k=body.k, space=body.space, where=body.where, query=body.text,
                       item_id=body.id, vector=vector)

    @app.post("/api/search/image", summary="Nearest items to an uploaded image")
    def search_image(collection: str = Form(...), file: UploadFile = File(...), k: int = Form(10),
                     where: str | None = Form(None), space: str | None = Form(None),
                     snap: Snapshot = Depends(snapshot)) -> dict[str, Any]:
        return _search(svc, snap, collection, k=k, space=space, where=where, image=file.file.read())

    @app.post("/api/predict", summary="A head's labels for new texts (the latest head that embeds text by default)")
    def predict(body: PredictBody, snap: Snapshot = Depends(snapshot)) -> dict[str, Any]:
        svc.limits.check_inputs(len(body.texts), max(map(len, body.texts), default=0))
        out = snap.store.predict(body.head, texts=body.texts, version=body.version)
        return out | {"snapshot": snap.serial}

    @app.post("/api/predict/image", summary="A head's labels for uploaded images")
    def predict_image(files: list[UploadFile] = File(...), head: str | None = Form(None),
                      version: int | None = Form(None), snap: Snapshot = Depends(snapshot)) -> dict[str, Any]:
        svc.limits.check_inputs(len(files), 0)
        out = snap.store.predict(head, images=[f.file.read() for f in files], version=version)
        names = {f"#{k + 1}": f.filename or f"#{k + 1}" for k, f in enumerate(files)}  # the library's names of bytes
        for entry in out["rows"] + out["skipped"]:
            name = names.get(entry["input"], entry["input"])
            if "reason" in entry:
                entry["reason"] = entry["reason"].replace(f"image {entry['input']}", f"image {name}", 1)
            entry["input"] = name
        return out | {"snapshot": snap.serial}

    @app.post("/api/sql", summary="Read-only DuckDB SQL over the store's views (no writes, no other files)")
    def sql(body: SqlBody, snap: Snapshot = Depends(snapshot)) -> dict[str, Any]:
        return _sql(svc, snap, body.query, body.limit)

    @app.get("/api/items/{collection}/{item_id}/image", summary="A thumbnail of an image item (only files the "
             "store's items name)", response_class=Response)
    def item_image(collection: str, item_id: str, size: int = Query(256, ge=16, le=THUMB_MAX),
                   snap: Snapshot = Depends(snapshot)) -> Response:
        return Response(_thumbnail(snap.store, collection, item_id, size), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/map", summary="The interactive map of a collection's space (embstore map)",
             response_class=HTMLResponse)
    def space_map(collection: str, space: str | None = None, color: str = "label",
                  snap: Snapshot = Depends(snapshot)) -> HTMLResponse:
        from .. import space_map as sm

        return HTMLResponse(sm.map_html(snap.store, collection, space=space, color=color, keep=False))  # read-only

    return app


def _lifespan(threads: int | None) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if threads:  # the thread pool the sync endpoints run in
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield
    return lifespan


def _search(svc: Service, snap: Snapshot, collection: str, *, k: int, space: str | None, where: str | None,
            query: str | None = None, item_id: str | None = None, vector: Any = None, image: Any = None
            ) -> dict[str, Any]:
    from ..search import space_for_query

    svc.limits.check_k(k)
    svc.limits.check_text("the query", query)
    svc.limits.check_text("where", where)
    store = snap.store
    space = space_for_query(store, collection, space, query=query, image=image, vector=vector)
    snap.warm(collection, space)
    if where:
        snap.used_where(collection, space)
    hits = store.search(collection, query, image=image, item_id=item_id, vector=vector, k=k, space=space,
                        where=where)
    return {"collection": collection, "space": space, "k": k, "results": _jsonable(hits), "snapshot": snap.serial}


def _sql(svc: Service, snap: Snapshot, query: str, limit: int | None) -> dict[str, Any]:
    """The query's rows (at most ``limit``, itself at most the service's limit), through the store's SQL guard:
    read-only, confined to the store's shards, no --allow-files."""
    import duckdb

    from ..sql_guard import error_line

    svc.limits.check_sql(query)
    limit = svc.limits.check_rows(limit)
    try:  # a cursor of the snapshot's read-only database (Store.share_sql): nothing one request does is seen by another
        rel = snap.store.sql(query)
    except (InputError, ReadOnlyError) as e:  # the CLI's way out (--write, --allow-files) is not this service's
        raise type(e)(_http_hint(str(e))) from None
    if rel is None:
        return {"columns": [], "rows": [], "truncated": False, "snapshot": snap.serial}
    try:
        columns = list(rel.columns)
        rows = rel.limit(limit + 1).fetchall()
    except duckdb.Error as e:  # raised while the rows are computed (a function's error, a bad cast ...)
        raise InputError(_http_hint(error_line(e))) from None
    return {"columns": columns, "rows": _jsonable([list(r) for r in rows[:limit]]), "truncated": len(rows) > limit,
            "snapshot": snap.serial}


def _http_hint(message: str) -> str:
    from ..sql_guard import ALLOW_FILES

    message = message.replace(ALLOW_FILES, "this service's SQL reads only the store's own tables")
    return message.replace("embstore sql is read-only; pass --write to change data (your tables are kept in "
                           "STORE/sql.duckdb)", "this service's SQL is read-only")


def _thumbnail(store: Any, collection: str, item_id: str, size: int) -> bytes:
    """A PNG of at most ``size`` pixels a side of the image the item names: the path comes from the item's own
    row, never from the request."""
    import io

    from ..encoders.base import load_user_image
    from ..lookup import item_rows

    coll = store.collection(collection)
    if coll["modality"] != "image":
        raise InputError(f"collection {collection!r} holds {coll['modality']} items, not images")
    row = item_rows(store, collection, [item_id]).get(item_id)
    if row is None:
        raise NotFoundError(f"no item {item_id!r} in collection {collection!r}")
    img = load_user_image(row[coll["content_column"]])
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _add_pages(app: FastAPI, svc: Service) -> None:
    """The search page (/), and the OpenAPI page (/docs) served from the swagger-ui-bundle package when it is
    installed (no CDN: the page works offline), else FastAPI's default one (which loads Swagger UI from a CDN)."""
    page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        import swagger_ui_bundle
        from fastapi.staticfiles import StaticFiles

        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
        urls = {"swagger_js_url": "/docs-assets/swagger-ui-bundle.js", "swagger_css_url": "/docs-assets/swagger-ui.css",
                "swagger_favicon_url": "/docs-assets/favicon-32x32.png"}
    except ImportError:
        urls = {}

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="embstore API", **urls)


def _jsonable(v: Any) -> Any:
    """Rows and hits as JSON: numpy values and arrays, dates, decimals and bytes made plain; NaN and infinities
    (not JSON) as null."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, (str, int, bool)):
        return v
    if isinstance(v, (datetime, date, dtime)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return _jsonable(float(v))
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return str(v)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("embstore")
    except Exception:  # pragma: no cover  (not installed: run from a checkout)
        return "0"
