"""Plain ASGI middleware for the FastAPI routes: request ids and the body-size cap.

The predict fast path does the same inline (see `http/predict.py`) to skip a middleware hop.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelserve.auth.guard import refuse_query_credentials
from modelserve.errors import AuthenticationError, PayloadTooLargeError, TooManyHeadersError
from modelserve.http.context import REQUEST_ID_HEADER, REQUEST_ID_KEY, header, request_id_from
from modelserve.http.errors import render_error
from modelserve.types import ASGIApp, Message, Receive, Scope, Send


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
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(f"request body is over the {limit}-byte limit")
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, encoded))
                message["headers"] = headers
            await send(message)

        refusal: Exception | None = None
        declared = header(scope["headers"], b"content-length")
        if len(scope["headers"]) > self.max_headers:
            refusal = TooManyHeadersError(f"request has more than {self.max_headers} headers")
        elif declared is not None and declared.isdigit() and int(declared) > limit:
            refusal = PayloadTooLargeError(f"request body is over the {limit}-byte limit")
        elif scope.get("query_string") and _auth_on(scope):
            try:
                refuse_query_credentials(scope["query_string"])
            except AuthenticationError as exc:
                refusal = exc
        if refusal is not None:
            status, extra, body = render_error(refusal, request_id)
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
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, limited_receive, send_with_id)


def _auth_on(scope: Scope) -> bool:
    """Whether the app behind this request authenticates (its AuthSystem is set)."""
    state = getattr(scope.get("app"), "state", None)
    return getattr(state, "auth", None) is not None
