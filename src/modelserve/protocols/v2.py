"""The Open Inference Protocol V2's tensors for a Service, derived from its pydantic types.

The rules (docs/protocols.md, "Open Inference Protocol V2"):

- each field of the Input is one input tensor, named after the field (its alias when it has
  one); each field of the Output is one output tensor;
- the first dimension is the batch: a request whose tensors have N rows is N inputs of one
  engine batch, answered by tensors of N rows;
- `bool` -> BOOL, `int` -> INT64, `float` -> FP64, `str` (and a `Literal` of strings) -> BYTES
  as UTF-8, `bytes` -> BYTES;
- a list or tuple of those adds a dimension: its length when the type fixes it (`min_length ==
  max_length`, a `conlist` with both, `tuple[float, float, float]`), else -1 (a request's rows
  then share one length, which the schema still checks); lists of lists add more;
- a dict keyed by a `Literal` of strings (iris's `probabilities`) is one dimension, its values
  in the order of the Literal;
- an input field with a default may be left out of a request;
- anything else (a nested model, a dict with free keys, a union, an optional output) has no
  tensor: the model's metadata lists it under `parameters.unsupported`, and an infer request
  that needs it is refused with 400 naming it.

A Service changes what derivation cannot know with a class attribute, `v2 =
tensors(embedding="FP32")`: the datatype of a numeric field (say FP32 for a model that computes
in float32, which halves the binary output). Inputs accept more than their declared datatype:
a float field takes any float or integer tensor, an int field any integer tensor.

Converted rows are always validated by the version's strict input schema afterwards, so V2
requests meet exactly the rules of modelserve's own JSON (422 naming the field).
"""

from __future__ import annotations

import math
import struct
import sys
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
import numpy as np
import orjson
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from modelserve.errors import InvalidInputError, MalformedBodyError, OutputMismatchError

Kind = Literal["bool", "int", "float", "str", "bytes"]

INT_TYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
FLOAT_TYPES = ("FP16", "FP32", "FP64")
DATATYPES = ("BOOL", *INT_TYPES, *FLOAT_TYPES, "BYTES")

# Little-endian, as the binary extension sends every tensor.
NUMPY_TYPES: dict[str, str] = {
    "BOOL": "|b1",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}

_DTYPES = {name: np.dtype(code) for name, code in NUMPY_TYPES.items()}
# memoryview/struct formats of the datatypes, where this machine's byte order is V2's.
_NATIVE_FORMATS: dict[str, str] = (
    {
        "BOOL": "?",
        "INT8": "b",
        "INT16": "h",
        "INT32": "i",
        "INT64": "q",
        "UINT8": "B",
        "UINT16": "H",
        "UINT32": "I",
        "UINT64": "Q",
        "FP32": "f",
        "FP64": "d",
    }
    if sys.byteorder == "little"
    else {}
)

DEFAULT_DATATYPE: dict[Kind, str] = {
    "bool": "BOOL",
    "int": "INT64",
    "float": "FP64",
    "str": "BYTES",
    "bytes": "BYTES",
}
# The datatypes a field of each kind may be declared as (`tensors(...)`).
DECLARABLE: dict[Kind, tuple[str, ...]] = {
    "bool": ("BOOL",),
    "int": INT_TYPES,
    "float": FLOAT_TYPES,
    "str": ("BYTES",),
    "bytes": ("BYTES",),
}
# The datatypes an input tensor of each kind may arrive as: widening only, never a float into
# an int field or a number into a bool one (the schema is strict about those too).
ACCEPTED: dict[Kind, tuple[str, ...]] = {
    "bool": ("BOOL",),
    "int": INT_TYPES,
    "float": FLOAT_TYPES + INT_TYPES,
    "str": ("BYTES",),
    "bytes": ("BYTES",),
}

# Problems listed in one 422, at most: a request of many bad rows is not answered by a list
# as long as itself.
MAX_PROBLEMS = 20
_LENGTH = struct.Struct("<I")


