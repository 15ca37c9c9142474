"""Bad inputs against a real server (V3-V10): each gets a clear 4xx, and the server keeps serving.

The body limit is 2 MiB here so that 1 MB strings and 100 000-deep nesting reach the parser.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.probes import assert_serving, model_stats
from tests.e2e.server import ServerProcess, launch
from tests.e2e.services import TEXT_MAX_LENGTH

pytestmark = pytest.mark.e2e

MAX_BATCH_INPUTS = 32
ECHO = "/v1/models/echo/predict"
ECHO_BATCH = "/v1/models/echo/predict/batch"
MATRIX = "/v1/models/matrix/predict"
TEXT = "/v1/models/text/predict"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "MODELSERVE_HTTP__MAX_BODY_BYTES": str(2 * 1024 * 1024),
        "MODELSERVE_HTTP__MAX_BATCH_INPUTS": str(MAX_BATCH_INPUTS),
    }
    with launch(tmp_path_factory.mktemp("bad-input"), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> httpx.Client:
    return server.client()


def post(client: httpx.Client, path: str, body: bytes | str) -> httpx.Response:
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return client.post(path, content=raw, headers={"content-type": "application/json"})


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def locs(response: httpx.Response) -> list[list[Any]]:
    return [d["loc"] for d in error_of(response)["details"]]


# -- V3: batch size and many tiny instances ----------------------------------------------------


def test_v3_batch_over_the_input_cap_is_422_naming_the_limit(client: httpx.Client) -> None:
    response = client.post(
        ECHO_BATCH, json={"inputs": [{"values": [1.0]}] * (MAX_BATCH_INPUTS + 1)}
    )
    assert response.status_code == 422
    detail = error_of(response)["details"][0]
    assert detail["loc"] == ["inputs"]
    assert detail["type"] == "too_long"
    assert str(MAX_BATCH_INPUTS) in detail["msg"]
    assert_serving(client)


def test_v3_batch_at_the_cap_is_served(client: httpx.Client) -> None:
    inputs = [{"values": [float(i)]} for i in range(MAX_BATCH_INPUTS)]
    response = client.post(ECHO_BATCH, json={"inputs": inputs})
    assert response.status_code == 200, response.text
    assert [o["total"] for o in response.json()["outputs"]] == [
        float(i) for i in range(MAX_BATCH_INPUTS)
    ]


def test_v3_empty_batch_is_422(client: httpx.Client) -> None:
    response = client.post(ECHO_BATCH, json={"inputs": []})
    assert response.status_code == 422
    assert_serving(client)


def test_v3_many_tiny_instances_are_refused_without_calling_the_model(
    client: httpx.Client,
) -> None:
    count = 120_000  # ~2 MB of `{"values":[0.0]}` items, just inside the byte limit
    body = b'{"inputs":[' + b",".join([b'{"values":[0.0]}'] * count) + b"]}"
    assert len(body) < 2 * 1024 * 1024
    items_before = model_stats(client, "echo")["items"]
    started = time.perf_counter()
    response = post(client, ECHO_BATCH, body)
    elapsed = time.perf_counter() - started
    print(f"V3 {count} tiny instances refused in {elapsed * 1000:.0f} ms")
    assert response.status_code == 422
    assert f"at most {MAX_BATCH_INPUTS} items" in error_of(response)["details"][0]["msg"]
    assert model_stats(client, "echo")["items"] == items_before
    assert elapsed < 5.0  # "quickly", with room for a busy 2-core machine
    assert_serving(client)


# -- V4: wrong dtypes --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ['"1.5"', "true", "false", "null", "{}", '{"v": 1}', '"NaN"', "[]"])
def test_v4_wrong_dtype_in_a_float_list_names_the_element(client: httpx.Client, bad: str) -> None:
    response = post(client, ECHO, f'{{"values": [0.5, 1.5, {bad}, 3.0]}}')
    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_input"
    assert locs(response) == [["values", 2]]
    assert_serving(client)


def test_v4_wrong_dtype_deep_in_a_batch_names_the_element(client: httpx.Client) -> None:
    body = '{"inputs": [{"values": [1.0]}, {"values": [1.0, "x"]}]}'
    response = post(client, ECHO_BATCH, body)
    assert response.status_code == 422
    assert locs(response) == [["inputs", 1, "values", 1]]
    matrix = post(client, MATRIX, '{"rows": [[1, 2, 3], [4, true, 6]]}')
    assert matrix.status_code == 422
    assert locs(matrix) == [["rows", 1, 1]]
    assert_serving(client)


# -- V5: wrong shapes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (ECHO, '{"values": []}'),  # empty where min_length=1
        (ECHO, '{"values": 1.0}'),  # rank 0
        (ECHO, '{"values": [[1.0, 2.0]]}'),  # rank 2 for a vector
        (ECHO, '{"values": [' + ", ".join(["1.0"] * 257) + "]}"),  # over max_length
        (ECHO, "{}"),  # missing field
        (ECHO, '{"values": [1.0], "extra": 1}'),  # unknown field
        (MATRIX, '{"rows": [[1, 2, 3], [1, 2]]}'),  # ragged
        (MATRIX, '{"rows": [1, 2, 3]}'),  # rank 1 for a matrix
        (MATRIX, '{"rows": [[[1, 2, 3]]]}'),  # rank 3
        (MATRIX, '{"rows": []}'),  # no rows
        (MATRIX, '{"rows": [[]]}'),  # zero-length dimension
        (MATRIX, '{"rows": [[1, 2, 3, 4]]}'),  # feature count != 3
    ],
)
def test_v5_wrong_shapes_get_422(client: httpx.Client, path: str, body: str) -> None:
    response = post(client, path, body)
    assert response.status_code == 422, response.text
    assert error_of(response)["details"]
    assert_serving(client)


# -- V6: non-finite and edge floats ------------------------------------------------------------


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e309", "-1e309", "1E400"])
def test_v6_non_finite_numbers_get_422(client: httpx.Client, token: str) -> None:
    response = post(client, ECHO, f'{{"values": [1.0, {token}]}}')
    assert response.status_code == 422
    detail = error_of(response)["details"][0]
    assert detail["loc"] == ["values", 1]
    assert detail["type"] == "finite_number"
    assert_serving(client)


@pytest.mark.parametrize(
    "token",
    [
        "-0.0",
        "5e-324",  # smallest subnormal
        "2.225073858507201e-308",  # largest subnormal
        "2.2250738585072014e-308",  # smallest normal
        "1.7976931348623157e308",  # largest finite
        "-1.7976931348623157e308",
        "0.1",
        pytest.param("0." + "1" * 5000, id="5000-digit-fraction"),  # long but finite
    ],
)
def test_v6_finite_edge_values_round_trip_bit_exact_and_deterministically(
    client: httpx.Client, token: str
) -> None:
    body = f'{{"values": [{token}]}}'
    first = post(client, ECHO, body)
    assert first.status_code == 200, first.text
    sent = float(token)
    echoed = first.json()["values"][0]
    assert struct.pack("<d", echoed) == struct.pack("<d", sent)  # bits, so -0.0 != 0.0
    again = [post(client, ECHO, body).content for _ in range(3)]
    assert again == [first.content] * 3


# -- V7: non-finite model outputs --------------------------------------------------------------


def _strict_json(raw: bytes) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(raw, parse_constant=refuse)


def test_v7_nan_and_infinity_outputs_become_null_in_valid_json(client: httpx.Client) -> None:
    response = client.post("/v1/models/nan/predict", json={"factor": 2.0})
    assert response.status_code == 200, response.text
    assert _strict_json(response.content) == {"values": [2.0, None, None, None, None]}
    assert response.headers["x-non-finite-output"] == "true"
    batch = client.post(
        "/v1/models/nan/predict/batch", json={"inputs": [{"factor": 1.0}, {"factor": -1.0}]}
    )
    assert batch.status_code == 200, batch.text
    outputs = _strict_json(batch.content)["outputs"]
    assert [o["values"] for o in outputs] == [[1.0, None, None, None, None], [-1.0] + [None] * 4]
    assert batch.headers["x-non-finite-output"] == "true"
    assert_serving(client)


# -- V8: malformed JSON ------------------------------------------------------------------------

# Templates: <K> and <V> become a valid key and value of the endpoint, so that each body is
# wrong only in the way its name says.
MALFORMED = {
    "truncated": b'{"<K>": <V>,',
    "trailing comma": b'{"<K>": <V>,}',
    "single quotes": b"{'<K>': <V>}",
    "block comment": b'{"<K>": <V> /* why */}',
    "line comment": b'// why\n{"<K>": <V>}',
    "byte order mark": b'\xef\xbb\xbf{"<K>": <V>}',
    "duplicate keys": b'{"<K>": <V>, "<K>": <V>}',
    "empty body": b"",
    "two documents": b'{"<K>": <V>}{"<K>": <V>}',
    "unquoted key": b"{<K>: <V>}",
    "hex number": b'{"<K>": <V>, "n": 0x10}',
    "leading plus": b'{"<K>": <V>, "n": +1}',
    "raw control char": b'{"<K>": <V>, "x": "a\x01b"}',
}
WRONG_TOP_LEVEL = {"number": b"1", "string": b'"values"', "null": b"null", "array": b"[]"}
VALID = {ECHO: (b"values", b"[1.0]"), ECHO_BATCH: (b"inputs", b'[{"values": [1.0]}]')}


@pytest.mark.parametrize("path", [ECHO, ECHO_BATCH])
@pytest.mark.parametrize("name", list(MALFORMED))
def test_v8_malformed_json_is_400(client: httpx.Client, path: str, name: str) -> None:
    key, value = VALID[path]
    body = MALFORMED[name].replace(b"<K>", key).replace(b"<V>", value)
    response = post(client, path, body)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "malformed_body"
    assert_serving(client)


@pytest.mark.parametrize("path", [ECHO, ECHO_BATCH])
@pytest.mark.parametrize("name", list(WRONG_TOP_LEVEL))
def test_v8_top_level_non_object_is_422(client: httpx.Client, path: str, name: str) -> None:
    response = post(client, path, WRONG_TOP_LEVEL[name])
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "invalid_input"
    assert_serving(client)


# -- V9: parser stress -------------------------------------------------------------------------

DEPTH = 100_000
STRESS = {
    "100k nested arrays": b'{"values": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
    "100k nested objects": b'{"values": ' + b'{"a":' * DEPTH + b"1" + b"}" * DEPTH + b"}",
    "100k unclosed arrays": b'{"values": ' + b"[" * DEPTH,
    "5000-digit integer": b'{"values": [' + b"9" * 5000 + b"]}",
    "invalid utf-8": b'{"values": [1.0], "x": "\xff\xfe"}',
    "overlong utf-8": b'{"values": [1.0], "x": "\xc0\xaf"}',
    "utf-16 body": '{"values": [1.0]}'.encode("utf-16"),
}


@pytest.mark.parametrize("name", list(STRESS))
def test_v9_parser_stress_gets_4xx(client: httpx.Client, name: str) -> None:
    response = post(client, ECHO, STRESS[name])
    assert response.status_code in (400, 422), response.text
    assert_serving(client)


def test_v9_deep_nesting_and_huge_numbers_are_400(client: httpx.Client) -> None:
    for name in ("100k nested arrays", "5000-digit integer", "invalid utf-8"):
        response = post(client, ECHO, STRESS[name])
        assert response.status_code == 400, (name, response.text)
    assert_serving(client)


# -- V10: strings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "escaped",
    [r"a\u0000b", r"\ud800", r"\udfff", r"x\ud800y", r"\ud800\u0041", r"\udc00\ud800"],
)
def test_v10_nul_and_lone_surrogates_get_422_naming_the_field(
    client: httpx.Client, escaped: str
) -> None:
    response = post(client, TEXT, f'{{"text": "{escaped}"}}')
    assert response.status_code == 422, response.text
    assert locs(response) == [["text"]]
    assert_serving(client)


def test_v10_one_megabyte_string_over_max_length_gets_422(client: httpx.Client) -> None:
    response = client.post(TEXT, json={"text": "a" * 1_000_000})
    assert response.status_code == 422
    detail = error_of(response)["details"][0]
    assert detail["type"] == "string_too_long"
    assert str(TEXT_MAX_LENGTH) in detail["msg"]
    assert_serving(client)


ROUND_TRIP = {
    "rtl override": "invoice\u202egpj.exe",
    "zero-width": "a\u200bb\u200cc\u200dd\u2060e\ufefff",
    "emoji": "\U0001f600 \U0001f469\u200d\U0001f4bb \U0001f1eb\U0001f1f7 \U0001f44d\U0001f3fd",
    "combining": "e\u0301 \u0928\u093f \u1100\u1161",
    "escaped backslash-u": "\\u0000 and \\ud800 as plain text",
    "max bmp": "\uffff\ufffe\U0010ffff",
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
@pytest.mark.parametrize("ascii_escaped", [False, True], ids=["utf8", "escaped"])
def test_v10_allowed_unicode_round_trips_byte_exact(
    client: httpx.Client, name: str, ascii_escaped: bool
) -> None:
    text = ROUND_TRIP[name]
    body = json.dumps({"text": text}, ensure_ascii=ascii_escaped).encode("utf-8")
    response = post(client, TEXT, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["text"] == text
    assert answer["code_points"] == len(text)
    assert answer["utf8_bytes"] == len(text.encode("utf-8"))
    # The exact UTF-8 bytes are on the wire: no normalization, no escaping of the RTL override.
    assert text.encode("utf-8").replace(b"\\", b"\\\\") in response.content


def test_bad_inputs_left_no_traceback_in_the_log(
    server: ServerProcess, client: httpx.Client
) -> None:
    assert_serving(client)
    assert "Traceback" not in server.stderr_text()
