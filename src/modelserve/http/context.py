"""Per-request plumbing shared by the fast predict path and the FastAPI routes.

Request ids: a client's `X-Request-ID` is kept when it is short and plain, else one is made.
Bodies: read with a byte limit that holds for chunked bodies too (V1, V2).
"""

from __future__ import annotations

import itertools
import os
import re

from modelserve.errors import PayloadTooLargeError
from modelserve.types import Receive

REQUEST_ID_KEY = "modelserve.request_id"
REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class _RequestIds:
    """Unique request ids without a system call each: a random per-process prefix and a counter.

    Ids identify, they do not authorize, so they need to be unique, not unpredictable. A forked
    child draws a new prefix (`os.register_at_fork`), so workers never collide; checking the pid
    per request instead was a system call each time (glibc does not cache getpid).
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


new_request_id = _RequestIds().next
"""A new 32-hex-digit request id, unique across processes."""


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-ID when acceptable, else a new one (never echo unsafe bytes)."""
    for key, value in headers:
        if key == REQUEST_ID_HEADER:
            if _VALID_REQUEST_ID.match(value):
                return value.decode("ascii")
            break
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
