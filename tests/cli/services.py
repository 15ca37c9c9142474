"""Services served by the CLI tests through `python -m modelserve serve tests/cli/services.py`."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel

from modelserve import Service, batching


class Text(BaseModel):
    text: str


class Echoed(BaseModel):
    text: str
    # Which server process answered: lets `--workers` tests see every worker.
    pid: int


class Echo(Service[Text, Echoed]):
    """Returns its input and the answering process id."""

    name = "echo"
    version = "3"

    def predict(self, batch: list[Text]) -> list[Echoed]:
        return [Echoed(text=item.text, pid=os.getpid()) for item in batch]


class Number(BaseModel):
    value: int


class Doubled(BaseModel):
    value: int


class Slow(Service[Number, Doubled]):
    """Sleeps a second per batch; a batch waits for up to 20 requests, so the drain test's
    requests are all in flight in one model call when SIGTERM arrives."""

    name = "slow"
    batching = batching(max_batch_size=20, max_wait_ms=2000)

    def predict(self, batch: list[Number]) -> list[Doubled]:
        time.sleep(1.0)
        return [Doubled(value=item.value * 2) for item in batch]