class TensorOverrides(Mapping[str, str]):
    """What `tensors(...)` declares: a datatype per field name."""

    def __init__(self, datatypes: Mapping[str, str]) -> None:
        self._datatypes = dict(datatypes)

    def __getitem__(self, key: str) -> str:
        return self._datatypes[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._datatypes)

    def __len__(self) -> int:
        return len(self._datatypes)

    def __repr__(self) -> str:
        return f"tensors({', '.join(f'{k}={v!r}' for k, v in self._datatypes.items())})"


def tensors(**datatypes: str) -> TensorOverrides:
    """Declare V2 datatypes the types cannot say: `v2 = tensors(embedding="FP32")` on a Service.

    Each keyword names a numeric field of the Input or the Output and one V2 datatype (FP16,
    FP32, FP64 for a float field; INT8..INT64, UINT8..UINT64 for an int field). Everything else
    is derived (module docstring).
    """
    for field, datatype in datatypes.items():
        if datatype not in DATATYPES:
            raise ValueError(f"tensors({field}={datatype!r}): not a V2 datatype {DATATYPES}")
    return TensorOverrides(datatypes)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor of a model: its V2 name, datatype and per-row dimensions (-1: any)."""

    name: str
    field: str
    kind: Kind
    datatype: str
    dims: tuple[int, ...]
    # A dict field keyed by a Literal: its keys, in the tensor's order.
    keys: tuple[str, ...] | None = None
    required: bool = True
    # Per dimension of `dims`: whether the field holds a tuple there (the strict schema takes
    # no list for a tuple, so rows are built with tuples where the type says so).
    tuples: tuple[bool, ...] = ()

    def metadata(self) -> dict[str, Any]:
        """The tensor as V2 metadata lists it: the batch dimension first, -1."""
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, *self.dims]}


@dataclass(frozen=True, slots=True)
class TensorMap:
    """Every tensor of one model version, and the fields that have none (with why)."""

    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    unsupported_inputs: dict[str, str]
    unsupported_outputs: dict[str, str]
    # Required input fields without a tensor: no V2 request can fill them.
    blocked: tuple[str, ...] = ()
    # The input tensors every request must hold.
    required: tuple[str, ...] = ()

    def unsupported(self) -> dict[str, str]:
        """Every field without a tensor, as `input.<field>` / `output.<field>` -> reason."""
        return {
            **{f"input.{k}": v for k, v in self.unsupported_inputs.items()},
            **{f"output.{k}": v for k, v in self.unsupported_outputs.items()},
        }


class Unsupported(Exception):
    """A type the tensor mapping cannot express; the message says what it is."""


def tensor_map(
    input_type: type[BaseModel],
    output_type: type[BaseModel],
    overrides: Mapping[str, str] | None = None,
) -> TensorMap:
    """Derive a model's tensors from its Input and Output types (module docstring).

    Raises ValueError for an override that names no field, or a datatype its field cannot
    take; the caller reports it as the Service's definition error.
    """
    overrides = dict(overrides or {})
    inputs, bad_inputs = _tensors(input_type, overrides, is_input=True)
    outputs, bad_outputs = _tensors(output_type, overrides, is_input=False)
    unknown = set(overrides) - set(input_type.model_fields) - set(output_type.model_fields)
    if unknown:
        raise ValueError(
            f"v2 = tensors(...) names no field of the Input or Output: {sorted(unknown)}"
        )
    blocked = tuple(f for f in bad_inputs if input_type.model_fields[f].is_required())
    required = tuple(n for n, spec in inputs.items() if spec.required)
    return TensorMap(inputs, outputs, bad_inputs, bad_outputs, blocked, required)


def _tensors(
    model: type[BaseModel], overrides: dict[str, str], *, is_input: bool
) -> tuple[dict[str, TensorSpec], dict[str, str]]:
    found: dict[str, TensorSpec] = {}
    unsupported: dict[str, str] = {}
    for field, info in model.model_fields.items():
        name = info.alias or field
        try:
            kind, dims, keys, tuples = _field_shape(info, is_input=is_input)
        except Unsupported as exc:
            if is_input and not info.is_required():
                # Left out of every request, it takes its default: the model still works.
                unsupported[field] = f"{exc} (optional: always its default over V2)"
            else:
                unsupported[field] = str(exc)
            continue
        datatype = overrides.get(field, DEFAULT_DATATYPE[kind])
        if datatype not in DECLARABLE[kind]:
            raise ValueError(
                f"v2 = tensors({field}={datatype!r}): a {kind} field takes {DECLARABLE[kind]}"
            )
        found[name] = TensorSpec(
            name, field, kind, datatype, dims, keys, info.is_required(), tuples
        )
    return found, unsupported


Shape = tuple[Kind, tuple[int, ...], tuple[str, ...] | None, tuple[bool, ...]]
"""(kind, per-row dimensions, a Literal-keyed dict's keys, which dimensions are tuples)."""


def _field_shape(info: FieldInfo, *, is_input: bool) -> Shape:
    annotation = info.annotation
    if _is_union(annotation):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) != 1:
            raise Unsupported("a union of several types")
        if not is_input:
            raise Unsupported("an optional output (a tensor cannot hold None)")
        annotation = options[0]
    return _shape(annotation, list(info.metadata))


