"""Per-version wire codec: strict validation of request bodies and serialization of outputs.

Everything here works on bytes with pydantic-core (no stdlib `json` on the hot path); the slow
checks (NUL and surrogate strings, duplicate keys) run only when a cheap screen says they may
apply. `CodecCache` holds one codec per loaded version, here in the HTTP layer rather than on
the runtime's version object.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, Field, ValidationError, create_model

from modelserve.errors import (
    InvalidInputError,
    ItemRejectedError,
    MalformedBodyError,
    UnsupportedMediaError,
)
from modelserve.http.context import check_encoding
from modelserve.runtime.versions import DeployedService
from modelserve.schemas.strict import (
    STRICT_CONFIG,
    find_bad_strings,
    find_duplicate_key,
    may_hold_bad_strings,
)
from modelserve.service.spec import ServiceSpec

VERSION_HEADER = b"x-model-version"
NON_FINITE_HEADER = (b"x-non-finite-output", b"true")

Headers = list[tuple[bytes, bytes]]


class ServiceCodec:
    """Validators and serializers of one model version, built once."""

    def __init__(self, spec: ServiceSpec, *, max_batch_inputs: int) -> None:
        self.name = spec.name
        self.spec = spec  # for protocols' own mappings of the version's types (http/wire.py)
        self.max_inputs = min(max_batch_inputs, spec.batching.max_queue)
        self._validate_one = spec.wire_input_type.model_validate_json
        batch_model: type[BaseModel] = create_model(
            f"{spec.input_type.__name__}BatchRequest",
            __config__=STRICT_CONFIG,
            inputs=(list[spec.wire_input_type], Field(min_length=1, max_length=self.max_inputs)),  # type: ignore[name-defined]
        )
        self.batch_model = batch_model
        self._validate_batch = batch_model.model_validate_json
        self._dump = spec.output_type.__pydantic_serializer__.to_json
        self.version_header = (VERSION_HEADER, spec.version.encode("ascii"))
        self.raw_field = raw_field(spec.input_type)
        self._validate_python = spec.wire_input_type.model_validate

    def parse_raw(self, body: bytes) -> Any:
        """One input from a raw `application/octet-stream` body: the bytes of its one field.

        An image, an audio clip or a document travels as itself, not as base64 inside JSON
        (a third larger, and decoded twice). Only a model whose input is one `bytes` field
        takes it; for others a raw body is refused with 415.
        """
        if self.raw_field is None:
            raise UnsupportedMediaError(
                f"model {self.name!r} takes JSON: application/octet-stream bodies go to models"
                " whose input is one bytes field",
                details={"content_type": "application/octet-stream"},
            )
        try:
            return self._validate_python({self.raw_field: body})
        except ValidationError as exc:
            details = exc.errors(include_url=False, include_input=False, include_context=False)
            raise InvalidInputError(
                "request body does not match the model's input schema",
                details=[{"loc": ["body"], "msg": d["msg"], "type": d["type"]} for d in details],
            ) from None

    def parse_one(self, body: bytes) -> Any:
        """Strictly validate one input; raise InvalidInputError/MalformedBodyError."""
        try:
            item = self._validate_one(body)
        except ValidationError as exc:
            raise _input_error(exc, body) from None
        _check_text(body)
        return item

    def parse_batch(self, body: bytes) -> list[Any]:
        """Strictly validate `{"inputs": [...]}`."""
        try:
            request = self._validate_batch(body)
        except ValidationError as exc:
            raise _input_error(exc, body) from None
        _check_text(body)
        inputs: list[Any] = request.inputs  # type: ignore[attr-defined]
        return inputs

    def dump(self, output: Any) -> tuple[bytes, Headers]:
        """One output as JSON, and the headers of a 200."""
        payload: bytes = self._dump(output)
        return payload, self.headers(payload, [output])

    def dump_batch(self, results: list[Any]) -> tuple[bytes, Headers]:
        """`{"outputs": [...], "errors": [...]}`: items the model rejected are `null` + an error."""
        payload = batch_body(results, self._dump)
        return payload, self.headers(payload, results)

    def headers(self, payload: bytes, outputs: list[Any]) -> Headers:
        """The model version, and a flag when an output held NaN or an infinity.

        JSON has no NaN or infinities: they go out as null, and a header says a null stands
        for one (V7). Only payloads that hold a null pay for the check.
        """
        if b"null" in payload and _non_finite(outputs):
            return [self.version_header, NON_FINITE_HEADER]
        return [self.version_header]


class CodecCache:
    """The codec of each loaded version, built on its first request, gone with the version.

    Keyed by the version object's identity: a lookup is one dict read on the hot path. A weak
    reference to the version drops its entry when the version is freed, so a retired version
    leaves nothing behind here (R4) and its id cannot be met again while the entry exists.
    """

    def __init__(self, *, max_batch_inputs: int) -> None:
        self._max_batch_inputs = max_batch_inputs
        self._codecs: dict[int, ServiceCodec] = {}
        self._refs: dict[int, weakref.ref[DeployedService]] = {}

    def get(self, deployed: DeployedService) -> ServiceCodec:
        """The version's codec, built on first use."""
        codec = self._codecs.get(id(deployed))
        if codec is None:
            codec = self._build(deployed)
        return codec

    def __len__(self) -> int:
        return len(self._codecs)

    def _build(self, deployed: DeployedService) -> ServiceCodec:
        key = id(deployed)
        codec = ServiceCodec(deployed.spec, max_batch_inputs=self._max_batch_inputs)
        codecs, refs = self._codecs, self._refs

        def forget(_: object) -> None:
            codecs.pop(key, None)
            refs.pop(key, None)

        codecs[key] = codec
        refs[key] = weakref.ref(deployed, forget)
        return codec


