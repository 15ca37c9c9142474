"""Fault-suite hooks: mark every test `faults` and print the scenario table at the end."""

from __future__ import annotations

import pytest

# The e2e hook that attaches a failing test's server output to its report.
from tests.e2e.conftest import pytest_runtest_makereport  # noqa: F401
from tests.faults import outcomes


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not outcomes.RESULTS:
        return
    scale = "full (make faults)" if outcomes.FULL else "CI subset"
    terminalreporter.section(f"fault scenarios, {scale}")
    terminalreporter.write_line(outcomes.render())
    written = outcomes.write_table()
    if written is not None:
        terminalreporter.write_line(f"table written to {written}")
