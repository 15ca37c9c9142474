"""The frames a server and its worker processes exchange, and how batches are encoded in them.

Every frame is one `Connection.send_bytes` carrying one msgpack map with an "op" key. Nothing is
pickled after a worker has started, so request data is never unpickled on either side.

    server -> worker    batch {items: [input as JSON-mode dict, ...]}  |  stop
    worker -> server    ready {pid}  |  setup_failed {error, traceback}          once, first
                        result {outputs, errors, returned}  |  failed {error, traceback}
                                                                           once per batch

`outputs` holds one JSON-mode dict per input, or null where `errors` has an entry for that
index: a tagged map, `{"index", "item_error": {code, message, details}}` for an ItemError or
`{"index", "invalid": reason}` for an output that is not (and cannot be made into) the Output
model. `returned` names the type predict returned when it was not iterable (no outputs then).
Whole batches are dumped and validated in one pydantic call each way; single items are looked
at only when that fails.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import msgpack
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from modelserve.service.base import ItemError

# What msgpack raises for values it cannot carry: ints beyond 64 bits, invalid UTF-8, deep nesting.
PACK_ERRORS = (ValueError, OverflowError, TypeError)

UNENCODABLE_INPUT = (
    "this input cannot be passed to the model's worker process"
    " (integers must fit in 64 bits, text must be valid UTF-8)"
)


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """Server -> worker: run predict on these inputs (JSON-mode dicts of the Input model)."""

    items: list[Any]


@dataclass(frozen=True, slots=True)
class StopRequest:
    """Server -> worker: finish, tear down and exit."""


@dataclass(frozen=True, slots=True)
class Ready:
    """Worker -> server: setup finished."""

    pid: int


@dataclass(frozen=True, slots=True)
class SetupFailed:
    """Worker -> server: importing the class or `setup` raised; the worker exits."""

    error: str
    traceback: str


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Worker -> server: one output per input, errors by index (see module docstring)."""

    outputs: list[Any]
    errors: list[dict[str, Any]] = field(default_factory=list)
    returned: str | None = None


@dataclass(frozen=True, slots=True)
class BatchFailed:
    """Worker -> server: predict raised; `traceback` is for the server log only."""

    error: str
    traceback: str


Message: TypeAlias = BatchRequest | StopRequest | Ready | SetupFailed | BatchResult | BatchFailed


def encode(message: Message) -> bytes:
    """One frame for `message`; raises one of PACK_ERRORS if msgpack cannot carry it."""
    if isinstance(message, BatchRequest):
        body: dict[str, Any] = {"op": "batch", "items": message.items}
    elif isinstance(message, BatchResult):
        body = {
            "op": "result",
            "outputs": message.outputs,
            "errors": message.errors,
            "returned": message.returned,
        }
    elif isinstance(message, StopRequest):
        body = {"op": "stop"}
    elif isinstance(message, Ready):
        body = {"op": "ready", "pid": message.pid}
    elif isinstance(message, SetupFailed):
        body = {"op": "setup_failed", "error": message.error, "traceback": message.traceback}
    else:
        body = {"op": "failed", "error": message.error, "traceback": message.traceback}
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


def decode(data: bytes) -> Message:
    """The message in one frame; raises ValueError for anything that is not one."""
    try:
        body = msgpack.unpackb(data, raw=False)
        op = body["op"]
        if op == "batch":
            return BatchRequest(items=body["items"])
        if op == "result":
            return BatchResult(body["outputs"], body["errors"], body["returned"])
        if op == "stop":
            return StopRequest()
        if op == "ready":
            return Ready(pid=body["pid"])
        if op == "setup_failed":
            return SetupFailed(error=body["error"], traceback=body["traceback"])
        if op == "failed":
            return BatchFailed(error=body["error"], traceback=body["traceback"])
    except Exception as exc:
        raise ValueError(f"not a worker frame: {type(exc).__name__}: {exc}") from None
    raise ValueError(f"not a worker frame: unknown op {op!r}")


# -- batches -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncodedInputs:
    """A batch frame, plus the inputs answered without the worker because msgpack refused them."""

    size: int
    payload: bytes
    rejected: dict[int, ItemError] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        """How many inputs the frame carries."""
        return self.size - len(self.rejected)


@dataclass(frozen=True, slots=True)
class InvalidOutput:
    """Stands in for one output the model got wrong; the engine's output check rejects it."""

    reason: str


