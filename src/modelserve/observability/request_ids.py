"""Request ids: made here when the client sends none, kept from the client when they are safe.

A made id is a random per-process prefix and a counter, 32 hex digits: unique across processes
without a system call per request (ids identify, they do not authorize, so they need to be
unique, not unpredictable). A forked child draws a new prefix (`os.register_at_fork`); checking
the pid per request instead was a system call each time (glibc does not cache getpid).

A client's `X-Request-ID` is kept when it is short and plain ([A-Za-z0-9._:-], at most 128) and
the redactor would leave it unchanged, so an id shaped like a credential or holding a known
secret is never echoed in a header, an error body, a log line or a span: it is replaced by a
made one. Every id in the system is therefore clean by construction, and the access log only
re-checks ids it did not make (`is_made_here`).
"""

from __future__ import annotations

import itertools
import os
import re

from modelserve.observability.redaction import redactor

_PLAIN = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_MADE_LENGTH = 32


class _Maker:
    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self._counter):016x}"


_maker = _Maker()

new_request_id = _maker.next
"""A new 32-hex-digit request id, unique across processes."""


def is_made_here(request_id: str) -> bool:
    """True for ids this process made (or a client id with the same shape, already checked)."""
    return len(request_id) == _MADE_LENGTH and request_id.startswith(_maker.prefix)


def loggable(request_id: str) -> str:
    """The id as a log line may show it: ids made here as they are, others scrubbed again."""
    if is_made_here(request_id) or not redactor.suspicious(request_id):
        return request_id
    return redactor.text(request_id)


def accept(value: bytes | None) -> str:
    """The client's id when plain and clean, else a new one (never echo unsafe bytes)."""
    if value is not None and _PLAIN.match(value):
        text = value.decode("ascii")
        if not redactor.suspicious(text) or redactor.text(text) == text:
            return text
    return new_request_id()
