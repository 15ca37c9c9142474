"""Strict wire validation for model inputs.

Model authors write plain Pydantic models. On the wire we validate them strictly: unknown fields,
NaN/Infinity, type coercion ("1.5" for a float, true for a number), NUL bytes and lone surrogates
are all rejected with the offending field named. `strict_model` derives a strict twin of a model
(recursively through nested models); `find_bad_strings` catches what JSON parsing lets through.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model
from pydantic.fields import FieldInfo

STRICT_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

_cache: dict[type[BaseModel], type[BaseModel]] = {}


def strict_model(model: type[BaseModel]) -> type[BaseModel]:
    """Return a subclass of `model` that validates strictly, nested models included.

    Instances are still instances of `model`, so `predict` receives the author's type.
    """
    cached = _cache.get(model)
    if cached is not None:
        return cached
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = _strict_annotation(info.annotation)
        if annotation is not info.annotation:
            new_info = FieldInfo.merge_field_infos(info, annotation=annotation)
            fields[name] = (annotation, new_info)
    config = ConfigDict(**{**model.model_config, **STRICT_CONFIG})
    derived: type[BaseModel] = create_model(
        model.__name__,
        __base__=model,
        __module__=model.__module__,
        __doc__=model.__doc__,
        **fields,
    )
    derived.model_config = config
    derived.model_rebuild(force=True)
    _cache[model] = derived
    return derived


def _strict_annotation(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return strict_model(annotation)
    origin = typing.get_origin(annotation)
    if origin is None:
        return annotation
    args = typing.get_args(annotation)
    new_args = tuple(_strict_annotation(a) for a in args)
    if all(a is b for a, b in zip(args, new_args, strict=True)):
        return annotation
    if origin is typing.Annotated:
        return typing.Annotated[(new_args[0], *annotation.__metadata__)]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[new_args]  # noqa: UP007 - built from a runtime tuple
    if origin is typing.Literal:
        return annotation
    return origin[new_args] if len(new_args) != 1 else origin[new_args[0]]


# A JSON escape that decodes to NUL or to a UTF-16 surrogate half, preceded by an even number
# of backslashes (so `\\u0000`, an escaped backslash then "u0000", does not match).
_SUSPECT_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def may_hold_bad_strings(body: bytes) -> bool:
    """Cheap pre-check: can this JSON body decode to a string with NUL or a lone surrogate?

    Raw control characters are invalid JSON and raw surrogates are invalid UTF-8, so only
    escapes need a look; bodies without them (nearly all) cost one substring search.
    """
    return b"\\u" in body and _SUSPECT_ESCAPE.search(body) is not None


def find_bad_strings(body: bytes) -> list[dict[str, Any]]:
    """List the JSON paths of strings holding NUL or lone surrogates, as validation errors."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    errors = []
    for loc, reason in _walk(data, ()):
        errors.append({"loc": list(loc), "msg": reason, "type": "string_forbidden_character"})
    return errors


def _walk(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        reason = _bad_string_reason(value)
        if reason:
            yield loc, reason
    elif isinstance(value, dict):
        for key, item in value.items():
            key_reason = _bad_string_reason(key)
            if key_reason:
                yield (*loc, key), f"key: {key_reason}"
            yield from _walk(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*loc, index))


def _bad_string_reason(text: str) -> str | None:
    if "\x00" in text:
        return "String must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "String must not contain lone UTF-16 surrogates"
    return None


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        duplicate = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _DuplicateKeyError(duplicate)
    return dict(pairs)


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


# Above this size the duplicate-key scan is skipped: it parses the body a second time with the
# standard library, which is cheap for request-sized JSON and not for multi-megabyte tensors,
# where the fast parser's last-key-wins rule applies instead (documented in docs/api.md).
DUPLICATE_SCAN_MAX_BYTES = 64 * 1024
_KEY_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"\s*:')


def find_duplicate_key(body: bytes) -> str | None:
    """The first key that appears twice in one JSON object of the body, if any.

    Cheap screens first: a body with fewer than two ':' cannot hold two keys, and one whose
    key-like tokens are all different cannot repeat a key in an object. The token pattern
    matches every real key (and may match inside string values, which only sends the body on
    to the full check), so only bodies that repeat a key name somewhere pay for a second parse.
    """
    if len(body) > DUPLICATE_SCAN_MAX_BYTES or body.count(b":") < 2:
        return None
    keys = _KEY_TOKEN.findall(body)
    if len(keys) == len(set(keys)):
        return None
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKeyError as exc:
        return exc.key
    except ValueError:
        return None
    return None
