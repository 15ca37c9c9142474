"""assert_batch_invariant, the refusal check, check_service and `modelserve check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelserve import ServiceSpec
from modelserve.cli.main import app
from modelserve.testing import (
    assert_batch_invariant,
    assert_refuses_invalid_inputs,
    check_service,
    sample_inputs,
)
from modelserve.testing.checks import _close
from modelserve.testing.plugin import ClientFactory
from tests.testing.services import Crowd, Thermometer

READINGS = [{"celsius": float(c), "label": f"r{c}"} for c in range(5)]
SERVICES = Path(__file__).with_name("services.py")


def test_a_pure_model_is_batch_invariant() -> None:
    assert_batch_invariant(Thermometer, READINGS)


def test_item_errors_must_match_alone_and_in_the_batch(
    modelserve_client: ClientFactory,
) -> None:
    client = modelserve_client(Thermometer)
    assert_batch_invariant(client, [*READINGS, {"celsius": 1.0, "label": "broken"}])


def test_a_model_that_looks_at_its_batch_is_caught(modelserve_client: ClientFactory) -> None:
    client = modelserve_client(Crowd)
    with pytest.raises(AssertionError, match=r"item 0: in the batch \{'seen': 5\}"):
        assert_batch_invariant(client, READINGS)


def test_floats_may_differ_by_the_tolerance_and_nothing_else() -> None:
    # A batched kernel may sum in another order: 0.1 + 0.2 against 0.3.
    batch, alone = {"p": [0.1 + 0.2, 1], "k": "a"}, {"p": [0.3, 1], "k": "a"}
    assert not _close(batch, alone, 0.0, 0.0)
    assert _close(batch, alone, 0.0, 1e-12)
    assert _close(batch, alone, 1e-12, 0.0)
    assert not _close({**batch, "k": "b"}, alone, 1.0, 1.0)
    assert not _close({"p": [0.3]}, alone, 1.0, 1.0)
    assert not _close({"x": 1.0}, {"x": "1.0"}, 1.0, 1.0)


def test_the_fixture_factory_starts_and_closes_clients(
    modelserve_client: ClientFactory,
) -> None:
    first, second = modelserve_client(Thermometer), modelserve_client(Crowd)
    assert first.predict(READINGS[0]).ok
    assert second.predict(READINGS[0]).json() == {"seen": 1}


def test_invalid_inputs_never_reach_the_model(modelserve_client: ClientFactory) -> None:
    client = modelserve_client(Thermometer)
    assert_refuses_invalid_inputs(client)
    assert all(record.model is None for record in client.records)


def test_check_service_reports_every_check() -> None:
    report = check_service(Thermometer, rounds=2)
    assert report.passed, report.checks
    assert set(report.checks) == {
        "sample inputs",
        "sample prediction",
        "batch invariance",
        "invalid inputs refused",
    }
    assert report.sample_input in sample_inputs(ServiceSpec.from_class(Thermometer), 8)
    assert set(report.sample_output) == {"fahrenheit", "label"}
    assert set(report.item_latency_s) == {1, 8}
    assert all(seconds > 0 for seconds in report.item_latency_s.values())
    assert report.input_schema["required"] == ["celsius", "label"]


def test_check_service_names_what_failed() -> None:
    report = check_service(Crowd, rounds=1)
    assert not report.passed
    assert report.checks["batch invariance"] is not None
    assert report.checks["sample prediction"] is None


def test_the_cli_prints_a_report_and_exits_by_the_outcome() -> None:
    runner = CliRunner()
    good = runner.invoke(app, ["check", f"{SERVICES}:Thermometer"])
    assert good.exit_code == 0, good.output
    for expected in ("thermometer version 1", "celsius: number", "per item at batch 8", "ok"):
        assert expected in good.output
    bad = runner.invoke(app, ["check", f"{SERVICES}:Crowd", "--json"])
    assert bad.exit_code == 1
    [report] = json.loads(bad.output)
    assert report["name"] == "crowd" and report["passed"] is False
    assert report["checks"]["batch invariance"].startswith("item 0")
    missing = runner.invoke(app, ["check", "no/such/file.py"])
    assert missing.exit_code == 2
