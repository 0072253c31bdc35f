"""The REST API: faces and expressions of uploaded photos over HTTP (FastAPI), one shared model per name.

Every response, errors included, is JSON: ``{"detail": "<message>"}`` with a 4xx
code for a bad request, 503 (with Retry-After) while the server is full, and 500 (no
traceback) for a fault of the server. What a request may cost is bounded by `Limits`:
bytes and arrival time of its body, pixels read from its images' headers before any is
decoded, and a pixel budget shared by all requests (`ferlab.serving.admission`).
Decoding and classifying run in worker threads, so the event loop keeps accepting
requests while a photo is classified.

No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations at run time,
and those name classes imported inside `create_app`.
"""

import logging
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ferlab import __version__
from ferlab.errors import FerlabError
from ferlab.serving import require_serving
from ferlab.serving._uploads import ApiError, Limits, decode_upload, request_pixels
from ferlab.serving.admission import Admission
from ferlab.serving.server import check_api_key

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.responses import JSONResponse

    from ferlab.inference.recognizer import Recognizer

__all__ = ["ApiError", "Limits", "create_app"]

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"


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


def _refusal(status: int, message: str, headers: dict[str, str] | None = None) -> "JSONResponse":
    """A JSON error that closes the connection: the request's body may be partly unread."""
    from starlette.responses import JSONResponse

    return JSONResponse({"detail": message}, status_code=status, headers={**(headers or {}), "Connection": "close"})


class _Uploads:
    """ASGI middleware bounding request bodies: size (413), time to arrive (408), how many in the server (503).

    A body counts from its headers until its response is sent, so `Limits.max_uploads` bounds the bodies held
    in memory, arriving or waiting for a worker. Written by hand: Starlette bounds only single multipart parts,
    and uvicorn neither a body's size nor the time it takes.
    """

    def __init__(self, app: Callable, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.in_flight = 0  # only touched on the event loop

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        headers = dict(scope["headers"]) if scope["type"] == "http" else {}
        declared = headers.get(b"content-length", b"")
        if scope["type"] != "http" or (declared in (b"", b"0") and b"transfer-encoding" not in headers):
            return await self.app(scope, receive, send)  # no body
        if declared.isdigit() and int(declared) > self.limits.max_request_bytes:
            limit = self.limits.max_request_bytes
            message = f"the request body is {int(declared):,} bytes, above the limit of {limit:,}"
            return await _refusal(413, message)(scope, receive, send)
        if self.in_flight >= self.limits.max_uploads:
            log.warning("refused an upload: %d in the server already", self.in_flight)
            message = f"the server is busy with {self.in_flight} uploads, its limit; retry in a second"
            return await _refusal(503, message, {"Retry-After": "1"})(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, self._bounded(receive), send)
        finally:
            self.in_flight -= 1

    def _bounded(self, receive: Callable[[], Awaitable[dict]]) -> Callable[[], Awaitable[dict]]:
        """`receive` refusing a body above the size limit or still arriving after the body timeout.

        Raised inside the route, so the app's exception handler answers (413, 408).
        """
        import anyio

        limits = self.limits
        deadline = anyio.current_time() + limits.body_timeout
        received, complete = 0, False

        async def bounded() -> dict:
            nonlocal received, complete
            if complete:  # later calls only wait for a disconnect
                return await receive()
            with anyio.move_on_after(deadline - anyio.current_time()):
                message = await receive()
                received += len(message.get("body", b""))
                if received > limits.max_request_bytes:
                    raise ApiError(413, f"the request body is above the limit of {limits.max_request_bytes:,} bytes")
                complete = not message.get("more_body", False)
                return message
            raise ApiError(408, f"the request body did not arrive within {limits.body_timeout:g} s")

        return bounded


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

    Serve it with `ferlab.serving.server.run` (or its `server_config`), which adds the header timeout.

    Args:
        models: recognizers loaded once by the caller and shared by all requests; a single one is named ``default``.
        api_key: when given, every ``/v1`` request must send it in the ``X-API-Key`` header (else 401).
        limits: request limits (see `Limits`); kept in ``app.state.limits``.

    Raises:
        FerlabError: no model, or an empty API key.
    """
    require_serving("fastapi", "python_multipart")
    from fastapi import FastAPI

    limits = limits or Limits()
    served = {name: _Served(rec) for name, rec in
              (models.items() if isinstance(models, Mapping) else [("default", models)])}
    if not served:
        raise FerlabError("the API needs at least one model")
    if api_key is not None:
        check_api_key(api_key, "the API key")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("serving %s on %d worker threads", ", ".join(served), limits.workers)
        yield

    app = FastAPI(title="ferlab", version=__version__, lifespan=lifespan,
                  description="Facial expressions of the faces in photos. Errors are JSON: {\"detail\": message}.")
    app.state.limits = limits
    _add_routes(app, _Models(served, limits), api_key)
    _add_error_handlers(app)
    app.add_middleware(_Uploads, limits=limits)
    return app


async def _read_form(request: "Request", max_files: int) -> Any:
    """The multipart form, with too many files answered 413 as documented rather than Starlette's 400."""
    from starlette.exceptions import HTTPException

    try:
        return await request.form(max_files=max_files, max_fields=16)
    except HTTPException as err:  # Starlette gives every multipart problem 400; tell this one by its message
        if err.status_code == 400 and str(err.detail).startswith("Too many files"):
            raise ApiError(413, f"at most {max_files} image file{'s' * (max_files > 1)} per request") from None
        raise


def _media_type(request: "Request") -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


class _Models:
    """The served recognizers by name, and what a request goes through to use one."""

    def __init__(self, served: dict[str, _Served], limits: Limits) -> None:
        self.served = served
        self.default = next(iter(served))
        self.limits = limits
        self.admission = Admission(limits.workers, limits.decode_pixels)  # requests in work at once, their pixels

    def pick(self, name: str | None) -> tuple[str, _Served]:
        name = name or self.default
        if name not in self.served:
            raise ApiError(404, f"no model {name!r}; served: {', '.join(self.served)}")
        return name, self.served[name]

    async def predict(self, model: _Served, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """Pixels from the headers (413 above the request's limit), then a turn within the budget, then the work."""
        import anyio.to_thread

        pixels = await anyio.to_thread.run_sync(request_pixels, files, self.limits)  # nothing decoded yet
        async with self.admission.enter(pixels):
            return await anyio.to_thread.run_sync(model.predict, files, self.limits)


def _add_routes(app: "FastAPI", models: _Models, api_key: str | None) -> None:
    """/health (GET and HEAD, no key), /v1/models and the predict routes, on the API key when there is one."""
    from fastapi import Depends
    from fastapi.security import APIKeyHeader

    from ferlab.serving._schemas import Health, ModelInfo, error_responses

    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="needed when the server has a key")

    def check_key(key: str | None = Depends(header)) -> None:
        if key is None or not secrets.compare_digest(key.encode(), api_key.encode()):
            raise ApiError(401, f"missing or wrong {API_KEY_HEADER} header")

    # Only a keyed server declares the header, so the published schema says whether clients need one.
    secured = [Depends(check_key)] if api_key is not None else []
    keyed = (401,) if api_key is not None else ()

    @app.get("/health", response_model=Health, tags=["status"])
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "models": list(models.served)}

    # Load balancers probe with HEAD too; left out of the schema, which would give both one operation id.
    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)

    @app.get("/v1/models", response_model=list[ModelInfo], dependencies=secured, responses=error_responses(*keyed),
             tags=["models"])
    async def list_models() -> list[dict[str, Any]]:
        return [model.info(name) for name, model in models.served.items()]

    _add_predict_routes(app, models, secured, (400, *keyed, 404, 408, 413, 415, 422, 503))


