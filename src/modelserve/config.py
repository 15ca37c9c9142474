"""Typed settings, built once by the CLI or `create_app` and injected; read env only then.

Environment variables use the prefix `MODELSERVE_` and `__` for nesting, e.g.
`MODELSERVE_HTTP__MAX_BODY_BYTES=1048576`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
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


class Settings(BaseSettings):
    """All of modelserve's settings. Build once; pass down."""

    model_config = SettingsConfigDict(
        env_prefix="MODELSERVE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    mode: Literal["dev", "prod"] = "dev"
    data_dir: Path = DEFAULT_DATA_DIR
    http: HttpConfig = HttpConfig()
    server: ServerConfig = ServerConfig()
    # Which device string `setup(device)` receives when a service does not pin one.
    device: str = "cpu"
    # When true, /readyz is 200 once any service is ready; otherwise all must be.
    ready_when_any: bool = False
