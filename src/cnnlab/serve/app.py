"""The web app: a page to draw digits on, and ``POST /api/predict`` behind it.

Routes
------
``GET /``                 the drawing page (static/index.html; scripts and styles served from here, no CDN)
``POST /api/predict``     a picture -> prediction, top-k, probabilities, the 28x28 the network saw;
                          ``?features=true`` adds the feature maps, ``?number=true`` reads a whole number
``GET /healthz``          liveness and which model is loaded
``GET /docs``             the OpenAPI documentation FastAPI writes from these routes

A picture arrives as a multipart upload (field ``file``), as JSON ``{"image": "data:image/png;base64,..."}``
or as a raw ``image/*`` body. Status codes: 413 body or image too large (bombs included), 415 not an image
(or an unsupported request type), 400 a malformed data URL or a form without a file, 422 malformed JSON.
A blank drawing is *not* an error: 200 with ``"prediction": null`` and ``"message": "no digit found"``.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile

from ..version import __version__
from ..engine.errors import CnnlabError
from ..preprocess import ImageError, ImageTooLargeError
from .recognize import Recognizer

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 5_000_000

PREDICT_BODY = {  # what /docs shows for the request body: the route reads it by hand (three formats)
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {"image": {"type": "string", "example": "data:image/png;base64,iVBORw0KGgo..."}},
            }
        },
        "image/png": {"schema": {"type": "string", "format": "binary"}},
    },
}


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413.

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


def parse_data_url(text: str) -> bytes:
    """``"data:image/png;base64,AAAA"`` (or bare base64) -> bytes; 400 if it is not base64."""
    payload = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    if text.startswith("data:") and ";base64" not in text.split(",", 1)[0]:
        raise HTTPException(400, "expected a base64 data URL (data:image/png;base64,...), received another encoding")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(400, f"the image is not valid base64: {exc}") from None


async def read_picture(request: Request) -> bytes:
    """The picture's bytes from a multipart upload, a JSON data URL or a raw ``image/*`` body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        files = [v for v in form.values() if isinstance(v, UploadFile)]
        if not files:
            raise HTTPException(400, "expected a file in the form (field 'file'), received none")
        return await files[0].read()
    if content_type == "application/json":
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPException(422, f"malformed JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("image"), str):
            raise HTTPException(422, 'expected JSON {"image": "data:image/png;base64,..."}')
        return parse_data_url(body["image"])
    if content_type.startswith("image/") or content_type == "application/octet-stream":
        return await request.body()
    raise HTTPException(
        415,
        f"expected multipart/form-data, application/json or image/*, received {content_type or 'no content type'!r}",
    )


def create_app(model=None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, top_k: int = 5) -> FastAPI:
    """The FastAPI app around ``model`` (``None``: the LeNet-5 bundled with cnnlab)."""
    if model is None:
        from ..io import load_bundled_model

        model = load_bundled_model()
    recognizer = Recognizer(model, top_k=top_k)
    app = FastAPI(
        title="cnnlab",
        version=__version__,
        description="Draw a digit, see what a convolutional network makes of it.",
    )
    app.state.recognizer = recognizer
    app.add_middleware(BodySizeLimit, max_bytes=max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    def healthz() -> dict:
        """Liveness, and which model answers."""
        info = getattr(model, "info", None) or {}
        return {"status": "ok", "model": getattr(model, "name", type(model).__name__), "classes": info.get("class_names")}

    @app.post("/api/predict", openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(
        request: Request,
        number: bool = Query(False, description="also read the picture as a whole number"),
        features: bool = Query(False, description="add the feature maps of each convolutional layer"),
        k: int = Query(top_k, ge=1, le=10, alias="top_k", description="how many classes to list"),
    ) -> dict:
        """Recognize the digit (or, with ``number=true``, the number) in a picture."""
        data = await read_picture(request)
        if not data:
            raise HTTPException(400, "expected an image, received an empty body")
        try:
            return await run_in_threadpool(recognizer.recognize, data, number=number, features=features, k=k)
        except ImageTooLargeError as exc:
            raise HTTPException(413, str(exc)) from None
        except ImageError as exc:
            raise HTTPException(415, str(exc)) from None
        except CnnlabError as exc:
            raise HTTPException(400, str(exc)) from None

    return app


def run_server(model_path=None, host: str = "127.0.0.1", port: int = 8000,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, model=None) -> None:
    """Serve the page and the API with uvicorn (``model_path`` ``None``: the bundled model; an already
    loaded ``model`` wins over both)."""
    import uvicorn

    from ..io import load_bundled_model, load_model

    if model is None:
        model = load_model(model_path) if model_path else load_bundled_model()
    uvicorn.run(create_app(model, max_upload_bytes=max_upload_bytes), host=host, port=port, log_level="info")
