"""The model's own ceiling: the model alone in a tight loop at batch sizes 1, 2, 4, ... max.

Runs as its own process (`python -m bench.ceiling --workload w2`) so the model's threads and
memory are gone before any server is measured. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.models import W1_INPUT, W2_SENTENCE, MiniLM, TinyLinear, load


def batch_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to and including `max_batch`."""
    sizes = []
    size = 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch)
    return sizes


def measure(workload: str, max_batch: int, seconds: float) -> dict[str, Any]:
    """items/s per batch size, and the best one."""
    model = load(workload)

    def call(n: int) -> None:
        if isinstance(model, TinyLinear):
            model.predict([W1_INPUT] * n)
        else:
            assert isinstance(model, MiniLM)
            model.embed([W2_SENTENCE] * n)

    points = []
    for size in batch_sizes(max_batch):
        call(size)  # warm-up: first calls pay for allocation and kernel selection
        calls = 0
        started = time.perf_counter()
        elapsed = 0.0
        while calls < 3 or elapsed < seconds:
            call(size)
            calls += 1
            elapsed = time.perf_counter() - started
        points.append(
            {
                "batch": size,
                "items_per_s": size * calls / elapsed,
                "ms_per_batch": elapsed / calls * 1000,
            }
        )
    best = max(points, key=lambda p: p["items_per_s"])
    return {"workload": workload, "points": points, "best": best}


def main(argv: list[str] | None = None) -> int:
    """Print the ceiling of one workload as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", choices=["w1", "w2"], required=True)
    parser.add_argument("--max-batch", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per batch size")
    args = parser.parse_args(argv)
    json.dump(measure(args.workload, args.max_batch, args.seconds), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
