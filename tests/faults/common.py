"""Tools shared by the fault scenarios: servers, timed clients and percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.e2e.probes import percentile
from tests.e2e.server import ServerProcess, launch

SERVICES = Path(__file__).with_name("services.py")

__all__ = ["SERVICES", "Probe", "ServerProcess", "percentile", "serve", "steady_load"]


@contextlib.contextmanager
def serve(
    tmp: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    graceful_timeout_s: float = 10.0,
) -> Iterator[ServerProcess]:
    """A real `modelserve serve tests/faults/services.py` (auth off unless `env` turns it on)."""
    with launch(
        tmp, target=SERVICES, env=env, args=args, graceful_timeout_s=graceful_timeout_s
    ) as server:
        yield server


@dataclass
class Probe:
    """What a steady client saw: latencies of successes, and every failure by kind."""

    latencies_s: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return len(self.latencies_s) + self.failed

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1

    def p99_ms(self) -> float:
        return percentile(self.latencies_s, 99) * 1000 if self.latencies_s else float("nan")


async def steady_load(
    base_url: str,
    *,
    path: str,
    body: dict[str, object] | None,
    rate_per_s: float,
    duration_s: float,
    timeout_s: float = 5.0,
    expect: int = 200,
) -> Probe:
    """Send one request every 1/rate seconds for `duration_s` (GET when `body` is None),
    each on a fresh connection so that a closed or refused socket shows as a failure."""
    probe = Probe()
    interval = 1.0 / rate_per_s

    async def one(client: httpx.AsyncClient) -> None:
        started = time.perf_counter()
        try:
            if body is None:
                response = await client.get(path)
            else:
                response = await client.post(path, json=body)
        except httpx.HTTPError as exc:
            probe.fail(type(exc).__name__)
            return
        if response.status_code == expect:
            probe.latencies_s.append(time.perf_counter() - started)
        else:
            probe.fail(str(response.status_code))

    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:
        tasks = []
        start = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) - start < duration_s:
            tasks.append(asyncio.create_task(one(client)))
            n += 1
            await asyncio.sleep(max(0.0, start + n * interval - now))
        await asyncio.gather(*tasks)
    return probe