def _is_union(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin is typing.Union or origin is types.UnionType


def _unwrap(annotation: Any, metadata: list[Any]) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *extra = typing.get_args(annotation)
        metadata.extend(extra)
    return annotation


def _shape(annotation: Any, metadata: list[Any]) -> Shape:
    annotation = _unwrap(annotation, metadata)
    scalar = _scalar(annotation)
    if scalar is not None:
        return scalar, (), None, ()
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple, Sequence):
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(set(args)) != 1:
                raise Unsupported("a tuple of mixed types")
            length, item = len(args), args[0]
        else:
            item = args[0] if args else Any
            length = _fixed_length(metadata)
        kind, dims, keys, tuples = _shape(item, [])
        if keys is not None:
            raise Unsupported("a list of dicts")
        return kind, (length, *dims), None, (origin is tuple, *tuples)
    if origin is dict and len(args) == 2:
        key = _unwrap(args[0], [])
        names = typing.get_args(key) if typing.get_origin(key) is Literal else ()
        if not names or not all(isinstance(k, str) for k in names):
            raise Unsupported("a dict whose keys are not a Literal of strings")
        kind, dims, keys, _ = _shape(args[1], [])
        if dims or keys is not None:
            raise Unsupported("a dict of lists or dicts")
        return kind, (len(names),), tuple(names), (False,)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        raise Unsupported("a nested model")
    raise Unsupported(f"type {getattr(annotation, '__name__', annotation)!s}")


def _scalar(annotation: Any) -> Kind | None:
    # bool first: it is an int to Python, not to a V2 tensor or to the strict schema.
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation is str:
        return "str"
    if annotation is bytes:
        return "bytes"
    if typing.get_origin(annotation) is Literal:
        values = typing.get_args(annotation)
        if all(isinstance(v, str) for v in values):
            return "str"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "int"
    return None


def _fixed_length(metadata: list[Any]) -> int:
    """The length `min_length == max_length` fixes, else -1."""
    low = high = None
    for item in metadata:
        if isinstance(item, FieldInfo):
            for inner in item.metadata:
                low, high = _bounds(inner, low, high)
        else:
            low, high = _bounds(item, low, high)
    return low if low is not None and low == high else -1


def _bounds(item: Any, low: int | None, high: int | None) -> tuple[int | None, int | None]:
    if isinstance(item, annotated_types.Len):
        return item.min_length, item.max_length
    if isinstance(item, annotated_types.MinLen):
        return item.min_length, high
    if isinstance(item, annotated_types.MaxLen):
        return low, item.max_length
    return low, high


# -- requests ----------------------------------------------------------------------------------


@dataclass(slots=True)
class InferRequest:
    """A decoded V2 infer request: the rows, and what the answer must hold."""

    rows: list[dict[str, Any]]
    # The outputs to return, each with whether it goes as binary data.
    outputs: list[tuple[TensorSpec, bool]]
    request_id: str | None


def bad(message: str) -> MalformedBodyError:
    """A request that is not a well-formed V2 infer request (400)."""
    return MalformedBodyError(message)


