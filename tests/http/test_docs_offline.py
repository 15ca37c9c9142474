"""/docs and /redoc with no internet: vendored assets, a self-only CSP, the exposure policy.

The in-process tests check what the server sends. The browser tests (e2e) run Debian's
Chromium headless against a real `modelserve serve`, with every host but 127.0.0.1 made
unreachable, and check that Swagger UI and ReDoc actually render, that the CSP blocked
nothing they need, and that the browser asked no other host for anything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from modelserve import Settings, create_app
from modelserve.config import HttpConfig
from modelserve.http import docs_pages
from modelserve.http.exposure import ExposureMiddleware
from tests.auth.support import serving_auth, settings_for
from tests.e2e.server import ServerProcess, launch
from tests.http.services import Summer
from tests.support.client import serving

PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")
STATIC = Path(docs_pages.__file__).parent / "static" / "docs"
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}


class References(HTMLParser):
    """The URLs a page loads: <script src>, <link href>, <img src>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value is not None:
                self.urls.append(value)


def references(page: str) -> list[str]:
    parser = References()
    parser.feed(page)
    return parser.urls


def csp_of(response: httpx.Response) -> dict[str, list[str]]:
    """The Content-Security-Policy header as {directive: [sources]}."""
    policy: dict[str, list[str]] = {}
    for part in response.headers["content-security-policy"].split(";"):
        name, *sources = part.split()
        assert name not in policy, f"{name} given twice"
        policy[name] = sources
    return policy


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with serving([Summer]) as running:
        yield running


# -- the pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_pages_name_no_other_host(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "http://" not in response.text
    assert "https://" not in response.text
    urls = references(response.text)
    assert urls, "the page loads nothing"
    for url in urls:
        assert url.startswith("/docs/static/"), url


@pytest.mark.parametrize("path", PAGES)
def test_every_asset_a_page_names_is_served_with_its_type(client: TestClient, path: str) -> None:
    for url in references(client.get(path).text):
        asset = client.get(url)
        assert asset.status_code == 200, url
        suffix = Path(url.partition("?")[0]).suffix
        assert asset.headers["content-type"] == CONTENT_TYPES[suffix], url
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert asset.content == (STATIC / Path(url.partition("?")[0]).name).read_bytes()


def test_pages_start_the_uis_from_files_not_inline_code(client: TestClient) -> None:
    swagger = client.get("/docs").text
    assert re.search(r"<script>|<script [^>]*>[^<]", swagger) is None  # no inline script
    assert 'data-openapi-url="/openapi.json"' in swagger
    assert 'data-oauth2-redirect-url="/docs/oauth2-redirect"' in swagger
    redoc = client.get("/redoc").text
    assert "<style" not in redoc
    assert 'data-openapi-url="/openapi.json"' in redoc
    assert client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_a_self_only_policy(client: TestClient, path: str) -> None:
    response = client.get(path)
    policy = csp_of(response)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    # ReDoc's two documented exceptions (docs_pages.REDOC_CSP); Swagger UI needs neither.
    allowed_extra = {"'unsafe-inline'", "blob:"} if path == "/redoc" else set()
    for directive, sources in policy.items():
        for source in sources:
            assert source in {"'self'", "'none'", "data:"} | allowed_extra, (directive, source)
    if path == "/redoc":
        assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
        assert policy["worker-src"] == ["blob:"]
    else:
        assert policy["style-src"] == ["'self'"]
        assert "worker-src" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-cache"


def test_pages_follow_the_root_path() -> None:
    app = create_app(None, [Summer])
    with TestClient(app, root_path="/api") as prefixed:
        page = prefixed.get("/docs").text
    urls = references(page)
    assert urls
    assert all(url.startswith("/api/docs/static/") for url in urls), urls
    assert 'data-openapi-url="/api/openapi.json"' in page


def test_docs_disabled_removes_pages_and_assets() -> None:
    settings = Settings(http=HttpConfig(docs_enabled=False))
    with serving([Summer], settings) as off:
        for path in (*PAGES, "/openapi.json", "/docs/static/swagger-ui-bundle.js"):
            assert off.get(path).status_code == 404, path


