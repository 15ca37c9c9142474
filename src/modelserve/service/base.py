"""`Service`: the class a model author writes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel

from modelserve.service.batching import BatchingConfig, batching
from modelserve.service.caching import CachePolicy
from modelserve.types import Isolation

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)

# Which OpenAI-compatible routes serve a model (docs/protocols.md): "embeddings" for
# POST /v1/embeddings, "completions" for /v1/chat/completions and /v1/completions.
OpenAIKind = Literal["embeddings", "completions"]


class ItemError:
    """Returned by `predict` in place of one output to reject just that item.

    The other items of the batch are answered normally; the client of this item gets a 422
    with `code` and `message`. Never put secrets in the message: it reaches the client.
    """

    __slots__ = ("code", "details", "message")

    def __init__(self, message: str, *, code: str = "item_rejected", details: Any = None) -> None:
        self.message = message
        self.code = code
        self.details = details

    def __repr__(self) -> str:
        return f"ItemError({self.message!r}, code={self.code!r})"


class Service(Generic[In, Out]):
    """Base class of a served model: subclass as `Service[Input, Output]`.

    Class attributes configure serving; `setup` loads the model once per replica and
    `predict` maps a batch of inputs to the same number of outputs, in order.

        class Iris(Service[Flower, Species]):
            name = "iris"
            batching = batching(max_batch_size=32, max_wait_ms=2)

            def setup(self, device: str) -> None:
                self.model = train_or_load()

            def predict(self, batch: list[Flower]) -> list[Species]:
                ...

    `predict` may also be `async def`; it still runs off the server's event loop.

    `isolation` says where `predict` runs: "thread" (default: a dedicated thread per replica),
    "process" (a worker process per replica, for GIL-bound Python models), or "inline" (on the
    server's event loop, with no thread hand-over: only for models that answer a batch in
    microseconds, such as small scikit-learn estimators or lookups; anything slower stalls
    every other request, and the server logs a warning when a batch takes over 5 ms).

    One bad input must not fail its batch-mates, who may be other clients' requests. Return
    `ItemError(...)` for an input you can reject; when `predict` raises for a batch of several
    inputs instead, the server runs the batch again split in halves (and failing halves again),
    so that only the inputs that make it raise fail (500 `prediction_failed`) and the others get
    their outputs. That costs at most 2*ceil(log2(n)) extra calls for a batch of n, plus one call
    per input of a part still failing when those are spent (counted by the metric
    `modelserve_batch_isolation_reruns_total`). Set `isolate_failures = False` when `predict`
    is not safe to call again on the same inputs (it writes somewhere, or charges for each
    call): the whole batch then fails.
    `predict` must return a list (or another iterable) of outputs: anything else, `None`
    included, fails the batch with 500 `invalid_model_output`.

    `predict_stream(item)`, when defined, answers one input in chunks (tokens of generated
    text, partial results): a generator (`def`, run on a thread of its own per stream, so it
    must be safe next to `predict` on the replica's thread) or an async generator (`async
    def`, run on the event loop: it must await, never compute). Each chunk is a `str`, a
    pydantic model or JSON-ready data. The server asks for the next chunk only once the
    previous one is written, so a slow reader pauses the generator, and a client that goes
    away closes it at its next `yield` (its `finally` blocks run). At most `max_streams`
    streams per replica run at once; more are answered 503 with Retry-After. Not available
    with `isolation = "process"`. See docs/protocols.md.

    `openai` marks a model for the OpenAI-compatible routes: "embeddings" (input: one
    required `str` field; output: one `list[float]` field) or "completions" (input: a `prompt`
    str field, and optionally `max_tokens`, `temperature`, `top_p`, `stop`; `predict_stream`
    yields text).
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    batching: ClassVar[BatchingConfig] = batching()
    replicas: ClassVar[int] = 1
    isolation: ClassVar[Isolation] = "thread"
    # Re-run a batch whose predict raised in parts, so only the failing inputs fail (above).
    isolate_failures: ClassVar[bool] = True
    # None: take the server's configured device.
    device: ClassVar[str | None] = None
    # The OpenAI-compatible routes that serve this model, if any (see above).
    openai: ClassVar[OpenAIKind | None] = None
    # Streams (`predict_stream`) running at once per replica; past it, 503 + Retry-After.
    max_streams: ClassVar[int] = 4
    # Reuse answers for repeated inputs (`cache_policy(...)`, docs/cache.md); None: never.
    cache: ClassVar[CachePolicy | None] = None
    # Set on the instance before `setup`: the folder of this version's files when served from
    # the model registry, else None.
    artifacts: Path | None = None

    def setup(self, device: str) -> None:
        """Load weights and warm up. Runs once per replica, off the event loop."""

    def predict(self, batch: list[In]) -> Sequence[Out | ItemError]:
        """Return one output (or ItemError) per input, in the same order."""
        raise NotImplementedError(f"{type(self).__name__}.predict is not implemented")

    def predict_stream(self, item: In) -> Iterator[Any] | AsyncIterator[Any]:
        """Optional: the answer to one input as chunks (a generator or an async generator)."""
        raise NotImplementedError(f"{type(self).__name__}.predict_stream is not implemented")

    def teardown(self) -> None:
        """Release resources when the server stops."""


def load_service(
    service_cls: type[Service[Any, Any]], *, device: str, artifacts: Path | None = None
) -> Service[Any, Any]:
    """A new instance with its registry files, after `setup(device)` on the calling thread.

    The one way every replica kind (thread, inline, process) brings a service up.
    """
    service = service_cls()
    service.artifacts = artifacts
    service.setup(device)
    return service


def as_outputs(value: Any) -> Any:
    """What `predict` returned, as a list when it is iterable (a tuple, a generator); anything
    else (None, a number) unchanged, so that the batching engine reports it as
    `invalid_model_output` rather than as the TypeError that `list(None)` raises."""
    if isinstance(value, list):
        return value
    try:
        iterator = iter(value)
    except TypeError:
        return value
    return list(iterator)