def batch_body(results: list[Any], dump: Callable[[Any], bytes]) -> bytes:
    """A batch answer's body: each result written by `dump`, or, for an input the model
    rejected (`ItemRejectedError`), `null` in `outputs` and its error in `errors`. The cache's
    batch answers (already-encoded items) are written here too, so both stay one shape."""
    parts: list[bytes] = []
    errors: list[dict[str, Any]] = []
    for index, result in enumerate(results):
        if isinstance(result, ItemRejectedError):
            parts.append(b"null")
            errors.append(
                {
                    "index": index,
                    "code": result.code,
                    "message": result.message,
                    "details": result.details,
                }
            )
        else:
            parts.append(dump(result))
    return b'{"outputs":[' + b",".join(parts) + b'],"errors":' + orjson.dumps(errors) + b"}"


def _non_finite(outputs: list[Any]) -> bool:
    """True if any output holds NaN or an infinity (sent as JSON null)."""
    return any(_has_non_finite(o.model_dump()) for o in outputs if isinstance(o, BaseModel))


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def _input_error(exc: ValidationError, body: bytes) -> InvalidInputError:
    details = exc.errors(include_url=False, include_input=False, include_context=False)
    cleaned = [{"loc": list(d["loc"]), "msg": d["msg"], "type": d["type"]} for d in details]
    if any(d["type"] == "json_invalid" for d in cleaned):
        # The fast parser refuses lone surrogate escapes as syntax errors, but `"\ud800"` is
        # well-formed JSON holding a forbidden string: 422 naming the field, like NUL (V10).
        if may_hold_bad_strings(body):
            bad = find_bad_strings(body)
            if bad:
                return InvalidInputError("request body holds forbidden characters", details=bad)
        return MalformedBodyError("request body is not valid JSON", details=cleaned)
    return InvalidInputError(
        "request body does not match the model's input schema", details=cleaned
    )


def _check_text(body: bytes) -> None:
    if may_hold_bad_strings(body):
        bad = find_bad_strings(body)
        if bad:
            raise InvalidInputError("request body holds forbidden characters", details=bad)
    duplicate = find_duplicate_key(body)
    if duplicate is not None:
        raise MalformedBodyError(
            "request body repeats a key in one object",
            details=[
                {
                    "loc": [],
                    "msg": f"duplicate key {duplicate[:64]!r}",
                    "type": "json_duplicate_key",
                }
            ],
        )


def raw_field(input_type: type[BaseModel]) -> str | None:
    """The field a raw body fills: the input's only field, when it is `bytes`."""
    fields = input_type.model_fields
    if len(fields) != 1:
        return None
    name, info = next(iter(fields.items()))
    return name if info.annotation is bytes else None


def check_media_type(headers: Headers) -> bool:
    """True for a raw `application/octet-stream` body, False for JSON (also when no type is
    declared); any other type, and any compressed body, is refused with 415."""
    # One pass for both headers: this runs on every predict request.
    content_type = content_encoding = None
    for key, value in headers:
        if key == b"content-type":
            if content_type is None:
                content_type = value
        elif key == b"content-encoding" and content_encoding is None:
            content_encoding = value
    if content_encoding is not None:
        check_encoding(content_encoding)
    if content_type is None:
        return False  # bodies without a declared type are parsed as JSON
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or media.endswith(b"+json"):
        return False
    if media == b"application/octet-stream":
        return True
    raise UnsupportedMediaError(
        "send the body as JSON with content-type: application/json (or, to a model whose"
        " input is one bytes field, as application/octet-stream)",
        details={"content_type": media.decode("latin-1")[:100]},
    )
