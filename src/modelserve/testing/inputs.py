"""Inputs made from a Service's input schema: valid ones to predict on, invalid ones to refuse.

`sample_inputs` needs nothing but the schema: the author's examples first (`Field(examples=...)`
or `json_schema_extra={"examples": [...]}` on the input model), then values built inside each
field's bounds. `input_strategy` is the same idea as a hypothesis strategy (hypothesis is
imported only when it is called: it is not a dependency of modelserve). Every valid input is
checked against the server's own strict codec before it is handed out, so "valid" means what
the server accepts.

`invalid_inputs` lists bodies the server must refuse with a 4xx and the error body, without
running the model: malformed JSON, the wrong shape, a missing field, an unknown field, a
wrong type, a value out of bounds, a NUL in a string, a repeated key.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from modelserve.errors import InvalidInputError
from modelserve.http.codec import ServiceCodec
from modelserve.service.base import Service
from modelserve.service.spec import ServiceSpec

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

# Bounds for numbers whose schema gives none: large enough to exercise a model, small enough
# not to overflow what it computes.
DEFAULT_LOW = -1000.0
DEFAULT_HIGH = 1000.0
MAX_ITEMS = 8
MAX_DEPTH = 8
ATTEMPTS = 200


@dataclass(frozen=True, slots=True)
class InvalidInput:
    """A body the server must refuse: what is wrong with it, the bytes, the statuses it may get."""

    label: str
    body: bytes
    statuses: tuple[int, ...] = (422,)


Described = type[Service[Any, Any]] | ServiceSpec


def spec_of(service: Described) -> ServiceSpec:
    """The ServiceSpec of a Service class (or the spec itself)."""
    return service if isinstance(service, ServiceSpec) else ServiceSpec.from_class(service)


def codec_of(spec: ServiceSpec) -> ServiceCodec:
    """The server's codec for the service (strict validation, as requests are validated)."""
    return ServiceCodec(spec, max_batch_inputs=spec.batching.max_queue)


def is_valid(codec: ServiceCodec, value: Any) -> bool:
    """Whether the server accepts `value` (JSON-able) as one input."""
    try:
        codec.parse_one(orjson.dumps(value))
    except (InvalidInputError, TypeError):
        return False
    return True


def sample_inputs(service: Described, count: int = 8, *, seed: int = 0) -> list[dict[str, Any]]:
    """Up to `count` valid inputs as JSON-able dicts: the schema's examples, then made ones.

    `service` is a Service class or its spec. Raises ValueError when none can be made (a
    `pattern` the generator cannot meet, say): give the input model examples.
    """
    spec = spec_of(service)
    codec = codec_of(spec)
    schema = spec.input_schema()
    found: list[dict[str, Any]] = [
        example for example in _examples(schema) if is_valid(codec, example)
    ][:count]
    rng = random.Random(seed)  # noqa: S311 - test inputs, not secrets
    for attempt in range(ATTEMPTS):
        if len(found) >= count:
            break
        # The first one is made of the fields' own examples where they have some.
        value = _make(schema, schema.get("$defs", {}), rng, 0, examples=attempt == 0)
        if isinstance(value, dict) and value not in found and is_valid(codec, value):
            found.append(value)
    if not found:
        raise ValueError(
            f"no valid input for {spec.name!r} could be made from its schema: add examples to"
            " the input model (Field(examples=[...]) or json_schema_extra={'examples': [...]})"
        )
    return found


def invalid_inputs(service: Described) -> list[InvalidInput]:
    """Bodies the server must refuse for this service, each with the statuses it may answer."""
    spec = spec_of(service)
    schema = spec.input_schema()
    defs = schema.get("$defs", {})
    valid = sample_inputs(spec, 1)[0]
    cases = [
        InvalidInput("not JSON", b'{"', (400,)),
        InvalidInput("a JSON array, not an object", b"[]"),
        InvalidInput("an unknown field", orjson.dumps({**valid, "not_a_field": 1})),
    ]
    if valid:
        cases.append(InvalidInput("a repeated key", _repeated(valid), (400,)))
    required = schema.get("required", [])
    if required:
        cases.append(InvalidInput("no fields", b"{}"))
        missing = {k: v for k, v in valid.items() if k != required[0]}
        cases.append(InvalidInput(f"{required[0]!r} missing", orjson.dumps(missing)))
    for name, node in schema.get("properties", {}).items():
        node = _resolve(node, defs)
        for label, wrong in _wrong_values(node):
            cases.append(InvalidInput(f"{name!r} {label}", orjson.dumps({**valid, name: wrong})))
    return cases


