"""Plain ASGI middleware for the FastAPI routes: request ids and the body-size cap.

The predict fast path does the same inline (see `http/predict.py`) to skip a middleware hop.

A body that passes the cap while a route is reading it (chunked, no Content-Length) is
answered here with 413 and the route is told the client went away: raised inside `receive`,
the error would reach FastAPI's body parser, which turns any exception into a 400. Bodies with
a Content-Encoding are refused with 415: nothing here inflates a body, so decoding it as if it
were plain would misread it (and inflating it would open the door to compression bombs).
"""

from __future__ import annotations

from collections.abc import Mapping

from modelserve.auth.guard import refuse_query_credentials
from modelserve.errors import (
    AuthenticationError,
    PayloadTooLargeError,
    TooManyHeadersError,
    UnsupportedMediaError,
)
from modelserve.http.context import REQUEST_ID_HEADER, REQUEST_ID_KEY, header, request_id_from
from modelserve.http.errors import render_error
from modelserve.types import ASGIApp, Message, Receive, Scope, Send

# Starlette's form parser refuses a field over 1 MiB with a 400; an urlencoded body over that
# size can only be such a field, so it is refused here first, as what it is: too large (413).
FORM_MAX_BODY_BYTES = 1024 * 1024
FORM_URLENCODED = b"application/x-www-form-urlencoded"


class RequestContextMiddleware:
    """Tags every non-predict request with a request id (echoed back) and caps body size.

    With auth on (`app.state.auth` set, as `http/deps.py` reads it), a query string holding
    something named like a credential is refused with 401 on every route, public ones
    included (S8); the predict endpoint makes the same check itself.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_headers: int = 100,
        body_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_headers = max_headers
        # Exact paths with their own cap (artifact uploads stream far more than a request).
        self.body_limits = dict(body_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope.get(REQUEST_ID_KEY) or request_id_from(scope["headers"])
        scope[REQUEST_ID_KEY] = request_id
        encoded = request_id.encode("ascii")
        limit = self.body_limits.get(scope["path"], self.max_body_bytes)
        content_type = header(scope["headers"], b"content-type") or b""
        if content_type.split(b";", 1)[0].strip().lower() == FORM_URLENCODED:
            limit = min(limit, FORM_MAX_BODY_BYTES)
        received = 0
        started = False
        # Set once this middleware answered in the route's place: the route's own answer
        # (whatever it makes of the disconnect) is dropped.
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, encoded))
                message["headers"] = headers
            await send(message)

        async def refuse(error: Exception) -> None:
            status, extra, body = render_error(error, request_id)
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                        *extra,
                    ],
                }
            )
            await send_with_id({"type": "http.response.body", "body": body})

        async def limited_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = PayloadTooLargeError(f"request body is over the {limit}-byte limit")
                    if started:  # too late to answer: the route's response is under way
                        raise too_large
                    await refuse(too_large)
                    answered = True
                    return {"type": "http.disconnect"}
            return message

        refusal: Exception | None = None
        declared = header(scope["headers"], b"content-length")
        if len(scope["headers"]) > self.max_headers:
            refusal = TooManyHeadersError(f"request has more than {self.max_headers} headers")
        elif declared is not None and declared.isdigit() and int(declared) > limit:
            refusal = PayloadTooLargeError(f"request body is over the {limit}-byte limit")
        elif _encoded(scope["headers"]):
            refusal = UnsupportedMediaError(
                "Content-Encoding is not supported: send the body uncompressed"
            )
        elif scope.get("query_string") and _auth_on(scope):
            try:
                refuse_query_credentials(scope["query_string"])
            except AuthenticationError as exc:
                refusal = exc
        if refusal is not None:
            await refuse(refusal)
            return
        await self.app(scope, limited_receive, send_with_id)


def _encoded(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request declares a Content-Encoding other than identity."""
    value = header(headers, b"content-encoding")
    return value is not None and value.strip().lower() not in (b"", b"identity")


def _auth_on(scope: Scope) -> bool:
    """Whether the app behind this request authenticates (its AuthSystem is set)."""
    state = getattr(scope.get("app"), "state", None)
    return getattr(state, "auth", None) is not None
