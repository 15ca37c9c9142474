"""Per-request plumbing shared by the predict pipeline and the FastAPI routes' middleware.

Each piece of cross-cutting work exists here once, and both ways in call it:

- request ids: a client's `X-Request-ID` is kept when it is short, plain and holds no
  credential, else one is made (`observability/request_ids.py`);
- limits: the header count and the body size (`RequestLimits`, `check_size`), with bodies
  read under the limit even when chunked (`read_body`, V1, V2), and no compressed bodies
  (`check_encoding`);
- the access record: every observer sees one `RequestRecord` per answered request
  (`notify_observers`), and none of them can break serving.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from modelserve.errors import PayloadTooLargeError, TooManyHeadersError, UnsupportedMediaError
from modelserve.observability.request_ids import accept, new_request_id
from modelserve.types import Receive, RequestObserver, RequestRecord

logger = logging.getLogger("modelserve.http")

REQUEST_ID_KEY = "modelserve.request_id"
# The authenticated Principal, left in the ASGI scope for the access log and metrics.
PRINCIPAL_KEY = "modelserve.principal"
REQUEST_ID_HEADER = b"x-request-id"
DEFAULT_MAX_HEADERS = 100


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


def too_large(limit: int) -> PayloadTooLargeError:
    """The 413 of a body over `limit` bytes."""
    return PayloadTooLargeError(f"request body is over the {limit}-byte limit")


def check_size(size: int, limit: int) -> None:
    """Refuse a body of `size` bytes over `limit` (PayloadTooLargeError)."""
    if size > limit:
        raise too_large(limit)


def check_encoding(content_encoding: bytes | None) -> None:
    """Refuse a body with a Content-Encoding other than identity (415): nothing here inflates
    a body, so reading it as if it were plain would misread it (and inflating it would open
    the door to compression bombs)."""
    if content_encoding is not None and content_encoding.strip().lower() not in (
        b"",
        b"identity",
    ):
        raise UnsupportedMediaError("Content-Encoding is not supported: send the body uncompressed")


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """How many headers and how many body bytes a request may have (431 and 413 past them)."""

    max_body_bytes: int
    max_headers: int = DEFAULT_MAX_HEADERS

    def check_headers(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """Refuse a request with more than `max_headers` headers (TooManyHeadersError)."""
        if len(headers) > self.max_headers:
            raise TooManyHeadersError(f"request has more than {self.max_headers} headers")

    def check_body(self, size: int) -> None:
        """Refuse a body of `size` bytes over `max_body_bytes` (PayloadTooLargeError)."""
        if size > self.max_body_bytes:  # `check_size`, without a call on every request
            raise too_large(self.max_body_bytes)


async def read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    """Read the whole body, refusing more than `limit` bytes before and while reading."""
    declared = header(headers, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            size = -1
        if size > limit:
            raise too_large(limit)
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise too_large(limit)
        return body
    chunks = [body]
    total = len(body)
    while True:
        if total > limit:
            raise too_large(limit)
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        total += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if total > limit:
        raise too_large(limit)
    return b"".join(chunks)


def notify_observers(observers: Sequence[RequestObserver], record: RequestRecord) -> None:
    """Hand one answered request to every observer; an observer must never break serving."""
    for observer in observers:
        try:
            observer.on_request(record)
        except Exception:
            logger.exception("request observer failed")
