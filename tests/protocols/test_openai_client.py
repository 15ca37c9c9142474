"""The OpenAI-compatible routes held to the real, unmodified `openai` client against a real
`modelserve serve` of examples/embeddings.py (MiniLM) and examples/textgen.py (fables), with
API-key auth on: a modelserve key is the client's `api_key`.

Text generation runs at `temperature=0` where answers are compared, so they are deterministic.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import openai
import orjson
import pytest

from tests.e2e.server import ServerProcess
from tests.protocols.support import EXAMPLES, served_with_keys

pytestmark = pytest.mark.e2e

CHAT = [{"role": "user", "content": "The Fox"}]


@dataclass
class Server:
    process: ServerProcess
    key: str  # predict:*
    fables_key: str  # predict:fables only

    def client(self, key: str | None = None, base: str = "/openai/v1") -> openai.OpenAI:
        # Its connections are the server's clients: closed when the server stops.
        http = httpx.Client(timeout=30)
        self.process.clients.append(http)
        return openai.OpenAI(
            base_url=self.process.base_url + base,
            api_key=key or self.key,
            max_retries=0,
            http_client=http,
        )

    def http(self) -> httpx.Client:
        return self.process.client(headers={"authorization": f"Bearer {self.key}"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    targets = [EXAMPLES / "textgen.py", EXAMPLES / "embeddings.py"]
    with served_with_keys(
        tmp_path_factory.mktemp("openai"), targets, ["predict:*", "predict:fables"]
    ) as (process, keys):
        yield Server(process, *keys)


def test_models_list_in_openais_shape_only_under_the_openai_base(server: Server) -> None:
    ids = {model.id for model in server.client().models.list()}
    assert ids == {"fables", "minilm"}
    assert [m.id for m in server.client(server.fables_key).models.list()] == ["fables"]
    model = server.client().models.retrieve("minilm")
    assert (model.id, model.object, model.owned_by) == ("minilm", "model", "modelserve")
    with pytest.raises(openai.NotFoundError):
        server.client(server.fables_key).models.retrieve("minilm")
    # modelserve's own catalogue keeps its shape.
    native = server.http().get("/v1/models").json()
    assert {m["name"] for m in native["data"]} == {"fables", "minilm"}
    assert all("status" in m for m in native["data"])


def test_embeddings_match_the_native_route(server: Server) -> None:
    texts = ["A man is playing a guitar.", "The Fox and the Grapes"]
    result = server.client().embeddings.create(model="minilm", input=texts)
    assert result.object == "list"
    assert result.model == "minilm"
    assert [d.index for d in result.data] == [0, 1]
    assert result.usage.prompt_tokens == result.usage.total_tokens == 11  # words
    native = server.http().post("/v1/models/minilm/predict", json={"text": texts[0]}).json()
    assert np.allclose(result.data[0].embedding, native["embedding"], atol=1e-6)
    one = server.client(base="/v1").embeddings.create(model="minilm", input=texts[1])
    assert np.allclose(one.data[0].embedding, result.data[1].embedding, atol=1e-6)


def test_embeddings_as_base64_and_shortened(server: Server) -> None:
    client = server.client()
    # Without encoding_format the client asks for base64 and decodes it to floats itself.
    floats = client.embeddings.create(model="minilm", input="hello").data[0].embedding
    assert len(floats) == 384
    plain = client.embeddings.create(model="minilm", input="hello", encoding_format="float")
    assert np.allclose(plain.data[0].embedding, floats, atol=1e-6)
    raw = client.embeddings.create(model="minilm", input="hello", encoding_format="base64")
    packed = raw.data[0].embedding
    assert isinstance(packed, str)
    vector = np.frombuffer(base64.b64decode(packed), dtype="<f4")
    assert np.allclose(vector, floats, atol=1e-6)
    short = client.embeddings.create(model="minilm", input="hello", dimensions=64)
    assert len(short.data[0].embedding) == 64
    assert abs(np.linalg.norm(short.data[0].embedding) - 1.0) < 1e-6
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="minilm", input="hello", dimensions=1000)
    assert info.value.body["param"] == "dimensions"  # type: ignore[index]


def test_chat_completion_with_and_without_stream(server: Server) -> None:
    client = server.client()
    whole = client.chat.completions.create(
        model="fables", messages=CHAT, max_tokens=8, temperature=0
    )
    assert whole.object == "chat.completion"
    assert whole.id.startswith("chatcmpl-")
    choice = whole.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "length"
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 8
    assert whole.usage.prompt_tokens == 2
    text = choice.message.content
    assert text and len(text.split()) >= 6

    stream = client.chat.completions.create(
        model="fables",
        messages=CHAT,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    assert set(finishes[:-1]) == {None}
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8


def test_stream_ends_with_done_in_openais_exact_format(server: Server) -> None:
    body = {"model": "fables", "messages": CHAT, "max_tokens": 3, "stream": True}
    response = server.http().post("/openai/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.endswith("data: [DONE]\n\n")
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    first = orjson.loads(events[0][len("data: ") :])
    assert first["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert "usage" not in first  # only with stream_options.include_usage


def test_text_completion_with_stop(server: Server) -> None:
    client = server.client()
    long = client.completions.create(
        model="fables", prompt="The Lion", max_tokens=30, temperature=0
    )
    assert long.object == "text_completion"
    assert long.id.startswith("cmpl-")
    text = long.choices[0].text
    stop = text.split()[2]  # a word the model will write
    cut = client.completions.create(
        model="fables", prompt="The Lion", max_tokens=30, temperature=0, stop=[stop]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[: text.index(stop)]
    streamed = client.completions.create(
        model="fables", prompt="The Lion", max_tokens=30, temperature=0, stop=stop, stream=True
    )
    pieces = list(streamed)
    assert "".join(p.choices[0].text for p in pieces) == cut.choices[0].text
    assert pieces[-1].choices[0].finish_reason == "stop"


def test_unsupported_and_bad_requests_get_openai_errors(server: Server) -> None:
    client = server.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="fables", messages=CHAT, n=2)
    assert info.value.body == {  # type: ignore[comparison-overlap]
        "message": "only n=1 is supported",
        "type": "invalid_request_error",
        "param": "n",
        "code": "malformed_body",
    }
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="fables",
            messages=CHAT,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    assert info.value.body["param"] == "tools"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="fables", messages=CHAT, logprobs=True)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=CHAT)
    with pytest.raises(openai.NotFoundError):  # minilm does not generate text
        client.chat.completions.create(model="minilm", messages=CHAT)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="fables", input="x")
    with pytest.raises(openai.UnprocessableEntityError):  # the model's own limit: 2000
        client.embeddings.create(model="minilm", input="x" * 2001)
    with pytest.raises(openai.BadRequestError) as info:  # the route's: 2048
        client.embeddings.create(model="minilm", input="x" * 2049)
    assert info.value.body["param"] == "input"  # type: ignore[index]
    http = server.http()
    for body in (
        b"{",
        b"[]",
        b'{"model": "fables"}',
        b'{"model": "fables", "messages": [], "x": 1}',
    ):
        response = http.post(
            "/openai/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400, body
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_keys_work_as_openai_bearer_keys(server: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        server.client("ms_not_a_key").embeddings.create(model="minilm", input="x")
    assert info.value.body["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(openai.PermissionDeniedError):
        server.client(server.fables_key).embeddings.create(model="minilm", input="x")
    answer = server.client(server.fables_key).completions.create(
        model="fables", prompt="A", max_tokens=2
    )
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 2
    # No credential at all: 401 before the body is looked at.
    response = httpx.post(server.process.base_url + "/openai/v1/chat/completions", content=b"{")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
