"""Wire contracts of the model registry API (`/v1/registry/...`).

Write schemas forbid unknown fields (S3); names, versions and paths are checked again, with the
same rules, by `modelserve.registry.safety` before anything touches the disk.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from modelserve.schemas.timestamps import UtcDateTime

MAX_LABELS = 50
MAX_METRICS = 100
MAX_FILES = 10_000
MAX_CANARIES = 8

# The same rules as `service.spec.NAME_PATTERN` / `VERSION_PATTERN` (a test keeps them equal;
# schemas sit below service/ and cannot import them).
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"

# What the wire takes: the patterns above minus '..' anywhere (`registry.safety` refuses it too),
# spelled without look-arounds so every engine (Rust regex here, ECMA-262 in clients and
# generators) reads them alike. A test checks they accept exactly what the checks accept.
NAME_WIRE_PATTERN = r"^[a-z0-9](?:\.?[a-z0-9_-])*\.?$"
VERSION_WIRE_PATTERN = r"^[A-Za-z0-9](?:\.?[A-Za-z0-9_+-])*\.?$"
# `registry.safety.check_service_ref`: `pkg.module[:Class]` or `path/to/file.py[:Class]`
# (ASCII class names in the document; the server also takes other identifiers).
SERVICE_PATTERN = (
    r"^(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*|[^\x00-\x1f:]{1,1024}\.py)"
    r"(?::[A-Za-z_][A-Za-z0-9_]*)?$"
)
LABEL_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$"

Name = Annotated[str, StringConstraints(pattern=NAME_WIRE_PATTERN, min_length=1, max_length=63)]
Version = Annotated[
    str, StringConstraints(pattern=VERSION_WIRE_PATTERN, min_length=1, max_length=64)
]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, StringConstraints(max_length=256)]
Description = Annotated[str, StringConstraints(max_length=10_000)]
# Pydantic documents `dict[LabelKey, ...]` as `patternProperties` only, which lets any other key
# through in the document while the server refuses it: say that no other key is taken.
_ONLY_PATTERN_KEYS: dict[str, Any] = {"additionalProperties": False}


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Metric = Annotated[float, AfterValidator(_finite)]
Percent = Annotated[float, Field(gt=0, le=100), AfterValidator(_finite)]

_WRITE = ConfigDict(extra="forbid", str_strip_whitespace=False)
_READ = ConfigDict(protected_namespaces=())


class ModelCreate(BaseModel):
    """Register a model name."""

    model_config = _WRITE

    name: Name
    description: Description = ""
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=MAX_LABELS, json_schema_extra=_ONLY_PATTERN_KEYS
    )


class FileRef(BaseModel):
    """One artifact of a new version: where it goes and which uploaded blob it is."""

    model_config = _WRITE

    path: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class VersionCreate(BaseModel):
    """Create an immutable version from uploaded blobs and a service class reference."""

    model_config = _WRITE

    version: Version | None = Field(
        None, description="Label of the new version; the next number when omitted."
    )
    service: Annotated[str, StringConstraints(min_length=1, max_length=1100)] = Field(
        description="The Service class: `pkg.module:Class`, or `path/file.py:Class` (admins).",
        # Documented only: `registry.safety` checks it (with Python's Unicode identifiers).
        json_schema_extra={"pattern": SERVICE_PATTERN},
    )
    files: list[FileRef] = Field(default_factory=list, max_length=MAX_FILES)
    framework: Annotated[str, StringConstraints(max_length=64)] | None = None
    description: Description = ""
    metrics: dict[LabelKey, Metric] = Field(
        default_factory=dict, max_length=MAX_METRICS, json_schema_extra=_ONLY_PATTERN_KEYS
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=MAX_LABELS, json_schema_extra=_ONLY_PATTERN_KEYS
    )
    trusted: bool = Field(
        False, description="Allow pickle-like artifacts that run code when loaded (admins only)."
    )


class VersionUpdate(BaseModel):
    """The one mutable property of a version: whether an admin trusts its artifacts."""

    model_config = _WRITE

    trusted: bool


class AliasUpdate(BaseModel):
    """Point an alias at a version."""

    model_config = _WRITE

    version: Version


class RollbackRequest(BaseModel):
    """Move an alias back to the version it pointed at before its last move."""

    model_config = _WRITE

    alias: Name | None = Field(None, description="Defaults to the served alias (`production`).")


class Split(BaseModel):
    """A version and the share of requests it gets."""

    model_config = _WRITE

    version: Version
    percent: Percent


class TrafficUpdate(BaseModel):
    """Canary and shadow settings; the primary is the version the served alias points at."""

    model_config = _WRITE

    canary: list[Split] = Field(
        default_factory=list,
        max_length=MAX_CANARIES,
        description="Versions and their shares; the shares add up to at most 100.",
    )
    sticky: bool = Field(False, description="Keep each caller on one side of the canary split.")
    shadow: Split | None = Field(None, description="Mirror a share of requests to this version.")


class TrafficPublic(BaseModel):
    """A model's traffic settings as stored."""

    primary: str | None
    canary: list[Split]
    sticky: bool
    shadow: Split | None


