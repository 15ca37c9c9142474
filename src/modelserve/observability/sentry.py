"""Optional error reporting to Sentry, with the same scrubbing as every other sink.

Off unless a DSN is set (`MODELSERVE_OBSERVABILITY__SENTRY_DSN`, or `MODELSERVE_SENTRY_DSN`) and
`sentry-sdk` 3.x is installed (`pip install modelserve[sentry]`). SDK 3 replaced the single
`send_default_pii` switch with `data_collection` categories and collects most of them by
default, so every category that could carry a credential or a client's data is turned off here:
user identity, cookies, request bodies, query strings and local variables; request headers go
through the SDK's denylist. `before_send` and `before_breadcrumb` then run every event through the
redaction step (headers, query strings, messages, exception values, breadcrumbs), so Sentry's own
filtering is a second net, not the only one. SDK 3 no longer turns logging into events by itself:
the logging integration is enabled here (ERROR records become events, INFO and above breadcrumbs),
which is what 2.x did by default.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Final

from modelserve.observability.redaction import redactor

if TYPE_CHECKING:
    from modelserve.config import ObservabilityConfig

logger = logging.getLogger("modelserve.observability")

DSN_ENV = "MODELSERVE_SENTRY_DSN"

_active = False

# What SDK 3 may collect on its own (`data_collection`); everything a client sends or that could
# hold a credential is off. Headers stay on its denylist mode so a request's shape is still seen,
# and our own scrubber runs over them again in `before_send`.
DATA_COLLECTION: Final[dict[str, Any]] = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_bodies": [],
    "url_query_params": {"mode": "off"},
    "http_headers": {"request": {"mode": "denylist"}},
    "stack_frame_variables": False,
    "database_query_data": False,
    "gen_ai": {"inputs": False, "outputs": False},
}

# Log records at these levels become Sentry events and breadcrumbs (SDK 2's defaults).
EVENT_LEVEL: Final = logging.ERROR
BREADCRUMB_LEVEL: Final = logging.INFO


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
        from sentry_sdk.integrations.logging import LoggingIntegration
    except ImportError:
        logger.warning("a Sentry DSN is set but sentry-sdk is not installed; errors stay local")
        return False
    redactor.register_secret(dsn)
    options: dict[str, Any] = {
        "dsn": dsn,
        "environment": environment,
        "release": release,
        "data_collection": DATA_COLLECTION,
        "max_request_body_size": "never",
        # `level=None`: no Sentry "logs" product, only events and breadcrumbs from records.
        "integrations": [
            LoggingIntegration(
                level=None, event_level=EVENT_LEVEL, breadcrumb_level=BREADCRUMB_LEVEL
            )
        ],
        "before_send": scrub_event,
        "before_breadcrumb": scrub_breadcrumb,
        # Errors only: traces go through OpenTelemetry.
        "traces_sample_rate": None,
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
