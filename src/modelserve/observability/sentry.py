"""Optional error reporting to Sentry, with the same scrubbing as every other sink.

Off unless a DSN is set (`MODELSERVE_OBSERVABILITY__SENTRY_DSN`, or `MODELSERVE_SENTRY_DSN`) and
`sentry-sdk` is installed (`pip install modelserve[sentry]`). Sent without PII (the SDK's
default `send_default_pii=False`, with its EventScrubber), without local variables and without
request bodies; `before_send` and `before_breadcrumb` run
every event through the redaction step (headers, query strings, messages, exception values,
breadcrumbs), so Sentry's own scrubbing is a second net, not the only one.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from modelserve.observability.redaction import redactor

if TYPE_CHECKING:
    from modelserve.config import ObservabilityConfig

logger = logging.getLogger("modelserve.observability")

DSN_ENV = "MODELSERVE_SENTRY_DSN"

_active = False


def scrub_event(event: dict[str, Any], _hint: Any = None) -> dict[str, Any]:
    """`before_send`: the event with every credential scrubbed (never drops the event)."""
    scrubbed: dict[str, Any] = redactor.mapping(event)
    request = scrubbed.get("request")
    if isinstance(request, dict):
        # Whatever the SDK's defaults collect, credentials in these never leave the process.
        for key in ("cookies", "data", "env"):
            request.pop(key, None)
    return scrubbed


def scrub_breadcrumb(crumb: dict[str, Any], _hint: Any = None) -> dict[str, Any]:
    """`before_breadcrumb`: the breadcrumb scrubbed like an event."""
    scrubbed: dict[str, Any] = redactor.mapping(crumb)
    return scrubbed


def dsn_from(config: ObservabilityConfig) -> str | None:
    """The DSN from settings, else from MODELSERVE_SENTRY_DSN."""
    if config.sentry_dsn is not None:
        return config.sentry_dsn.get_secret_value() or None
    return os.environ.get(DSN_ENV) or None


def init_sentry(
    dsn: str | None,
    *,
    environment: str | None = None,
    release: str | None = None,
    transport: Any = None,
) -> bool:
    """Start the Sentry SDK when a DSN is given; return whether it runs."""
    global _active
    if not dsn:
        return False
    try:
        import sentry_sdk
    except ImportError:
        logger.warning("a Sentry DSN is set but sentry-sdk is not installed; errors stay local")
        return False
    redactor.register_secret(dsn)
    options: dict[str, Any] = {
        "dsn": dsn,
        "environment": environment,
        "release": release,
        # `send_default_pii` stays unset: False is the SDK's default, and this SDK line
        # deprecates passing it (for `data_collection`, whose use would drop its scrubber).
        "include_local_variables": False,
        "max_request_body_size": "never",
        "before_send": scrub_event,
        "before_send_transaction": scrub_event,
        "before_breadcrumb": scrub_breadcrumb,
        # Errors only: traces go through OpenTelemetry.
        "traces_sample_rate": None,
        "enable_logs": False,
    }
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
    _active = True
    return True


def close_sentry(timeout_s: float = 2.0) -> None:
    """Flush pending events and stop the SDK (no-op when it does not run)."""
    global _active
    if not _active:
        return
    import sentry_sdk

    client = sentry_sdk.get_client()
    client.flush(timeout=timeout_s)
    client.close(timeout=timeout_s)
    _active = False