def decode_request(head: bytes, binary: bytes, tmap: TensorMap, max_rows: int) -> InferRequest:
    """The rows of an infer request: its JSON `head`, and `binary`, the tensor data the binary
    extension appended after it (empty without). Raises MalformedBodyError (400) for anything
    that is not a consistent V2 request, InvalidInputError (422) for too many rows or a string
    the schema forbids; the rows still go through the strict schema (`validate_rows`)."""
    try:
        request = orjson.loads(head)
    except orjson.JSONDecodeError:
        raise bad("request body is not valid JSON") from None
    if not isinstance(request, dict):
        raise bad("an infer request is a JSON object with an 'inputs' list")
    entries = request.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise bad("an infer request needs a non-empty 'inputs' list")
    for field in tmap.blocked:
        reason = tmap.unsupported_inputs[field]
        raise bad(f"this model's input field {field!r} has no V2 tensor: {reason}")
    columns: dict[str, list[Any]] = {}
    rows_n: int | None = None
    offset = 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise bad("each entry of 'inputs' is an object with name, datatype, shape, data")
        name = entry.get("name")
        spec = tmap.inputs.get(name) if isinstance(name, str) else None
        if spec is None or not isinstance(name, str):
            raise bad(f"unknown input {_show(name)}: the model takes {sorted(tmap.inputs)}")
        if name in columns:
            raise bad(f"input {name!r} is given twice")
        datatype = entry.get("datatype")
        if datatype not in ACCEPTED[spec.kind]:
            raise bad(
                f"input {name!r} has datatype {_show(datatype)}: the model takes"
                f" {spec.datatype} (or {', '.join(ACCEPTED[spec.kind])})"
            )
        shape = _shape_of(entry.get("shape"), spec)
        if rows_n is None:
            rows_n = shape[0]
        elif shape[0] != rows_n:
            raise bad(f"input {name!r} has {shape[0]} rows, another input {rows_n}")
        parameters = entry.get("parameters")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            if "data" in entry:
                raise bad(f"input {name!r} has both 'data' and binary_data_size")
            if type(size) is not int or size < 0:
                raise bad(f"input {name!r}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise bad(
                    f"input {name!r}: binary_data_size {size} runs past the body's"
                    f" {len(binary)} bytes of binary data"
                )
            chunk = binary[offset : offset + size]
            offset += size
            columns[name] = _from_binary(chunk, shape, datatype, spec)
        else:
            columns[name] = _from_json(entry.get("data"), shape, spec)
    if offset != len(binary):
        raise bad(
            f"the body holds {len(binary) - offset} bytes of binary data that no input's"
            " binary_data_size claims"
        )
    missing = [n for n in tmap.required if n not in columns]
    if missing:
        raise bad(f"missing input(s) {missing}: the model needs {sorted(tmap.required)}")
    assert rows_n is not None  # at least one entry
    if rows_n == 0:
        raise InvalidInputError(
            "a request needs at least one row",
            details=[{"loc": ["inputs"], "msg": "shape[0] is 0", "type": "too_short"}],
        )
    if rows_n > max_rows:
        raise InvalidInputError(
            f"a request takes at most {max_rows} rows (it has {rows_n})",
            details=[{"loc": ["inputs"], "msg": f"at most {max_rows} rows", "type": "too_long"}],
        )
    if rows_n == 1:  # most requests: one row, one dict
        rows = [{name: _row_value(tmap, name, values[0]) for name, values in columns.items()}]
    else:
        rows = [dict.fromkeys(columns) for _ in range(rows_n)]
        for name, values in columns.items():
            for row, value in zip(rows, values, strict=True):
                row[name] = _row_value(tmap, name, value)
    return InferRequest(rows, _outputs(request, tmap), _request_id(request))


def _row_value(tmap: TensorMap, name: str, value: Any) -> Any:
    spec = tmap.inputs[name]
    if spec.keys is not None:
        return dict(zip(spec.keys, value, strict=True))
    if True in spec.tuples:
        return _as_tuples(value, spec.tuples)
    return value


