"""One JSON error shape everywhere: {"code", "message", "details"}; 5xx logged, never leaked."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from geo import errors

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.RiskAtlasError], int] = {
    errors.TooLargeError: 413,
    errors.ValidationError: 422,
    errors.NotFoundError: 404,
    errors.ConflictError: 409,
    errors.StorageFullError: 507,
    errors.DatabaseUnavailableError: 503,
    errors.SetupError: 503,
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Return the one error shape of the API."""
    return {"code": code, "message": message, "details": details}


def _status_for(exc: errors.RiskAtlasError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.RiskAtlasError)
    body = error_body(exc.code, exc.message, exc.details)
    return JSONResponse(body, status_code=_status_for(exc))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
            429: "too_many_requests"}
    return JSONResponse(
        error_body(code.get(exc.status_code, "http_error"), str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _request_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(part) for part in err.get("loc", ())), "problem": err.get("msg")}
        for err in exc.errors()
    ]
    return JSONResponse(
        error_body("invalid_input", "the request has invalid parameters", details), status_code=422
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "internal error; the server log has the details"),
        status_code=500,
    )


class RejectNulBytes:
    """Answer 422 to a request whose path or query holds a NUL byte.

    PostgreSQL text cannot hold NUL, so such a value would otherwise fail deep in a query;
    no legitimate code, name or parameter contains one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Reject the request, or pass it on untouched."""
        if scope["type"] == "http":
            raw_query: bytes = scope.get("query_string", b"")
            field = None
            if "\x00" in scope.get("path", ""):
                field = "path"
            elif b"%00" in raw_query or b"\x00" in raw_query:
                pairs = parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)
                field = next((f"query.{k}" for k, v in pairs if "\x00" in k + v), "query")
            if field is not None:
                body = error_body("invalid_input", "the request has invalid parameters",
                                  [{"field": field, "problem": "contains a NUL byte"}])
                await JSONResponse(body, status_code=422)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Map domain, HTTP and validation errors to the one JSON shape."""
    app.add_middleware(RejectNulBytes)
    app.add_exception_handler(errors.RiskAtlasError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
