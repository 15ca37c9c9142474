"""modelserve: serve any Python model as a fast, validated, documented HTTP API.

from modelserve import Service, batching

class Iris(Service[Flower, Species]):
    name = "iris"
    batching = batching(max_batch_size=32, max_wait_ms=2)
    def setup(self, device: str) -> None: ...
    def predict(self, batch: list[Flower]) -> list[Species]: ...
"""

from modelserve.config import HttpConfig, ServerConfig, Settings
from modelserve.errors import (
    ConfigError,
    DeadlineExceededError,
    InvalidInputError,
    ItemRejectedError,
    ModelserveError,
    OutputMismatchError,
    OverloadedError,
    PredictionError,
    ServiceDefinitionError,
    ServiceLoadError,
    ServiceNotFoundError,
    ServiceUnavailableError,
)
from modelserve.http.app import create_app
from modelserve.service.base import ItemError, Service
from modelserve.service.batching import BatchingConfig, batching
from modelserve.service.loader import load_target
from modelserve.service.spec import ServiceSpec

__version__ = "0.1.0"

__all__ = [
    "BatchingConfig",
    "ConfigError",
    "DeadlineExceededError",
    "HttpConfig",
    "InvalidInputError",
    "ItemError",
    "ItemRejectedError",
    "ModelserveError",
    "OutputMismatchError",
    "OverloadedError",
    "PredictionError",
    "ServerConfig",
    "Service",
    "ServiceDefinitionError",
    "ServiceLoadError",
    "ServiceNotFoundError",
    "ServiceSpec",
    "ServiceUnavailableError",
    "Settings",
    "__version__",
    "batching",
    "create_app",
    "load_target",
]
