from __future__ import annotations

import itertools
from collections import Counter

import pytest

from modelserve.errors import ConfigError
from modelserve.runtime.shadow import compare
from modelserve.runtime.traffic import Router, TrafficPolicy


def test_primary_only() -> None:
    router = Router(TrafficPolicy(primary="1"))
    assert {router.pick() for _ in range(50)} == {"1"}
    assert router.mirror() is None


def test_canary_share_follows_the_draws() -> None:
    draws = itertools.cycle(i / 100 for i in range(100))
    router = Router(TrafficPolicy(primary="1", canary=(("2", 10.0),)), rng=lambda: next(draws))
    counts = Counter(router.pick() for _ in range(1000))
    assert counts == {"1": 900, "2": 100}


def test_sticky_canary_keeps_each_caller_on_one_side() -> None:
    router = Router(TrafficPolicy(primary="1", canary=(("2", 30.0),), sticky=True))
    for key in (f"key-{i}" for i in range(200)):
        assert len({router.pick(key) for _ in range(5)}) == 1
    share = sum(router.pick(f"key-{i}") == "2" for i in range(4000)) / 4000
    assert 0.25 < share < 0.35


def test_shadow_sampling() -> None:
    draws = itertools.cycle([0.01, 0.5, 0.99])
    router = Router(
        TrafficPolicy(primary="1", shadow="2", shadow_percent=40), rng=lambda: next(draws)
    )
    assert [router.mirror() for _ in range(3)] == ["2", None, None]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"primary": "1", "canary": (("2", 101.0),)},
        {"primary": "1", "canary": (("2", -1.0),)},
        {"primary": "1", "canary": (("2", 60.0), ("3", 50.0))},
        {"primary": "1", "canary": (("1", 10.0),)},
        {"primary": "1", "shadow": "1", "shadow_percent": 10},
        {"primary": "1", "shadow": "2", "shadow_percent": 120},
        {"primary": "1", "canary": (("2", float("nan")),)},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TrafficPolicy(**kwargs)  # type: ignore[arg-type]


def test_compare_reports_numeric_distance() -> None:
    assert compare({"y": [1.0, 2.0]}, {"y": [1.0, 2.5]}) == (False, 0.5)
    assert compare({"label": "a"}, {"label": "a"}) == (True, None)
    assert compare({"label": "a"}, {"label": "b"}) == (False, None)
