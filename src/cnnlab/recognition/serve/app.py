"""The web app: a page to draw digits on, and ``POST /api/predict`` behind it.

Routes
------
``GET /``                 the drawing page (static/index.html; scripts and styles served from here, no CDN)
``POST /api/predict``     a picture -> prediction, top-k, probabilities, the 28x28 the network saw;
                          ``?features=true`` adds the feature maps, ``?explain=true`` a Grad-CAM heat map of
                          what made it answer, ``?number=true`` reads a whole number
``GET /healthz``          liveness and which model is loaded
``GET /docs``             the OpenAPI documentation FastAPI writes from these routes (Swagger UI's files
                          come from the fastapi-offline package: the page works without the internet)
Every GET route answers HEAD too.

A picture arrives as a multipart upload (field ``file``), as JSON ``{"image": "data:image/png;base64,..."}``
or as a raw ``image/*`` body. Status codes: 413 body or image too large (bombs included), 415 not an image
(or an unsupported request type), 400 a malformed data URL or a form without a file, 422 malformed JSON.
A blank drawing is *not* an error: 200 with ``"prediction": null`` and ``"message": "no digit found"``.
503 with ``Retry-After``: too many requests already waiting (see :mod:`cnnlab.recognition.serve.gate`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from pathlib import Path

from fastapi import HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from ...version import __version__
from ...engine.errors import CnnlabError
from ..preprocess import ImageError, ImageTooLargeError
from .gate import DEFAULT_QUEUE, DEFAULT_WORKERS, RETRY_AFTER_S, Busy, Gate
from .memory import return_freed_memory_to_os
from .middleware import BodySizeLimit, HeadAsGet
from .recognize import Recognizer

log = logging.getLogger("cnnlab.recognition.serve")

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


def create_app(model=None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, top_k: int = 5,
               workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE):
    """The FastAPI app around ``model`` (``None``: the LeNet-5 bundled with cnnlab).

    ``workers`` pictures are recognized at once and ``queue`` more may wait; past that, 503.
    """
    if model is None:
        from ...io import load_bundled_model

        model = load_bundled_model()
    recognizer = Recognizer(model, top_k=top_k)
    gate = Gate(workers, queue)
    return_freed_memory_to_os()  # big uploads' pixels leave the process once freed (see serve/memory.py)
    app = FastAPIOffline(  # FastAPI, with /docs served from files inside the package (no CDN)
        redoc_url=None,
        title="cnnlab",
        version=__version__,
        description="Draw a digit, see what a convolutional network makes of it.",
    )
    app.state.recognizer = recognizer
    app.state.gate = gate
    app.add_middleware(BodySizeLimit, max_bytes=max_upload_bytes)
    app.add_middleware(HeadAsGet)  # added last, so it runs first: HEAD never reaches a route as HEAD
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
        explain: bool = Query(False, description="add what made the model answer: a Grad-CAM heat map"),
        k: int = Query(top_k, ge=1, le=10, alias="top_k", description="how many classes to list"),
    ) -> dict:
        """Recognize the digit (or, with ``number=true``, the number) in a picture."""
        try:
            # The body is read before admission: a slow upload is the network's time, not a worker's,
            # so a few slow clients cannot fill the queue and turn everyone else away.
            data = await read_picture(request)
            if not data:
                raise HTTPException(400, "expected an image, received an empty body")
            async with gate.admit():
                async with gate.work():
                    result = await run_in_threadpool(recognizer.recognize, data, number=number, features=features,
                                                        explain=explain, k=k)
            # Already plain JSON types: a JSONResponse skips FastAPI's encoder, which walked the ~1,000
            # strings of the feature maps on the event loop's thread for every answer.
            return JSONResponse(result)
        except Busy as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        except ClientDisconnect:
            # The client went away mid-upload (closed the tab, lost the network): nobody to answer, and
            # nothing went wrong here, so one line instead of a traceback.
            client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
            log.warning("%s disconnected before its upload to %s was complete", client, request.url.path)
            return Response(status_code=400)
        except ImageTooLargeError as exc:
            raise HTTPException(413, str(exc)) from None
        except ImageError as exc:
            raise HTTPException(415, str(exc)) from None
        except CnnlabError as exc:
            raise HTTPException(400, str(exc)) from None

    return app


def run_server(model_path=None, host: str = "127.0.0.1", port: int = 8000,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, model=None,
               workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE) -> None:
    """Serve the page and the API with uvicorn (``model_path`` ``None``: the bundled model; an already
    loaded ``model`` wins over both)."""
    import uvicorn

    from ...io import load_bundled_model, load_model

    if model is None:
        model = load_model(model_path) if model_path else load_bundled_model()
    app = create_app(model, max_upload_bytes=max_upload_bytes, workers=workers, queue=queue)
    uvicorn.run(app, host=host, port=port, log_level="info")
