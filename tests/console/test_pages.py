"""The pages in-process: what they show (escaped, V11), the playground's real predict, and
rollouts from the model page (each audited with the user)."""

from __future__ import annotations

import re
import uuid

from tests.console.support import ConsoleClient, csrf_of
from tests.console.test_access import api_token

PAYLOAD = "<script>alert(1)</script>{{7*7}}\u202egpj.exe"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;{{7*7}}&lt;U+202E&gt;gpj.exe"


def registered(console: ConsoleClient, owner: str, *, versions: int = 2) -> str:
    """A registry model of `owner` with `versions` versions (Scaler); its name."""
    name = f"m-{uuid.uuid4().hex[:8]}"
    headers = api_token(console, owner)
    created = console.client.post(
        "/v1/registry/models",
        json={"name": name, "description": PAYLOAD, "labels": {"team": PAYLOAD}},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    for _ in range(versions):
        version = console.client.post(
            f"/v1/registry/models/{name}/versions",
            json={"service": "tests.console.services:Scaler", "description": PAYLOAD},
            headers=headers,
        )
        assert version.status_code == 201, version.text
    return name


def test_user_text_is_shown_literally(fresh: ConsoleClient) -> None:
    owner = fresh.signed_in()
    name = registered(fresh, owner, versions=1)
    page = fresh.client.get(f"/console/models/{name}").text
    assert ESCAPED in page
    assert "<script>alert(1)" not in page
    assert "{{7*7}}" in page  # the text as typed, never rendered as a template (49)
    assert "\u202e" not in page
    response = fresh.client.post(
        "/console/keys",
        data={"name": PAYLOAD, "scopes": "predict:*", "csrf_token": fresh.csrf()},
    )
    assert ESCAPED in response.text
    assert ESCAPED in fresh.client.get("/console/keys").text


def test_a_members_model_is_404_to_another_member(fresh: ConsoleClient) -> None:
    owner = fresh.signed_in()
    name = registered(fresh, owner, versions=1)
    assert fresh.client.get(f"/console/models/{name}").status_code == 200
    fresh.client.cookies.clear()
    fresh.signed_in()
    assert fresh.client.get(f"/console/models/{name}").status_code == 404
    assert fresh.client.get(f"/console/models/{name}/promote?version=1").status_code == 404
    token = fresh.csrf()
    refused = fresh.client.post(
        f"/console/models/{name}/promote", data={"version": "1", "csrf_token": token}
    )
    assert refused.status_code == 404


def test_promote_rollback_and_canary_from_the_model_page(fresh: ConsoleClient) -> None:
    owner = fresh.signed_in()
    name = registered(fresh, owner, versions=2)
    page = fresh.client.get(f"/console/models/{name}").text
    assert f'href="/console/models/{name}/promote?version=1"' in page
    confirm = fresh.client.get(f"/console/models/{name}/promote?version=1")
    assert confirm.status_code == 200
    assert "Promote version 1" in confirm.text
    token = csrf_of(confirm.text)
    for version in ("1", "2"):
        done = fresh.client.post(
            f"/console/models/{name}/promote",
            data={"version": version, "csrf_token": token},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"/console/models/{name}?done=promoted"
    model = fresh.client.get(f"/v1/registry/models/{name}", headers=api_token(fresh, owner))
    assert model.json()["aliases"] == {"production": "2"}
    back = fresh.client.get(f"/console/models/{name}/rollback")
    assert "back from <strong>2</strong> to <strong>1</strong>" in back.text
    done = fresh.client.post(
        f"/console/models/{name}/rollback", data={"csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303
    canary = fresh.client.post(
        f"/console/models/{name}/canary",
        data={"version": "2", "percent": "30", "csrf_token": token},
        follow_redirects=False,
    )
    assert canary.status_code == 303, canary.text
    model = fresh.client.get(f"/v1/registry/models/{name}", headers=api_token(fresh, owner)).json()
    assert model["aliases"] == {"production": "1"}
    assert model["traffic"]["canary"] == [{"version": "2", "percent": 30.0}]
    page = fresh.client.get(f"/console/models/{name}").text
    history = page.split("Alias history")[1]
    assert re.findall(r"<td>(set|rollback)(?: \(undone\))?</td>", history) == [
        "rollback",
        "set",
        "set",
    ]
    cleared = fresh.client.post(
        f"/console/models/{name}/canary",
        data={"version": "2", "percent": "0", "csrf_token": token},
        follow_redirects=False,
    )
    assert cleared.status_code == 303
    audit = fresh.client.get("/console/audit").text
    for event in ("model.alias_moved", "model.rolled_back", "model.traffic_changed"):
        assert f"<td>{event}</td>" in audit, event
    assert f'<td class="ident">{owner}</td>' in audit


def test_a_bad_canary_share_is_refused(fresh: ConsoleClient) -> None:
    owner = fresh.signed_in()
    name = registered(fresh, owner, versions=2)
    token = fresh.csrf()
    fresh.client.post(f"/console/models/{name}/promote", data={"version": "1", "csrf_token": token})
    for percent in ("101", "-1", "nan", "ten"):
        response = fresh.client.post(
            f"/console/models/{name}/canary",
            data={"version": "2", "percent": percent, "csrf_token": token},
        )
        assert response.status_code == 422, percent
    for version in ("../etc", "", "x" * 100):
        response = fresh.client.post(
            f"/console/models/{name}/canary",
            data={"version": version, "percent": "10", "csrf_token": token},
        )
        assert response.status_code in (404, 422), version
        assert "text/html" in response.headers["content-type"]


def test_the_playground_predicts_through_the_api(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    form = fresh.client.get("/console/models/scaler/playground").text
    assert 'name="scale"' in form and 'type="number"' in form
    assert "(numbers, comma-separated)" in form
    assert 'type="checkbox"' in form
    answer = fresh.client.post(
        "/console/models/scaler/playground",
        data={
            "scale": "2",
            "repeat": "3",
            "values": "1, 2.5",
            "negate": "on",
            "note": PAYLOAD,
            "csrf_token": csrf_of(form),
        },
        headers={"hx-request": "true"},
    )
    assert answer.status_code == 200
    assert '<strong data-testid="status">200</strong>' in answer.text
    assert '<strong data-testid="version">1</strong>' in answer.text
    assert "&#34;total&#34;: -21.0" in answer.text
    assert "&lt;script&gt;" in answer.text
    assert "<html" not in answer.text  # a fragment for htmx


def test_the_playground_shows_validation_errors_from_the_api(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    token = fresh.csrf()
    answer = fresh.client.post(
        "/console/models/scaler/playground",
        data={"scale": "-1", "values": "1", "csrf_token": token},
    )
    assert '<strong data-testid="status">422</strong>' in answer.text
    local = fresh.client.post(
        "/console/models/scaler/playground",
        data={"scale": "x", "values": "1", "csrf_token": token},
    )
    assert "scale: &#39;x&#39; is not a number" in local.text


def test_the_playground_uploads_raw_bytes(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    form = fresh.client.get("/console/models/sizer/playground").text
    assert 'type="file"' in form and 'enctype="multipart/form-data"' in form
    answer = fresh.client.post(
        "/console/models/sizer/playground",
        data={"csrf_token": csrf_of(form)},
        files={"data": ("blob.bin", b"\x00\x01" * 500, "application/octet-stream")},
    )
    assert '<strong data-testid="status">200</strong>' in answer.text
    assert "&#34;size&#34;: 1000" in answer.text


def test_the_playground_of_a_model_not_served_is_404(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    answer = fresh.client.post("/console/models/nope/playground", data={"csrf_token": fresh.csrf()})
    assert answer.status_code == 404


def test_the_overview_lists_models_with_live_figures(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    token = fresh.csrf()
    for _ in range(3):
        fresh.client.post(
            "/console/models/scaler/playground",
            data={"scale": "1", "values": "1", "csrf_token": token},
        )
    page = fresh.client.get("/console/").text
    assert 'href="/console/models/scaler"' in page
    assert 'hx-get="/console/live/overview"' in page
    assert 'hx-trigger="every 5s"' in page
    row = page.split('href="/console/models/scaler"')[1].split("</tr>")[0]
    figures = re.findall(r'<td class="num">([^<]+)</td>', row)
    assert len(figures) == 5
    assert float(figures[0]) > 0  # req/s
    assert figures[3] == "0.0%"  # no 5xx
    assert "data-chart=" in page
