"""Open-loop load for the cluster scenarios: R requests per second whatever the answers do.

A closed loop (send, wait, send) slows down when the cluster does and so hides lost
requests; here each request leaves on its own schedule. Each outcome records when it was sent
and answered (time.monotonic() and the wall clock, to match nginx's access log), its status
(or the transport error) and its request id, so a lost request can be found in nginx's log.
Bounded in count and time: `duration_s * rate` requests at most, each with a timeout.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Outcome:
    request_id: str
    sent: float  # time.monotonic()
    sent_wall: float  # time.time(), comparable with nginx's $msec
    done: float
    status: int  # 0: no HTTP answer
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class OpenLoop:
    """Send POST `path` with `body` at `rate` per second until stopped or `max_s` passed."""

    base_url: str
    path: str
    body: bytes
    headers: dict[str, str]
    rate: float = 100.0
    max_s: float = 120.0
    timeout_s: float = 30.0
    # False: a new connection per request. An nginx reload closes the old workers' idle
    # client connections at once, and a request written on one at that instant is lost
    # between the client and nginx, whatever the replicas do.
    keepalive: bool = True
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> OpenLoop:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Outcome]:
        """Stop sending, wait for the answers still due, return every outcome by send time."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join(self.timeout_s + 10)
        return sorted(self.outcomes, key=lambda o: o.sent)

    async def _run(self) -> None:
        limits = httpx.Limits(
            max_connections=200, max_keepalive_connections=50 if self.keepalive else 0
        )
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=self.timeout_s, limits=limits
        ) as client:
            tasks: set[asyncio.Task[None]] = set()
            interval = 1.0 / self.rate
            start = time.monotonic()
            n = 0
            while not self._stop.is_set() and time.monotonic() - start < self.max_s:
                due = start + n * interval
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._one(client))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            if tasks:
                await asyncio.wait(tasks)

    async def _one(self, client: httpx.AsyncClient) -> None:
        request_id = uuid.uuid4().hex
        headers = {**self.headers, "x-request-id": request_id, "content-type": "application/json"}
        sent, sent_wall = time.monotonic(), time.time()
        try:
            response = await client.post(self.path, content=self.body, headers=headers)
            status, error = response.status_code, ""
        except httpx.HTTPError as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"
        self.outcomes.append(Outcome(request_id, sent, sent_wall, time.monotonic(), status, error))


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    """Count of outcomes by status (0 = transport error)."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        key = str(outcome.status)
        counts[key] = counts.get(key, 0) + 1
    return counts
