"""The private APIs of our dependencies that modelserve builds on, checked for shape.

pyproject.toml bounds each of these packages below its next minor release; when a release is
allowed (the bound raised, or `make test-latest`), these tests say exactly what moved, instead
of a fast path that silently turns off or a metric that silently stops counting.
"""

from __future__ import annotations

import inspect

import prometheus_client
from uvicorn.protocols.http import httptools_impl

from modelserve.http import protocol
from modelserve.observability.pending import PendingHistogram


def _params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_uvicorn_httptools_protocol_has_what_the_fast_path_overrides() -> None:
    cls = httptools_impl.HttpToolsProtocol
    expected = {
        "_start_asgi_task": ["self", "cycle", "app"],
        "on_message_begin": ["self"],
        "on_headers_complete": ["self"],
        "on_message_complete": ["self"],
        "on_response_complete": ["self"],
        "connection_made": ["self", "transport"],
        "connection_lost": ["self", "exc"],
        # The connection limits (http/connections.py) replace or extend these too.
        "handle_websocket_upgrade": ["self"],
        "send_400_response": ["self", "msg"],
        "on_url": ["self", "url"],
        "on_header": ["self", "name", "value"],
        "_should_upgrade": ["self"],
        "_unsupported_upgrade_warning": ["self"],
    }
    assert set(expected) == set(protocol._NEEDED)
    for name, params in expected.items():
        assert hasattr(cls, name), (
            f"uvicorn's HttpToolsProtocol lost {name!r}: http/protocol.py must be ported to this "
            "uvicorn before its bound in pyproject.toml is raised"
        )
        assert _params(getattr(cls, name)) == params, (
            f"uvicorn's HttpToolsProtocol.{name} changed signature to {_params(getattr(cls, name))}"
        )
    assert protocol.protocol_class() is protocol.ModelserveProtocol


def test_uvicorn_protocol_and_cycle_keep_the_attributes_the_fast_path_reads() -> None:
    for attr in (
        "self.app",
        "self.flow",
        "self.cycle",
        "self.transport",
        # Read or written by the connection limits (http/connections.py).
        "self.parser",
        "self.url",
        "self.headers",
        "self.pipeline",
        "self.server_state",
        "self.expect_100_continue",
        "self.loop",
    ):
        assert attr in inspect.getsource(httptools_impl.HttpToolsProtocol), (
            f"uvicorn's HttpToolsProtocol no longer sets {attr}"
        )
    cycle_init = inspect.getsource(httptools_impl.RequestResponseCycle.__init__)
    for attr in (
        "scope",
        "body",
        "more_body",
        "keep_alive",
        "disconnected",
        "response_started",
        "response_complete",
        "default_headers",
        "message_event",
        "on_response",
        "waiting_for_100_continue",
    ):
        assert f"self.{attr}" in cycle_init, f"uvicorn's RequestResponseCycle lost .{attr}"
    assert "self.transport" in cycle_init  # replaced by the lingering-close wrapper
    flow_init = inspect.getsource(httptools_impl.FlowControl.__init__)
    assert "write_paused" in flow_init
    assert "read_paused" in flow_init
    status_line = httptools_impl.STATUS_LINE
    assert isinstance(status_line[200], bytes) and status_line[200].startswith(b"HTTP/1.1 200")


def test_prometheus_histogram_child_keeps_the_fields_pending_writes() -> None:
    # PendingHistogram writes bucket counts and the sum straight into the child (no bulk API).
    histogram = prometheus_client.Histogram(
        "contract_seconds", "shape check", buckets=(0.1, 1.0), registry=None
    )
    pending = PendingHistogram(histogram)
    for field in ("_upper_bounds", "_buckets", "_sum"):
        assert hasattr(histogram, field), f"prometheus_client's Histogram lost {field}"
    pending.observe(0.05)
    pending.observe(0.5)
    pending.flush()
    samples = {
        s.name + str(s.labels.get("le", "")): s.value for s in histogram.collect()[0].samples
    }
    assert samples["contract_seconds_bucket0.1"] == 1
    assert samples["contract_seconds_bucket1.0"] == 2
    assert samples["contract_seconds_sum"] == 0.55


def test_prometheus_values_still_choose_the_value_class_from_the_environment() -> None:
    # multiprocess.prepare_forked switches prometheus_client to multiprocess values after its
    # import (Celery's pool forks the already-importing worker): metrics must read
    # `values.ValueClass` when created, and `get_value_class` must follow the variable.
    from prometheus_client import values

    assert callable(values.get_value_class)
    assert hasattr(values, "ValueClass")
    source = inspect.getsource(prometheus_client.metrics)
    assert "values.ValueClass(" in source, "metrics no longer create values via values.ValueClass"


def test_uvicorn_supervisor_keeps_what_the_draining_supervisor_overrides() -> None:
    # cli/serve.py's DrainingSupervisor closes Multiprocess.sockets from its SIGTERM/SIGINT
    # handlers; a uvicorn that renames them would silently keep the socket open again.
    from uvicorn.supervisors import Multiprocess

    for name in ("handle_term", "handle_int", "run"):
        assert callable(getattr(Multiprocess, name, None)), f"Multiprocess lost {name}"
    assert "self.sockets = sockets" in inspect.getsource(Multiprocess.__init__)
    assert "handle_{sig_name.lower()}" in inspect.getsource(Multiprocess.handle_signals)
