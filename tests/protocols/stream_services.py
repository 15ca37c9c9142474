"""Streaming services for tests/protocols/test_stream*.py, served by a real `modelserve serve`.

`Ticks` writes how many chunks its generator has made, and whether it was closed, to the file
named by `$STREAM_TEST_STATE` (`<request tag> <count> <closed>` per line), so a test in another
process sees exactly when generation pauses or stops.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from pydantic import BaseModel, Field

from modelserve import Service


class TickRequest(BaseModel):
    """How many chunks, how big, how far apart; `tag` names the request in the state file."""

    tag: str = Field(default="t", max_length=32, pattern=r"^[a-z0-9-]+$")
    count: int = Field(default=5, ge=0, le=1_000_000)
    size: int = Field(default=1, ge=1, le=1_000_000)
    every_s: float = Field(default=0.0, ge=0, le=10)
    fail_after: int | None = Field(default=None, ge=0)


class Tick(BaseModel):
    """One chunk."""

    index: int
    pad: str


def _record(tag: str, produced: int, closed: bool) -> None:
    path = os.environ.get("STREAM_TEST_STATE")
    if path:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(f"{tag} {produced} {int(closed)}\n")


class Ticks(Service[TickRequest, Tick]):
    """Counts; `predict_stream` yields `count` chunks of `size` characters."""

    name = "ticks"
    max_streams = 3

    def predict(self, batch: list[TickRequest]) -> list[Tick]:
        return [Tick(index=item.count, pad="") for item in batch]

    def predict_stream(self, item: TickRequest) -> Iterator[Tick]:
        produced = 0
        try:
            for index in range(item.count):
                if item.fail_after is not None and index >= item.fail_after:
                    raise RuntimeError("secret-internal-detail")
                if item.every_s:
                    time.sleep(item.every_s)
                produced += 1
                _record(item.tag, produced, False)
                yield Tick(index=index, pad="x" * item.size)
        finally:
            _record(item.tag, produced, True)


class Words(BaseModel):
    """A text to stream back word by word."""

    text: str = Field(min_length=1, max_length=1000)


class Word(BaseModel):
    """One word."""

    word: str


class Echo(Service[Words, Word]):
    """An async generator: the words of the input, one per chunk."""

    name = "echo"

    def predict(self, batch: list[Words]) -> list[Word]:
        return [Word(word=item.text) for item in batch]

    async def predict_stream(self, item: Words) -> AsyncIterator[object]:
        for word in item.text.split():
            await asyncio.sleep(0)
            yield object() if word == "!" else word  # "!": a chunk that is not JSON


class Plain(Service[Words, Word]):
    """No predict_stream: a stream asked of it is refused."""

    name = "plain"

    def predict(self, batch: list[Words]) -> list[Word]:
        return [Word(word=item.text) for item in batch]
