"""Wire contracts of the HTTP API that do not depend on a particular model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelserve.schemas.registry import Split


class ErrorDetail(BaseModel):
    """The body of every error response, under the key `error`."""

    code: str = Field(description="Stable machine-readable error code, e.g. `invalid_input`.")
    message: str = Field(description="Human-readable explanation; never contains secrets.")
    details: Any = Field(None, description="Structured context, e.g. validation errors.")
    request_id: str | None = Field(None, description="Echo of the X-Request-ID header.")


class ErrorResponse(BaseModel):
    """`{"error": {...}}`: one error shape everywhere."""

    error: ErrorDetail


class BatchingInfo(BaseModel):
    """A model's batching policy as served."""

    max_batch_size: int
    max_wait_ms: float
    max_queue: int
    timeout_s: float


class ModelStats(BaseModel):
    """Live counters of one model since this process started."""

    queue_depth: int
    running_batches: int
    batches: int
    items: int
    shed: int
    expired_in_queue: int
    abandoned_running: int
    errors: dict[str, int]


class TrafficInfo(BaseModel):
    """How unpinned requests are split between loaded versions."""

    primary: str
    # The same list of {version, percent} as the registry's `TrafficPublic` (the deployment
    # view and PUT .../traffic): one shape for one thing, whichever endpoint shows it.
    canary: list[Split] = Field(
        default_factory=list, description="Canary versions and the share each takes, in order"
    )
    sticky: bool = False
    shadow: str | None = None
    shadow_percent: float = 0.0


class VersionInfo(BaseModel):
    """One loaded version of a model."""

    version: str
    status: Literal["loading", "ready", "failed", "stopped"]
    reason: str | None = None


class ModelInfo(BaseModel):
    """One served model (described by its primary version)."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str
    description: str
    status: Literal["loading", "ready", "failed", "stopped"]
    reason: str | None = Field(None, description="Why the model is not ready, when it is not.")
    isolation: Literal["thread", "process", "inline"]
    replicas: int
    batching: BatchingInfo
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    stats: ModelStats | None = None
    versions: list[VersionInfo] = Field(default_factory=list)
    traffic: TrafficInfo | None = None


class ModelList(BaseModel):
    """Every served model."""

    data: list[ModelInfo]
    count: int


class ItemErrorInfo(BaseModel):
    """A per-item failure inside a batch response."""

    index: int
    code: str
    message: str
    details: Any = None


class HealthStatus(BaseModel):
    """Answer of /livez and /readyz."""

    status: Literal["ok", "unavailable"]
    models: dict[str, str] = Field(default_factory=dict)
