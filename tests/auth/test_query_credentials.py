"""S8: a credential in the query string is refused with 401 on every route, even when a valid
header credential comes with it, with modelserve's HTTP protocol (predict answered without an
ASGI task) and with plain uvicorn.

Every route of the app is enumerated (FastAPI's routes, the docs routes, the predict paths),
so a route added later is covered without editing this test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from starlette.routing import Route

from modelserve import Service, batching, create_app
from modelserve.auth.bootstrap import DEV_CREDENTIALS_FILE
from modelserve.auth.guard import refuse_query_credentials
from modelserve.errors import AuthenticationError
from modelserve.http.app import ModelserveApp
from modelserve.http.protocol import protocol_class
from tests.auth.support import api_routes, settings_for
from tests.http.services import Summer
from tests.observability.support import serve_in_thread

# Names a client might put a credential under; each is refused (any case, percent-encoded).
PARAMS = ("api_key", "access_token", "token", "key", "apikey", "API_KEY", "api%5Fkey", "jwt")
PREDICT_PATHS = (
    "/v1/models/twice/predict",
    "/v1/models/twice/predict/batch",
    "/v1/models/twice/versions/1/predict",
    "/v1/models/twice/versions/1/predict/batch",
    "/v1/models/summer/predict",
)
PREDICT_BODIES = {False: b'{"x": 2}', True: b'[{"x": 2}]'}


class Number(BaseModel):
    x: float


class Twice(Service[Number, Number]):
    """Answered inline: the fast path serves it before `serve_now` returns."""

    name = "twice"
    version = "1"
    isolation = "inline"
    batching = batching(max_batch_size=8, max_wait_ms=0)

    def predict(self, batch: list[Number]) -> list[Number]:
        return [Number(x=2 * n.x) for n in batch]


class Served:
    """A real server of the app with auth on, its dev credentials, and how many predict
    requests the fast path (`serve_now`) answered."""

    def __init__(self, url: str, app: ModelserveApp, fast: bool) -> None:
        self.url, self.app, self.fast = url, app, fast
        self.credentials: dict[str, str] = {}
        self.fast_answers = 0


@pytest.fixture(params=["fast", "plain"], scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp(request.param)
    settings = settings_for(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, dev_bootstrap=True)
    app = create_app(settings, [Twice, Summer], serve_registry=True)
    fast = request.param == "fast"
    http = protocol_class() if fast else "httptools"
    assert http is not None
    endpoint = app.predict_endpoint
    serve_now = endpoint.serve_now

    def counting(*args: Any) -> bool:
        served.fast_answers += 1
        answered: bool = serve_now(*args)
        served.fast_answers -= not answered
        return answered

    endpoint.serve_now = counting  # type: ignore[method-assign, assignment]
    with serve_in_thread(app, http=http) as url:
        served = Served(url, app, fast)
        credentials = json.loads((tmp_path / DEV_CREDENTIALS_FILE).read_text())
        token = httpx.post(
            url + "/v1/auth/token",
            data={"username": credentials["username"], "password": credentials["password"]},
        ).json()["access_token"]
        served.credentials = {"key": credentials["api_key"], "token": token}
        yield served


def error_code(body: Any) -> str | None:
    """modelserve's error code of an error body in any protocol's shape: modelserve's own; an
    OpenAI route's (`authentication_error`, code `invalid_api_key`, as OpenAI answers a bad
    key); a V2 route's message alone, `{"error": "..."}`, read by its wording."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return "unauthenticated" if "credential" in error or "authenticat" in error else error
    if not isinstance(error, dict):
        return None
    if error.get("type") == "authentication_error" and error.get("code") == "invalid_api_key":
        return "unauthenticated"
    code = error.get("code")
    return code if isinstance(code, str) else None


def every_route(app: ModelserveApp) -> list[tuple[str, str]]:
    """(method, concrete path) for every route of the app, path parameters filled in."""
    found: set[tuple[str, str]] = set()
    routes: list[tuple[str, Any]] = [(path, route) for path, route, _ in api_routes(app)]
    routes += [(r.path, r) for r in app.routes if isinstance(r, Route)]
    for path, route in routes:
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, concrete))
    found |= {("POST", path) for path in PREDICT_PATHS}
    return sorted(found)


def test_the_check_reads_names_not_values() -> None:
    for query in (b"api_key=k", b"a=1&TOKEN=t", b"api%5fkey=k", b"access_token", b"x=1&key="):
        with pytest.raises(AuthenticationError):
            refuse_query_credentials(query)
    for query in (b"", b"limit=10&offset=0", b"event=key.created", b"owner_id=key"):
        refuse_query_credentials(query)


def test_every_route_refuses_a_credential_in_the_query_string(server: Served) -> None:
    url, credentials = server.url, server.credentials
    routes = every_route(server.app)
    # The enumeration must reach the families this check matters for, not just a few routes.
    paths = {path for _, path in routes}
    for needed in ("/v1/keys", "/v1/users", "/v1/auth/me", "/livez", "/openapi.json", "/metrics"):
        assert needed in paths, needed
    assert len(routes) >= 30
    header = {"x-api-key": credentials["key"]}
    with httpx.Client(base_url=url, timeout=10) as client:
        # The same header alone is accepted: the refusal below is the query string's doing.
        ok = client.post(PREDICT_PATHS[0], content=PREDICT_BODIES[False], headers=header)
        assert ok.status_code == 200, ok.text
        wrong: list[str] = []
        for method, path in routes:
            for index, param in enumerate(PARAMS):
                value = credentials["token"] if index % 2 else credentials["key"]
                body = PREDICT_BODIES[path.endswith("/batch")] if "/predict" in path else None
                response = client.request(
                    method,
                    f"{path}?limit=5&{param}={value}",
                    content=body,
                    headers={**header, "content-type": "application/json"},
                )
                if (
                    response.status_code != 401
                    or error_code(response.json()) != "unauthenticated"
                    or response.headers.get("www-authenticate") != 'Bearer realm="modelserve"'
                    or value in response.text
                ):
                    wrong.append(f"{method} {path}?{param}= -> {response.status_code}")
        assert wrong == []
        # Refused without harm: the connection's next ordinary request is served.
        again = client.post(PREDICT_PATHS[0], content=PREDICT_BODIES[False], headers=header)
        assert again.status_code == 200
    # With the protocol on, one-input predicts were refused by the fast path itself.
    assert (server.fast_answers > len(PARAMS)) == server.fast
