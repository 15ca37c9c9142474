"""Start an example file behind the real app, in process, and wait until its model is ready."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from modelserve import load_target
from modelserve.testing import ServiceClient
from tests.support.client import serving

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Generous: the first start trains a model or imports transformers on a busy 2-core machine.
READY_TIMEOUT_S = 300.0

Serve = Callable[[str], AbstractContextManager[TestClient]]
Kit = Callable[..., ServiceClient]


def example_path(name: str) -> str:
    """Path of examples/<name>.py, independent of the working directory."""
    return str(EXAMPLES / f"{name}.py")


@pytest.fixture(scope="session")
def example() -> Callable[[str], ModuleType]:
    """Factory: the imported module of an example, for its training helpers and constants."""

    def load(name: str) -> ModuleType:
        specs = load_target(example_path(name))
        return sys.modules[specs[0].cls.__module__]

    return load


@pytest.fixture(scope="session")
def serve() -> Serve:
    """Factory: `with serve("iris") as client:` runs the example's app until the block ends.

    The model reads MODELSERVE_DATA_DIR when it starts, so set it before entering.
    """

    @contextmanager
    def running(name: str) -> Iterator[TestClient]:
        with serving(load_target(example_path(name)), wait=False) as client:
            wait_ready(client)
            yield client

    return running


@pytest.fixture(scope="session")
def kit() -> Kit:
    """Factory: `with kit("iris") as client:` the example through the test kit
    (`modelserve.testing.ServiceClient`: the server's pipeline in-process, no HTTP).

    The model reads MODELSERVE_DATA_DIR when it starts, so set it before entering.
    """

    def make(name: str, model: str | None = None) -> ServiceClient:
        """The example file's service named `model` (default: the file's name)."""
        specs = {spec.name: spec for spec in load_target(example_path(name))}
        return ServiceClient(specs[model or name])

    return make


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        for model in client.get("/v1/models").json()["data"]:
            if model["status"] == "failed":
                pytest.fail(f"model {model['name']} failed to load: {model['reason']}")
        if time.monotonic() > deadline:
            pytest.fail(f"not ready after {READY_TIMEOUT_S:.0f} s: {response.json()}")
        time.sleep(0.05)