# -- the assets --------------------------------------------------------------------------------


def test_vendored_files_and_versions_are_there() -> None:
    versions = (STATIC / "VERSIONS").read_text()
    assert re.search(r"^swagger-ui-dist 5\.\d+\.\d+$", versions, re.MULTILINE)
    assert re.search(r"^redoc 2\.\d+\.\d+$", versions, re.MULTILINE)
    for name in ("LICENSE.swagger-ui-dist", "NOTICE.swagger-ui-dist", "LICENSE.redoc"):
        assert (STATIC / name).stat().st_size > 0
    # The script that wrote them pins the same versions.
    script = (Path(__file__).parents[2] / "scripts" / "vendor_docs_assets.sh").read_text()
    for line in versions.splitlines()[1:]:
        package, version = line.split()
        variable = {"swagger-ui-dist": "SWAGGER_UI_VERSION", "redoc": "REDOC_VERSION"}[package]
        assert f"{variable}={version}\n" in script


def test_current_assets_are_cached_for_good_and_others_revalidate(client: TestClient) -> None:
    url = next(u for u in references(client.get("/docs").text) if "swagger-ui-bundle" in u)
    current = client.get(url)
    assert current.headers["cache-control"] == "public, max-age=31536000, immutable"
    # No version, or an old one: the browser must check back, so an upgrade is seen.
    for stale in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui-bundle.js?v=0"):
        response = client.get(stale)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["etag"] == current.headers["etag"]


