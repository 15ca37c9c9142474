"""The registry tests' app factory, for the version-safety tests."""

from tests.registry.conftest import registry_app

__all__ = ["registry_app"]
