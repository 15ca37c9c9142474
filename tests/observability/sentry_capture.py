"""A Sentry transport that keeps every envelope in memory (the SDK's own test seam)."""

from __future__ import annotations

from typing import Any

from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

FAKE_DSN = "https://0123456789abcdef0123456789abcdef@o0.ingest.sentry.invalid/1"


class CaptureTransport(Transport):
    """Keeps envelopes; `text()` is everything that would have been sent."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def flush(self, timeout: float, callback: Any = None) -> None:
        return None

    def kill(self) -> None:
        return None

    def events(self) -> list[dict[str, Any]]:
        found = []
        for envelope in self.envelopes:
            event = envelope.get_event()
            if event is not None:
                found.append(event)
        return found

    def text(self) -> str:
        return "\n".join(e.serialize().decode("utf-8", "replace") for e in self.envelopes)
