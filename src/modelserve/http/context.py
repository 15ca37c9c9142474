"""Per-request plumbing shared by the fast predict path and the FastAPI routes.

Request ids: a client's `X-Request-ID` is kept when it is short, plain and holds no credential,
else one is made (`observability/request_ids.py`).
Bodies: read with a byte limit that holds for chunked bodies too (V1, V2).
"""

from __future__ import annotations

from modelserve.errors import PayloadTooLargeError
from modelserve.observability.request_ids import accept, new_request_id
from modelserve.types import Receive

REQUEST_ID_KEY = "modelserve.request_id"
# The authenticated Principal, left in the ASGI scope for the access log and metrics.
PRINCIPAL_KEY = "modelserve.principal"
REQUEST_ID_HEADER = b"x-request-id"


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-ID when plain and clean, else a new one (see request_ids)."""
    for key, value in headers:
        if key == REQUEST_ID_HEADER:
            return accept(value)
    return new_request_id()


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """First value of a (lowercase) header name."""
    for key, value in headers:
        if key == name:
            return value
    return None


async def read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    """Read the whole body, refusing more than `limit` bytes before and while reading."""
    declared = header(headers, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            size = -1
        if size > limit:
            raise PayloadTooLargeError(f"request body is over the {limit}-byte limit")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise PayloadTooLargeError(f"request body is over the {limit}-byte limit")
        return body
    chunks = [body]
    total = len(body)
    while True:
        if total > limit:
            raise PayloadTooLargeError(f"request body is over the {limit}-byte limit")
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        total += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if total > limit:
        raise PayloadTooLargeError(f"request body is over the {limit}-byte limit")
    return b"".join(chunks)
