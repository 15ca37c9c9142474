"""A job's row as the JSON body an HTTP client would send for it.

A JSON line is sent as it is. A CSV record or a Parquet row becomes an object of its columns;
CSV has no types, so each cell becomes the JSON value its field takes in the model's input
schema (`field_kinds`): a number for a number field, `true`/`false` for a boolean, a parsed
array or object for those, else the text; an empty cell is null for a field that takes null,
"" for a string field, and absent otherwise. What does not fit stays text, and the model's
schema then says what is wrong with it, exactly as for a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from modelserve.schemas.jobs import DataFormat


def field_kinds(input_schema: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """JSON types each top-level input field accepts, from the model's input JSON schema."""
    kinds: dict[str, tuple[str, ...]] = {}
    for name, prop in (input_schema.get("properties") or {}).items():
        found: list[str] = []
        for option in [prop, *prop.get("anyOf", []), *prop.get("oneOf", [])]:
            kind = option.get("type")
            if isinstance(kind, str):
                found.append(kind)
            elif isinstance(kind, list):
                found.extend(k for k in kind if isinstance(k, str))
            elif "$ref" in option or "properties" in option:
                found.append("object")
        kinds[name] = tuple(dict.fromkeys(found))
    return kinds


_OMIT = object()


def _cell(value: str, kinds: tuple[str, ...]) -> Any:
    """A CSV cell as the JSON value its field takes; left a string when it is not one."""
    if value == "":
        return None if "null" in kinds else (value if "string" in kinds else _OMIT)
    if "number" in kinds or "integer" in kinds:
        try:
            number = orjson.loads(value)
        except orjson.JSONDecodeError:
            number = None
        if isinstance(number, int | float) and not isinstance(number, bool):
            return number
    if "boolean" in kinds and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if "array" in kinds or "object" in kinds:
        try:
            nested = orjson.loads(value)
        except orjson.JSONDecodeError:
            nested = None
        if isinstance(nested, list | dict):
            return nested
    return value


class UnsendableValueError(ValueError):
    """Raised for a row value JSON cannot carry (raw bytes, a decimal...)."""


def as_json(
    row: bytes | dict[str, Any], fmt: DataFormat, kinds: Mapping[str, tuple[str, ...]]
) -> bytes:
    """The row as the JSON body of a predict request (raises UnsendableValueError)."""
    if isinstance(row, bytes):
        return row
    if fmt is DataFormat.CSV:
        converted = {k: _cell(v, kinds.get(k, ("string",))) for k, v in row.items()}
        row = {k: v for k, v in converted.items() if v is not _OMIT}
    try:
        return orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise UnsendableValueError(f"the row holds a value JSON cannot carry: {exc}") from None
