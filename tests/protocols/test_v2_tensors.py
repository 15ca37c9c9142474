"""The V2 tensor mapping (protocols/v2.py): derived tensors, decoding JSON and binary tensor
data into rows, and encoding outputs, with every refusal a 400 or 422, never a crash."""

from __future__ import annotations

import struct
from typing import Annotated, Any, Literal

import numpy as np
import orjson
import pytest
from pydantic import BaseModel, Field, conlist

from modelserve.errors import InvalidInputError, MalformedBodyError, OutputMismatchError
from modelserve.protocols.v2 import (
    InferRequest,
    TensorMap,
    _flatten,
    decode_request,
    encode_response,
    tensor_map,
    tensors,
    validate_rows,
)
from modelserve.schemas.strict import strict_model

Row = Annotated[list[float], Field(min_length=3, max_length=3)]


class In(BaseModel):
    x: float = Field(gt=0)
    n: int
    flag: bool
    text: str
    blob: bytes
    vector: Annotated[list[float], Field(min_length=4, max_length=4)]
    grid: Annotated[list[Row], Field(min_length=2, max_length=2)]
    pair: tuple[int, int]
    capped: conlist(float, min_length=2, max_length=2)  # type: ignore[valid-type]
    free: list[float] = Field(default_factory=list)
    choice: Literal["a", "b"] = "a"


class Out(BaseModel):
    y: float
    label: str
    scores: dict[Literal["p", "q"], float]
    vector: list[float]


class Nested(BaseModel):
    z: int


class Odd(BaseModel):
    ok: float
    inner: Nested
    table: dict[str, float]
    either: int | str
    extra: dict[str, int] = Field(default_factory=dict)


class OddOut(BaseModel):
    maybe: float | None
    fine: int


def shapes(tmap: TensorMap, which: str) -> dict[str, tuple[str, list[int]]]:
    specs = tmap.inputs if which == "in" else tmap.outputs
    return {n: (s.datatype, s.metadata()["shape"]) for n, s in specs.items()}


def test_tensors_are_derived_from_the_field_types() -> None:
    tmap = tensor_map(In, Out)
    assert shapes(tmap, "in") == {
        "x": ("FP64", [-1]),
        "n": ("INT64", [-1]),
        "flag": ("BOOL", [-1]),
        "text": ("BYTES", [-1]),
        "blob": ("BYTES", [-1]),
        "vector": ("FP64", [-1, 4]),
        "grid": ("FP64", [-1, 2, 3]),
        "pair": ("INT64", [-1, 2]),
        "capped": ("FP64", [-1, 2]),
        "free": ("FP64", [-1, -1]),
        "choice": ("BYTES", [-1]),
    }
    assert shapes(tmap, "out") == {
        "y": ("FP64", [-1]),
        "label": ("BYTES", [-1]),
        "scores": ("FP64", [-1, 2]),
        "vector": ("FP64", [-1, -1]),
    }
    assert not tmap.unsupported() and not tmap.blocked
    assert [n for n, s in tmap.inputs.items() if not s.required] == ["free", "choice"]


def test_fields_without_a_tensor_are_named_with_the_reason() -> None:
    tmap = tensor_map(Odd, OddOut)
    assert list(tmap.inputs) == ["ok"]
    assert list(tmap.outputs) == ["fine"]
    unsupported = tmap.unsupported()
    assert unsupported["input.inner"] == "a nested model"
    assert "Literal" in unsupported["input.table"]
    assert "union" in unsupported["input.either"]
    assert "optional" in unsupported["input.extra"]
    assert "None" in unsupported["output.maybe"]
    # Required fields without a tensor block every request; an optional one does not.
    assert tmap.blocked == ("inner", "table", "either")
    with pytest.raises(MalformedBodyError, match="'inner' has no V2 tensor: a nested model"):
        decode_request(b'{"inputs": [{"name": "ok"}]}', b"", tmap, 8)


def test_a_declared_datatype_overrides_the_derived_one() -> None:
    tmap = tensor_map(In, Out, tensors(vector="FP32", n="INT32"))
    assert tmap.inputs["vector"].datatype == "FP32"
    assert tmap.outputs["vector"].datatype == "FP32"
    assert tmap.inputs["n"].datatype == "INT32"
    with pytest.raises(ValueError, match="not a V2 datatype"):
        tensors(vector="FLOAT")
    with pytest.raises(ValueError, match="a float field takes"):
        tensor_map(In, Out, tensors(vector="INT64"))
    with pytest.raises(ValueError, match="names no field"):
        tensor_map(In, Out, tensors(nope="FP32"))