def _as_tuples(value: list[Any], levels: tuple[bool, ...]) -> Any:
    inner = [_as_tuples(v, levels[1:]) for v in value] if len(levels) > 1 else value
    return tuple(inner) if levels[0] else inner


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _shape_of(shape: Any, spec: TensorSpec) -> list[int]:
    # Plain loops, no generators: this runs for every tensor of every request.
    if type(shape) is not list:
        raise bad(f"input {spec.name!r}: shape must be a list of non-negative integers")
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise bad(f"input {spec.name!r}: shape must be a list of non-negative integers")
    dims = spec.dims
    fits = len(shape) == len(dims) + 1
    if fits:
        for index, want in enumerate(dims, 1):
            if want != -1 and want != shape[index]:
                fits = False
                break
    if not fits:
        raise bad(
            f"input {spec.name!r} has shape {shape}: the model takes {[-1, *dims]}"
            " (the first dimension is the batch)"
        )
    return shape


def _from_binary(chunk: bytes, shape: list[int], datatype: str, spec: TensorSpec) -> list[Any]:
    count = math.prod(shape)
    if datatype == "BYTES":
        flat: list[Any] = _split_bytes(chunk, count, spec.name)
        return _nest([_text(b, spec) for b in flat], shape)
    dtype = _DTYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise bad(
            f"input {spec.name!r}: binary_data_size is {len(chunk)} bytes, shape {shape} of"
            f" {datatype} needs {count * dtype.itemsize}"
        )
    # Python scalars, so that the strict schema sees a float as a float. A memoryview reads
    # the little-endian data as is on a little-endian machine, at a fraction of numpy's cost
    # for the small tensors most requests carry.
    native = _NATIVE_FORMATS.get(datatype)
    if native is not None:
        values: list[Any] = memoryview(chunk).cast(native).tolist()  # type: ignore[call-overload]
        return _nest(values, shape)
    rows: list[Any] = np.frombuffer(chunk, dtype=dtype).reshape(shape).tolist()
    return rows


def _split_bytes(chunk: bytes, count: int, name: str) -> list[bytes]:
    """BYTES elements as the binary extension sends them: a 4-byte little-endian length each."""
    items: list[bytes] = []
    at, end = 0, len(chunk)
    for _ in range(count):
        if at + 4 > end:
            raise bad(f"input {name!r}: binary BYTES data ends before its {count} elements")
        (size,) = _LENGTH.unpack_from(chunk, at)
        at += 4
        if at + size > end:
            raise bad(f"input {name!r}: a BYTES element's length runs past its binary data")
        items.append(bytes(chunk[at : at + size]))
        at += size
    if at != end:
        raise bad(f"input {name!r}: binary BYTES data holds more than its {count} elements")
    return items


def _text(value: bytes, spec: TensorSpec) -> Any:
    if spec.kind == "bytes":
        return value
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"input {spec.name!r} holds bytes that are not UTF-8 text",
            details=[{"loc": [spec.name], "msg": "not UTF-8", "type": "string_unicode"}],
        ) from None
    return _checked_text(text, spec)


def _checked_text(text: str, spec: TensorSpec) -> str:
    # The same rule as JSON bodies (V10): NUL is refused, naming the field.
    if "\x00" in text:
        raise InvalidInputError(
            "request body holds forbidden characters",
            details=[
                {
                    "loc": [spec.name],
                    "msg": "NUL characters are not allowed",
                    "type": "string_forbidden_character",
                }
            ],
        )
    return text


def _from_json(data: Any, shape: list[int], spec: TensorSpec) -> list[Any]:
    if not isinstance(data, list):
        raise bad(f"input {spec.name!r} needs 'data' (a list) or a binary_data_size parameter")
    flat: list[Any] = []
    _flatten(data, flat, len(shape), spec.name)
    count = math.prod(shape)
    if len(flat) != count:
        raise bad(f"input {spec.name!r} has {len(flat)} values, shape {shape} needs {count}")
    kind = spec.kind
    if kind in ("str", "bytes"):
        if not all(type(v) is str for v in flat):
            raise bad(f"input {spec.name!r}: BYTES data in JSON are strings")
        if kind == "bytes":
            flat = [v.encode("utf-8") for v in flat]
        else:
            flat = [_checked_text(v, spec) for v in flat]
    elif kind == "bool":
        if not all(type(v) is bool for v in flat):
            raise bad(f"input {spec.name!r}: BOOL data are true or false")
    elif kind == "int":
        if not all(type(v) is int for v in flat):
            raise bad(f"input {spec.name!r}: integer data are JSON integers")
    elif not all(type(v) is float or type(v) is int for v in flat):
        raise bad(f"input {spec.name!r}: numeric data are JSON numbers")
    return _nest(flat, shape)