class BatchCodec:
    """Encodes and decodes the batches of one service, on either side of the pipe."""

    def __init__(self, input_type: type[BaseModel], output_type: type[BaseModel]) -> None:
        self._inputs: TypeAdapter[list[Any]] = TypeAdapter(list[input_type])  # type: ignore[valid-type]
        self._outputs: TypeAdapter[list[Any]] = TypeAdapter(list[output_type])  # type: ignore[valid-type]
        self._output_type = output_type

    # server side

    def encode_inputs(self, items: list[Any]) -> EncodedInputs:
        """Frame validated inputs; one that cannot cross is rejected alone (422), not the batch."""
        wire: list[Any] = self._inputs.dump_python(items, mode="json")
        try:
            return EncodedInputs(len(wire), encode(BatchRequest(items=wire)))
        except PACK_ERRORS:
            pass
        rejected: dict[int, ItemError] = {}
        for index, value in enumerate(wire):
            try:
                msgpack.packb(value, use_bin_type=True)
            except PACK_ERRORS:
                rejected[index] = ItemError(UNENCODABLE_INPUT, code="invalid_input")
        kept = [value for index, value in enumerate(wire) if index not in rejected]
        return EncodedInputs(len(wire), encode(BatchRequest(items=kept)) if kept else b"", rejected)

    def decode_outputs(self, result: BatchResult, inputs: EncodedInputs) -> list[Any] | None:
        """One entry per input, in order: an Output, ItemError or InvalidOutput.

        None when the worker reported a different number of outputs than it was sent inputs.
        """
        if result.returned is not None or len(result.outputs) != inputs.sent:
            return None
        outputs: list[Any] = result.outputs
        if not result.errors:
            try:
                outputs = self._outputs.validate_python(outputs)
            except ValidationError:
                outputs = [self._output_of(value) for value in outputs]
        else:
            outputs = [self._output_of(value) for value in outputs]
            for entry in result.errors:
                index = entry.get("index")
                if isinstance(index, int) and 0 <= index < len(outputs):
                    outputs[index] = _error_of(entry)
        if not inputs.rejected:
            return outputs
        produced = iter(outputs)
        return [inputs.rejected.get(index) or next(produced) for index in range(inputs.size)]

    def _output_of(self, value: Any) -> Any:
        try:
            return self._output_type.model_validate(value)
        except ValidationError as exc:
            return InvalidOutput(str(exc))

    # worker side

    def decode_inputs(self, items: list[Any]) -> list[Any]:
        """The Input models predict receives, re-validated from their JSON-mode dicts."""
        return self._inputs.validate_python(items)

    def encode_result(self, outputs: list[Any]) -> bytes:
        """The result frame for what predict returned (one value per input)."""
        output_type = self._output_type
        if all(isinstance(output, output_type) for output in outputs):
            # Failing that, the loop below finds the culprits one by one.
            with contextlib.suppress(Exception):
                return encode(BatchResult(self._outputs.dump_python(outputs, mode="json")))
        wire: list[Any] = []
        errors: list[dict[str, Any]] = []
        for index, output in enumerate(outputs):
            value, error = _encode_output(output, output_type)
            wire.append(value)
            if error is not None:
                errors.append({"index": index, **error})
        return encode(BatchResult(wire, errors))


def _encode_output(output: Any, output_type: type[BaseModel]) -> tuple[Any, dict[str, Any] | None]:
    """(JSON-mode dict, None) for a good output, else (None, the tagged error entry)."""
    try:
        if isinstance(output, ItemError):
            details = to_jsonable_python(output.details, fallback=repr)
            error = {"code": str(output.code), "message": str(output.message), "details": details}
            _check_packable(error)
            return None, {"item_error": error}
        if not isinstance(output, output_type):
            # Same leniency as thread replicas: a dict that validates is accepted.
            output = output_type.model_validate(output)
        value = output.model_dump(mode="json")
        _check_packable(value)
        return value, None
    except Exception as exc:
        return None, {"invalid": safe_text(f"{type(exc).__name__}: {exc}")}


def safe_text(text: str) -> str:
    """`text` as valid UTF-8: a lone surrogate in an error message must not break a frame."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _check_packable(value: Any) -> None:
    try:
        msgpack.packb(value, use_bin_type=True)
    except PACK_ERRORS as exc:
        raise ValueError(f"msgpack cannot carry it ({exc})") from None


def _error_of(entry: dict[str, Any]) -> ItemError | InvalidOutput:
    error = entry.get("item_error")
    if isinstance(error, dict):
        return ItemError(
            str(error.get("message", "")),
            code=str(error.get("code", "item_rejected")),
            details=error.get("details"),
        )
    return InvalidOutput(str(entry.get("invalid", f"unreadable error entry {entry!r}")))
