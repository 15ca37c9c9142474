"""Services served with isolation="process" by tests/runtime/test_process.py.

Loaded by path (`load_target`), so each worker process imports this file again by itself.
Magic inputs make a worker misbehave on purpose: "raise", "exit", "segfault", "sleep",
"fork-exit", "reject", "bad-output", "miscount", "huge-output"; "artifacts" echoes
`self.artifacts`.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from pathlib import Path

from pydantic import BaseModel

from modelserve import ItemError, Service, batching

# Set by a test before a worker starts; spawned workers inherit the environment.
MARK_DIR_ENV = "MODELSERVE_TEST_MARK_DIR"
HANG_TEARDOWN_ENV = "MODELSERVE_TEST_HANG_TEARDOWN"
# A file of this name in the mark dir makes Echo.setup fail.
FAIL_SETUP_FLAG = "fail-setup"


def mark_teardown() -> None:
    """Leave a file behind (proof that teardown ran), then hang if the test asks for it."""
    mark_dir = os.environ.get(MARK_DIR_ENV)
    if mark_dir:
        Path(mark_dir, f"teardown-{os.getpid()}").write_text("done")
    if os.environ.get(HANG_TEARDOWN_ENV):
        time.sleep(60)


def _fork_a_lingering_child() -> None:
    """A grandchild that keeps the worker's pipe open after the worker is gone."""
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    mark_dir = os.environ.get(MARK_DIR_ENV)
    if mark_dir:
        Path(mark_dir, "grandchild").write_text(str(pid))


class Text(BaseModel):
    text: str
    number: int = 0


class Shout(BaseModel):
    text: str
    pid: int


class Echo(Service[Text, Shout]):
    """Upper-cases text; misbehaves on the magic inputs listed in the module docstring."""

    name = "proc-echo"
    isolation = "process"
    batching = batching(max_batch_size=8, max_wait_ms=5)

    def predict(self, batch: list[Text]) -> list[Shout | ItemError]:
        texts = [item.text for item in batch]
        if "exit" in texts:
            os._exit(1)
        if "segfault" in texts:
            ctypes.string_at(0)  # reads address 0: SIGSEGV
        if "sleep" in texts:
            time.sleep(60)
        if "fork-exit" in texts:
            _fork_a_lingering_child()
            os._exit(1)
        if "raise" in texts:
            raise RuntimeError("SECRET-MODEL-DETAIL exploded")
        outputs: list[Shout | ItemError] = []
        for item in batch:
            if item.text == "reject":
                outputs.append(ItemError("no thanks", code="rejected_here", details={"n": 1}))
            elif item.text == "bad-output":
                outputs.append({"text": ["not", "a", "string"]})  # type: ignore[arg-type]
            elif item.text == "artifacts":
                outputs.append(Shout(text=str(self.artifacts), pid=os.getpid()))
            elif item.text == "huge-output":
                outputs.append({"text": "x", "pid": 2**70})  # type: ignore[arg-type]
            else:
                outputs.append(
                    Shout(text=item.text.upper() + str(item.number or ""), pid=os.getpid())
                )
        if "miscount" in texts:
            return outputs[:-1]
        return outputs

    def setup(self, device: str) -> None:
        mark_dir = os.environ.get(MARK_DIR_ENV)
        if mark_dir and Path(mark_dir, FAIL_SETUP_FLAG).exists():
            raise RuntimeError("setup refused by the test's flag file")
        self.device = device

    def teardown(self) -> None:
        mark_teardown()


class AsyncEcho(Service[Text, Shout]):
    """Async predict in a worker process."""

    name = "proc-async"
    isolation = "process"

    async def predict(self, batch: list[Text]) -> list[Shout]:
        await asyncio.sleep(0)
        return [Shout(text=item.text[::-1], pid=os.getpid()) for item in batch]


class Nap(BaseModel):
    seconds: float


class Span(BaseModel):
    pid: int
    started: float
    finished: float


class Sleeper(Service[Nap, Span]):
    """Two replicas, one item per batch: records where and when each batch ran."""

    name = "proc-sleeper"
    isolation = "process"
    replicas = 2

    def predict(self, batch: list[Nap]) -> list[Span]:
        started = time.time()
        time.sleep(batch[0].seconds)
        return [Span(pid=os.getpid(), started=started, finished=time.time()) for _ in batch]

    def teardown(self) -> None:
        mark_teardown()


class Broken(Service[Text, Shout]):
    """Its setup always fails."""

    name = "proc-broken"
    isolation = "process"

    def setup(self, device: str) -> None:
        raise RuntimeError("weights file is missing")

    def predict(self, batch: list[Text]) -> list[Shout]:
        raise AssertionError("never called")
