"""The REST API: faces and expressions of uploaded photos over HTTP (FastAPI), one shared model per name.

Every response, errors included, is JSON: ``{"detail": "<message>"}`` with a 4xx
code for a bad request and 500 (no traceback) for a fault of the server. Decoding
and classifying run in worker threads, so the event loop keeps accepting
requests while a photo is classified.

No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations at run time,
and those name classes imported inside `create_app`.
"""

import io
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferlab import __version__
from ferlab.data.images import IMAGE_FORMATS, decode_image
from ferlab.errors import FerlabError
from ferlab.inference.faces import load_image
from ferlab.serving import require_serving

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ferlab.inference.recognizer import Recognizer

__all__ = ["ApiError", "Limits", "create_app"]

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class Limits:
    """What one request may send, so that a single client cannot exhaust the server's memory or CPU.

    Attributes:
        max_request_bytes: the whole request body; a longer one is cut off with 413 while it streams in.
        max_image_bytes: one image file.
        max_pixels: width x height of one image, checked from its header before it is decoded.
        max_batch: images in one ``/v1/predict/batch`` request.
        formats: Pillow format names accepted (others get 415).
        workers: photos decoded and classified at the same time (the rest wait their turn).
    """

    max_request_bytes: int = 64 * 1024 * 1024
    max_image_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_batch: int = 16
    formats: frozenset[str] = field(default=IMAGE_FORMATS)
    workers: int = 2

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_image_bytes", "max_pixels", "max_batch", "workers"):
            if getattr(self, name) < 1:
                raise FerlabError(f"API limit {name} must be 1 or more, got {getattr(self, name)}")


