"""The one exception tree of modelserve. No HTTP in here: `http/errors.py` maps classes to statuses.

ModelserveError
├── ConfigError                  settings or a service definition are invalid
│   └── ServiceDefinitionError   a Service subclass is malformed (no name, no types, bad batching)
├── ServiceLoadError             a target (file.py / module:attr) cannot be imported
├── ServiceNotFoundError         no served model has the requested name
├── ServiceUnavailableError      the model exists but is loading, failed or stopping
├── InvalidInputError            a request body does not match the model's input schema
│   ├── MalformedBodyError       the body is not well-formed JSON
│   ├── PayloadTooLargeError     the body is over the configured byte limit
│   └── UnsupportedMediaError    the body is not JSON
├── StreamNotSupportedError      a stream was asked of a model without predict_stream
├── MalformedRequestError        the request is not valid HTTP (framing, head syntax)
│   ├── HeadersTooLargeError     a header line or the whole head is over the size limit
│   └── RequestTimeoutError      the head or body arrived too slowly
├── OverloadedError              the model's queue is full (carries retry_after_s)
├── DeadlineExceededError        a request waited or ran past its deadline
└── PredictionError              the model raised while predicting a batch
    ├── OutputMismatchError      predict returned the wrong number or type of outputs
    └── ItemRejectedError        the model rejected one item of a batch (see ItemError)
"""

from __future__ import annotations

from typing import Any


class ModelserveError(Exception):
    """Base of every error modelserve raises on purpose."""

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(ModelserveError):
    """Raised when settings or a service definition are invalid."""


class ServiceDefinitionError(ConfigError):
    """Raised when a Service subclass is malformed."""


class SchemaOutdatedError(ConfigError):
    """Raised at start when the database schema is behind (or ahead of) this release."""


class DatabaseUnavailableError(ModelserveError):
    """Raised when the database cannot be reached or does not answer in time."""

    def __init__(self, message: str, *, details: Any = None, retry_after_s: float = 2.0) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class ServiceLoadError(ModelserveError):
    """Raised when a serve target cannot be imported or holds no Service."""


class ServiceNotFoundError(ModelserveError):
    """Raised when no served model has the requested name."""


class ServiceUnavailableError(ModelserveError):
    """Raised when a model exists but is not ready (loading, failed, stopping)."""

    def __init__(
        self, message: str, *, details: Any = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class InvalidInputError(ModelserveError):
    """Raised when a request body does not match the model's input schema."""


class MalformedBodyError(InvalidInputError):
    """Raised when a request body is not well-formed JSON (syntax, encoding, nesting, dupes)."""


class PayloadTooLargeError(InvalidInputError):
    """Raised when a request body is over the configured byte limit."""


class TooManyHeadersError(InvalidInputError):
    """Raised when a request carries more header fields than the configured maximum."""


class UnsupportedMediaError(InvalidInputError):
    """Raised when a request body is not sent as JSON."""


class StreamNotSupportedError(ModelserveError):
    """Raised when a streamed answer is asked of a model that defines no `predict_stream`."""


class MalformedRequestError(ModelserveError):
    """Raised when a request is not valid HTTP (framing, request line, header syntax)."""


class HeadersTooLargeError(MalformedRequestError):
    """Raised when a header line or the whole request head is over the configured size."""


class RequestTimeoutError(MalformedRequestError):
    """Raised when a client sends a request head or body too slowly."""


class AuthenticationError(ModelserveError):
    """Raised when credentials are missing, invalid, expired or revoked (never says which)."""


class PermissionDeniedError(ModelserveError):
    """Raised when valid credentials lack the scope or role the operation needs."""


class RateLimitedError(ModelserveError):
    """Raised when a rate limit or quota is exhausted; retry after `retry_after_s`."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float = 1.0,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s
        self.headers = headers or {}


class ResourceNotFoundError(ModelserveError):
    """Raised when an object does not exist or is not visible to the caller (no existence leak)."""


class ConflictError(ModelserveError):
    """Raised when a write conflicts with the current state (duplicate name, concurrent change)."""


class OverloadedError(ModelserveError):
    """Raised when a model's queue is full; the caller should retry after `retry_after_s`."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class DeadlineExceededError(ModelserveError):
    """Raised when a request waited in the queue or ran past its deadline."""


class PredictionError(ModelserveError):
    """Raised when the model raised while predicting a batch."""


class OutputMismatchError(PredictionError):
    """Raised when predict returned the wrong number or type of outputs."""


class ItemRejectedError(PredictionError):
    """Raised for one item that the model reported as an ItemError."""

    def __init__(self, message: str, *, code: str = "item_rejected", details: Any = None) -> None:
        super().__init__(message, details=details)
        self.code = code
