"""The HTTP side: FastAPI routes in OpenAI's shape, and an ASGI guard in front of them that
refuses what must not reach the model (a body over --max-upload-mb, a body that is not
multipart) and counts every answer by status for /metrics. Each answer that is not a
success carries OpenAI's error JSON."""

# No `from __future__ import annotations`: FastAPI reads the route parameters' annotations, and
# those name classes imported inside create_app.

import asyncio
import time
from typing import Optional

from ..errors import InputError
from ..inputs.audio import load_audio_bytes
from .responses import error_body, render, timestamps_for
from .settings import RESPONSE_FORMATS, TIMESTAMP_GRANULARITIES, ServeSettings
from .worker import Job, NotServing, QueueFull, Worker

TRANSCRIPTIONS = "/v1/audio/transcriptions"
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
ENDPOINTS = (TRANSCRIPTIONS, "/v1/models", "/health", "/ready", "/metrics")


class ApiError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 error_type: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.param, self.code, self.headers = status, param, code, headers
        self.error_type = error_type or ("invalid_request_error" if status < 500 else "server_error")

    def response(self):
        from fastapi.responses import JSONResponse

        return JSONResponse(error_body(str(self), self.error_type, self.param, self.code), self.status,
                            headers=self.headers)


def create_app(settings: ServeSettings, worker: Worker, metrics, model_names: tuple[str, ...]):
    from fastapi import FastAPI, File, Form, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from starlette.exceptions import HTTPException

    app = FastAPI(title="parakeet transcription server", docs_url=None, redoc_url=None)
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def api_error(_, error: ApiError):
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_field(_, error: RequestValidationError):
        first = error.errors()[0]
        field = str(first["loc"][-1]) if first.get("loc") else None
        return ApiError(400, f"{field}: {first.get('msg', 'invalid')}", field, "invalid_value").response()

    @app.exception_handler(HTTPException)
    async def http_error(_, error: HTTPException):
        return ApiError(error.status_code, str(error.detail), headers=getattr(error, "headers", None)).response()

    @app.get("/health")
    async def health():
        return {"status": "alive"}

    @app.get("/ready")
    async def ready():
        if worker.state != "ready":
            return JSONResponse({"status": worker.state}, 503)
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics_text():
        body, media_type = metrics.text()
        return Response(body, media_type=media_type)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "nvidia"}
                                           for name in model_names]}

    @app.post(TRANSCRIPTIONS)
    async def transcriptions(file: Optional[UploadFile] = File(None), model: Optional[str] = Form(None),
                             language: Optional[str] = Form(None), prompt: Optional[str] = Form(None),
                             temperature: Optional[float] = Form(None), response_format: str = Form("json"),
                             granularities: Optional[list[str]] = Form(None, alias="timestamp_granularities[]")):
        # language, prompt and temperature are accepted and ignored: parakeet has no language
        # switch, no prompt conditioning and decodes greedily (docs/serve.md).
        granularities = tuple(dict.fromkeys(granularities or ()))
        check_fields(file, model, model_names, response_format, granularities)
        data = await file.read()
        if not data:
            raise ApiError(400, f"file {file.filename!r}: empty upload (0 bytes)", "file", "invalid_file")
        name = file.filename or "upload"
        try:
            signal = await asyncio.to_thread(load_audio_bytes, lambda: data, name, name)
        except InputError as error:
            raise ApiError(400, str(error), "file", "invalid_file") from None
        try:
            future = worker.submit(Job(signal, timestamps_for(response_format, granularities)))
        except QueueFull as full:
            raise ApiError(429, str(full), code="queue_full", error_type="rate_limit_error",
                           headers={"Retry-After": str(full.retry_after)}) from None
        except NotServing as error:
            raise ApiError(503, str(error), code="not_serving") from None
        try:
            record = await asyncio.wrap_future(future)
        except NotServing as error:
            raise ApiError(503, str(error), code="not_serving") from None
        except Exception as error:
            raise ApiError(500, f"{name}: {error}", code="transcription_failed") from None
        if not record.ok:
            raise ApiError(500, f"{name}: {record.error}", code="transcription_failed")
        metrics.transcribed(record.duration or 0.0)
        body, media_type = render(record, response_format, granularities, language)
        if isinstance(body, dict):
            return JSONResponse(body)
        return PlainTextResponse(body, media_type=media_type)

    return UploadGuard(app, settings.max_upload_bytes, metrics)


def check_fields(file, model: Optional[str], model_names: tuple[str, ...], response_format: str,
                 granularities: tuple[str, ...]) -> None:
    if file is None or isinstance(file, str):
        raise ApiError(400, "file: missing; send the audio as the multipart field 'file'", "file", "missing_field")
    if not model:
        raise ApiError(400, f"model: missing; this server serves {', '.join(model_names)}", "model", "missing_field")
    if model not in model_names:
        raise ApiError(400, f"model {model!r}: not served here; this server serves {', '.join(model_names)}",
                       "model", "model_not_found")
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(400, f"response_format {response_format!r}: must be one of {', '.join(RESPONSE_FORMATS)}",
                       "response_format", "invalid_value")
    unknown = [g for g in granularities if g not in TIMESTAMP_GRANULARITIES]
    if unknown:
        raise ApiError(400, f"timestamp_granularities[] {unknown[0]!r}: must be word or segment",
                       "timestamp_granularities[]", "invalid_value")
    if granularities and response_format != "verbose_json":
        raise ApiError(400, "timestamp_granularities[]: needs response_format verbose_json",
                       "timestamp_granularities[]", "invalid_value")


class UploadGuard:
    """ASGI middleware: a transcription request's body is read here, at most `max_bytes` of it
    kept (a larger one is read to its end, up to a bound, and refused with 413, so that the
    client reads the answer instead of a reset connection); a body that is not a form is
    refused with 415. Every answer is counted by endpoint and status."""

    DISCARD_FACTOR = 4  # beyond this many times the limit the connection is closed unread

    def __init__(self, app, max_bytes: int, metrics):
        self.app, self.max_bytes, self.metrics = app, max_bytes, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, path = time.monotonic(), scope["path"]
        status = 500

        async def counted_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if path == TRANSCRIPTIONS and scope["method"] == "POST":
                refusal, receive = await self._body(scope, receive)
                if refusal is not None:
                    return await refusal.response()(scope, receive, counted_send)
            await self.app(scope, receive, counted_send)
        finally:
            self.metrics.request(path if path in ENDPOINTS else "other", status, time.monotonic() - started)

    async def _body(self, scope, receive):
        """(an ApiError or None, a receive that replays the body kept)."""
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if media_type not in FORM_TYPES:  # a form without a file is answered "file: missing", below
            return ApiError(415, f"content type {media_type or 'none'!r}: send multipart/form-data, as OpenAI's "
                                 "API takes it", None, "unsupported_media_type"), receive
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return ApiError(400, "the client disconnected during the upload"), receive
            body = message.get("body", b"")
            size += len(body)
            more = message.get("more_body", False)
            if size <= self.max_bytes:
                chunks.append(body)
            elif size > self.DISCARD_FACTOR * self.max_bytes:
                break
        if size > self.max_bytes:
            return ApiError(413, f"upload of {size / 2**20:.1f}+ MB: over this server's limit of "
                                 f"{self.max_bytes / 2**20:g} MB (--max-upload-mb)", "file", "file_too_large"), receive
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        return None, replayed
