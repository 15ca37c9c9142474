"""Jinja2 templates of the console: autoescaped, and invisible characters made visible.

Every `{{ value }}` is HTML-escaped (V11: `<script>` shows as text, and data is never rendered
as a template, so `{{7*7}}` in a label stays `{{7*7}}`). On top of escaping, `visible` rewrites
characters that change how the text around them is *displayed* without being seen: bidi
overrides and isolates (U+202E makes `gpj.exe` look like `exe.jpg`), zero-width characters,
other control characters. Each becomes a visible `<U+202E>` marker, so what an admin reads is
what the data holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from modelserve.http.assets import Asset, versioned_url

# C0/C1 controls (tab and newline stay), bidi embeddings/overrides/isolates and marks,
# zero-width characters, line/paragraph separators, the BOM.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


def visible(text: str) -> str:
    """`text` with every invisible or direction-changing character shown as `<U+XXXX>`."""
    return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def _finalize(value: Any) -> Any:
    # Runs on every {{ }} output before escaping; markup built by the templates is left alone.
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


def build_environment() -> Environment:
    """The console's template environment (templates ship in the package)."""
    env = Environment(
        loader=PackageLoader("modelserve.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["visible"] = visible
    return env


class AssetUrls:
    """`assets["htmx.min.js"]` in a template: the file's versioned URL."""

    def __init__(self, prefix: str, table: Mapping[str, Asset]) -> None:
        self._prefix = prefix
        self._table = table

    def __getitem__(self, name: str) -> str:
        return versioned_url(self._prefix, name, self._table)