class Small(BaseModel):
    x: float = Field(gt=0)
    vector: Annotated[list[float], Field(min_length=2, max_length=2)]
    text: str = "none"


class SmallOut(BaseModel):
    y: float
    label: str
    scores: dict[Literal["p", "q"], float]


SMALL = tensor_map(Small, SmallOut)


def head(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def tensor(
    name: str, datatype: str, shape: list[int], data: Any = None, **params: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if data is not None:
        entry["data"] = data
    if params:
        entry["parameters"] = params
    return entry


def test_json_tensors_become_rows_validated_by_the_strict_schema() -> None:
    body = head(
        tensor("x", "FP32", [2], [1.5, 2]),
        # Nested or flat, row-major: both are V2.
        tensor("vector", "FP64", [2, 2], [[1, 2], [3, 4]]),
        tensor("text", "BYTES", [2], ["a", "b"]),
    )
    request = decode_request(body, b"", SMALL, 8)
    assert request.rows == [
        {"x": 1.5, "vector": [1, 2], "text": "a"},
        {"x": 2, "vector": [3, 4], "text": "b"},
    ]
    inputs = validate_rows(request.rows, strict_model(Small).model_validate)
    assert [(i.x, i.vector, i.text) for i in inputs] == [
        (1.5, [1.0, 2.0], "a"),
        (2.0, [3.0, 4.0], "b"),
    ]
    # Every output, as JSON, unless asked otherwise.
    assert [(s.name, binary) for s, binary in request.outputs] == [
        ("y", False),
        ("label", False),
        ("scores", False),
    ]


def test_binary_tensors_and_bytes_elements() -> None:
    x = np.array([1.0, 2.0], dtype=np.float32).tobytes()
    vector = np.array([[1, 2], [3, 4]], dtype=np.int32).tobytes()
    text = b"".join(struct.pack("<I", len(s)) + s for s in (b"h\xc3\xa9", b""))
    body = head(
        tensor("x", "FP32", [2], binary_data_size=len(x)),
        tensor("vector", "INT32", [2, 2], binary_data_size=len(vector)),
        tensor("text", "BYTES", [2], binary_data_size=len(text)),
    )
    request = decode_request(body, x + vector + text, SMALL, 8)
    assert request.rows == [
        {"x": 1.0, "vector": [1, 2], "text": "hé"},
        {"x": 2.0, "vector": [3, 4], "text": ""},
    ]


@pytest.mark.parametrize(
    ("inputs", "binary", "message"),
    [
        ([tensor("x", "FP32", [1], binary_data_size=8)], b"\0" * 8, "needs 4"),
        ([tensor("x", "FP32", [1], binary_data_size=4)], b"\0" * 2, "runs past"),
        ([tensor("x", "FP32", [1], binary_data_size=4)], b"\0" * 6, "no input's"),
        ([tensor("x", "FP32", [1], binary_data_size=-1)], b"", "non-negative"),
        ([tensor("x", "FP32", [1], binary_data_size="4")], b"\0" * 4, "non-negative"),
        ([tensor("x", "FP32", [1], [1.0], binary_data_size=4)], b"\0" * 4, "both"),
        ([tensor("text", "BYTES", [1], binary_data_size=2)], b"\1\0", "ends before"),
        ([tensor("text", "BYTES", [1], binary_data_size=5)], b"\x09\0\0\0a", "runs past"),
        ([tensor("text", "BYTES", [1], binary_data_size=6)], b"\1\0\0\0ab", "more than"),
    ],
)
def test_inconsistent_binary_sizes_are_400(
    inputs: list[dict[str, Any]], binary: bytes, message: str
) -> None:
    with pytest.raises(MalformedBodyError, match=message):
        decode_request(head(*inputs), binary, tensor_map(Small, SmallOut), 8)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"inputs": []}', "non-empty"),
        (head(tensor("nope", "FP32", [1], [1.0])), "unknown input 'nope'"),
        (head(tensor("x", "FP32", [1], [1.0]), tensor("x", "FP32", [1], [1.0])), "twice"),
        (head(tensor("x", "BYTES", [1], ["1"])), "datatype 'BYTES'"),
        (head(tensor("x", "FP32", [1, 1], [1.0])), "has shape"),
        (head(tensor("x", "FP32", [-1], [1.0])), "non-negative"),
        (head(tensor("vector", "FP32", [1, 3], [1.0, 2, 3])), "has shape"),
        (head(tensor("x", "FP32", [2], [1.0])), "has 1 values"),
        (head(tensor("x", "FP32", [1], ["1.5"])), "JSON numbers"),
        (head(tensor("x", "FP32", [1], [True])), "JSON numbers"),
        (head(tensor("x", "FP32", [1])), "needs 'data'"),
        (head(tensor("vector", "FP32", [1, 2], [1.0, 2.0])), r"missing input\(s\) \['x'\]"),
        (
            head(tensor("x", "FP32", [1], [1.0]), tensor("vector", "FP32", [2, 2], [1.0] * 4)),
            "2 rows",
        ),
        (
            head(
                tensor("x", "FP32", [1], [1.0]),
                tensor("vector", "FP32", [1, 2], [1, 2]),
                outputs=[{"name": "zz"}],
            ),
            "unknown output",
        ),
        (
            head(
                tensor("x", "FP32", [1], [1.0]),
                tensor("vector", "FP32", [1, 2], [1, 2]),
                parameters={"binary_data_output": 1},
            ),
            "true or false",
        ),
        (
            head(tensor("x", "FP32", [1], [1.0]), tensor("vector", "FP32", [1, 2], [1, 2]), id=5),
            "'id'",
        ),
    ],
)
def test_malformed_requests_are_400(body: bytes, message: str) -> None:
    with pytest.raises(MalformedBodyError, match=message):
        decode_request(body, b"", SMALL, 8)


