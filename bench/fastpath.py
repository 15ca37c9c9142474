"""In-process CPU per request of the protocol's task-free predict path, before/after a change.

No sockets and no load generator: W1's service (inline, batching 64 / 0 ms) behind `create_app`
with metrics and the JSON access log on (auth off: it needs a database), and
`ModelserveApp.serve_now` called in a loop on a running event loop, as the protocol calls it.
It measures process CPU time, which other work on a shared machine disturbs far less than
wall-clock throughput under wrk: the figure for "what our own Python costs per request".

    python -m bench.fastpath                                   # this checkout
    python -m bench.fastpath --tree before=/tmp/wt-before --tree after=.   # alternating

Each tree runs in its own process (`PATH/src` first on PYTHONPATH), `--pairs` times,
alternating; a run's figure is the median of its rounds, a tree's the median of its runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"x": [0.1, 0.2, 0.3, 0.4]}'
MARK = "FASTPATH"


async def measure(requests: int, rounds: int) -> list[float]:
    """Microseconds of process CPU per request, one figure per round."""
    from bench.servers.modelserve_app import TinyService
    from modelserve import Settings
    from modelserve.config import AuthConfig
    from modelserve.http.assembly import create_app
    from modelserve.observability.logging import configure_logging

    configure_logging(fmt="json", level="info")
    app = create_app(Settings(auth=AuthConfig(enabled=False)), [TinyService])
    runtime = app.state.runtime
    runtime.start()
    await runtime.wait_loaded()
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/models/tiny/predict",
        "headers": headers,
        "query_string": b"",
    }
    route = app.wants_now(scope)
    assert route is not None, "the task-free path is off"
    answered: list[int] = []

    def respond(status: int, _headers: object, _body: bytes) -> None:
        answered.append(status)

    figures = []
    for _ in range(rounds):
        answered.clear()
        started = time.process_time()
        for i in range(requests):
            app.serve_now(scope, route, BODY, respond)
            if i % 16 == 15:  # let the loop run, as between a socket's reads
                await asyncio.sleep(0)
        # Requests that queued behind a busy replica are answered on the next loop passes.
        while len(answered) < requests:  # noqa: ASYNC110 - no event: it would cost per request
            await asyncio.sleep(0)
        figures.append((time.process_time() - started) / requests * 1e6)
        assert answered.count(200) == requests, answered[:3]
    await runtime.stop(0.1, 0.5)
    return figures


def run_tree(src: Path | None, requests: int, rounds: int) -> float:
    """The median of one process's rounds, for the modelserve of `src` (None: this checkout)."""
    env = dict(os.environ)
    paths = [str(ROOT)] + ([str((src / "src").resolve())] if src is not None else [])
    env["PYTHONPATH"] = os.pathsep.join([*reversed(paths), env.get("PYTHONPATH", "")])
    code = (
        "import asyncio, json, sys; from bench.fastpath import measure; "
        f"print({MARK!r}, json.dumps(asyncio.run(measure({requests}, {rounds}))),"
        " file=sys.__stderr__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,  # the access log
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    # Log lines share stderr with the figures: find them by their mark.
    line = next(line for line in done.stderr.splitlines() if line.startswith(MARK))
    figures: list[float] = json.loads(line.removeprefix(MARK))
    return statistics.median(figures)


def main(argv: list[str] | None = None) -> int:
    """Alternate the trees, print each run and each tree's median."""
    p = argparse.ArgumentParser(prog="python -m bench.fastpath", description=__doc__)
    p.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--pairs", type=int, default=5, help="runs per tree, alternating")
    p.add_argument("--requests", type=int, default=20000, help="requests per round")
    p.add_argument("--rounds", type=int, default=7, help="rounds per run")
    args = p.parse_args(argv)
    trees: list[tuple[str, Path | None]] = [
        (name, Path(path)) for name, _, path in (item.partition("=") for item in args.tree)
    ] or [("this checkout", None)]
    runs: dict[str, list[float]] = {name: [] for name, _ in trees}
    for _ in range(args.pairs):
        for name, src in trees:
            runs[name].append(run_tree(src, args.requests, args.rounds))
            print(f"{name}: {runs[name][-1]:.2f} us/request", flush=True)
    print(f"load average {[round(x, 2) for x in os.getloadavg()]}")
    for name, figures in runs.items():
        print(f"{name}: median {statistics.median(figures):.2f} us/request over {figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
