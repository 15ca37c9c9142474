"""Typed settings, built once by the CLI or `create_app` and injected; read env only then.

Environment variables use the prefix `MODELSERVE_` and `__` for nesting, e.g.
`MODELSERVE_HTTP__MAX_BODY_BYTES=1048576`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BATCH_INPUTS = 1024
DEFAULT_MAX_HEADERS = 100
DEFAULT_GRACEFUL_TIMEOUT_S = 30.0
# Connection hygiene (http/connections.py). Header sizes are nginx's defaults
# (large_client_header_buffers 4 8k); the timeouts bound what a client that connects and then
# sends slowly, or not at all, can hold: a socket, a file descriptor and a parser's buffers.
DEFAULT_MAX_HEADER_LINE_BYTES = 8 * 1024
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 10.0
DEFAULT_BODY_MIN_BYTES = 1024
DEFAULT_KEEP_ALIVE_TIMEOUT_S = 5.0
DEFAULT_MAX_CONNECTIONS = 10_000
DEFAULT_DATA_DIR = Path(".modelserve")


class HttpConfig(BaseModel):
    """Limits and exposure of the HTTP edge."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)
    # Cap on `inputs` in /predict/batch, independent of the model's own batch size:
    # the engine splits a large request into model-sized batches.
    max_batch_inputs: int = Field(DEFAULT_MAX_BATCH_INPUTS, gt=0)
    # uvicorn's parser has no cap on the number of header fields; we answer 431 past this.
    max_headers: int = Field(DEFAULT_MAX_HEADERS, gt=0)
    # One header line (the request line too) and the whole head, request line included: past
    # either the server answers 431 and reads no further (modelserve's protocol only).
    max_header_line_bytes: int = Field(DEFAULT_MAX_HEADER_LINE_BYTES, ge=256)
    max_header_bytes: int = Field(DEFAULT_MAX_HEADER_BYTES, ge=1024)
    # The whole head must arrive within header_timeout_s of its first byte (of the connection,
    # for a new one); a body must bring at least body_min_bytes every body_timeout_s. Past
    # either: 408 and close. An idle keep-alive connection is closed after
    # keep_alive_timeout_s.
    header_timeout_s: float = Field(DEFAULT_HEADER_TIMEOUT_S, gt=0)
    body_timeout_s: float = Field(DEFAULT_BODY_TIMEOUT_S, gt=0)
    body_min_bytes: int = Field(DEFAULT_BODY_MIN_BYTES, ge=1)
    keep_alive_timeout_s: float = Field(DEFAULT_KEEP_ALIVE_TIMEOUT_S, gt=0)
    # Open connections per server process; past it the oldest idle or still-sending-headers
    # connections are closed to make room (also capped below the file-descriptor limit).
    max_connections: int = Field(DEFAULT_MAX_CONNECTIONS, ge=1)
    docs_enabled: bool = True
    # A streamed answer (SSE) with no chunk for this long gets a `: heartbeat` comment, so
    # that proxies and clients do not take a slow model for a dead connection.
    stream_heartbeat_s: float = Field(15.0, gt=0, le=3600)


class ServerConfig(BaseModel):
    """How `modelserve serve` binds and runs processes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    graceful_timeout_s: float = Field(DEFAULT_GRACEFUL_TIMEOUT_S, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Freeze the long-lived heap out of the garbage collector once models have loaded
    # (runtime/heap.py): full collections of a model-sized heap were the p99 of small models.
    gc_freeze: bool = True
    # Answer one-input predict requests in the HTTP protocol itself, without an ASGI task
    # (http/protocol.py); off: plain uvicorn httptools for every request.
    fast_protocol: bool = True


class DatabaseConfig(BaseModel):
    """Where state lives. No URL: a SQLite file in the data directory (nothing to run)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    echo: bool = False
    pool_size: int = Field(5, ge=1, le=100)
    # SQLite is migrated on start (one file, one process family); PostgreSQL must be migrated
    # explicitly with `modelserve db upgrade`, and the server refuses to start when behind.
    auto_migrate: bool | None = None