def _flatten(data: list[Any], into: list[Any], depth: int, name: str) -> None:
    """Row-major values of `data`, flat or nested as V2 allows both, at most `depth` lists
    deep (the shape's rank). A loop, not recursion: the depth is the client's to choose."""
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if type(value) is list:
                if len(stack) >= depth:
                    raise bad(f"input {name!r}: data nested deeper than its shape")
                stack.append(iter(value))
                break
            into.append(value)
        else:
            stack.pop()


def _nest(flat: list[Any], shape: list[int]) -> list[Any]:
    """The rows of `shape` from its row-major values."""
    for dim in reversed(shape[1:]):
        flat = [flat[i : i + dim] for i in range(0, len(flat), dim)] if dim else []
    if len(flat) != shape[0]:  # a zero dimension inside a row: N rows of empty lists
        flat = [[] for _ in range(shape[0])]
    return flat


def _outputs(request: dict[str, Any], tmap: TensorMap) -> list[tuple[TensorSpec, bool]]:
    parameters = request.get("parameters")
    binary = False
    if isinstance(parameters, dict) and "binary_data_output" in parameters:
        binary = parameters["binary_data_output"]
        if type(binary) is not bool:
            raise bad("parameters.binary_data_output must be true or false")
    asked = request.get("outputs")
    if asked is None:
        return [(spec, binary) for spec in tmap.outputs.values()]
    if not isinstance(asked, list):
        raise bad("'outputs' is a list of {name, parameters} objects")
    chosen: list[tuple[TensorSpec, bool]] = []
    for entry in asked:
        name = entry.get("name") if isinstance(entry, dict) else None
        spec = tmap.outputs.get(name) if isinstance(name, str) else None
        if spec is None:
            if isinstance(name, str) and name in tmap.unsupported_outputs:
                reason = tmap.unsupported_outputs[name]
                raise bad(f"output {name!r} has no V2 tensor: {reason}")
            raise bad(f"unknown output {_show(name)}: the model has {sorted(tmap.outputs)}")
        assert isinstance(entry, dict)
        params = entry.get("parameters")
        wants = binary
        if isinstance(params, dict):
            if params.get("classification"):
                raise bad("the classification extension is not supported")
            if "binary_data" in params:
                wants = params["binary_data"]
                if type(wants) is not bool:
                    raise bad(f"output {name!r}: parameters.binary_data must be true or false")
        chosen.append((spec, wants))
    return chosen


def _request_id(request: dict[str, Any]) -> str | None:
    value = request.get("id")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256:
        raise bad("'id' must be a string of at most 256 characters")
    return value


def validate_rows(rows: list[dict[str, Any]], validate: Any) -> list[Any]:
    """Each row through the version's strict input schema (`validate`: its model_validate);
    InvalidInputError (422) naming the row and the field, as modelserve's batch route does."""
    inputs: list[Any] = []
    problems: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        try:
            inputs.append(validate(row))
        except ValidationError as exc:
            for detail in exc.errors(include_url=False, include_input=False, include_context=False):
                if len(problems) < MAX_PROBLEMS:
                    problems.append(
                        {
                            "loc": ["inputs", index, *detail["loc"]],
                            "msg": detail["msg"],
                            "type": detail["type"],
                        }
                    )
    if problems:
        raise InvalidInputError(
            "request body does not match the model's input schema", details=problems
        )
    return inputs


# -- answers -----------------------------------------------------------------------------------


