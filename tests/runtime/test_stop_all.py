"""Stopping replicas at shutdown: all at once, within one budget (R1 with busy replicas)."""

from __future__ import annotations

import threading

from modelserve.runtime.loading import stop_all as _stop_all


class Busy:
    """A replica whose stop waits for its batch: here, until its sibling is being stopped too."""

    def __init__(self, sibling_stopping: threading.Event, own: threading.Event) -> None:
        self.sibling_stopping = sibling_stopping
        self.own = own
        self.saw_sibling = False

    def stop(self, timeout_s: float = 5.0) -> None:
        self.own.set()
        self.saw_sibling = self.sibling_stopping.wait(timeout_s)


def test_replicas_are_stopped_together_not_one_after_another() -> None:
    # One after another, the first busy replica's stop used up its whole timeout before the
    # second was even asked; two busy replicas then cost twice the timeout.
    a_stopping, b_stopping = threading.Event(), threading.Event()
    a, b = Busy(b_stopping, a_stopping), Busy(a_stopping, b_stopping)
    _stop_all([a, b], 5.0)  # type: ignore[list-item]
    assert a.saw_sibling
    assert b.saw_sibling


def test_a_replica_whose_stop_fails_does_not_stop_the_others() -> None:
    stopped: list[str] = []

    class Broken:
        def stop(self, timeout_s: float = 5.0) -> None:
            raise RuntimeError("teardown failed")

    class Fine:
        def stop(self, timeout_s: float = 5.0) -> None:
            stopped.append("fine")

    _stop_all([Broken(), Fine()], 1.0)  # type: ignore[list-item]
    assert stopped == ["fine"]