DEFAULT_ACCESS_TOKEN_TTL_S = 15 * 60
DEFAULT_REFRESH_TOKEN_TTL_S = 14 * 24 * 3600
DEFAULT_LOGIN_RATE_LIMIT = "10/minute;50/hour"
DEFAULT_LOGIN_IP_RATE_LIMIT = "100/minute"
DEFAULT_KEY_CREATE_RATE_LIMIT = "30/hour"
DEFAULT_MEMBER_SCOPES = (
    "predict:*",
    "registry:read",
    "registry:write",
    "jobs:read",
    "jobs:write",
)
# "100/second;10000/day": several rules joined by ';' (or ','), each N/[M ]unit.
_RATE_LIMIT = r"^(\s*\d+\s*/\s*(\d+\s*)?(second|minute|hour|day|month|year)s?\s*([;,]|$))*$"
Exposure = Literal["public", "authenticated", "disabled"]


class AuthConfig(BaseModel):
    """Users, tokens, API keys and rate limits. Owned by `modelserve.auth`.

    Rate limits are strings of rules joined by ';', e.g. "100/second;10000/day"; an empty
    string means no limit. In memory per process unless `Settings.redis_url` is set.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    # HS256 signs with `jwt_secret` (at least 32 bytes in prod mode). EdDSA signs with
    # `jwt_private_key` (Ed25519 PEM) and verifies with its public half; needs `cryptography`.
    jwt_algorithm: Literal["HS256", "EdDSA"] = "HS256"
    jwt_secret: SecretStr | None = None
    jwt_private_key: SecretStr | None = None
    issuer: str = Field("modelserve", min_length=1, max_length=200)
    audience: str = Field("modelserve", min_length=1, max_length=200)
    access_token_ttl_s: int = Field(DEFAULT_ACCESS_TOKEN_TTL_S, ge=30, le=24 * 3600)
    refresh_token_ttl_s: int = Field(DEFAULT_REFRESH_TOKEN_TTL_S, ge=60, le=365 * 24 * 3600)
    # Tolerated clock skew between nodes when checking exp/nbf/iat.
    jwt_leeway_s: int = Field(30, ge=0, le=300)
    # Argon2id cost: memory in KiB, passes over it. The defaults are OWASP's (19 MiB, 2 passes);
    # tests lower them.
    argon2_memory_kib: int = Field(19 * 1024, ge=8, le=4 * 1024 * 1024)
    argon2_time_cost: int = Field(2, ge=1, le=20)
    # Password hashes computed at once per process (each takes one core for ~20-50 ms), and
    # how many more may wait for a slot before logins are refused with 503 (S4: a login flood
    # must not take both cores from inference).
    hashing_concurrency: int = Field(1, ge=1, le=64)
    hashing_queue: int = Field(32, ge=0, le=10_000)
    # Rate limits per principal (API key or user), by scope family ("predict", "registry") and
    # per model for predict (overrides the family's rule).
    rate_limits: dict[str, str] = Field(default_factory=dict)
    model_rate_limits: dict[str, str] = Field(default_factory=dict)
    # Login attempts per account and client address, and per client address over all accounts.
    login_rate_limit: str = Field(DEFAULT_LOGIN_RATE_LIMIT, pattern=_RATE_LIMIT)
    login_ip_rate_limit: str = Field(DEFAULT_LOGIN_IP_RATE_LIMIT, pattern=_RATE_LIMIT)
    key_create_rate_limit: str = Field(DEFAULT_KEY_CREATE_RATE_LIMIT, pattern=_RATE_LIMIT)
    # Peers (addresses or CIDRs) whose X-Forwarded-For is believed: a reverse proxy in front.
    trusted_proxies: tuple[str, ...] = ()
    # Scopes a member's login session carries (admins hold "admin", which covers all).
    member_scopes: tuple[str, ...] = DEFAULT_MEMBER_SCOPES
    # How long a resolved API key or access token is reused without asking the database; also
    # how long a revocation may take to be seen by this process (S7). At most 1 s.
    credential_cache_ttl_s: float = Field(1.0, ge=0, le=1.0)
    # Browser origins allowed to call the API (exact "https://host[:port]"); none by default.
    cors_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    # /docs, /redoc, /openapi.json and /metrics: open, behind a credential, or answered 404.
    docs_exposure: Exposure = "public"
    metrics_exposure: Exposure = "public"
    # Dev mode only: on first start with no users, create an admin and a development key.
    dev_bootstrap: bool = True

    @field_validator("rate_limits", "model_rate_limits")
    @classmethod
    def _check_limits(cls, value: dict[str, str]) -> dict[str, str]:
        for name, rule in value.items():
            if not re.match(_RATE_LIMIT, rule):
                raise ValueError(f"rate limit for {name!r} must look like '100/second;10000/day'")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not re.match(r"^https?://[^/\s*]+$", origin):
                raise ValueError(f"CORS origin {origin!r} must be scheme://host[:port]")
        return value

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> AuthConfig:
        # Browsers refuse it anyway, and reflecting any Origin instead would hand every site
        # the user's credentials (S15).
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError("cors_origins may not contain '*' when cors_allow_credentials is on")
        return self


DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_SAMPLE_INTERVAL_S = 5.0
DEFAULT_PREDLOG_RETENTION_DAYS = 7.0
DEFAULT_PREDLOG_MAX_BYTES = 64 * 1024
DEFAULT_PREDLOG_QUEUE = 10_000
DEFAULT_PREDLOG_FLUSH_S = 1.0


class ObservabilityConfig(BaseModel):
    """Metrics, traces, logs, Sentry and the prediction log. Owned by `modelserve.observability`.

    Tracing has no switch here on purpose: it is configured by the standard `OTEL_*` variables
    (an OTLP endpoint or `OTEL_TRACES_EXPORTER`) and is off without them. docs/observability.md
    explains every field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics_enabled: bool = True
    # A separate, internal port for /metrics (then /metrics is not served on the public port).
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = DEFAULT_METRICS_HOST
    # How often each process refreshes its live gauges (queue depth, busy replicas, RSS...).
    sample_interval_s: float = Field(DEFAULT_SAMPLE_INTERVAL_S, gt=0, le=300)
    # "auto": JSON in prod mode, readable lines in dev mode.
    log_format: Literal["auto", "json", "console"] = "auto"
    # None: the server's log level (`--log-level`).
    log_level: Literal["debug", "info", "warning", "error"] | None = None
    access_log: bool = True
    # Also read from MODELSERVE_SENTRY_DSN. Never logged; events are scrubbed before sending.
    sentry_dsn: SecretStr | None = None
    sentry_environment: str | None = Field(None, max_length=64)
    # Prediction log: the share of each model's requests stored with their input and output.
    predlog_sample_rate: float = Field(0.0, ge=0.0, le=1.0)
    predlog_sample_rates: dict[str, float] = Field(default_factory=dict)
    predlog_retention_days: float = Field(DEFAULT_PREDLOG_RETENTION_DAYS, gt=0, le=3650)
    # Bodies larger than this are stored as null (the row still counts for stats).
    predlog_max_bytes: int = Field(DEFAULT_PREDLOG_MAX_BYTES, ge=0)
    predlog_queue: int = Field(DEFAULT_PREDLOG_QUEUE, ge=1)
    predlog_flush_interval_s: float = Field(DEFAULT_PREDLOG_FLUSH_S, gt=0, le=60)

    @field_validator("predlog_sample_rates")
    @classmethod
    def _rates_are_shares(cls, value: dict[str, float]) -> dict[str, float]:
        for model, rate in value.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"sample rate of {model!r} must be between 0 and 1")
        return value

    def predlog_rate(self, model: str) -> float:
        """The prediction-log sample rate of one model."""
        return self.predlog_sample_rates.get(model, self.predlog_sample_rate)

    @property
    def predlog_enabled(self) -> bool:
        """True when any model is sampled into the prediction log."""
        return self.predlog_sample_rate > 0 or any(
            r > 0 for r in self.predlog_sample_rates.values()
        )


DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
DEFAULT_MAX_ARCHIVE_FILES = 1000
DEFAULT_MAX_UNPACKED_BYTES = 4 * 1024**3
DEFAULT_SERVE_ALIAS = "production"
DEFAULT_RECONCILE_INTERVAL_S = 1.0
DEFAULT_SHADOW_BUFFER = 1000
DEFAULT_MAX_PAGE_SIZE = 100


class RegistryConfig(BaseModel):
    """The model registry and its artifact store. Owned by `modelserve.registry`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Artifacts live under <data_dir>/artifacts unless set.
    artifact_dir: Path | None = None
    # One uploaded file or archive, as sent (uploads bypass `http.max_body_bytes`).
    max_upload_bytes: int = Field(DEFAULT_MAX_UPLOAD_BYTES, gt=0)
    # Archive bombs (V13): caps on what an uploaded zip/tar may unpack to, counted while unpacking.
    max_archive_files: int = Field(DEFAULT_MAX_ARCHIVE_FILES, gt=0)
    max_unpacked_bytes: int = Field(DEFAULT_MAX_UNPACKED_BYTES, gt=0)
    # `serve --registry` serves the version this alias points at (plus the model's canary/shadow).
    serve_alias: str = Field(DEFAULT_SERVE_ALIAS, pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    # How often each server process checks the database for registry changes made elsewhere
    # (another worker, another node, the CLI).
    reconcile_interval_s: float = Field(DEFAULT_RECONCILE_INTERVAL_S, gt=0, le=3600)
    # Shadow comparisons kept in memory per model and process.
    shadow_buffer: int = Field(DEFAULT_SHADOW_BUFFER, ge=1, le=1_000_000)
    # Largest `limit` a registry list accepts (API4).
    max_page_size: int = Field(DEFAULT_MAX_PAGE_SIZE, ge=1, le=10_000)


DEFAULT_JOB_CHUNK_SIZE = 1000
DEFAULT_JOB_MAX_CHUNK_SIZE = 100_000
DEFAULT_JOB_MAX_UPLOAD_BYTES = 1024**3
DEFAULT_JOB_MAX_PART_BYTES = 4 * 1024 * 1024
DEFAULT_JOB_MAX_ROWS = 10_000_000
DEFAULT_JOB_MAX_ACTIVE_JOBS = 4
DEFAULT_JOB_MAX_QUEUED_ROWS = 10_000_000
DEFAULT_JOB_CONCURRENCY = 2
DEFAULT_JOB_BATCH_SHARE = 0.5
DEFAULT_JOB_LEASE_S = 30.0
DEFAULT_JOB_POLL_INTERVAL_S = 0.5
DEFAULT_JOB_MAX_ATTEMPTS = 5
DEFAULT_JOB_RETRY_BASE_S = 1.0
DEFAULT_JOB_RETRY_MAX_S = 60.0
DEFAULT_JOB_MAX_PAGE_SIZE = 100
DEFAULT_JOB_CELERY_QUEUE = "modelserve.jobs"
DEFAULT_JOB_OUTBOX_INTERVAL_S = 5.0
DEFAULT_JOB_PUBLISH_TIMEOUT_S = 5.0
DEFAULT_JOB_SCHEDULER_INTERVAL_S = 10.0
DEFAULT_JOB_RETENTION_DAYS = 30.0
DEFAULT_JOB_UPLOAD_RETENTION_HOURS = 24.0
DEFAULT_JOB_BLOB_GRACE_HOURS = 24.0
DEFAULT_JOB_RETENTION_INTERVAL_S = 3600.0
# Celery queue names: what RabbitMQ accepts and a log line shows plainly.
CELERY_QUEUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"


class JobsConfig(BaseModel):
    """Batch jobs: uploads, limits and the embedded runner. Owned by `modelserve.jobs`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Run job chunks in this server process (off: a node that only serves, or Celery workers).
    embedded: bool = True
    # Rows per chunk when a job does not say; the unit of checkpointing and retry.
    chunk_size: int = Field(DEFAULT_JOB_CHUNK_SIZE, ge=1, le=DEFAULT_JOB_MAX_CHUNK_SIZE)
    # One job's whole input, and one part of a resumable upload (a part is also capped by
    # `http.max_body_bytes`: parts are ordinary request bodies).
    max_upload_bytes: int = Field(DEFAULT_JOB_MAX_UPLOAD_BYTES, gt=0)
    max_part_bytes: int = Field(DEFAULT_JOB_MAX_PART_BYTES, gt=0)
    max_rows: int = Field(DEFAULT_JOB_MAX_ROWS, ge=1)
    # Per owner: jobs queued or running at once, and rows not yet processed over those jobs.
    # Past either, a submit is refused with 429 and Retry-After.
    max_active_jobs: int = Field(DEFAULT_JOB_MAX_ACTIVE_JOBS, ge=1)
    max_queued_rows: int = Field(DEFAULT_JOB_MAX_QUEUED_ROWS, ge=1)
    # Chunks this process runs at once, over every job.
    concurrency: int = Field(DEFAULT_JOB_CONCURRENCY, ge=1, le=64)
    # Share of a model jobs may take: job rows in flight per model and process are at most
    # max(1, batch_share * max_batch_size), so requests always find room in a batch, and while
    # requests are answered jobs run at most this share of the time (jobs/sharing.py).
    batch_share: float = Field(DEFAULT_JOB_BATCH_SHARE, gt=0, le=1)
    # A leased chunk not renewed for this long is taken over by another worker (a crashed one).
    lease_s: float = Field(DEFAULT_JOB_LEASE_S, gt=0, le=3600)
    poll_interval_s: float = Field(DEFAULT_JOB_POLL_INTERVAL_S, gt=0, le=60)
    # Tries per chunk for transient failures, with exponential backoff between them.
    max_attempts: int = Field(DEFAULT_JOB_MAX_ATTEMPTS, ge=1, le=100)
    retry_base_s: float = Field(DEFAULT_JOB_RETRY_BASE_S, ge=0, le=3600)
    retry_max_s: float = Field(DEFAULT_JOB_RETRY_MAX_S, ge=0, le=86_400)
    max_page_size: int = Field(DEFAULT_JOB_MAX_PAGE_SIZE, ge=1, le=10_000)
    # Who runs chunks: this server ("embedded", `embedded` above says whether it does) or
    # Celery workers (`modelserve worker`), to which the server only publishes one message
    # per chunk. The database stays the source of truth either way (docs/jobs.md).
    runner: Literal["embedded", "celery"] = "embedded"
    # The Celery broker, e.g. amqp://user:password@rabbitmq:5672// (a SecretStr: it holds a
    # password). Required with runner="celery".
    broker_url: SecretStr | None = None
    # The queue chunks are published to, and `celery_routes` (model name -> queue) for models
    # whose workers consume a queue of their own (`modelserve worker --queues`).
    celery_queue: str = Field(DEFAULT_JOB_CELERY_QUEUE, pattern=CELERY_QUEUE_PATTERN)
    celery_routes: dict[str, str] = Field(default_factory=dict)
    # Celery mode: how often the server publishes chunks that were never published (the broker
    # was down at submit: the outbox), and how long one publish may wait for the broker.
    outbox_interval_s: float = Field(DEFAULT_JOB_OUTBOX_INTERVAL_S, gt=0, le=3600)
    publish_timeout_s: float = Field(DEFAULT_JOB_PUBLISH_TIMEOUT_S, gt=0, le=300)
    # Scheduled jobs are started by this process (every replica may: a tick is claimed once
    # in the database); how often it looks for due schedules.
    scheduler: bool = True
    scheduler_interval_s: float = Field(DEFAULT_JOB_SCHEDULER_INTERVAL_S, gt=0, le=3600)
    # Where `{"input": {"path": ...}}` inputs (files an operator drops for scheduled jobs) are
    # read from; paths are relative to it and never leave it. None: path inputs are refused.
    input_dir: Path | None = None
    # Retention (jobs/retention.py), swept by every server that runs the scheduler: finished
    # jobs are deleted with their results this long after they finished (0: kept forever);
    # uploads no job reads and no schedule names this long after they completed (or started,
    # if never completed); blobs no row names once unwritten for `blob_grace_hours`.
    retention: bool = True
    retention_days: float = Field(DEFAULT_JOB_RETENTION_DAYS, ge=0, le=36_500)
    upload_retention_hours: float = Field(DEFAULT_JOB_UPLOAD_RETENTION_HOURS, gt=0, le=876_000)
    blob_grace_hours: float = Field(DEFAULT_JOB_BLOB_GRACE_HOURS, ge=1, le=876_000)
    retention_interval_s: float = Field(DEFAULT_JOB_RETENTION_INTERVAL_S, gt=0, le=86_400)

    @field_validator("celery_routes")
    @classmethod
    def _check_routes(cls, routes: dict[str, str]) -> dict[str, str]:
        for model, queue in routes.items():
            if not re.match(CELERY_QUEUE_PATTERN, queue):
                raise ValueError(f"celery_routes[{model!r}]: {queue!r} is not a queue name")
        return routes

    @model_validator(mode="after")
    def _check_runner(self) -> JobsConfig:
        if self.runner == "celery" and self.broker_url is None:
            raise ValueError(
                "jobs.runner=celery needs jobs.broker_url (MODELSERVE_JOBS__BROKER_URL)"
            )
        return self

    def queue_for(self, model: str) -> str:
        """The Celery queue chunks of `model` are published to."""
        return self.celery_routes.get(model, self.celery_queue)


