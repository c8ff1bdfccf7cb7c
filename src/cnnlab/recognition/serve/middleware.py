"""ASGI middleware of the web app: a body size limit, and HEAD answered wherever GET is."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413.

    The ``Content-Length`` header is checked first (cheap, before anything is read), and the bytes are
    counted as they arrive too, because a client may send no length (chunked) or lie about it.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self) -> HTTPException:
        return HTTPException(413, f"request body too large: the limit is {self.max_bytes:,} bytes")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False  # the server itself rejects a malformed length
            if too_big:
                response = JSONResponse({"detail": self.too_large().detail}, status_code=413)
                return await response(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self.too_large()  # turned into a 413 response by FastAPI's exception handling
            return message

        await self.app(scope, counting_receive, send)


class HeadAsGet:
    """Answer ``HEAD`` like ``GET`` without the body, for every route (FastAPI's routes list GET only,
    so monitors and link checkers that probe with HEAD got 405 from ``/`` and ``/healthz``).

    The request goes on as a GET; the headers (``Content-Length`` included) are sent as they are and the
    body is dropped. A path with no GET still answers 404 or 405, as it should.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest of a streamed body: nothing to send until the last part
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