def test_rows_over_the_limit_and_bad_text_are_422() -> None:
    vector = tensor("vector", "FP32", [3, 2], [1.0] * 6)
    with pytest.raises(InvalidInputError, match="at most 2 rows") as info:
        decode_request(head(tensor("x", "FP32", [3], [1.0] * 3), vector), b"", SMALL, 2)
    assert not isinstance(info.value, MalformedBodyError)
    nul = head(
        tensor("x", "FP32", [1], [1.0]),
        tensor("vector", "FP32", [1, 2], [1, 2]),
        tensor("text", "BYTES", [1], ["a\u0000b"]),
    )
    with pytest.raises(InvalidInputError, match="forbidden characters"):
        decode_request(nul, b"", SMALL, 8)
    bad_utf8 = struct.pack("<I", 1) + b"\xff"
    binary = head(
        tensor("x", "FP32", [1], [1.0]),
        tensor("vector", "FP32", [1, 2], [1, 2]),
        tensor("text", "BYTES", [1], binary_data_size=len(bad_utf8)),
    )
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        decode_request(binary, bad_utf8, SMALL, 8)


def test_schema_violations_name_the_row_and_the_field() -> None:
    nan = np.array([1.0, np.nan], dtype=np.float64).tobytes()
    body = head(
        tensor("x", "FP64", [2], binary_data_size=len(nan)),
        tensor("vector", "FP64", [2, 2], [1, 2, 3, 4]),
    )
    request = decode_request(body, nan, SMALL, 8)
    with pytest.raises(InvalidInputError) as info:
        validate_rows(request.rows, strict_model(Small).model_validate)
    assert [d["loc"] for d in info.value.details] == [["inputs", 1, "x"]]
    negative = decode_request(
        head(tensor("x", "FP64", [1], [-1.0]), tensor("vector", "FP64", [1, 2], [1, 2])),
        b"",
        SMALL,
        8,
    )
    with pytest.raises(InvalidInputError) as info:
        validate_rows(negative.rows, strict_model(Small).model_validate)
    assert info.value.details[0]["loc"] == ["inputs", 0, "x"]
    assert "greater than 0" in info.value.details[0]["msg"]


def answer(outputs: list[BaseModel], request: InferRequest) -> tuple[dict[str, Any], bytes]:
    body, length, _ = encode_response(outputs, request, "small", "1")
    if length is None:
        return orjson.loads(body), b""
    return orjson.loads(body[:length]), body[length:]


OUTPUTS = [
    SmallOut(y=1.5, label="a", scores={"q": 0.25, "p": 0.75}),
    SmallOut(y=float("nan"), label="bé", scores={"p": 0.5, "q": 0.5}),
]


