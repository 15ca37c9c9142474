"""The one table from error class to HTTP status and code, and the one error body.

Every error response is `{"error": {"code", "message", "details", "request_id"}}`, plus
`trace_id` while tracing is on (so a client's report leads straight to the trace). 5xx bodies
carry a generic message and the request id only: no stack trace, SQL, paths or versions (S11).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from modelserve.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    DeadlineExceededError,
    HeadersTooLargeError,
    InvalidInputError,
    ItemRejectedError,
    MalformedBodyError,
    MalformedRequestError,
    ModelserveError,
    OutputMismatchError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PredictionError,
    RateLimitedError,
    RequestTimeoutError,
    ResourceNotFoundError,
    ServiceNotFoundError,
    ServiceUnavailableError,
    StreamNotSupportedError,
    TooManyHeadersError,
    UnsupportedMediaError,
)
from modelserve.http.context import REQUEST_ID_KEY
from modelserve.http.methods import allowed_methods
from modelserve.observability import tracing

logger = logging.getLogger("modelserve.http")

# Most specific first is not needed: lookup walks the exception's MRO.
ERROR_TABLE: dict[type[Exception], tuple[int, str]] = {
    MalformedBodyError: (400, "malformed_body"),
    StreamNotSupportedError: (400, "stream_not_supported"),
    PayloadTooLargeError: (413, "payload_too_large"),
    TooManyHeadersError: (431, "too_many_headers"),
    # Answered by the HTTP protocol itself (http/connections.py), before any route.
    MalformedRequestError: (400, "malformed_request"),
    HeadersTooLargeError: (431, "headers_too_large"),
    RequestTimeoutError: (408, "request_timeout"),
    UnsupportedMediaError: (415, "unsupported_media_type"),
    InvalidInputError: (422, "invalid_input"),
    ItemRejectedError: (422, "item_rejected"),
    ServiceNotFoundError: (404, "model_not_found"),
    AuthenticationError: (401, "unauthenticated"),
    PermissionDeniedError: (403, "forbidden"),
    RateLimitedError: (429, "rate_limited"),
    ResourceNotFoundError: (404, "not_found"),
    ConflictError: (409, "conflict"),
    ServiceUnavailableError: (503, "model_unavailable"),
    OverloadedError: (503, "overloaded"),
    DeadlineExceededError: (504, "deadline_exceeded"),
    OutputMismatchError: (500, "invalid_model_output"),
    PredictionError: (500, "prediction_failed"),
    DatabaseUnavailableError: (503, "database_unavailable"),
    ConfigError: (500, "server_misconfigured"),
    ModelserveError: (500, "internal_error"),
}

GENERIC_500_MESSAGE = "Internal server error; quote the request id when reporting it."

HTTP_CODES: dict[int, str] = {
    # Starlette/FastAPI raise a bare 400 only when a body cannot be parsed (bad bytes, a form
    # that is not one): the same failure as our own `malformed_body`, so the same code.
    400: "malformed_body",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


def status_and_code(exc: BaseException) -> tuple[int, str]:
    """Status and code for any exception (unknown ones are 500 internal_error)."""
    for klass in type(exc).__mro__:
        entry = ERROR_TABLE.get(klass)
        if entry is not None:
            if isinstance(exc, ItemRejectedError):
                return entry[0], exc.code
            return entry
    return 500, "internal_error"


# The codes whose `details` is always a list of problems, `{"loc", "msg", "type"}` each (as
# FastAPI's and pydantic's validation errors are); every other code's `details` is an object
# or null. docs/api.md, "Errors", lists the shape per code.
LIST_DETAIL_CODES = frozenset({"invalid_input", "malformed_body"})


def problems(message: str, details: Any) -> list[Any]:
    """`details` of a list-shaped code as a list: an object's keys become the locations of one
    problem each (its values, which may echo the input, are dropped), null an empty list."""
    if isinstance(details, list):
        return details
    if isinstance(details, dict):
        return [{"loc": [key], "msg": message, "type": "value_error"} for key in details]
    return []


def error_body(code: str, message: str, details: Any, request_id: str | None) -> bytes:
    """Serialize the one error body (with the request's `trace_id` when tracing is on)."""
    error = {"code": code, "message": message, "details": details, "request_id": request_id}
    trace_id = tracing.current_trace_id() if tracing.enabled else None
    if trace_id is not None:
        error["trace_id"] = trace_id
    return orjson.dumps({"error": error})


ErrorBody = Callable[[str, str, Any, str | None], bytes]


def render_error(
    exc: BaseException, request_id: str | None, body: ErrorBody = error_body
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, extra headers and body for an exception; 5xx never reveal internals.

    `body(code, message, details, request_id)` writes the body: modelserve's error shape by
    default, a protocol's own on its routes (V2's `{"error": "..."}`, OpenAI's error object).
    """
    status, code = status_and_code(exc)
    headers: list[tuple[bytes, bytes]] = []
    retry_after = getattr(exc, "retry_after_s", None)
    if status in (429, 503):
        seconds = 1 if retry_after is None else max(1, math.ceil(retry_after))
        headers.append((b"retry-after", str(seconds).encode()))
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="modelserve"'))
    extra_headers = getattr(exc, "headers", None)
    if isinstance(exc, RateLimitedError) and extra_headers:
        headers.extend((k.lower().encode(), v.encode()) for k, v in extra_headers.items())
    if status >= 500 and not isinstance(exc, ModelserveError | DeadlineExceededError):
        logger.error("unhandled error (request %s)", request_id, exc_info=exc)
    if isinstance(exc, ModelserveError) and not (status == 500 and code == "internal_error"):
        message, details = exc.message, exc.details
    else:
        message, details = GENERIC_500_MESSAGE, None
    if code in LIST_DETAIL_CODES:
        details = problems(message, details)
    return status, headers, body(code, message, details, request_id)


def _request_id(request: Request) -> str | None:
    value = request.scope.get(REQUEST_ID_KEY)
    return value if isinstance(value, str) else None


def _response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> Response:
    response = Response(body, status_code=status, media_type="application/json")
    for key, value in headers:
        response.headers[key.decode()] = value.decode()
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Render framework and domain errors in the one error shape."""

    async def on_modelserve_error(request: Request, exc: Exception) -> Response:
        return _response(*render_error(exc, _request_id(request)))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        malformed = any(d["type"] == "json_invalid" for d in details)
        status, code = (400, "malformed_body") if malformed else (422, "invalid_input")
        body = error_body(code, "Request is invalid", details, _request_id(request))
        return _response(status, [], body)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        extra = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = allowed_methods(request.app.router.routes, request.scope["path"])
            if allow:
                extra["Allow"] = ", ".join(allow)
        headers = [(k.encode(), v.encode()) for k, v in extra.items()]
        details = problems(message, None) if code in LIST_DETAIL_CODES else None
        body = error_body(code, message, details, _request_id(request))
        return _response(exc.status_code, headers, body)

    async def on_unhandled(request: Request, exc: Exception) -> Response:
        return _response(*render_error(exc, _request_id(request)))

    app.add_exception_handler(ModelserveError, on_modelserve_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unhandled)
