"""The predict endpoints, served as a raw ASGI fast path in front of FastAPI.

`POST /v1/models/{name}/predict` and `/predict/batch` are the hot path: they skip Starlette's
routing, middleware stack and FastAPI's dependency solver (together most of a plain FastAPI
request's cost) and go straight from bytes to strict pydantic-core validation, the batching
engine and pydantic-core serialization. FastAPI still documents them (see `http/openapi.py`).
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from pydantic import BaseModel, Field, ValidationError, create_model

from modelserve.errors import (
    InvalidInputError,
    ItemRejectedError,
    MalformedBodyError,
    ModelserveError,
    ServiceNotFoundError,
    TooManyHeadersError,
    UnsupportedMediaError,
)
from modelserve.http.context import (
    REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    header,
    read_body,
    request_id_from,
)
from modelserve.http.errors import render_error
from modelserve.runtime.manager import DeployedService, ModelRuntime
from modelserve.schemas.strict import (
    STRICT_CONFIG,
    find_bad_strings,
    find_duplicate_key,
    may_hold_bad_strings,
)
from modelserve.types import Receive, Scope, Send

PREFIX = "/v1/models/"
JSON_HEADER = (b"content-type", b"application/json")
VERSION_HEADER = b"x-model-version"
NON_FINITE_HEADER = (b"x-non-finite-output", b"true")

Headers = list[tuple[bytes, bytes]]


class ServiceRoute:
    """Validators and serializers of one service, built once."""

    def __init__(self, deployed: DeployedService, *, max_batch_inputs: int) -> None:
        spec = deployed.spec
        self.deployed = deployed
        self.name = spec.name
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

    async def predict(self, body: bytes) -> tuple[bytes, Headers]:
        """One input in, one serialized output and its headers back."""
        engine = self.deployed.require_ready()
        item = self.parse_one(body)
        output = await engine.submit(item)
        payload: bytes = self._dump(output)
        return payload, self._headers(payload, [output])

    def _headers(self, payload: bytes, outputs: list[Any]) -> Headers:
        # JSON has no NaN or infinities: they go out as null, and a header says a null stands
        # for one (V7). Only payloads that hold a null pay for the check.
        if b"null" in payload and _non_finite(outputs):
            return [self.version_header, NON_FINITE_HEADER]
        return [self.version_header]

    async def predict_batch(self, body: bytes) -> tuple[bytes, Headers]:
        """`{"inputs": [...]}` in, `{"outputs": [...], "errors": [...]}` back.

        Items the model rejected come back as `null` with an entry in `errors`.
        """
        engine = self.deployed.require_ready()
        inputs = self.parse_batch(body)
        results = await engine.submit_many(inputs)
        parts: list[bytes] = []
        errors: list[dict[str, Any]] = []
        dump = self._dump
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
        payload = b'{"outputs":[' + b",".join(parts) + b'],"errors":' + orjson.dumps(errors) + b"}"
        return payload, self._headers(payload, results)


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


def _check_media_type(headers: Headers) -> None:
    content_type = header(headers, b"content-type")
    if content_type is None:
        return  # bodies without a declared type are parsed as JSON
    media = content_type.split(b";", 1)[0].strip().lower()
    if media != b"application/json" and not media.endswith(b"+json"):
        raise UnsupportedMediaError(
            "send the body as JSON with content-type: application/json",
            details={"content_type": media.decode("latin-1")[:100]},
        )


class PredictEndpoint:
    """Handles the predict routes for every service of a ModelRuntime."""

    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        max_body_bytes: int,
        max_batch_inputs: int,
        max_headers: int = 100,
    ) -> None:
        self._runtime = runtime
        self._max_body_bytes = max_body_bytes
        self._max_headers = max_headers
        self._routes = {
            deployed.spec.name: ServiceRoute(deployed, max_batch_inputs=max_batch_inputs)
            for deployed in runtime
        }

    def route(self, name: str) -> ServiceRoute:
        """The route of a served model, or ServiceNotFoundError."""
        route = self._routes.get(name)
        if route is None:
            raise ServiceNotFoundError(f"no model named {name!r}")
        return route

    @staticmethod
    def match(path: str) -> tuple[str, bool] | None:
        """(model name, is_batch) for a predict path, else None."""
        if not path.startswith(PREFIX):
            return None
        rest = path[len(PREFIX) :]
        name, sep, tail = rest.partition("/")
        if not sep or not name:
            return None
        if tail == "predict":
            return name, False
        if tail == "predict/batch":
            return name, True
        return None

    async def respond(
        self, name: str, is_batch: bool, body: bytes, headers: Headers
    ) -> tuple[int, Headers, bytes]:
        """Status, headers and body for a predict call whose body is already read."""
        route = self.route(name)
        _check_media_type(headers)
        payload, extra = await (route.predict_batch(body) if is_batch else route.predict(body))
        return 200, extra, payload

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, name: str, is_batch: bool
    ) -> None:
        headers: Headers = scope["headers"]
        request_id = request_id_from(headers)
        scope[REQUEST_ID_KEY] = request_id
        extra: Headers
        try:
            if len(headers) > self._max_headers:
                raise TooManyHeadersError(f"request has more than {self._max_headers} headers")
            route = self.route(name)
            _check_media_type(headers)
            body = await read_body(receive, headers, self._max_body_bytes)
            payload, extra = await (route.predict_batch(body) if is_batch else route.predict(body))
            status = 200
        except ModelserveError as exc:
            status, extra, payload = render_error(exc, request_id)
            if status in (413, 431):
                extra.append((b"connection", b"close"))
        except Exception as exc:  # a bug of ours: generic 500, details only in the log
            status, extra, payload = render_error(exc, request_id)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    JSON_HEADER,
                    (b"content-length", str(len(payload)).encode()),
                    (REQUEST_ID_HEADER, request_id.encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
