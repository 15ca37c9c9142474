"""Wire shapes of `GET /v1/models/{name}/stats`: traffic, latency, errors and drift.

Figures come from the sampled prediction log: request counts are estimates scaled by each
row's sample rate; percentiles and drift are computed on the sampled rows themselves.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from modelserve.schemas.timestamps import UtcDateTime

DriftLevel = Literal["none", "moderate", "major", "unknown"]


class LatencyPublic(BaseModel):
    """Latency percentiles in milliseconds (None without samples)."""

    model_config = ConfigDict(frozen=True)

    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


class VersionStatsPublic(BaseModel):
    """Traffic of one model version in the window."""

    model_config = ConfigDict(frozen=True)

    version: str
    requests: float  # estimated: sum of 1/sample_rate over the sampled rows
    sampled: int
    throughput_rps: float
    latency: LatencyPublic
    error_rate: float  # share of non-2xx answers
    server_error_rate: float  # share of 5xx answers
    # Share of the cached model's logged answers served from the prediction cache (hits, not
    # shared or bypassed); None for a model that is not cached (docs/cache.md).
    cache_hit_rate: float | None = None


class FieldDriftPublic(BaseModel):
    """How one numeric leaf field of the inputs or outputs moved against the reference."""

    model_config = ConfigDict(frozen=True)

    field: str  # "input.x[0]", "output.probabilities.setosa"
    reference_count: int
    current_count: int
    reference_mean: float | None
    reference_std: float | None
    current_mean: float | None
    current_std: float | None
    # (current mean - reference mean) / reference std; None when the reference is constant.
    mean_shift: float | None
    # Population stability index over the reference's deciles; None without enough samples.
    psi: float | None
    level: DriftLevel


class DriftPublic(BaseModel):
    """Drift of every numeric field, worst first."""

    model_config = ConfigDict(frozen=True)

    reference_start: UtcDateTime
    reference_end: UtcDateTime
    fields: list[FieldDriftPublic]
    max_psi: float | None
    level: DriftLevel
    truncated: bool  # more numeric fields existed than are reported


class PredictionStatsPublic(BaseModel):
    """Analytics of one model over a time window."""

    model_config = ConfigDict(frozen=True)

    model: str
    window: str
    start: UtcDateTime
    end: UtcDateTime
    sample_rate: float  # the model's current prediction-log sample rate
    requests: float
    versions: list[VersionStatsPublic]
    drift: DriftPublic
    note: str | None = None