def input_strategy(service: Described) -> SearchStrategy[dict[str, Any]]:
    """A hypothesis strategy of valid inputs (JSON-able dicts) for a Service class or spec."""
    spec = spec_of(service)
    try:
        from hypothesis import strategies as st
    except ImportError as exc:  # pragma: no cover - depends on the user's environment
        raise ImportError("input_strategy needs hypothesis: pip install hypothesis") from exc
    codec = codec_of(spec)
    schema = spec.input_schema()
    examples = [e for e in _examples(schema) if is_valid(codec, e)]
    made = _strategy(st, schema, schema.get("$defs", {}), 0)
    strategy = st.one_of(st.sampled_from(examples), made) if examples else made
    return strategy.filter(lambda value: isinstance(value, dict) and is_valid(codec, value))


# -- making values ------------------------------------------------------------------------


def _examples(schema: dict[str, Any]) -> list[dict[str, Any]]:
    examples = schema.get("examples") or []
    return [e for e in examples if isinstance(e, dict)]


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        return dict(defs.get(ref.rsplit("/", 1)[-1], {}))
    if "allOf" in node and len(node["allOf"]) == 1:
        return {
            **_resolve(node["allOf"][0], defs),
            **{k: v for k, v in node.items() if k != "allOf"},
        }
    return node


