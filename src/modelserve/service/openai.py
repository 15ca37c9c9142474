"""What a Service marked `openai = ...` must look like, and the fields the routes map onto.

Checked once when the class is described (`ServiceSpec.from_class`), so a model that cannot
answer OpenAI's shapes fails at definition with the fix named, never at its first request.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel

from modelserve.errors import ServiceDefinitionError

# Request parameters a completions model's input may take, as OpenAI names them.
COMPLETION_PARAMS = ("max_tokens", "temperature", "top_p", "stop")


def text_field(model: type[BaseModel]) -> str | None:
    """The one required `str` field of an embeddings model's input, else None."""
    required = [name for name, f in model.model_fields.items() if f.is_required()]
    if len(required) == 1 and model.model_fields[required[0]].annotation is str:
        return required[0]
    return None


def vector_field(model: type[BaseModel]) -> str | None:
    """The one `list[float]` field of an embeddings model's output, else None."""
    found = [
        name
        for name, f in model.model_fields.items()
        if typing.get_origin(f.annotation) is list and typing.get_args(f.annotation) == (float,)
    ]
    return found[0] if len(found) == 1 else None


def check_openai(
    label: str, kind: Any, input_type: type[BaseModel], output_type: type[BaseModel], streams: bool
) -> None:
    """ServiceDefinitionError when `kind` is set and the model does not fit its routes."""
    if kind is None:
        return
    if kind == "embeddings":
        if text_field(input_type) is None:
            raise ServiceDefinitionError(
                f"{label}.openai = 'embeddings' needs an input with exactly one required str"
                " field (the text)"
            )
        if vector_field(output_type) is None:
            raise ServiceDefinitionError(
                f"{label}.openai = 'embeddings' needs an output with exactly one list[float]"
                " field (the vector)"
            )
        return
    if kind == "completions":
        if not streams:
            raise ServiceDefinitionError(
                f"{label}.openai = 'completions' needs predict_stream(item) yielding text"
            )
        fields = input_type.model_fields
        prompt = fields.get("prompt")
        if prompt is None or prompt.annotation is not str:
            raise ServiceDefinitionError(
                f"{label}.openai = 'completions' needs an input with a `prompt: str` field"
            )
        extra = [
            name
            for name, f in fields.items()
            if f.is_required() and name != "prompt" and name not in COMPLETION_PARAMS
        ]
        if extra:
            raise ServiceDefinitionError(
                f"{label}.openai = 'completions': input fields {extra} are required but OpenAI"
                f" requests cannot set them (only prompt and {', '.join(COMPLETION_PARAMS)})"
            )
        return
    raise ServiceDefinitionError(
        f"{label}.openai must be 'embeddings', 'completions' or None (got {kind!r})"
    )
