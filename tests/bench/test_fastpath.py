"""bench.fastpath: the in-process cost of the task-free predict path runs and is positive."""

from __future__ import annotations

import asyncio

from bench.fastpath import measure


def test_measure_answers_every_request_and_gives_a_figure_per_round() -> None:
    figures = asyncio.run(measure(200, 2))
    assert len(figures) == 2
    assert all(figure > 0 for figure in figures)
