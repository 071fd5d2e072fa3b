"""Every error the API answers is JSON: ``{"error": "<what is wrong and what to do>", ...}``.

Bad requests get a 4xx naming the problem (400 for malformed or invalid input, 404 for unknown ids,
409 for conflicts); a backend that does not answer gets a 503; anything else is a bug, logged with its
traceback and answered 500 by :class:`CatchAll`, which never lets an exception reach the server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluice.errors import BusError, ConfigError, RunNotFound, SluiceError, StateError, ValidationFailed

log = logging.getLogger("sluice.server")
_encoder = msgspec.json.Encoder(enc_hook=str)


class ApiError(SluiceError):
    """An error with its HTTP status and extra fields for the JSON body."""

    status = 400
    headers: Mapping[str, str] | None = None
    """Response headers (``WWW-Authenticate`` of a 401)."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class RunAlreadyActive(Conflict):
    """``POST /orchestrate`` while a run is active."""

    def __init__(self, active_run_id: str) -> None:
        super().__init__(
            f"run {active_run_id} is still active; wait for it to finish or cancel it with POST /runs/{active_run_id}/cancel",
            active_run_id=active_run_id,
        )


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response encoded with msgspec (fast; datetimes as ISO strings, anything unknown as text)."""
    return Response(_encoder.encode(payload), status_code=status, media_type="application/json", headers=headers)


def error_body(message: str, **fields: Any) -> dict[str, Any]:
    return {"error": message, **fields}


def status_of(exc: SluiceError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, RunNotFound):
        return 404
    if isinstance(exc, (BusError, StateError)):
        return 503
    return 400


def sluice_error_response(exc: SluiceError) -> Response:
    fields = exc.fields if isinstance(exc, ApiError) else {}
    message = str(exc)
    if isinstance(exc, ValidationFailed):
        message = "; ".join(str(problem) for problem in exc.problems)
    elif isinstance(exc, ConfigError):
        message = exc.message
    headers = exc.headers if isinstance(exc, ApiError) else None
    return json_response(error_body(message, **fields), status_of(exc), headers)


def describe_validation(errors: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
    """A one-line message naming each invalid field, and a JSON-safe list of the errors."""
    detail: list[dict[str, Any]] = []
    parts: list[str] = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        kind = str(error.get("type", ""))
        msg = str(error.get("msg", "invalid"))
        detail.append({"loc": loc, "msg": msg, "type": kind})
        if kind == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            position = loc[1] if len(loc) > 1 else "?"
            parts.append(f"the body is not valid JSON ({reason} at position {position}); send a JSON object")
            continue
        where = _where(loc)
        value = error.get("input")
        got = f" (got {_short(value)})" if kind not in ("missing", "extra_forbidden") and value is not None else ""
        if kind == "extra_forbidden":
            msg = "unknown field; remove it"
        parts.append(f"{where}: {msg}{got}")
    return "; ".join(parts) or "invalid request", detail


def _where(loc: list[str]) -> str:
    if not loc:
        return "request"
    kind, rest = loc[0], loc[1:]
    names = {"path": "path parameter", "query": "query parameter", "header": "header", "body": "body field"}
    if kind == "body" and not rest:
        return "the body"
    if kind in names:
        return f"{names[kind]} '{'.'.join(rest)}'"
    return ".".join(loc)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message, detail = describe_validation(exc.errors())
    return json_response(error_body(message, detail=detail), 400)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and exc.detail == "Not Found" and request.url.path.startswith("/static/"):
        message = f"no such file: {request.url.path}"
    elif exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}; the API is described at /docs"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; the API is described at /docs"
    else:
        message = str(exc.detail)
    return json_response(error_body(message), exc.status_code, headers=exc.headers)


async def _on_sluice_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SluiceError)
    return sluice_error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(SluiceError, _on_sluice_error)


class CatchAll:
    """Pure ASGI middleware: an unexpected exception is logged with its traceback and answered 500 JSON.

    (Starlette's own 500 handler re-raises to the server after answering; this one does not.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error answering %s %s", scope.get("method"), scope.get("path"))
            if started:
                return  # the response is under way (a stream): the connection just ends
            body = _encoder.encode(error_body("internal error; the server log has the details (this is a bug, please report it)"))
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
