"""What `ServiceSpec.from_class` accepts of streaming and OpenAI-marked services, and the
`ChunkStream` contract in-process: one chunk made per chunk asked, closed on cancel."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import BaseModel

from modelserve import Service, ServiceDefinitionError, ServiceSpec
from modelserve.errors import PredictionError
from modelserve.runtime.streaming import END, IDLE, ChunkStream


class Text(BaseModel):
    text: str


class Vector(BaseModel):
    embedding: list[float]
    dim: int


class Prompt(BaseModel):
    prompt: str
    max_tokens: int = 16


class Plain(Service[Text, Text]):
    name = "plain"

    def predict(self, batch: list[Text]) -> list[Text]:
        return batch


class Streaming(Plain):
    name = "streaming"

    def predict_stream(self, item: Text) -> Iterator[str]:
        yield from item.text


def test_streams_are_detected_sync_and_async() -> None:
    assert not ServiceSpec.from_class(Plain).streams
    spec = ServiceSpec.from_class(Streaming)
    assert spec.streams
    assert not spec.stream_is_async

    class Async(Plain):
        name = "async"

        async def predict_stream(self, item: Text) -> AsyncIterator[str]:
            yield item.text

    assert ServiceSpec.from_class(Async).stream_is_async


def test_process_isolation_cannot_stream() -> None:
    class Isolated(Streaming):
        isolation = "process"

    with pytest.raises(ServiceDefinitionError, match="isolation='thread'"):
        ServiceSpec.from_class(Isolated)


@pytest.mark.parametrize("bad", [0, -1, 10_000, "4"])
def test_max_streams_is_bounded(bad: object) -> None:
    class Capped(Streaming):
        max_streams = bad  # type: ignore[assignment]

    with pytest.raises(ServiceDefinitionError, match="max_streams"):
        ServiceSpec.from_class(Capped)


def test_openai_markers_are_checked_against_the_types() -> None:
    class Embeds(Service[Text, Vector]):
        name = "embeds"
        openai = "embeddings"

        def predict(self, batch: list[Text]) -> list[Vector]:
            return []

    assert ServiceSpec.from_class(Embeds).openai == "embeddings"

    class NoVector(Plain):
        openai = "embeddings"

    with pytest.raises(ServiceDefinitionError, match="list\\[float\\]"):
        ServiceSpec.from_class(NoVector)

    class Silent(Service[Prompt, Text]):
        name = "silent"
        openai = "completions"

        def predict(self, batch: list[Prompt]) -> list[Text]:
            return []

    with pytest.raises(ServiceDefinitionError, match="predict_stream"):
        ServiceSpec.from_class(Silent)

    class NoPrompt(Streaming):
        openai = "completions"

    with pytest.raises(ServiceDefinitionError, match="prompt"):
        ServiceSpec.from_class(NoPrompt)

    class Unknown(Plain):
        openai = "images"  # type: ignore[assignment]

    with pytest.raises(ServiceDefinitionError, match="openai must be"):
        ServiceSpec.from_class(Unknown)


class Counter:
    """A service stand-in whose generator counts what it made and notes when it closed."""

    def __init__(self) -> None:
        self.made = 0
        self.closed = threading.Event()

    def predict_stream(self, item: int) -> Iterator[int]:
        try:
            for index in range(item):
                self.made += 1
                yield index
        finally:
            self.closed.set()

    def failing(self, item: int) -> Iterator[int]:
        yield 1
        raise RuntimeError("internal detail")


def test_a_chunk_is_made_only_when_asked_and_cancel_closes_the_generator() -> None:
    async def scenario() -> None:
        service = Counter()
        stream = ChunkStream(service, 1000, is_async=False, label="t")
        await asyncio.sleep(0.05)
        assert service.made == 0  # nothing asked yet
        assert await stream.next(5) == 0
        assert await stream.next(5) == 1
        await asyncio.sleep(0.05)
        assert service.made == 2  # not one ahead of the reader
        stream.cancel()
        assert await asyncio.to_thread(service.closed.wait, 5)
        assert service.made == 2
        assert await stream.next(5) is END

    asyncio.run(scenario())


def test_a_failing_generator_raises_a_prediction_error_without_its_text() -> None:
    async def scenario() -> None:
        service = Counter()
        service.predict_stream = service.failing  # type: ignore[method-assign]
        stream = ChunkStream(service, 3, is_async=False, label="t")
        assert await stream.next(5) == 1
        with pytest.raises(PredictionError) as info:
            await stream.next(5)
        assert "internal detail" not in str(info.value)
        assert await stream.next(5) is END

    asyncio.run(scenario())


def test_an_async_generator_is_pulled_the_same_way() -> None:
    made: list[int] = []

    class Async:
        async def predict_stream(self, item: int) -> AsyncIterator[int]:
            for index in range(item):
                made.append(index)
                yield index

    async def scenario() -> None:
        stream = ChunkStream(Async(), 100, is_async=True, label="t")
        assert await stream.next(5) == 0
        await asyncio.sleep(0.01)
        assert made == [0]
        assert await stream.next(0.01) == 1
        stream.cancel()
        await asyncio.sleep(0.01)
        assert made == [0, 1]

    asyncio.run(scenario())


def test_next_reports_idle_and_keeps_the_request() -> None:
    class Slow:
        def predict_stream(self, item: float) -> Iterator[str]:
            threading.Event().wait(item)
            yield "late"

    async def scenario() -> None:
        stream = ChunkStream(Slow(), 0.3, is_async=False, label="t")
        assert await stream.next(0.01) is IDLE
        assert await stream.next(5) == "late"
        assert await stream.next(5) is END

    asyncio.run(scenario())
