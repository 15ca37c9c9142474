"""`/docs` (Swagger UI) and `/redoc` (ReDoc) served from the package, with no internet.

FastAPI's own pages load their JS and CSS from a CDN and start Swagger UI from an inline
script. These pages load the copies vendored in `static/docs/` (versions in its `VERSIONS`
file; `scripts/vendor_docs_assets.sh` updates them) from `/docs/static/`, start the UIs from
served files, and carry a Content-Security-Policy that allows nothing but this origin (ReDoc's
needs inline styles and a Blob worker: see `REDOC_CSP`).

Every URL here is `/docs`, `/redoc` or under `/docs/`, so the docs exposure policy
(`http/exposure.py`) covers the assets as well as the pages.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from modelserve.http.assets import (
    Asset,
    AssetFolder,
    accepts_gzip,
    asset_response,
    versioned_url,
)

# `Asset` and `accepts_gzip` moved to http/assets.py and stay importable from here.
__all__ = ["Asset", "accepts_gzip", "asset_url", "assets", "build_docs_router", "load_assets"]

SWAGGER_UI_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
STATIC_PATH = "/docs/static"


def _policy(*directives: str) -> str:
    return "; ".join(directives)


# Nothing but this origin, and no inline code or styles: Swagger UI sets its dynamic styles
# through the DOM (element.style), which style-src does not govern, so it renders in full
# under style-src 'self' (checked in Chromium by tests/http/test_docs_offline.py).
STRICT_CSP = _policy(
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "object-src 'none'",
)
# ReDoc needs two relaxations, each checked in Chromium. style-src 'unsafe-inline': it styles
# itself with styled-components, which writes <style> elements at run time; under
# style-src 'self' the page stays blank. Inline styles cannot run code, and scripts stay
# 'self' only. worker-src blob:: its search index runs in a Web Worker that the bundle (itself
# from 'self') starts from a Blob of its own code; without it Chromium refuses the worker and
# the page renders with no search index. A script able to make such a Blob is already
# running, so this adds nothing an attacker could use. Its footer's Redocly logo (a CDN
# image) stays blocked by img-src.
REDOC_CSP = _policy(
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "worker-src blob:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "object-src 'none'",
)
PAGE_HEADERS: Mapping[str, str] = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    # The pages name the assets by content hash: a cached page would pin old assets.
    "cache-control": "no-cache",
}
# Every asset mechanism (hashed URLs, caching, gzip, ETags) is shared with the console's
# pages: `http/assets.py`.
_FOLDER = AssetFolder("modelserve.http", "static", "docs")


def load_assets() -> Mapping[str, Asset]:
    """The files under `static/docs/` that are served (by suffix; licenses stay unserved),
    read once per process. Compressing the bundles takes a moment: call it off the loop."""
    return _FOLDER.load()


async def assets() -> Mapping[str, Asset]:
    """`load_assets()` without blocking the event loop on the first call."""
    return await _FOLDER.table()


def asset_url(root_path: str, name: str, table: Mapping[str, Asset]) -> str:
    """The versioned URL of asset `name`, for a page served under `root_path`."""
    return versioned_url(f"{root_path}{STATIC_PATH}", name, table)


def _page(body: str, csp: str) -> HTMLResponse:
    return HTMLResponse(body, headers={**PAGE_HEADERS, "content-security-policy": csp})


def swagger_ui_html(
    *,
    title: str,
    openapi_url: str,
    oauth2_redirect_url: str,
    root_path: str,
    table: Mapping[str, Asset],
) -> str:
    """The /docs page: Swagger UI started by `init-swagger-ui.js` from the data- attributes."""
    e = html.escape
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{e(title)}</title>
<link rel="stylesheet" href="{e(asset_url(root_path, "swagger-ui.css", table))}">
<link rel="icon" type="image/png" href="{e(asset_url(root_path, "favicon-32x32.png", table))}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{e(openapi_url)}"
     data-oauth2-redirect-url="{e(oauth2_redirect_url)}"></div>
<script src="{e(asset_url(root_path, "swagger-ui-bundle.js", table))}"></script>
<script src="{e(asset_url(root_path, "init-swagger-ui.js", table))}"></script>
</body>
</html>
"""


def redoc_html(*, title: str, openapi_url: str, root_path: str, table: Mapping[str, Asset]) -> str:
    """The /redoc page: ReDoc started by `init-redoc.js` from the data- attribute."""
    e = html.escape
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<link rel="stylesheet" href="{e(asset_url(root_path, "docs.css", table))}">
<link rel="icon" type="image/png" href="{e(asset_url(root_path, "favicon-32x32.png", table))}">
</head>
<body>
<noscript>ReDoc needs JavaScript to show the documentation.</noscript>
<div id="redoc" data-openapi-url="{e(openapi_url)}"></div>
<script src="{e(asset_url(root_path, "redoc.standalone.js", table))}"></script>
<script src="{e(asset_url(root_path, "init-redoc.js", table))}"></script>
</body>
</html>
"""


def oauth2_redirect_html(*, root_path: str, table: Mapping[str, Asset]) -> str:
    """The page an OAuth2 authorization server sends Swagger UI's login popup back to."""
    src = html.escape(asset_url(root_path, "oauth2-redirect.js", table))
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Swagger UI: OAuth2 redirect</title></head>
<body>
<script src="{src}"></script>
</body>
</html>
"""


def build_docs_router(*, title: str, openapi_url: str) -> APIRouter:
    """Routes for /docs, /docs/oauth2-redirect, /redoc and /docs/static/{name}.

    `openapi_url` is the app's document path (without any root path; the request's is added).
    """

    def root_of(request: Request) -> str:
        # Behind a proxy that mounts the app under a prefix, as FastAPI's own pages do.
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger_ui(request: Request) -> Response:
        root = root_of(request)
        body = swagger_ui_html(
            title=f"{title} - Swagger UI",
            openapi_url=root + openapi_url,
            oauth2_redirect_url=root + OAUTH2_REDIRECT_PATH,
            root_path=root,
            table=await assets(),
        )
        return _page(body, STRICT_CSP)

    async def oauth2_redirect(request: Request) -> Response:
        body = oauth2_redirect_html(root_path=root_of(request), table=await assets())
        return _page(body, STRICT_CSP)

    async def redoc(request: Request) -> Response:
        root = root_of(request)
        body = redoc_html(
            title=f"{title} - ReDoc",
            openapi_url=root + openapi_url,
            root_path=root,
            table=await assets(),
        )
        return _page(body, REDOC_CSP)

    async def static(request: Request) -> Response:
        return asset_response(request, (await assets()).get(str(request.path_params["name"])))

    router = APIRouter()
    # Starlette routes, not API routes: no schema, no dependency solving; GET answers HEAD too.
    router.add_route(SWAGGER_UI_PATH, swagger_ui, methods=["GET"], include_in_schema=False)
    router.add_route(
        OAUTH2_REDIRECT_PATH, oauth2_redirect, methods=["GET"], include_in_schema=False
    )
    router.add_route(REDOC_PATH, redoc, methods=["GET"], include_in_schema=False)
    router.add_route(STATIC_PATH + "/{name}", static, methods=["GET"], include_in_schema=False)
    return router