def encode_response(
    outputs: Sequence[BaseModel],
    request: InferRequest,
    model_name: str,
    model_version: str,
) -> tuple[bytes, int | None, bool]:
    """The answer's body, the length of its JSON head when binary data follows it (None when
    the body is JSON alone), and whether a JSON float was NaN or infinite (sent as null).

    Raises OutputMismatchError when the model's outputs do not fit their tensors (ragged
    lists, a missing dict key): a model bug, a 500.
    """
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    non_finite = False
    for spec, binary in request.outputs:
        values = [getattr(o, spec.field) for o in outputs]
        plain = _plain_scalars(spec, values, binary)
        if plain is not None:
            if binary:
                assert isinstance(plain, bytes)
                entries.append(_binary_entry(spec, [len(values)], len(plain)))
                chunks.append(plain)
            else:
                if spec.kind == "float" and not all(map(math.isfinite, values)):
                    non_finite = True
                entries.append(_json_entry(spec, [len(values)], values))
            continue
        array = _output_array(spec, values)
        shape = list(array.shape)
        if spec.datatype == "BYTES":
            items = [_as_bytes(v) for v in array.ravel().tolist()]
            if binary:
                data = b"".join(_LENGTH.pack(len(b)) + b for b in items)
                entries.append(_binary_entry(spec, shape, len(data)))
                chunks.append(data)
            else:
                entries.append(_json_entry(spec, shape, [_as_json_text(b, spec) for b in items]))
        elif binary:
            data = array.tobytes()
            entries.append(_binary_entry(spec, shape, len(data)))
            chunks.append(data)
        else:
            if spec.kind == "float" and not bool(np.isfinite(array).all()):
                non_finite = True  # JSON has no NaN: orjson writes null, a header says so
            entries.append(_json_entry(spec, shape, array.ravel().tolist()))
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.request_id is not None:
        answer["id"] = request.request_id
    answer["outputs"] = entries
    head = orjson.dumps(answer)
    if not chunks:
        return head, None, non_finite
    return head + b"".join(chunks), len(head), non_finite


_PLAIN_TYPES: dict[Kind, tuple[type, ...]] = {
    "float": (float, int),
    "int": (int,),
    "bool": (bool,),
}
# JSON data as the Python values themselves only where they are exactly the tensor's values
# (an FP32 tensor's are rounded to float32 by numpy's path).
_PLAIN_JSON = ("FP64", "INT64", "BOOL")


def _plain_scalars(spec: TensorSpec, values: list[Any], binary: bool) -> bytes | list[Any] | None:
    """A one-dimensional numeric output of plain Python numbers, without numpy: its binary
    data, or its values for JSON; None for everything else (numpy's general path)."""
    if spec.dims or spec.keys is not None:
        return None
    native = _NATIVE_FORMATS.get(spec.datatype)
    plain = _PLAIN_TYPES.get(spec.kind)
    if native is None or plain is None:
        return None
    for value in values:
        if type(value) not in plain:
            return None
    if not binary:
        return values if spec.datatype in _PLAIN_JSON else None
    try:
        return struct.pack(f"{len(values)}{native}", *values)
    except (struct.error, OverflowError):
        return None  # out of the datatype's range: numpy's path says so


def _output_array(spec: TensorSpec, values: list[Any]) -> np.ndarray[Any, Any]:
    try:
        if spec.keys is not None:
            values = [[value[key] for key in spec.keys] for value in values]
        dtype: Any = object if spec.datatype == "BYTES" else np.dtype(NUMPY_TYPES[spec.datatype])
        array = np.asarray(values, dtype=dtype)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise OutputMismatchError(
            f"output field {spec.field!r} does not fit its V2 tensor (ragged, or a key missing)"
        ) from None
    want = [len(values), *spec.dims]
    if array.ndim != len(want) or any(
        w not in (-1, g) for w, g in zip(want, array.shape, strict=True)
    ):
        raise OutputMismatchError(
            f"output field {spec.field!r} has shape {list(array.shape)}, its tensor {want}"
        )
    return array


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise OutputMismatchError("a BYTES output holds something other than str or bytes")


def _as_json_text(value: bytes, spec: TensorSpec) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"output {spec.name!r} holds bytes that are not UTF-8 text: ask for it as binary"
            " data (parameters.binary_data: true)"
        ) from None


def _binary_entry(spec: TensorSpec, shape: list[int], size: int) -> dict[str, Any]:
    return {
        "name": spec.name,
        "datatype": spec.datatype,
        "shape": shape,
        "parameters": {"binary_data_size": size},
    }


def _json_entry(spec: TensorSpec, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": shape, "data": data}