class FilePublic(BaseModel):
    """One artifact of a version."""

    path: str
    sha256: str
    size: int
    format: str


class UploadedFile(FilePublic):
    """A stored upload; `needs_trust` says why only a trusted version may use it."""

    needs_trust: str | None = None


class UploadPublic(BaseModel):
    """What an upload stored: one file, or every file of an archive."""

    files: list[UploadedFile]


class ModelPublic(BaseModel):
    """A registered model."""

    name: str
    description: str
    labels: dict[str, str]
    aliases: dict[str, str] = Field(description="alias -> version")
    latest_version: str | None
    version_count: int
    traffic: TrafficPublic | None
    created_at: UtcDateTime
    created_by: str | None


class ModelsPublic(BaseModel):
    """A page of models."""

    data: list[ModelPublic]
    count: int = Field(description="Models in total (all pages).")
    limit: int
    offset: int


class VersionPublic(BaseModel):
    """One immutable version."""

    model_config = _READ

    model: str
    version: str
    service: str
    framework: str | None
    description: str
    metrics: dict[str, float]
    labels: dict[str, str]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    trusted: bool
    files: list[FilePublic]
    aliases: list[str]
    created_at: UtcDateTime
    created_by: str | None


class VersionsPublic(BaseModel):
    """A page of versions, newest first."""

    data: list[VersionPublic]
    count: int
    limit: int
    offset: int


class AliasPublic(BaseModel):
    """Where an alias points now, and where it pointed before this move."""

    model_config = _READ

    model: str
    alias: str
    version: str
    previous_version: str | None
    updated_at: UtcDateTime


class ShadowRecordPublic(BaseModel):
    """One mirrored request: both versions' latency and how far their answers differed."""

    at: float
    request_id: str
    primary_version: str
    shadow_version: str
    primary_latency_s: float
    shadow_latency_s: float | None
    equal: bool
    max_abs_diff: float | None
    error: str | None


class ShadowSummary(BaseModel):
    """Aggregates over the records returned."""

    count: int
    equal: int
    errors: int
    max_abs_diff: float | None


class ShadowRecordsPublic(BaseModel):
    """The newest shadow records of this server process, newest first."""

    data: list[ShadowRecordPublic]
    summary: ShadowSummary


class DeployedVersionPublic(BaseModel):
    """One version loaded in this server process."""

    version: str
    status: str
    reason: str | None


class DeploymentPublic(BaseModel):
    """What this server process serves for a model, and what went wrong deploying it."""

    model: str
    serving: bool
    traffic: TrafficPublic | None
    versions: list[DeployedVersionPublic]
    error: str | None = Field(
        description="Why the registry's wanted state is not fully served now (None: it is)."
    )
    last_failure: str | None = Field(
        None, description="The newest version that failed to load in this process, and why."
    )
