"""Shared test configuration: markers and the in-process app factory."""

from __future__ import annotations

import os

# Model libraries must never reach out to a hub from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
