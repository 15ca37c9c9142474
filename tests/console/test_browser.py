"""The console in a real browser: headless Chromium (Playwright) against `modelserve serve`.

One server for the module: examples/iris.py plus the registry, auth on as shipped (dev mode,
so the first start creates the `admin` user), the console on. Every page visited is checked
for Content-Security-Policy reports (htmx, uPlot and our script must work under the CSP) and
with axe-core for serious or critical accessibility violations; each page's screenshot is kept
in $MODELSERVE_SCREENSHOT_DIR when set (how docs/images/console-*.png were made).

Skips without /usr/bin/chromium, unless MODELSERVE_REQUIRE_SERVICES=1 (then it fails).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess, launch

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "assets" / "axe.min.js"
IRIS = REPO / "examples" / "iris.py"
FLOWERS_SERVICE = "examples/registry/flowers.py:Flowers"
PAYLOAD = "<script>alert(1)</script>{{7*7}}\u202egpj.exe"
SHOWN = "<script>alert(1)</script>{{7*7}}<U+202E>gpj.exe"
MEMBER_PASSWORD = "a long member password 1"
FLOWER = {"sepal_length": 6.3, "sepal_width": 2.5, "petal_length": 4.9, "petal_width": 1.5}


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if os.environ.get("MODELSERVE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and MODELSERVE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@dataclass
class Console:
    """The running server, its admin, and a way to run CLI commands against it."""

    server: ServerProcess
    data_dir: Path
    admin_password: str
    admin_key: str = ""
    shots: Path = field(default_factory=Path)

    @property
    def base(self) -> str:
        return self.server.base_url + "/console"

    def cli(self, *args: str) -> str:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")},
            "MODELSERVE_URL": self.server.base_url,
            "MODELSERVE_API_KEY": self.admin_key,
        }
        done = subprocess.run(
            [sys.executable, "-m", "modelserve", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def api(self) -> httpx.Client:
        return self.server.client(headers={"authorization": f"Bearer {self.admin_key}"})


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    require_chromium()
    pytest.importorskip("sklearn")
    tmp = tmp_path_factory.mktemp("console-browser")
    data_dir = tmp / "data"
    env = {
        "MODELSERVE_AUTH__ENABLED": "true",
        "MODELSERVE_AUTH__ARGON2_MEMORY_KIB": "64",
        "MODELSERVE_AUTH__ARGON2_TIME_COST": "1",
        "MODELSERVE_DATA_DIR": str(data_dir),
        "MODELSERVE_CONSOLE__ENABLED": "true",
        "MODELSERVE_CONSOLE__POLL_INTERVAL_S": "1",
        # Module references (and examples/registry/flowers.py) resolve from the repository.
        "PYTHONPATH": str(REPO),
    }
    with launch(tmp, target=IRIS, env=env, args=["--registry"]) as server:
        credentials = json.loads((data_dir / "dev-credentials.json").read_text())
        running = Console(server, data_dir, credentials["password"], shots=tmp / "shots")
        running.shots.mkdir()
        token = httpx.post(
            server.base_url + "/v1/auth/token",
            data={"username": "admin", "password": running.admin_password},
        ).json()["access_token"]
        key = httpx.post(
            server.base_url + "/v1/keys",
            json={"name": "browser-tests", "scopes": ["admin"]},
            headers={"authorization": f"Bearer {token}"},
        )
        assert key.status_code == 201, key.text
        running.admin_key = key.json()["key"]
        yield running


@pytest.fixture(scope="module")
def browser(console: Console) -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        yield launched
        launched.close()


@dataclass
class Tab:
    """One browser context (its own cookies) and page, with what the page reported."""

    page: Any
    console: Console
    violations: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> Any:
        return self.page.goto(self.console.base + path)

    def sign_in(self, username: str, password: str) -> None:
        self.goto("/login")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(re.compile(r".*/console/$"))

    def check(self, shot: str | None = None) -> None:
        """No CSP report or script error so far, no serious or critical axe finding here; keep
        a screenshot as docs/images/console-<shot>.png when asked."""
        assert self.violations == [], self.violations
        assert self.errors == [], self.errors
        self.page.evaluate(AXE.read_text())
        result = self.page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        serious = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert serious == [], serious
        if shot is not None:
            path = self.console.shots / f"console-{shot}.png"
            self.page.screenshot(path=str(path), full_page=True)
            folder = os.environ.get("MODELSERVE_SCREENSHOT_DIR")
            if folder:
                shutil.copyfile(path, Path(folder) / path.name)


@pytest.fixture
def tab(browser: Any, console: Console) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    opened = Tab(page, console)
    page.on(
        "console",
        lambda message: (
            opened.violations.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    page.on("pageerror", lambda error: opened.errors.append(str(error)))

    def dismiss(dialog: Any) -> None:
        opened.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    yield opened
    context.close()


@pytest.fixture
def admin(tab: Tab, console: Console) -> Tab:
    tab.sign_in("admin", console.admin_password)
    return tab


def test_sign_in_and_the_live_overview(tab: Tab, console: Console) -> None:
    tab.goto("/")
    assert "/console/login" in tab.page.url
    tab.check("login")
    tab.sign_in("admin", console.admin_password)
    assert tab.page.get_by_role("link", name="iris", exact=True).is_visible()
    # The live part refreshes by itself (htmx polling a fragment).
    with tab.page.expect_response(lambda r: "/console/live/overview" in r.url) as polled:
        pass
    assert polled.value.status == 200
    cookie = next(c for c in tab.page.context.cookies() if c["name"] == "modelserve-console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # Some traffic, so that the figures and the chart have something to show.
    client = console.api()
    for _ in range(30):
        assert client.post("/v1/models/iris/predict", json={**FLOWER}).status_code == 200
    tab.page.wait_for_timeout(2500)  # two polls: the rate between them is not zero
    tab.page.wait_for_selector(".plot canvas")
    tab.check("overview")


def test_a_key_is_shown_once(admin: Tab) -> None:
    admin.goto("/keys")
    admin.page.get_by_label("Name").fill("ci deploys")
    admin.page.get_by_role("button", name="Create key").click()
    shown = admin.page.get_by_test_id("new-key")
    shown.wait_for()
    key = shown.inner_text().strip()
    assert key.startswith("ms_")
    assert admin.page.get_by_role("row").filter(has_text="ci deploys").count() == 1
    admin.check("keys")
    admin.page.reload()
    assert key not in admin.page.content()
    assert admin.page.get_by_test_id("new-key").count() == 0
    assert admin.page.get_by_role("row").filter(has_text="ci deploys").count() == 1


def test_playground_on_iris(admin: Tab) -> None:
    admin.goto("/models/iris/playground")
    # The form comes from the input schema, with its examples filled in.
    assert admin.page.get_by_label("Sepal Length").input_value() == "5.1"
    admin.page.get_by_label("Petal Length").fill("1.3")
    admin.page.get_by_role("button", name="Predict").click()
    admin.page.get_by_test_id("output").wait_for()
    assert admin.page.get_by_test_id("status").inner_text() == "200"
    assert '"species": "setosa"' in admin.page.get_by_test_id("output").inner_text()
    assert admin.page.url.endswith("/console/models/iris/playground")  # swapped in by htmx
    admin.check("playground")


def push(console: Console, folder: Path, c: float) -> None:
    subprocess.run(
        [sys.executable, "examples/registry/train.py", str(folder), "--c", str(c)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    console.cli(
        "models", "push", "flowers", str(folder), "--service", FLOWERS_SERVICE,
        "--framework", "sklearn",
    )  # fmt: skip


def served_versions(console: Console, count: int) -> Counter[str]:
    client = console.api()
    seen: Counter[str] = Counter()
    for _ in range(count):
        response = client.post("/v1/models/flowers/predict", json=FLOWER)
        assert response.status_code == 200, response.text
        seen[response.headers["x-model-version"]] += 1
    return seen


def test_push_with_the_cli_then_promote_and_split_in_the_console(
    admin: Tab, console: Console, tmp_path: Path
) -> None:
    push(console, tmp_path / "v1", 0.01)
    admin.goto("/models/flowers")
    admin.page.get_by_role("link", name="Promote version 1").click()
    admin.page.get_by_role("heading", name=re.compile("Promote version 1")).wait_for()
    admin.check("promote")
    admin.page.get_by_role("button", name="Promote").click()
    admin.page.get_by_text("Promoted:").wait_for()
    assert served_versions(console, 10) == Counter({"1": 10})

    push(console, tmp_path / "v2", 1.0)
    admin.page.reload()
    admin.page.get_by_label("Version").select_option("2")
    admin.page.get_by_label("Share of traffic (%)").fill("50")
    assert admin.page.locator("#canary-percent-value").inner_text() == "50%"
    admin.page.get_by_role("button", name="Set canary").click()
    admin.page.get_by_text("Traffic split updated.").wait_for()
    split = served_versions(console, 200)
    assert set(split) == {"1", "2"}, split
    assert 50 <= split["2"] <= 150, split  # 50 % of 200, well inside chance
    admin.page.reload()
    admin.page.wait_for_selector(".plot canvas")
    assert "canary <strong>2</strong> 50%" in admin.page.content()
    for version in ("1", "2"):  # both versions took part of the traffic just sent
        row = admin.page.get_by_role("row", name=re.compile(f"^{version} ready"))
        assert float(row.locator("td.num").first.inner_text()) > 0, version
    admin.check("model")

    admin.page.get_by_role("link", name="Promote version 2").click()
    admin.page.get_by_role("button", name="Promote").click()
    admin.page.get_by_text("Promoted:").wait_for()
    assert served_versions(console, 20) == Counter({"2": 20})


def test_a_post_without_the_csrf_token_is_refused(admin: Tab) -> None:
    # The browser's own cookies go with it (same context), the token does not.
    refused = admin.page.context.request.post(
        admin.console.base + "/keys", form={"name": "forged", "scopes": "admin"}
    )
    assert refused.status == 403
    admin.goto("/keys")
    assert "forged" not in admin.page.content()


def test_another_site_can_neither_frame_nor_post(admin: Tab) -> None:
    # A page of another origin (about:blank, opaque) framing the console, and posting a form to
    # it from the signed-in user's browser.
    admin.page.goto("about:blank")
    admin.page.set_content(f'<iframe src="{admin.console.base}/keys" title="framed"></iframe>')
    framed = admin.page.frames[1]
    framed.wait_for_load_state()
    # Refused by frame-ancestors 'none' / X-Frame-Options: Chromium shows its error page.
    assert framed.url.startswith("chrome-error://"), framed.url
    admin.page.set_content(
        f'<form method="post" action="{admin.console.base}/keys">'
        '<input name="name" value="cross-site"><input name="scopes" value="admin"></form>'
    )
    with admin.page.expect_navigation() as posted:
        admin.page.evaluate("document.forms[0].submit()")
    assert posted.value.status == 403  # no session cookie (SameSite=Strict), no token
    admin.goto("/keys")
    assert "cross-site" not in admin.page.content()


def test_members_do_not_find_admin_pages(admin: Tab, browser: Any) -> None:
    name = f"member-{uuid.uuid4().hex[:6]}"
    admin.goto("/users")
    admin.page.get_by_label("Username").fill(name)
    admin.page.get_by_label("Password (8 to 128 characters)").fill(MEMBER_PASSWORD)
    admin.page.get_by_role("button", name="Create user").click()
    admin.page.get_by_text("User created.").wait_for()
    admin.check("users")

    context = browser.new_context()
    member = Tab(context.new_page(), admin.console)
    try:
        member.sign_in(name, MEMBER_PASSWORD)
        assert member.page.get_by_role("link", name="Users").count() == 0
        assert member.goto("/users").status == 404
        assert member.goto("/users/" + "0" * 32).status == 404
    finally:
        context.close()
    admin.goto("/audit?event=access.denied")
    assert admin.page.get_by_role("cell", name=name).count() >= 1


def test_stored_payloads_are_shown_literally_and_never_run(admin: Tab, console: Console) -> None:
    client = console.api()
    name = f"xss-{uuid.uuid4().hex[:6]}"
    created = client.post(
        "/v1/registry/models",
        json={"name": name, "description": PAYLOAD, "labels": {"team": PAYLOAD}},
    )
    assert created.status_code == 201, created.text
    admin.goto("/keys")
    admin.page.get_by_label("Name").fill(PAYLOAD)
    admin.page.get_by_role("button", name="Create key").click()
    admin.page.get_by_test_id("new-key").wait_for()
    for path in (f"/models/{name}", "/keys", "/audit"):
        admin.goto(path)
        assert admin.page.locator("script:not([src])").count() == 0
        if path != "/audit":  # (audit events hold ids, not names)
            assert SHOWN in admin.page.locator("main").inner_text()  # {{7*7}} stays as typed
    admin.goto(f"/models/{name}")
    assert admin.page.locator(".description").inner_text() == SHOWN
    assert admin.page.locator(".labels li").inner_text() == f"team={SHOWN}"
    admin.goto("/keys")
    assert admin.page.get_by_role("rowheader", name=SHOWN).count() == 1
    admin.check()
    assert admin.dialogs == []


def test_the_audit_log_filters(admin: Tab) -> None:
    admin.goto("/audit")
    admin.page.get_by_label("Action").select_option("login.succeeded")
    admin.page.get_by_role("button", name="Filter").click()
    admin.page.wait_for_url(re.compile(r".*event=login\.succeeded.*"))
    cells = admin.page.locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert cells and set(cells) == {"login.succeeded"}
    admin.check("audit")


def test_a_batch_job_is_followed_in_the_console(admin: Tab, console: Console) -> None:
    client = console.api()
    upload = client.post("/v1/uploads").json()["id"]
    rows = [{**FLOWER, "sepal_length": 4.0 + i / 10} for i in range(40)] + [{"sepal_length": -1}]
    data = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    client.put(
        f"/v1/uploads/{upload}",
        params={"offset": 0},
        content=data,
        headers={"content-type": "application/octet-stream"},
    ).raise_for_status()
    client.post(f"/v1/uploads/{upload}/complete").raise_for_status()
    body = {"model": "iris", "input": {"upload_id": upload}, "format": "jsonl", "chunk_size": 10}
    job = client.post("/v1/jobs", json=body)
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    admin.goto("/jobs")
    link = admin.page.get_by_role("link", name=job_id[:12])
    link.wait_for()
    # The list refreshes itself while the job runs; wait for it to say so.
    admin.page.get_by_role("row").filter(has=link).get_by_text("succeeded").wait_for()
    admin.check("jobs")
    link.click()
    admin.page.get_by_role("heading", name=re.compile("Job")).wait_for()
    assert admin.page.get_by_role("cell", name="40", exact=True).count() == 1  # the bad row
    with admin.page.expect_download() as download:
        admin.page.get_by_role("link", name="Download results (jsonl)").click()
    assert len(Path(download.value.path()).read_bytes().splitlines()) == 40
    admin.check("job")