def test_etag_answers_304(client: TestClient) -> None:
    url = "/docs/static/swagger-ui.css"
    first = client.get(url)
    etag = first.headers["etag"]
    again = client.get(url, headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert client.get(url, headers={"if-none-match": f"W/{etag}"}).status_code == 304
    assert client.get(url, headers={"if-none-match": '"other"'}).status_code == 200


def test_bundles_go_gzipped_to_clients_that_accept_it(client: TestClient) -> None:
    url = "/docs/static/redoc.standalone.js"
    original = (STATIC / "redoc.standalone.js").read_bytes()
    packed = client.get(url, headers={"accept-encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "accept-encoding"
    assert int(packed.headers["content-length"]) < len(original) // 2
    assert packed.content == original  # httpx decoded it
    plain = client.get(url, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == original
    refused = client.get(url, headers={"accept-encoding": "gzip;q=0, br"})
    assert "content-encoding" not in refused.headers
    # The two representations must not share a validator.
    assert packed.headers["etag"] != plain.headers["etag"]


def test_accepts_gzip_reads_weights() -> None:
    def accepts(header: str) -> bool:
        scope: dict[str, Any] = {
            "type": "http",
            "headers": [(b"accept-encoding", header.encode())],
        }
        return docs_pages.accepts_gzip(Request(scope))

    assert accepts("gzip")
    assert accepts("br, GZIP;q=0.5")
    assert accepts("x-gzip")
    assert not accepts("")
    assert not accepts("br, deflate")
    assert not accepts("gzip;q=0")
    assert not accepts("gzip; q=0.000")
    assert not accepts("gzip;q=nonsense")


def test_only_the_page_assets_are_served(client: TestClient) -> None:
    # Licenses ship in the wheel but are not web assets; nothing outside the folder is reachable.
    for name in ("LICENSE.redoc", "VERSIONS", "nope.js", "..%2Fdocs_pages.py", "__init__.py"):
        assert client.get(f"/docs/static/{name}").status_code == 404, name


# -- the exposure policy -----------------------------------------------------------------------

EXPOSED = (*PAGES, "/docs/static/swagger-ui-bundle.js", "/docs/static/redoc.standalone.js")


def test_exposure_covers_everything_under_docs() -> None:
    middleware = ExposureMiddleware(
        lambda *_: None,  # type: ignore[arg-type,return-value]
        docs="disabled",
        metrics="public",
        authenticate=None,
    )
    for path in (*EXPOSED, "/docs/", "/docs/static/anything", "/openapi.json", "/redoc/"):
        assert middleware.exposure_of(path) == "disabled", path
    for path in ("/docsx", "/documentation", "/v1/models", "/redocx", "/livez"):
        assert middleware.exposure_of(path) is None, path


@pytest.mark.parametrize(
    ("exposure", "anonymous", "with_key"),
    [("public", 200, 200), ("authenticated", 401, 200), ("disabled", 404, 404)],
)
def test_exposure_applies_to_pages_and_assets(
    tmp_path: Path, exposure: str, anonymous: int, with_key: int
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'auth.db'}", tmp_path, docs_exposure=exposure)
    with serving_auth(settings, [Summer]) as api:
        _, member = api.user_headers()
        key = api.new_key(member, ["predict:*"])["key"]
        for path in EXPOSED:
            assert api.client.get(path).status_code == anonymous, path
            assert api.client.get(path, headers={"x-api-key": key}).status_code == with_key, path


# -- a real browser, offline -------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
# Every host but the server's is unresolvable, and anything that still tries goes to a
# proxy on the discard port: nothing can be loaded from outside 127.0.0.1.
OFFLINE_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1",
    # Console messages (CSP violations among them) go to stderr.
    "--enable-logging=stderr",
    "--v=0",
    # Runs timers and network until the page is idle or 10 s of virtual time have passed,
    # then dumps: the UIs fetch /openapi.json and render after the load event.
    "--virtual-time-budget=10000",
    "--window-size=1280,1600",
)
# The one thing ReDoc asks for from outside: its footer's "by Redocly" logo, which the CSP
# blocks (img-src 'self' data:) before any request is made. The footer shows only the text.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@dataclass
class Visit:
    """What headless Chromium made of one URL."""

    dom: str
    console: list[str]
    # Every URL the page itself asked the network for (scripts, styles, images, fetches).
    page_requests: list[str]


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if os.environ.get("MODELSERVE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and MODELSERVE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


def page_requests(netlog: Path, origin: str) -> list[str]:
    """The URLs of the requests in a Chromium net log that a page of `origin` started.

    The browser's own traffic (update checks, its clock, account and autofill lookups, which
    the offline flags make fail anyway) has no initiator ("not an origin") and is left out.
    """
    log = json.loads(netlog.read_text(encoding="utf-8"))
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        event["params"]["url"]
        for event in log["events"]
        # An event's end has no params; its start has the URL and the initiator.
        if event["type"] == start_job and event.get("params", {}).get("initiator") == origin
    ]


def visit(url: str, work: Path, *, screenshot: Path | None = None) -> Visit:
    """Load `url` in a fresh headless Chromium: its DOM once idle (or a screenshot), its
    console lines, and the requests the page made (from a net log)."""
    work.mkdir(parents=True, exist_ok=True)
    netlog = work / "netlog.json"
    command = [
        str(CHROMIUM),
        *OFFLINE_FLAGS,
        f"--user-data-dir={work / 'profile'}",
        f"--log-net-log={netlog}",
        f"--screenshot={screenshot}" if screenshot else "--dump-dom",
        url,
    ]
    # The timeout only stops a hung browser; nothing is asserted about how long it took.
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    origin = "/".join(url.split("/")[:3])
    return Visit(done.stdout, console, page_requests(netlog, origin))


def assert_only_local(requested: list[str], server: ServerProcess) -> None:
    """Every request went to the server, and there were some (the log was read right)."""
    assert requested, "the net log shows no request from the page"
    outside = [url for url in requested if not url.startswith(server.base_url + "/")]
    assert outside == [], f"the page asked other hosts: {outside}"
    assert server.base_url + "/openapi.json" in requested


def csp_violations(console: list[str]) -> list[str]:
    return [line for line in console if "Content Security Policy" in line]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    require_chromium()
    with launch(tmp_path_factory.mktemp("docs-offline")) as running:
        yield running


@pytest.fixture(scope="module")
def openapi(server: ServerProcess) -> dict[str, Any]:
    document: dict[str, Any] = server.client().get("/openapi.json").json()
    return document


def operation(openapi: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = openapi["paths"][path][method]
    return found


def keep_screenshot(shot: Path, name: str) -> None:
    """Copy a screenshot to $MODELSERVE_SCREENSHOT_DIR when set (how docs/images/ got its)."""
    folder = os.environ.get("MODELSERVE_SCREENSHOT_DIR")
    if folder:
        shutil.copyfile(shot, Path(folder) / name)


@pytest.mark.e2e
def test_swagger_ui_renders_offline(
    server: ServerProcess, openapi: dict[str, Any], tmp_path: Path
) -> None:
    seen = visit(server.base_url + "/docs", tmp_path / "dom")
    # One rendered block per operation of the document, each naming its path.
    operations = sum(len(methods) for methods in openapi["paths"].values())
    assert seen.dom.count('class="opblock opblock-') == operations > 0
    for path in ("/v1/models", "/v1/models/echo/predict", "/livez"):
        assert f'data-path="{path}"' in seen.dom, path
    assert operation(openapi, "get", "/v1/models")["summary"] in seen.dom
    assert csp_violations(seen.console) == []
    assert_only_local(seen.page_requests, server)


@pytest.mark.e2e
def test_swagger_ui_expands_an_operation_under_the_strict_policy(
    server: ServerProcess, openapi: dict[str, Any], tmp_path: Path
) -> None:
    # Deep linking opens the operation: its body (schemas, examples, "Try it out") is where
    # Swagger UI styles things at run time, so this is what would break under style-src 'self'.
    predict = operation(openapi, "post", "/v1/models/echo/predict")
    url = f"{server.base_url}/docs#/{predict['tags'][0]}/{predict['operationId']}"
    seen = visit(url, tmp_path / "dom")
    assert "opblock-body" in seen.dom
    assert "Try it out" in seen.dom
    assert "values" in seen.dom  # a field of echo's input schema, in the example body
    assert csp_violations(seen.console) == []
    assert_only_local(seen.page_requests, server)


@pytest.mark.e2e
def test_redoc_renders_offline(
    server: ServerProcess, openapi: dict[str, Any], tmp_path: Path
) -> None:
    seen = visit(server.base_url + "/redoc", tmp_path / "dom")
    for method, path in (("get", "/v1/models"), ("post", "/v1/models/echo/predict")):
        assert operation(openapi, method, path)["summary"] in seen.dom, path
    assert "/v1/models/echo/predict" in seen.dom
    blocked = csp_violations(seen.console)
    assert all(REDOC_LOGO in line for line in blocked), blocked
    assert_only_local(seen.page_requests, server)


@pytest.mark.e2e
@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_screenshots_show_the_rendered_page(
    server: ServerProcess, tmp_path: Path, page: str
) -> None:
    shot = tmp_path / f"{page}.png"
    seen = visit(f"{server.base_url}/{page}", tmp_path / "shot", screenshot=shot)
    assert_only_local(seen.page_requests, server)
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 1600)
    # A blank page compresses to a few KiB; a rendered one with text and colours does not.
    assert len(png) > 50_000, len(png)
    keep_screenshot(shot, f"{page}-offline.png")


def test_page_requests_keep_the_pages_own_and_flag_other_hosts(tmp_path: Path) -> None:
    # The net log reading and the check must be able to fail: shaped like Chromium's log.
    base = "http://127.0.0.1:8000"
    events = [
        (f"{base}/docs", "not an origin"),  # the navigation
        ("https://update.example/check", "not an origin"),  # the browser's own
        (f"{base}/openapi.json", base),
        ("https://cdn.example/x.js", base),
    ]
    netlog = tmp_path / "netlog.json"
    netlog.write_text(
        json.dumps(
            {
                "constants": {"logEventTypes": {"URL_REQUEST_START_JOB": 7, "OTHER": 8}},
                "events": [
                    *({"type": 7, "params": {"url": u, "initiator": i}} for u, i in events),
                    {"type": 8, "params": {"url": "https://other.example/", "initiator": base}},
                ],
            }
        )
    )
    requested = page_requests(netlog, base)
    assert requested == [f"{base}/openapi.json", "https://cdn.example/x.js"]
    fake = ServerProcess.__new__(ServerProcess)
    fake.port = 8000
    with pytest.raises(AssertionError, match="other hosts"):
        assert_only_local(requested, fake)
    assert_only_local(requested[:1], fake)