def test_outputs_as_json() -> None:
    request = InferRequest([], [(s, False) for s in SMALL.outputs.values()], "req-1")
    body, length, non_finite = encode_response(OUTPUTS, request, "small", "1")
    assert length is None and non_finite
    assert orjson.loads(body) == {
        "model_name": "small",
        "model_version": "1",
        "id": "req-1",
        "outputs": [
            {"name": "y", "datatype": "FP64", "shape": [2], "data": [1.5, None]},
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["a", "bé"]},
            # The dict's values in the Literal's order, not the dict's.
            {"name": "scores", "datatype": "FP64", "shape": [2, 2], "data": [0.75, 0.25, 0.5, 0.5]},
        ],
    }


def test_outputs_as_binary_data() -> None:
    specs = SMALL.outputs
    request = InferRequest([], [(specs["label"], True), (specs["scores"], True)], None)
    json_head, data = answer(OUTPUTS, request)
    label, scores = json_head["outputs"]
    assert label["parameters"]["binary_data_size"] == 4 + 1 + 4 + 3
    assert data[:12] == b"\1\0\0\0a\3\0\0\0b\xc3\xa9"
    assert scores == {
        "name": "scores",
        "datatype": "FP64",
        "shape": [2, 2],
        "parameters": {"binary_data_size": 32},
    }
    assert np.frombuffer(data[12:], dtype="<f8").tolist() == [0.75, 0.25, 0.5, 0.5]


def test_outputs_that_do_not_fit_their_tensor_are_the_models_fault() -> None:
    ragged = tensor_map(Small, Out)
    request = InferRequest([], [(ragged.outputs["vector"], False)], None)
    rows = [
        Out(y=1, label="a", scores={"p": 1, "q": 0}, vector=[1.0]),
        Out(y=1, label="a", scores={"p": 1, "q": 0}, vector=[1.0, 2.0]),
    ]
    with pytest.raises(OutputMismatchError, match="vector"):
        encode_response(rows, request, "m", "1")
    same = [r.model_copy(update={"vector": [1.0, 2.0]}) for r in rows]
    json_head, _ = answer(same, request)
    assert json_head["outputs"][0]["shape"] == [2, 2]


class Pairs(BaseModel):
    pair: tuple[int, int]
    grid: Annotated[list[tuple[float, float]], Field(min_length=2, max_length=2)]


def test_tuple_fields_get_tuples_which_the_strict_schema_requires() -> None:
    tmap = tensor_map(Pairs, SmallOut)
    body = head(
        tensor("pair", "INT64", [1, 2], [1, 2]),
        tensor("grid", "FP64", [1, 2, 2], [1, 2, 3, 4]),
    )
    rows = decode_request(body, b"", tmap, 8).rows
    assert rows == [{"pair": (1, 2), "grid": [(1, 2), (3, 4)]}]
    (item,) = validate_rows(rows, strict_model(Pairs).model_validate)
    assert (item.pair, item.grid) == ((1, 2), [(1.0, 2.0), (3.0, 4.0)])


def test_data_nested_deeper_than_its_shape_is_400_at_any_depth() -> None:
    deep: Any = [1.0]
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    with pytest.raises(MalformedBodyError, match="nested deeper"):
        decode_request(head(tensor("x", "FP64", [1], [[1.0]])), b"", SMALL, 8)
    # orjson refuses JSON nested past 1024 levels itself; the loop guards what it lets through.
    with pytest.raises(MalformedBodyError, match="nested deeper"):
        _flatten(deep, [], 2, "x")


class Counts(BaseModel):
    n: int
    flag: bool
    score: float


def test_one_dimensional_outputs_in_binary_and_their_range() -> None:
    tmap = tensor_map(Small, Counts, tensors(score="FP32"))
    request = InferRequest([], [(s, True) for s in tmap.outputs.values()], None)
    rows = [Counts(n=-2, flag=True, score=0.5), Counts(n=7, flag=False, score=1.25)]
    json_head, data = answer(rows, request)
    assert [(o["name"], o["datatype"], o["shape"]) for o in json_head["outputs"]] == [
        ("n", "INT64", [2]),
        ("flag", "BOOL", [2]),
        ("score", "FP32", [2]),
    ]
    assert np.frombuffer(data[:16], dtype="<i8").tolist() == [-2, 7]
    assert np.frombuffer(data[16:18], dtype="|b1").tolist() == [True, False]
    assert np.frombuffer(data[18:], dtype="<f4").tolist() == [0.5, 1.25]
    # An int past INT64 is the model's fault, never a wrapped-around number.
    huge = [Counts(n=2**70, flag=True, score=0.0)]
    with pytest.raises(OutputMismatchError, match="'n'"):
        encode_response(huge, request, "m", "1")
