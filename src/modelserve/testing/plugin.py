"""The pytest plugin of modelserve's test kit: the `modelserve_client` fixture factory.

Enable it in your `conftest.py`::

    pytest_plugins = ["modelserve.testing.plugin"]

then, in a test::

    def test_setosa(modelserve_client):
        client = modelserve_client(MyIris)
        assert client.predict({...}).json()["species"] == "setosa"

Each client the factory makes is started (its `setup` run) and closed after the test. For a
model whose setup is slow, share one client per module with your own fixture around
`ServiceClient` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modelserve.service.base import Service
from modelserve.service.spec import ServiceSpec
from modelserve.testing.client import ServiceClient

ClientFactory = Callable[..., ServiceClient]


@pytest.fixture
def modelserve_client() -> Iterator[ClientFactory]:
    """A factory `(service, **ServiceClient options) -> started ServiceClient`; every client
    it made is closed when the test ends."""
    clients: list[ServiceClient] = []

    def make(service: type[Service[Any, Any]] | ServiceSpec, **options: Any) -> ServiceClient:
        client = ServiceClient(service, **options).start()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.close()
