"""The console's parts on their own: visible text, schema forms, live figures, assets."""

from __future__ import annotations

import math
import re
from pathlib import Path

import orjson
import pytest

from modelserve.console import forms
from modelserve.console.live import BOUNDS, LiveStats, Totals, difference, quantile
from modelserve.console.rendering import build_environment, visible
from modelserve.errors import InvalidInputError
from modelserve.observability.metrics import Metrics
from tests.console.support import ConsoleClient

TEMPLATES = Path(__file__).parents[2] / "src" / "modelserve" / "console" / "templates"
STATIC = Path(__file__).parents[2] / "src" / "modelserve" / "console" / "static"


# -- text ------------------------------------------------------------------------------------


def test_visible_shows_direction_and_invisible_characters() -> None:
    assert visible("gpj\u202eexe") == "gpj<U+202E>exe"
    assert visible("a\u200bb\u2066c\ufeff") == "a<U+200B>b<U+2066>c<U+FEFF>"
    assert visible("bell\x07") == "bell<U+0007>"
    assert visible("tab\tand\nnewline stay, so does é and 漢字") == (
        "tab\tand\nnewline stay, so does é and 漢字"
    )


def test_templates_escape_and_never_evaluate_data() -> None:
    env = build_environment()
    page = env.from_string("<p>{{ x }}</p>").render(x="<b>{{7*7}}</b>\u202e")
    assert page == "<p>&lt;b&gt;{{7*7}}&lt;/b&gt;&lt;U+202E&gt;</p>"


def test_no_template_has_inline_script_or_style() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert re.search(r"<script(?![^>]*\bsrc=)", text) is None, template.name
        assert "<style" not in text, template.name
        assert " style=" not in text, template.name
        assert re.search(r"\son[a-z]+=", text) is None, template.name  # no onclick= etc.
        assert "|safe" not in text.replace(" ", ""), template.name


# -- forms -----------------------------------------------------------------------------------

SCHEMA = {
    "properties": {
        "x": {"type": "number", "title": "X", "examples": [1.5]},
        "n": {"type": "integer"},
        "xs": {"type": "array", "items": {"type": "number"}, "examples": [[1, 2]]},
        "flag": {"type": "boolean", "default": False},
        "kind": {"type": "string", "enum": ["a", "b"]},
        "text": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "nested": {"type": "object"},
    },
    "required": ["x", "xs"],
}


def test_schema_properties_become_controls() -> None:
    fields = {f.name: f for f in forms.form_fields(SCHEMA)}
    assert [f.kind for f in fields.values()] == [
        "number",
        "integer",
        "numbers",
        "boolean",
        "choice",
        "string",
        "json",
    ]
    assert fields["x"].required and not fields["n"].required
    assert fields["x"].example == "1.5"
    assert fields["xs"].example == "1, 2"
    assert fields["kind"].choices == ("a", "b")


def test_form_values_become_the_json_body() -> None:
    fields = forms.form_fields(SCHEMA)
    body = forms.body_from_form(
        fields,
        {
            "x": "2.5",
            "n": "",
            "xs": "1, 2,3",
            "flag": "on",
            "kind": "b",
            "text": "",
            "nested": '{"a": 1}',
        },
    )
    assert orjson.loads(body) == {
        "x": 2.5,
        "xs": [1.0, 2.0, 3.0],
        "flag": True,
        "kind": "b",
        "nested": {"a": 1},
    }
    for bad in ({"x": "nan"}, {"x": "1", "xs": "1,two"}, {"x": "1", "nested": "{"}, {"n": "1.5"}):
        with pytest.raises(InvalidInputError):
            forms.body_from_form(fields, bad)


# -- live figures ----------------------------------------------------------------------------


