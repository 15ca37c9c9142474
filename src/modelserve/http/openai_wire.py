"""OpenAI's request and response shapes, mapped onto a model's inputs and outputs.

Requests are pydantic models with `extra="forbid"`: a parameter OpenAI has and modelserve does
not serve (tools, logprobs, n > 1, ...) is a 400 naming it, never silently ignored. The
`WireFormat`s here are made per request (they carry the parsed request): the pipeline calls
`check` in its decode step (the body's media type, then the request's own 400s, so that they
come after authentication), `parse` in validate (the model's input, validated by the version's
strict codec) and, for embeddings, `dump` in encode. Every error is OpenAI's error object,
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelserve.errors import (
    ItemRejectedError,
    MalformedBodyError,
    OutputMismatchError,
    ServiceNotFoundError,
    UnsupportedMediaError,
)
from modelserve.http.codec import check_media_type
from modelserve.http.wire import WireFormat
from modelserve.service.openai import text_field, vector_field

if TYPE_CHECKING:
    from modelserve.http.codec import Headers, ServiceCodec
    from modelserve.http.pipeline import PredictCall

# OpenAI's `type` of an error, by modelserve's error code (anything else: invalid_request_error).
ERROR_TYPES = {
    "unauthenticated": "authentication_error",
    "forbidden": "permission_error",
    "rate_limited": "rate_limit_error",
    "model_not_found": "not_found_error",
    "overloaded": "server_error",
    "model_unavailable": "server_error",
    "deadline_exceeded": "server_error",
    "prediction_failed": "server_error",
    "invalid_model_output": "server_error",
    "internal_error": "server_error",
    "server_misconfigured": "server_error",
    "database_unavailable": "server_error",
}
# OpenAI's own codes where its clients look for them.
ERROR_CODES = {"unauthenticated": "invalid_api_key", "rate_limited": "rate_limit_exceeded"}
MAX_STOP = 4
MAX_STOP_CHARS = 200
# Size limits of the requests, chosen so that a body at (or one past) any of them, every
# character escaped as \uXXXX, still fits the default 4 MiB body limit: a request over one is
# a 400 naming the field rather than a 413.
MAX_PROMPT_CHARS = 32_768
MAX_MESSAGES = 64
MAX_MESSAGE_CHARS = 8192
MAX_PARTS = 4
MAX_PART_CHARS = 2048
MAX_EMBEDDING_INPUTS = 256
MAX_EMBEDDING_CHARS = 2048


# Parameters OpenAI has and modelserve does not serve: their schema allows only the default
# (so a contract test's valid requests are served), and a request that sets one is a 400
# with this message.
UNSUPPORTED = {
    "n": "only n=1 is supported",
    "best_of": "only best_of=1 is supported",
    "logprobs": "logprobs are not supported",
    "top_logprobs": "logprobs are not supported",
    "logit_bias": "logit_bias is not supported",
    "presence_penalty": "presence_penalty is not supported (only 0)",
    "frequency_penalty": "frequency_penalty is not supported (only 0)",
    "tools": "tools are not supported",
    "tool_choice": "tools are not supported",
    "functions": "functions are not supported",
    "function_call": "functions are not supported",
    "parallel_tool_calls": "tools are not supported",
    "response_format": "only response_format {'type': 'text'} is supported",
    "echo": "echo is not supported",
    "suffix": "suffix is not supported",
}
Unset = Annotated[None, Field(description="Not supported: only null")]
Zero = Annotated[float, Field(ge=0, le=0, description="Not supported: only 0")]
Stop = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
Prompt = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]


class OpenAIRequestError(MalformedBodyError):
    """A request OpenAI's API would refuse with 400 (`param` names the culprit)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        # A list-shaped code: the pipeline turns each key into one problem's location.
        super().__init__(message, details={param: None} if param else None)


def openai_error(code: str, message: str, details: Any, request_id: str | None) -> bytes:
    """OpenAI's error object for one of modelserve's errors."""
    param: Any = None
    if isinstance(details, dict):
        param = details.get("param")
    elif isinstance(details, list) and details and isinstance(details[0], dict):
        loc = details[0].get("loc")
        if isinstance(loc, list | tuple):
            param = ".".join(str(p) for p in loc if p not in ("body", "inputs"))
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": ERROR_TYPES.get(code, "invalid_request_error"),
                "param": param if isinstance(param, str) and param else None,
                "code": ERROR_CODES.get(code, code),
            }
        }
    )


class _Strict(BaseModel):
    # Unknown parameters are refused by name: a client must not believe one was applied.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class StreamOptions(_Strict):
    """`stream_options`: a last chunk with the usage when `include_usage`."""

    include_usage: bool = False


