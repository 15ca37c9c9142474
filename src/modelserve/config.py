"""Typed settings, built once by the CLI or `create_app` and injected; read env only then.

Environment variables use the prefix `MODELSERVE_` and `__` for nesting, e.g.
`MODELSERVE_HTTP__MAX_BODY_BYTES=1048576`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BATCH_INPUTS = 1024
DEFAULT_MAX_HEADERS = 100
DEFAULT_GRACEFUL_TIMEOUT_S = 30.0
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
    docs_enabled: bool = True


class ServerConfig(BaseModel):
    """How `modelserve serve` binds and runs processes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    graceful_timeout_s: float = Field(DEFAULT_GRACEFUL_TIMEOUT_S, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class DatabaseConfig(BaseModel):
    """Where state lives. No URL: a SQLite file in the data directory (nothing to run)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    echo: bool = False
    pool_size: int = Field(5, ge=1, le=100)
    # SQLite is migrated on start (one file, one process family); PostgreSQL must be migrated
    # explicitly with `modelserve db upgrade`, and the server refuses to start when behind.
    auto_migrate: bool | None = None


class AuthConfig(BaseModel):
    """Users, tokens, API keys and rate limits. Owned by `modelserve.auth`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    jwt_secret: SecretStr | None = None


class ObservabilityConfig(BaseModel):
    """Metrics, traces, logs, Sentry and the prediction log. Owned by `modelserve.observability`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics_enabled: bool = True


class RegistryConfig(BaseModel):
    """The model registry and its artifact store. Owned by `modelserve.registry`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Artifacts live under <data_dir>/artifacts unless set.
    artifact_dir: Path | None = None


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
    # Which device string `setup(device)` receives when a service does not pin one.
    device: str = "cpu"
    # When true, /readyz is 200 once any service is ready; otherwise all must be.
    ready_when_any: bool = False

    def resolved_database_url(self) -> str:
        """The database URL in plain text (only `db/` should call this)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'modelserve.db').resolve()}"