def _add_predict_routes(app: "FastAPI", models: _Models, secured: list[Any], codes: tuple[int, ...]) -> None:
    """POST /v1/predict (multipart or the image as the body) and /v1/predict/batch (multipart)."""
    from fastapi import Query, Request
    from starlette.datastructures import UploadFile

    from ferlab.serving._schemas import BatchPrediction, Prediction, error_responses

    model_query = Query(None, description=f"a name from /v1/models (default: {models.default})")

    @app.post("/v1/predict", response_model=Prediction, dependencies=secured, tags=["predict"],
              openapi_extra=_openapi_body(batch=False), responses=error_responses(*codes))
    async def predict(request: Request, model: str | None = model_query) -> dict[str, Any]:
        """The faces in one image: multipart field ``file``, or the image file itself as the body (any media type)."""
        name, chosen = models.pick(model)
        if _media_type(request) == "multipart/form-data":
            upload = (await _read_form(request, max_files=1)).get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(422, "a multipart upload needs the image in a file field named 'file'")
            files = [(upload.filename or "file", await upload.read())]
            return {"model": name, **(await models.predict(chosen, files))[0]}
        # Recognised by its bytes: curl --data-binary declares application/x-www-form-urlencoded.
        try:
            return {"model": name, **(await models.predict(chosen, [("the request body", await request.body())]))[0]}
        except ApiError as err:
            if err.status == 415:
                raise ApiError(415, f"{err.message}; send the image file itself as the body, or as multipart "
                                    "field 'file'") from None
            raise

    @app.post("/v1/predict/batch", response_model=BatchPrediction, dependencies=secured, tags=["predict"],
              openapi_extra=_openapi_body(batch=True), responses=error_responses(*codes))
    async def predict_batch(request: Request, model: str | None = model_query) -> dict[str, Any]:
        """The faces in several images (multipart fields ``files``), classified in one batch; any bad image fails all."""
        name, chosen = models.pick(model)
        if _media_type(request) != "multipart/form-data":
            raise ApiError(415, "send the images as multipart/form-data, each in a field named 'files'")
        uploads = (await _read_form(request, max_files=models.limits.max_batch)).getlist("files")
        if not uploads or not all(isinstance(u, UploadFile) for u in uploads):
            raise ApiError(422, "a batch needs one or more image files in fields named 'files'")
        files = [(u.filename or f"files[{i}]", await u.read()) for i, u in enumerate(uploads)]
        return {"model": name, "results": await models.predict(chosen, files)}


def _add_error_handlers(app: "FastAPI") -> None:
    """Every error as JSON ``{"detail": ...}``; a client gone mid-body is a debug line, a fault a logged 500."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        if err.status in (408, 413):  # the body may be partly unread: do not wait for the rest
            return _refusal(err.status, err.message)
        return JSONResponse({"detail": err.message}, status_code=err.status)

    @app.exception_handler(ClientDisconnect)
    async def left(request: Request, _: ClientDisconnect) -> Response:
        log.debug("client %s disconnected before its request body was in", request.client)
        return Response(status_code=400)  # nobody reads it

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
