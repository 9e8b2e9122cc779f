"""What one request may ask of the service (body size, k, SQL length, result rows, inputs), and the ASGI middleware
that refuses a body over the limit before the app reads it (413, one-line JSON)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InputError


class TooLargeError(InputError):
    """A request body, a SQL text or a query text is larger than the service takes (HTTP 413)."""


class LimitError(InputError):
    """A request asks for more than the service gives: k, result rows, inputs (HTTP 400)."""


@dataclass(frozen=True)
class Limits:
    body_bytes: int = 8 << 20  # an upload or a JSON body
    k: int = 1000  # search results
    sql_chars: int = 20_000  # a SQL text (also a where condition)
    text_chars: int = 10_000  # a query text, a text to predict
    rows: int = 10_000  # SQL result rows (the default limit is 1,000)
    inputs: int = 256  # texts or images in one predict

    def describe(self) -> dict[str, int]:
        return asdict(self)

    def check_k(self, k: int) -> None:
        if not 1 <= k <= self.k:
            raise LimitError(f"k must be from 1 to {self.k} (serve --max-k), got {k}")

    def check_text(self, what: str, text: str | None) -> None:
        limit = self.sql_chars if what == "where" else self.text_chars
        if text is not None and len(text) > limit:
            raise TooLargeError(f"{what} has {len(text):,} characters; this service takes at most {limit:,}")

    def check_sql(self, query: str) -> None:
        if len(query) > self.sql_chars:
            raise TooLargeError(f"the SQL text has {len(query):,} characters; this service takes at most "
                                f"{self.sql_chars:,}")

    def check_rows(self, limit: int | None) -> int:
        """The rows a SQL answer may hold: ``limit`` (default 1,000), at most the service's ``rows``."""
        if limit is None:
            return min(1000, self.rows)
        if not 1 <= limit <= self.rows:
            raise LimitError(f"limit must be from 1 to {self.rows} rows (serve --max-rows), got {limit}")
        return limit

    def check_inputs(self, n: int, longest: int) -> None:
        if not 1 <= n <= self.inputs:
            raise LimitError(f"give from 1 to {self.inputs} inputs to predict, got {n}")
        if longest > self.text_chars:
            raise TooLargeError(f"a text to predict has {longest:,} characters; this service takes at most "
                                f"{self.text_chars:,}")


def error_response(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message, "kind": kind}, status_code=status, headers=headers)


class BodyLimit:
    """Pure ASGI middleware: a body declared (Content-Length) or sent (chunked) larger than ``max_bytes`` gets 413
    and a one-line JSON error; a chunked body is read up to the limit and handed on whole."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await self._reject(scope, receive, send, 400, "Content-Length is not a number")
            if declared > self.max_bytes:
                return await self._reject(scope, receive, send, 413, self._too_large(declared))
            return await self.app(scope, receive, send)
        if scope.get("method") not in ("POST", "PUT", "PATCH") or b"chunked" not in headers.get(
                b"transfer-encoding", b""):
            return await self.app(scope, receive, send)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            total += len(message.get("body", b""))
            if total > self.max_bytes:
                return await self._reject(scope, receive, send, 413, self._too_large(total, sent=True))
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body, done = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, n: int, sent: bool = False) -> str:
        return (f"the request body {'is over' if sent else 'is'} {n:,} bytes; this service takes at most "
                f"{self.max_bytes:,} (serve --max-body)")

    async def _reject(self, scope: dict, receive: Any, send: Any, status: int, message: str) -> None:
        kind = "TooLargeError" if status == 413 else "InputError"
        await error_response(status, message, kind, {"Connection": "close"})(scope, receive, send)
