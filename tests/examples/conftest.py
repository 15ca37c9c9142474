"""Fixtures for the example tests (shared with the README test through tests.support.examples)."""

from tests.support.examples import example, kit, serve

__all__ = ["example", "kit", "serve"]