def test_quantile_interpolates_inside_a_bucket() -> None:
    # 10 requests, all between 1 and 2.5 ms: the median is halfway through that bucket.
    buckets = tuple(0.0 if bound < 0.0025 else 10.0 for bound in BOUNDS)
    p50 = quantile(0.5, buckets)
    assert p50 is not None
    assert math.isclose(p50, 0.001 + (0.0025 - 0.001) * 0.5)
    assert quantile(0.5, tuple(0.0 for _ in BOUNDS)) is None


def test_difference_is_over_the_interval_only() -> None:
    older = Totals(10, 1, tuple(10.0 for _ in BOUNDS))
    newer = Totals(30, 3, tuple(10.0 if b < 0.01 else 30.0 for b in BOUNDS))
    rates = difference(newer, older, 10.0)
    assert rates.rps == 2.0
    assert rates.error_rate == 0.1
    assert rates.p50_ms is not None and 5 < rates.p50_ms <= 10


def test_live_stats_read_the_metrics() -> None:
    metrics = Metrics()
    now = [100.0]
    live = LiveStats(metrics, refresh=metrics.flush, clock=lambda: now[0])
    bound = metrics.model("m", "1")
    for _ in range(20):
        bound.on_response(200, 0.002)
    bound.on_response(503, 0.004)
    now[0] += 10
    rates = live.rates("m")["1"]
    assert rates.requests == 21
    assert math.isclose(rates.rps or 0, 2.1)
    assert math.isclose(rates.error_rate or 0, 1 / 21)
    assert live.combined("m").requests == 21
    assert live.combined("other").rps == 0
    # The next interval starts from that snapshot.
    now[0] += 5
    bound.on_response(200, 0.002)
    times, values = live.series("m")
    assert values == [2.1, 0.2]
    assert len(times) == 2


def test_live_figures_are_fresh_between_kept_snapshots() -> None:
    # A page right after a burst (well within MIN_GAP_S of the last one) still counts it.
    metrics = Metrics()
    now = [100.0]
    live = LiveStats(metrics, refresh=metrics.flush, clock=lambda: now[0])
    bound = metrics.model("m", "1")
    bound.on_response(200, 0.002)
    now[0] += 2
    assert live.combined("m").requests == 1
    for _ in range(50):
        bound.on_response(200, 0.002)
    now[0] += 0.3
    assert live.combined("m").requests == 51


# -- assets ----------------------------------------------------------------------------------


def test_pages_load_only_console_assets(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    page = fresh.client.get("/console/").text
    urls = re.findall(r'(?:src|href)="([^"]+\.(?:js|css)[^"]*)"', page)
    assert {u.split("?")[0] for u in urls} == {
        "/console/static/console.css",
        "/console/static/uPlot.min.css",
        "/console/static/htmx.min.js",
        "/console/static/uPlot.iife.min.js",
        "/console/static/console.js",
    }
    for url in urls:
        asset = fresh.client.get(url.replace("&amp;", "&"))
        assert asset.status_code == 200
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert "http://" not in page and "https://" not in page


def test_licenses_and_test_assets_are_not_served(fresh: ConsoleClient) -> None:
    for name in ("LICENSE.htmx", "VERSIONS", "axe.min.js", "console.html", "app.py"):
        assert fresh.client.get(f"/console/static/{name}").status_code == 404, name
    # A path out of the folder is only ever a page name (never a file): here, the sign-in.
    escaped = fresh.client.get("/console/static/..%2Fapp.py")
    assert "install_console" not in escaped.text


def test_vendored_versions_match_the_script() -> None:
    script = (Path(__file__).parents[2] / "scripts" / "vendor_console_assets.sh").read_text()
    lines = (STATIC / "VERSIONS").read_text().splitlines()[1:]
    lines += (Path(__file__).parent / "assets" / "VERSIONS").read_text().splitlines()[1:]
    variables = {
        "htmx.org": "HTMX_VERSION",
        "uplot": "UPLOT_VERSION",
        "axe-core": "AXE_CORE_VERSION",
    }
    for line in lines:
        package, version = line.split()
        assert f"{variables[package]}={version}\n" in script