class ApiError(Exception):
    """A request the API refuses: answered as JSON ``{"detail": message}`` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_upload(data: bytes, name: str, limits: Limits) -> np.ndarray:
    """An uploaded image file as RGB uint8 (H, W, 3), upright; refused with the status that says why.

    The header is read first, so a huge image is refused before its pixels fill memory.

    Raises:
        ApiError: 400 empty, 413 too many bytes or pixels, 415 no image of an accepted format,
            422 an image whose data is damaged (a truncated JPEG).
    """
    if not data:
        raise ApiError(400, f"{name} is empty")
    if len(data) > limits.max_image_bytes:
        raise ApiError(413, f"{name} is {len(data):,} bytes, above the limit of {limits.max_image_bytes:,}")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind, (width, height) = probe.format, probe.size
    except Image.DecompressionBombError as err:
        raise ApiError(413, f"{name}: {err}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(415, f"{name} is not an image in a format ferlab reads "
                            f"({', '.join(sorted(limits.formats))})") from None
    if kind not in limits.formats:
        raise ApiError(415, f"{name} is a {kind} image; accepted formats: {', '.join(sorted(limits.formats))}")
    if width * height > limits.max_pixels:
        raise ApiError(413, f"{name} is {width}x{height} = {width * height:,} pixels, "
                            f"above the limit of {limits.max_pixels:,}")
    try:
        return load_image(decode_image(data, name), limits.max_pixels)
    except FerlabError as err:
        raise ApiError(422, str(err)) from None


@dataclass
class _Served:
    """A recognizer and the lock that lets one request at a time use it.

    OpenCV's cascade detector and a shared classifier are not documented as thread-safe,
    and the classifier already spreads one batch over all cores, so calls are serialised.
    """

    recognizer: "Recognizer"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def info(self, name: str) -> dict[str, Any]:
        rec = self.recognizer
        return {"name": name, "classes": list(rec.classes), "backend": rec.backend,
                "detector": rec.detector.name, "tta": rec.tta}

    def predict(self, files: list[tuple[str, bytes]], limits: Limits) -> list[dict[str, Any]]:
        """Blocking: decode every file (all must be good), then classify all their faces in one call."""
        images = [decode_upload(data, name, limits) for name, data in files]
        with self.lock:
            found = self.recognizer.recognize_batch(images)
        return [{"name": name, "width": int(image.shape[1]), "height": int(image.shape[0]),
                 "faces": [face.to_dict() for face in faces]}
                for (name, _), image, faces in zip(files, images, found)]


class _BodyLimit:
    """ASGI middleware: refuse a body above `max_bytes` (413) from its Content-Length, or once it streams past it.

    Written by hand because Starlette bounds only single multipart parts, not a raw body or a whole request.
    """

    def __init__(self, app: Callable, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            from starlette.responses import JSONResponse

            message = f"the request body is {int(declared):,} bytes, above the limit of {self.max_bytes:,}"
            return await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
        received = 0

        async def bounded() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # raised inside the route, so its exception handler answers 413
                raise ApiError(413, f"the request body is above the limit of {self.max_bytes:,} bytes")
            return message

        return await self.app(scope, bounded, send)


def _openapi_body(*, batch: bool) -> dict[str, Any]:
    """The request body as the schema publishes it; the route reads it by hand to accept raw bytes as well."""
    binary = {"type": "string", "format": "binary"}
    if batch:
        multipart = {"type": "object", "required": ["files"],
                     "properties": {"files": {"type": "array", "items": binary}}}
        return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": multipart}}}}
    multipart = {"type": "object", "required": ["file"], "properties": {"file": binary}}
    content = {"multipart/form-data": {"schema": multipart}, "application/octet-stream": {"schema": binary},
               "image/*": {"schema": binary}}
    return {"requestBody": {"required": True, "content": content}}


def create_app(
    models: "Mapping[str, Recognizer] | Recognizer", *, api_key: str | None = None, limits: Limits | None = None
) -> "FastAPI":
    """The FastAPI application serving `models` (name -> recognizer; the first is the default).

    Args:
        models: recognizers loaded once by the caller and shared by all requests; a single one is named ``default``.
        api_key: when given, every ``/v1`` request must send it in the ``X-API-Key`` header (else 401).
        limits: request limits (see `Limits`).

    Raises:
        FerlabError: no model, or an empty API key.
    """
    require_serving("fastapi", "python_multipart")
    import anyio
    import anyio.to_thread
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.security import APIKeyHeader
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException

    from ferlab.serving._schemas import BatchPrediction, Health, ModelInfo, Prediction, error_responses

    limits = limits or Limits()
    served = {name: _Served(rec) for name, rec in
              (models.items() if isinstance(models, Mapping) else [("default", models)])}
    if not served:
        raise FerlabError("the API needs at least one model")
    if api_key is not None and not api_key:
        raise FerlabError("the API key is empty; give a non-empty key or none")
    default = next(iter(served))
    threads = anyio.CapacityLimiter(limits.workers)  # photos in work at once, across requests

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("serving %s on %d worker threads", ", ".join(served), limits.workers)
        yield

    app = FastAPI(title="ferlab", version=__version__, lifespan=lifespan,
                  description="Facial expressions of the faces in photos. Errors are JSON: {\"detail\": message}.")
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="needed when the server has a key")

    def check_key(key: str | None = Depends(header)) -> None:
        if key is None or not secrets.compare_digest(key.encode(), api_key.encode()):
            raise ApiError(401, f"missing or wrong {API_KEY_HEADER} header")

    def pick(name: str | None) -> tuple[str, _Served]:
        name = name or default
        if name not in served:
            raise ApiError(404, f"no model {name!r}; served: {', '.join(served)}")
        return name, served[name]

    async def run(model: _Served, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        return await anyio.to_thread.run_sync(model.predict, files, limits, limiter=threads)

    model_query = Query(None, description=f"a name from /v1/models (default: {default})")
    # Only a keyed server declares the header, so the published schema says whether clients need one.
    secured = [Depends(check_key)] if api_key is not None else []
    keyed = (401,) if api_key is not None else ()

    @app.get("/health", response_model=Health, tags=["status"])
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "models": list(served)}

    @app.get("/v1/models", response_model=list[ModelInfo], dependencies=secured, responses=error_responses(*keyed),
             tags=["models"])
    async def list_models() -> list[dict[str, Any]]:
        return [model.info(name) for name, model in served.items()]

    @app.post("/v1/predict", response_model=Prediction, dependencies=secured, tags=["predict"],
              openapi_extra=_openapi_body(batch=False), responses=error_responses(400, *keyed, 404, 413, 415, 422))
    async def predict(request: Request, model: str | None = model_query) -> dict[str, Any]:
        """The faces in one image: multipart field ``file``, or the image file itself as the body."""
        name, chosen = pick(model)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=16)
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(422, "a multipart upload needs the image in a file field named 'file'")
            files = [(upload.filename or "file", await upload.read())]
        elif media == "application/x-www-form-urlencoded":
            raise ApiError(415, "send the image as multipart field 'file' or as the raw request body")
        else:
            files = [("the request body", await request.body())]
        return {"model": name, **(await run(chosen, files))[0]}

    @app.post("/v1/predict/batch", response_model=BatchPrediction, dependencies=secured, tags=["predict"],
              openapi_extra=_openapi_body(batch=True), responses=error_responses(400, *keyed, 404, 413, 415, 422))
    async def predict_batch(request: Request, model: str | None = model_query) -> dict[str, Any]:
        """The faces in several images (multipart fields ``files``), classified in one batch; any bad image fails all."""
        name, chosen = pick(model)
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise ApiError(415, "send the images as multipart/form-data, each in a field named 'files'")
        form = await request.form(max_files=limits.max_batch, max_fields=16)
        uploads = form.getlist("files")
        if not uploads or not all(isinstance(u, UploadFile) for u in uploads):
            raise ApiError(422, "a batch needs one or more image files in fields named 'files'")
        files = [(u.filename or f"files[{i}]", await u.read()) for i, u in enumerate(uploads)]
        return {"model": name, "results": await run(chosen, files)}

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"detail": err.message}, status_code=err.status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(_: Request, err: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=err)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    app.add_middleware(_BodyLimit, max_bytes=limits.max_request_bytes)
    return app

