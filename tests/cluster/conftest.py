"""One cluster (tests/cluster/harness.py) for every scenario, torn down right after them.

The scenarios need PostgreSQL and Redis (skipped without them, failed under
MODELSERVE_REQUIRE_SERVICES=1 like every service test) and Debian's nginx (`make cluster`,
`make test` and .ci/run install it when missing).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.cluster import figures
from tests.cluster.harness import Cluster, nginx_binary, running_cluster
from tests.conftest import POSTGRES_HOST, POSTGRES_PORT, REDIS_HOST, REDIS_PORT, require_service


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: a multi-node scenario on nginx + two replicas (tests/cluster)"
    )
    config.addinivalue_line(
        "markers", "cluster_full: runs only under `make cluster` (MODELSERVE_CLUSTER=full)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if figures.FULL:
        return
    skip = pytest.mark.skip(reason="`make cluster` runs it (MODELSERVE_CLUSTER=full)")
    for item in items:
        if item.get_closest_marker("cluster_full") is not None:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not figures.ROWS:
        return
    scale = "full set" if figures.FULL else "the subset in `make test`"
    terminalreporter.section(f"cluster scenarios, {scale}")
    terminalreporter.write_line(figures.render())
    written = figures.write_table()
    if written is not None:
        terminalreporter.write_line(f"table written to {written}")


def require_nginx() -> None:
    if nginx_binary() is not None:
        return
    reason = "nginx is not installed (apt-get install nginx; `make cluster` does it)"
    if os.environ.get("MODELSERVE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and MODELSERVE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


# Module scope: the cluster goes as soon as its scenarios are done, not at the end of the
# whole `make test` session, where it would take cores from every later test.
@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    require_service("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    require_nginx()
    with running_cluster() as running:
        yield running
