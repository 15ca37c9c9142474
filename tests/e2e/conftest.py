"""End-to-end fixtures: every test here talks to a real `modelserve serve` process.

Each module starts its own server through `tests.e2e.server.launch` in a module-scoped fixture.
When a test that used a server fails, that server's output is attached to the failure report.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.e2e.server import STDERR_TAIL_CHARS, ServerProcess


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the output of every server a failed test used to its report."""
    report = yield
    if report.failed:
        # funcargs holds every fixture of the test, those it needed indirectly included.
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, ServerProcess):
                text = value.stderr_text()[-STDERR_TAIL_CHARS:]
                report.sections.append((f"modelserve server output ({name})", text))
    return report
