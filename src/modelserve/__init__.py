"""modelserve: serve any Python model as a fast, validated, documented HTTP API.

from modelserve import Service, batching

class Iris(Service[Flower, Species]):
    name = "iris"
    batching = batching(max_batch_size=32, max_wait_ms=2)
    def setup(self, device: str) -> None: ...
    def predict(self, batch: list[Flower]) -> list[Species]: ...
"""

from typing import TYPE_CHECKING, Any

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
from modelserve.service.base import ItemError, Service
from modelserve.service.batching import BatchingConfig, batching
from modelserve.service.caching import CachePolicy, cache_policy
from modelserve.service.loader import load_target
from modelserve.service.spec import ServiceSpec

if TYPE_CHECKING:
    from modelserve.http.assembly import create_app

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # create_app pulls in FastAPI; model worker processes import this package too and should
    # not pay for the web stack on every (re)start.
    if name == "create_app":
        from modelserve.http.assembly import create_app

        return create_app
    raise AttributeError(f"module 'modelserve' has no attribute {name!r}")


__all__ = [
    "BatchingConfig",
    "CachePolicy",
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
    "cache_policy",
    "create_app",
    "load_target",
]