DEFAULT_CONSOLE_IDLE_TIMEOUT_S = 15 * 60
DEFAULT_CONSOLE_POLL_INTERVAL_S = 5.0


class ConsoleConfig(BaseModel):
    """The admin console at /console (server-rendered pages). Owned by `modelserve.console`.

    Off unless enabled (`make run` enables it). It signs users in with their password and
    keeps them in a cookie; docs/console.md explains every field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    # A session with no page view or action for this long is signed out. Live-updating
    # fragments do not count as activity. Capped in effect by `auth.access_token_ttl_s`.
    idle_timeout_s: int = Field(DEFAULT_CONSOLE_IDLE_TIMEOUT_S, ge=60, le=24 * 3600)
    # Cookies marked Secure with the `__Host-` prefix (HTTPS only). None: on outside dev mode.
    secure_cookies: bool | None = None
    # How often the overview's live figures refresh in the browser.
    poll_interval_s: float = Field(DEFAULT_CONSOLE_POLL_INTERVAL_S, ge=1, le=300)


DEFAULT_CACHE_KEY_PREFIX = "modelserve:cache"
DEFAULT_CACHE_REDIS_TIMEOUT_S = 0.05
DEFAULT_CACHE_MAX_ENTRY_BYTES = 1024 * 1024
DEFAULT_CACHE_MAX_BYTES = 1024**3


class CacheModelConfig(BaseModel):
    """An operator's override of one model's `cache_policy` (unset fields keep the policy's).

    It tunes or switches off a policy the Service declared; it never turns caching on for a
    Service without one (only its author knows whether its answers may be reused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    ttl_s: float | None = Field(None, gt=0, le=365 * 24 * 3600)
    max_items: int | None = Field(None, ge=1)
    max_bytes: int | None = Field(None, ge=1)


class CacheConfig(BaseModel):
    """The prediction cache (docs/cache.md). Owned by `modelserve.cache`.

    Nothing is cached unless a Service declares `cache = cache_policy(...)`; `enabled=False`
    turns every policy off (MODELSERVE_CACHE__ENABLED=false).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    # Shared answers for every worker and replica, e.g. redis://:password@cache:6379/2
    # (MODELSERVE_CACHE__REDIS_URL; a SecretStr: it may hold a password). None: in-process.
    redis_url: SecretStr | None = None
    # Redis keys are `<key_prefix>:<model>:<hex>`.
    key_prefix: str = Field(DEFAULT_CACHE_KEY_PREFIX, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    # Each Redis call waits at most this long; past it the request is a miss. After
    # `breaker_failures` failures in a row Redis is not asked for `breaker_reset_s`.
    redis_timeout_s: float = Field(DEFAULT_CACHE_REDIS_TIMEOUT_S, gt=0, le=5)
    breaker_failures: int = Field(5, ge=1, le=1000)
    breaker_reset_s: float = Field(5.0, gt=0, le=3600)
    # An answer larger than this is not stored in Redis.
    max_entry_bytes: int = Field(DEFAULT_CACHE_MAX_ENTRY_BYTES, ge=1)
    # Ceiling on one loaded version's in-process cache, whatever its policy asks.
    max_bytes: int = Field(DEFAULT_CACHE_MAX_BYTES, ge=1)
    # Who may send `Cache-Control: no-cache` to skip reading the cache (others are served
    # from it as usual). `admin` holds every scope.
    bypass_scope: str = Field("registry:write", min_length=1, max_length=64)
    # Per model name, e.g. MODELSERVE_CACHE__MODELS='{"embedder": {"ttl_s": 600}}' or
    # '{"iris": {"enabled": false}}'.
    models: dict[str, CacheModelConfig] = Field(default_factory=dict)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, url: SecretStr | None) -> SecretStr | None:
        # Refused at startup rather than counted as Redis errors on every request; the message
        # names the scheme only, never the URL (it may hold a password).
        if url is not None:
            scheme = url.get_secret_value().partition("://")[0].lower()
            if scheme not in ("redis", "rediss", "unix"):
                raise ValueError("cache.redis_url must start with redis://, rediss:// or unix://")
        return url


class Settings(BaseSettings):
    """All of modelserve's settings. Build once; pass down."""

    model_config = SettingsConfigDict(
        env_prefix="MODELSERVE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    mode: Literal["dev", "prod"] = "dev"
    data_dir: Path = DEFAULT_DATA_DIR
    http: HttpConfig = HttpConfig()
    server: ServerConfig = ServerConfig()
    # MODELSERVE_DATABASE_URL, e.g. postgresql://user@127.0.0.1:5432/modelserve; drivers are
    # chosen for you (aiosqlite, psycopg 3). A SecretStr because URLs carry passwords.
    database_url: SecretStr | None = None
    database: DatabaseConfig = DatabaseConfig()
    # Shared rate limits, caches and queues across processes; in-memory when unset.
    redis_url: SecretStr | None = None
    auth: AuthConfig = AuthConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    registry: RegistryConfig = RegistryConfig()
    jobs: JobsConfig = JobsConfig()
    console: ConsoleConfig = ConsoleConfig()
    cache: CacheConfig = CacheConfig()
    # Which device string `setup(device)` receives when a service does not pin one.
    device: str = "cpu"
    # When true, /readyz is 200 once any service is ready; otherwise all must be.
    ready_when_any: bool = False

    def resolved_database_url(self) -> str:
        """The database URL in plain text (only `db/` should call this)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'modelserve.db').resolve()}"