class ResponseFormat(_Strict):
    """Only plain text."""

    type: Literal["text"]


class TextPart(_Strict):
    """One text part of a message's content."""

    type: Literal["text"]
    text: str = Field(max_length=MAX_PART_CHARS)


class Message(_Strict):
    """One chat message; only text content is served."""

    role: Literal["system", "developer", "user", "assistant"]
    content: (
        Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]
        | Annotated[list[TextPart], Field(max_length=MAX_PARTS)]
    )
    name: str | None = Field(None, max_length=64)


class _Generation(_Strict):
    """What chat and text completions share."""

    model: str = Field(min_length=1, max_length=64)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: Stop | Annotated[list[Stop], Field(max_length=MAX_STOP)] | None = None
    n: int | None = Field(None, ge=1, le=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    seed: int | None = None
    presence_penalty: Zero | None = None
    frequency_penalty: Zero | None = None
    logit_bias: Unset = None

    @property
    def stops(self) -> list[str]:
        """`stop` as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        """A streamed answer ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage


class ChatRequest(_Generation):
    """`POST /v1/chat/completions`."""

    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: Literal[False] | None = None
    top_logprobs: Unset = None
    tools: Unset = None
    tool_choice: Unset = None
    functions: Unset = None
    function_call: Unset = None
    parallel_tool_calls: Unset = None
    response_format: ResponseFormat | None = None

    @property
    def limit(self) -> int | None:
        """The most tokens to generate."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def prompt_text(self) -> str:
        """The messages as one prompt: their text, one message per line."""
        lines = []
        for message in self.messages:
            content = message.content
            lines.append(content if isinstance(content, str) else "".join(p.text for p in content))
        return "\n".join(lines)


class CompletionRequest(_Generation):
    """`POST /v1/completions`."""

    prompt: Prompt | Annotated[list[Prompt], Field(min_length=1, max_length=1)]
    logprobs: Unset = None
    echo: Literal[False] | None = None
    suffix: Unset = None
    best_of: int | None = Field(None, ge=1, le=1)

    @property
    def limit(self) -> int | None:
        """The most tokens to generate (OpenAI's default for this route is 16)."""
        return self.max_tokens if self.max_tokens is not None else 16

    @property
    def prompt_text(self) -> str:
        """The one prompt."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class EmbeddingsRequest(_Strict):
    """`POST /v1/embeddings`. Text only: token arrays need OpenAI's tokenizer."""

    model: str = Field(min_length=1, max_length=64)
    input: (
        Annotated[str, Field(max_length=MAX_EMBEDDING_CHARS)]
        | Annotated[
            list[Annotated[str, Field(max_length=MAX_EMBEDDING_CHARS)]],
            Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS),
        ]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = Field(None, max_length=256)

    @property
    def texts(self) -> list[str]:
        """The texts to embed."""
        return [self.input] if isinstance(self.input, str) else list(self.input)


def read_request(model: type[BaseModel], body: bytes) -> tuple[BaseModel | None, Exception | None]:
    """The parsed request, or the 400 to answer (raised later, after authentication)."""
    try:
        return model.model_validate_json(body), None
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    loc = error["loc"]
    param = ".".join(str(p) for p in loc) or None
    if error["type"] == "json_invalid":
        return None, OpenAIRequestError("the body is not valid JSON", None)
    if error["type"] == "extra_forbidden":
        return None, OpenAIRequestError(f"unrecognized request argument: {param}", param)
    top = str(loc[0]) if loc else ""
    if top in UNSUPPORTED:
        return None, OpenAIRequestError(UNSUPPORTED[top], top)
    if top == "input" and model is EmbeddingsRequest:
        return None, OpenAIRequestError(
            "input must be a string or a non-empty array of strings", top
        )
    return None, OpenAIRequestError(f"{param}: {error['msg']}", param)


def model_name(body: bytes) -> str:
    """The `model` a request body names, "" when it names none (read before authentication,
    which needs the model's name for the `predict:<model>` scope)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    name = data.get("model") if isinstance(data, dict) else None
    return name if isinstance(name, str) and len(name) <= 64 else ""


class _OpenAIWire(WireFormat):
    """A format carrying its parsed request, or the 400 it answers after authentication."""

    name = "openai"
    kind = ""

    def __init__(self, request: Any, problem: Exception | None) -> None:
        self.request = request
        self.problem = problem

    def check(self, call: PredictCall) -> None:
        if check_media_type(call.headers):
            raise UnsupportedMediaError(
                "OpenAI routes take JSON", details={"content_type": "application/octet-stream"}
            )
        if self.problem is not None:
            raise self.problem

    def error_body(self, code: str, message: str, details: Any, request_id: str | None) -> bytes:
        return openai_error(code, message, details, request_id)

    def require_kind(self, call: PredictCall) -> None:
        """404 unless the admitted model is marked for this route."""
        deployed = call.deployed
        assert deployed is not None  # admitted
        if deployed.spec.openai != self.kind:
            raise ServiceNotFoundError(
                f"model {call.name!r} is not served on this route (it is not marked"
                f" openai = {self.kind!r})",
                details={"param": "model"},
            )


class EmbeddingsWire(_OpenAIWire):
    """Embeddings: each input text is one input of the model; its vectors, OpenAI's list."""

    kind = "embeddings"

    def parse(self, call: PredictCall, codec: ServiceCodec) -> list[Any]:
        self.require_kind(call)
        deployed = call.deployed
        assert deployed is not None
        field = text_field(deployed.spec.input_type)
        request: EmbeddingsRequest = self.request
        texts = request.texts
        if len(texts) > codec.max_inputs:
            raise OpenAIRequestError(f"at most {codec.max_inputs} inputs per request", "input")
        return codec.parse_batch(orjson.dumps({"inputs": [{field: t} for t in texts]}))

    def dump(
        self, call: PredictCall, codec: ServiceCodec, results: list[Any]
    ) -> tuple[bytes, Headers]:
        deployed = call.deployed
        assert deployed is not None
        field = vector_field(deployed.spec.output_type)
        assert field is not None  # checked when the service was defined
        request: EmbeddingsRequest = self.request
        data = []
        for index, result in enumerate(results):
            if isinstance(result, ItemRejectedError):
                raise result
            vector = np.asarray(getattr(result, field), dtype=np.float64)
            if request.dimensions is not None:
                if request.dimensions > len(vector):
                    raise OpenAIRequestError(
                        f"dimensions must be at most {len(vector)} for this model", "dimensions"
                    )
                # Truncated and renormalised, as OpenAI's shortened embeddings are.
                vector = vector[: request.dimensions]
                norm = float(np.linalg.norm(vector))
                vector = vector / norm if norm > 0 else vector
            if not np.isfinite(vector).all():
                raise OutputMismatchError("the model returned a non-finite embedding")
            encoded: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if request.encoding_format == "base64"
                else vector.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(count_words(t) for t in request.texts)
        payload = orjson.dumps(
            {
                "object": "list",
                "data": data,
                "model": call.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
        return payload, [codec.version_header]


class GenerationWire(_OpenAIWire):
    """Chat and text completions: the request's prompt and parameters as the model's input."""

    kind = "completions"
    # The most tokens the answer may have: the request's, else the model's own default.
    limit: int | None = None

    def parse(self, call: PredictCall, codec: ServiceCodec) -> list[Any]:
        self.require_kind(call)
        deployed = call.deployed
        assert deployed is not None
        request: ChatRequest | CompletionRequest = self.request
        fields = deployed.spec.input_type.model_fields
        values: dict[str, Any] = {"prompt": request.prompt_text}
        given = {
            "max_tokens": request.limit,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": request.stops or None,
        }
        for name, value in given.items():
            if value is not None and name in fields:
                values[name] = value
        self.limit = request.limit
        default = fields["max_tokens"].default if "max_tokens" in fields else None
        if self.limit is None and isinstance(default, int):
            self.limit = default  # so that an answer cut there says "length", not "stop"
        return codec.parse_batch(orjson.dumps({"inputs": [values]}))


def count_words(text: str) -> int:
    """Tokens of a text for `usage` when the model counts none of its own: its words."""
    return len(text.split())


def completion_id(chat: bool) -> str:
    """A new completion id in OpenAI's form."""
    return ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)


class StopScanner:
    """Text as it streams, cut before the first stop string.

    A stop string may arrive split over chunks, so the last `len(longest) - 1` characters are
    held back until the next chunk shows they do not start one.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The text that may go out now; sets `stopped` when a stop string was found."""
        if not self.stops:
            return text
        self.pending += text
        found = [i for s in self.stops if (i := self.pending.find(s)) >= 0]
        if found:
            self.stopped = True
            out, self.pending = self.pending[: min(found)], ""
            return out
        cut = len(self.pending) - self.hold
        if cut <= 0:
            return ""
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        """What is held back, at the end of the text."""
        out, self.pending = self.pending, ""
        return out


def now() -> int:
    """OpenAI's `created`: Unix seconds."""
    return int(time.time())
