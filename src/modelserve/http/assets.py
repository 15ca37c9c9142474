"""Static files vendored in the package, served offline under content-hashed URLs.

Used by the documentation pages (`docs_pages.py`, folder `http/static/docs/`) and the admin
console (`modelserve.console`, its `static/` folder). A folder's files are read once per
process; a page names each file as `<prefix>/<name>?v=<hash>`, so a response to the current
hash can be cached for good and anything else revalidates by ETag. Text assets go gzipped to
clients that accept it (a separate representation with its own ETag). Only files with a known
suffix are served: licenses and version notes ship in the wheel but are not web assets, and
nothing outside the folder is reachable (names are looked up in the table, never joined to a
path).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

# A request whose `v` is the asset's current hash can keep it for good: a new asset gets a
# new URL. Anything else (no `v`, an old one) must revalidate, by ETag.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

CONTENT_TYPES: Mapping[str, str] = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = (".js", ".css", ".txt")


@dataclass(frozen=True)
class Asset:
    """One served file: its bytes, a gzip copy when that is smaller, and its content hash."""

    body: bytes
    gzipped: bytes | None
    content_type: str
    digest: str

    @property
    def version(self) -> str:
        """The short hash that versions the asset's URL."""
        return self.digest[:16]


def read_folder(package: str, *parts: str) -> dict[str, Asset]:
    """The servable files (by suffix) of a package folder. Compressing bundles takes a
    moment: call it off the event loop, once."""
    assets: dict[str, Asset] = {}
    folder = resources.files(package).joinpath(*parts)
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        content_type = CONTENT_TYPES.get(suffix)
        if content_type is None or not entry.is_file():
            continue
        body = entry.read_bytes()
        gzipped = None
        if suffix in COMPRESSIBLE:
            # mtime=0: the same bytes (and ETag) in every process and every run.
            packed = gzip.compress(body, compresslevel=9, mtime=0)
            gzipped = packed if len(packed) < len(body) else None
        digest = hashlib.sha256(body).hexdigest()
        assets[entry.name] = Asset(body, gzipped, content_type, digest)
    return assets


class AssetFolder:
    """The files of one package folder, read on first use and then kept for the process."""

    def __init__(self, package: str, *parts: str) -> None:
        self._package = package
        self._parts = parts
        self._table: Mapping[str, Asset] | None = None

    def load(self) -> Mapping[str, Asset]:
        """The table, reading the folder on the first call (blocking: see `table`)."""
        if self._table is None:
            self._table = read_folder(self._package, *self._parts)
        return self._table

    async def table(self) -> Mapping[str, Asset]:
        """`load()` without blocking the event loop on the first call."""
        if self._table is not None:
            return self._table
        return await run_in_threadpool(self.load)


def versioned_url(prefix: str, name: str, table: Mapping[str, Asset]) -> str:
    """`<prefix>/<name>?v=<hash>`: the URL a page names asset `name` by."""
    return f"{prefix}/{name}?v={table[name].version}"


def accepts_gzip(request: Request) -> bool:
    """Whether Accept-Encoding lists gzip with a non-zero weight."""
    for item in request.headers.get("accept-encoding", "").split(","):
        coding, *params = item.split(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        return weight > 0
    return False


def etag_matches(request: Request, etag: str) -> bool:
    """Whether If-None-Match names `etag` (weakly, as RFC 9110 compares for GET) or is `*`."""
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags


def asset_response(request: Request, asset: Asset | None) -> Response:
    """The answer to a GET of one asset (404 for None): cached for good when the request
    names the current hash, 304 on a matching ETag, gzipped when accepted."""
    if asset is None:
        return Response(status_code=404, headers={"cache-control": REVALIDATE})
    packed = asset.gzipped if accepts_gzip(request) else None
    # Each encoding is a different representation, so it gets its own (strong) ETag.
    etag = f'"{asset.digest}-gz"' if packed is not None else f'"{asset.digest}"'
    current = request.query_params.get("v") == asset.version
    headers = {
        "etag": etag,
        "cache-control": IMMUTABLE if current else REVALIDATE,
        "x-content-type-options": "nosniff",
    }
    if asset.gzipped is not None:
        headers["vary"] = "accept-encoding"
    if etag_matches(request, etag):
        return Response(status_code=304, headers=headers)
    if packed is not None:
        headers["content-encoding"] = "gzip"
        return Response(packed, media_type=asset.content_type, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)
