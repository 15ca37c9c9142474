"""A model's input JSON schema as form fields, and posted fields back as its JSON body.

Numbers, integers, strings (a list when the schema names its values), booleans and lists of
numbers (typed comma-separated) get a form control each; anything else (nested objects,
unions of several kinds) is a JSON text box for that field. A model whose input is one `bytes`
field gets a file upload instead, sent as the raw body. Checking the values is the predict
endpoint's job: this only converts what the form can say into JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from modelserve.errors import InvalidInputError

ModelT = TypeVar("ModelT", bound=BaseModel)
Kind = Literal["number", "integer", "string", "choice", "boolean", "numbers", "json"]
MAX_FIELDS = 100


@dataclass(frozen=True, slots=True)
class FormField:
    """One control of the playground form."""

    name: str
    kind: Kind
    label: str
    description: str
    required: bool
    choices: tuple[str, ...] = ()
    example: str = ""


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    # `X | None` is anyOf [X, null]: the form leaves the field empty for null.
    options = schema.get("anyOf")
    if isinstance(options, list):
        kinds = [o for o in options if isinstance(o, dict) and o.get("type") != "null"]
        if len(kinds) == 1:
            return {**schema, **kinds[0]}
    return schema


def _kind(schema: dict[str, Any]) -> Kind:
    kind = schema.get("type")
    if kind == "number":
        return "number"
    if kind == "integer":
        return "integer"
    if kind == "boolean":
        return "boolean"
    if kind == "string":
        return "choice" if isinstance(schema.get("enum"), list) else "string"
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, dict) and items.get("type") in ("number", "integer"):
            return "numbers"
    return "json"


def _example(schema: dict[str, Any]) -> str:
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        value = examples[0]
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    return ""


def form_fields(schema: dict[str, Any]) -> list[FormField]:
    """The controls for an input schema's top-level properties, in declaration order."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required = set(schema.get("required", []))
    fields = []
    for name, raw in list(properties.items())[:MAX_FIELDS]:
        prop = _plain(raw) if isinstance(raw, dict) else {}
        kind = _kind(prop)
        fields.append(
            FormField(
                name=str(name),
                kind=kind,
                label=str(prop.get("title", name)),
                description=str(prop.get("description", "")),
                required=name in required,
                choices=tuple(str(c) for c in prop.get("enum", ())) if kind == "choice" else (),
                example=_example(prop),
            )
        )
    return fields


def _number(text: str, name: str, integer: bool) -> float | int:
    try:
        value: float | int = int(text) if integer else float(text)
    except ValueError:
        raise InvalidInputError(f"{name}: {text!r} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"{name}: {text!r} is not a finite number")
    return value


def body_from_form(fields: list[FormField], values: dict[str, str]) -> bytes:
    """The JSON body the form's values stand for. Empty optional fields are left out (the
    model's default applies); InvalidInputError names a value that cannot be converted."""
    body: dict[str, Any] = {}
    for field in fields:
        text = values.get(field.name, "")
        if field.kind == "boolean":
            body[field.name] = text == "on"
            continue
        if text.strip() == "" and field.kind != "string":
            continue
        if field.kind in ("number", "integer"):
            body[field.name] = _number(text.strip(), field.name, field.kind == "integer")
        elif field.kind == "numbers":
            parts = [p.strip() for p in text.split(",") if p.strip()]
            body[field.name] = [_number(p, field.name, False) for p in parts]
        elif field.kind == "json":
            try:
                body[field.name] = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise InvalidInputError(f"{field.name}: not valid JSON") from None
        elif text or field.required:
            body[field.name] = text
    return orjson.dumps(body)


def parse(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    """`model` validated from form values; InvalidInputError naming the first bad field (its
    value is not repeated: the page shows the form again with it)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def invalid_input(exc: ValidationError) -> InvalidInputError:
    """The first problem of a validation error, in the words the API uses (422)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "form"
    return InvalidInputError(f"{where}: {first['msg']}")