def _choices(node: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The alternatives of a union, non-null ones first."""
    options = node.get("anyOf") or node.get("oneOf")
    if options is None and isinstance(node.get("type"), list):
        options = [{**node, "type": kind} for kind in node["type"]]
    if options is None:
        return None
    return sorted(options, key=lambda option: option.get("type") == "null")


def _bounds(node: dict[str, Any], integer: bool) -> tuple[float, float]:
    """The range a number may take: its schema's bounds (exclusive ones moved inside by a
    step), or a default span where one side or both are open."""
    step = 1 if integer else 1e-6
    low: float | None = node.get("minimum")
    if low is None and "exclusiveMinimum" in node:
        low = node["exclusiveMinimum"] + step
    high: float | None = node.get("maximum")
    if high is None and "exclusiveMaximum" in node:
        high = node["exclusiveMaximum"] - step
    span = 10.0 if integer else DEFAULT_HIGH
    if low is None and high is None:
        return (0.0, 10.0) if integer else (DEFAULT_LOW, DEFAULT_HIGH)
    if low is None:
        assert high is not None
        return float(high) - span, float(high)
    if high is None:
        return float(low), float(low) + span
    return float(low), float(high)


def _length(node: dict[str, Any], low_key: str, high_key: str, rng: random.Random) -> int:
    low = int(node.get(low_key, 0))
    high = int(node.get(high_key, max(low, 3)))
    return rng.randint(low, min(high, max(low, MAX_ITEMS)))


def _make(
    node: dict[str, Any],
    defs: dict[str, Any],
    rng: random.Random,
    depth: int,
    *,
    examples: bool = False,
) -> Any:
    node = _resolve(node, defs)
    if examples and node.get("examples"):
        return node["examples"][0]
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return rng.choice(node["enum"])
    options = _choices(node)
    if options is not None:
        option = options[0] if examples or rng.random() < 0.8 else rng.choice(options)
        return _make(option, defs, rng, depth, examples=examples)
    kind = node.get("type")
    if kind == "integer":
        low, high = _bounds(node, True)
        return rng.randint(int(low), int(high))
    if kind == "number":
        low, high = _bounds(node, False)
        return round(rng.uniform(low, high), 4) if high - low > 1e-3 else low
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "string":
        return _string(node, rng)
    if kind == "array":
        items = node.get("items", {})
        prefix = node.get("prefixItems")
        if prefix:
            return [_make(item, defs, rng, depth + 1, examples=examples) for item in prefix]
        return [
            _make(items, defs, rng, depth + 1, examples=examples)
            for _ in range(_length(node, "minItems", "maxItems", rng))
        ]
    if kind == "object" or "properties" in node:
        if depth > MAX_DEPTH:
            return {}
        required = set(node.get("required", []))
        return {
            name: _make(sub, defs, rng, depth + 1, examples=examples)
            for name, sub in node.get("properties", {}).items()
            if name in required or (not examples and rng.random() < 0.5)
        }
    return None


def _string(node: dict[str, Any], rng: random.Random) -> str:
    fixed = {
        "date-time": "2024-01-02T03:04:05Z",
        "date": "2024-01-02",
        "time": "03:04:05",
        "uuid": "12345678-1234-5678-1234-567812345678",
        "email": "someone@example.com",
        "uri": "https://example.com/",
    }.get(node.get("format", ""))
    if fixed is not None:
        return fixed
    size = _length(node, "minLength", "maxLength", rng)
    return (
        "".join(rng.choice("abcdefghij klmnopqrstuvwxyz") for _ in range(size)).strip()
        or "a" * size
    )


def _repeated(valid: dict[str, Any]) -> bytes:
    """`valid` with its first key written twice (JSON parsers disagree on which one wins)."""
    key, value = next(iter(valid.items()))
    pair = orjson.dumps({key: value})[1:-1]
    return b"{" + pair + b"," + orjson.dumps(valid)[1:]


def _wrong_values(node: dict[str, Any]) -> list[tuple[str, Any]]:
    """Values of the wrong type, or outside the field's bounds."""
    kind = node.get("type")
    wrong: list[tuple[str, Any]] = []
    if kind in ("number", "integer"):
        wrong.append(("as a string", "1"))
        if "minimum" in node or "exclusiveMinimum" in node:
            wrong.append(
                ("below its minimum", node.get("minimum", node.get("exclusiveMinimum", 0)) - 1)
            )
        if "maximum" in node or "exclusiveMaximum" in node:
            wrong.append(
                ("above its maximum", node.get("maximum", node.get("exclusiveMaximum", 0)) + 1)
            )
    elif kind == "string" and node.get("format") != "binary":
        wrong.append(("as a number", 1))
        wrong.append(("holding NUL", "a\u0000b"))
        if "maxLength" in node:
            wrong.append(("over its maxLength", "a" * (int(node["maxLength"]) + 1)))
    elif kind == "boolean":
        wrong.append(("as a string", "true"))
    elif kind == "array":
        wrong.append(("as an object", {}))
        if "maxItems" in node:
            items = [None] * (int(node["maxItems"]) + 1)
            wrong.append(("over its maxItems", items))
    elif kind == "object":
        wrong.append(("as a list", []))
    return wrong


def _strategy(st: Any, node: dict[str, Any], defs: dict[str, Any], depth: int) -> Any:
    node = _resolve(node, defs)
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    options = _choices(node)
    if options is not None:
        return st.one_of([_strategy(st, option, defs, depth) for option in options])
    kind = node.get("type")
    if kind == "integer":
        low, high = _bounds(node, True)
        return st.integers(int(low), int(high))
    if kind == "number":
        low, high = _bounds(node, False)
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string":
        return st.text(
            st.characters(blacklist_categories=("Cs", "Cc")),
            min_size=int(node.get("minLength", 0)),
            max_size=int(node.get("maxLength", 32)),
        )
    if kind == "array":
        prefix = node.get("prefixItems")
        if prefix:
            return st.tuples(*(_strategy(st, item, defs, depth + 1) for item in prefix)).map(list)
        return st.lists(
            _strategy(st, node.get("items", {}), defs, depth + 1),
            min_size=int(node.get("minItems", 0)),
            max_size=int(node.get("maxItems", MAX_ITEMS)),
        )
    if kind == "object" or "properties" in node:
        if depth > MAX_DEPTH:
            return st.just({})
        properties = node.get("properties", {})
        required = set(node.get("required", []))
        return st.fixed_dictionaries(
            {n: _strategy(st, s, defs, depth + 1) for n, s in properties.items() if n in required},
            optional={
                n: _strategy(st, s, defs, depth + 1)
                for n, s in properties.items()
                if n not in required
            },
        )
    return st.none()
