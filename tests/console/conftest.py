"""Fixtures of the console tests: an in-process app with the console, per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.console.services import Scaler, Sizer
from tests.console.support import ConsoleClient, console_app, console_settings


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleClient]:
    """One app for a module; each test signs in its own users (cookies: clear them)."""
    settings = console_settings(tmp_path_factory.mktemp("console"))
    with console_app(settings, [Scaler, Sizer]) as running:
        yield running


@pytest.fixture
def fresh(console: ConsoleClient) -> ConsoleClient:
    """The module's app with a cookie jar emptied for this test."""
    console.client.cookies.clear()
    return console
