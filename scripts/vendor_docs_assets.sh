#!/usr/bin/env bash
# Vendor the JS/CSS that /docs (Swagger UI) and /redoc (ReDoc) load, so both pages work with no
# internet (src/modelserve/http/docs_pages.py serves them). Fetches the pinned npm packages with
# `npm pack` (tarballs only: no install scripts run, no node_modules) and copies the few files
# the pages need, plus the licenses, into src/modelserve/http/static/docs/.
#
# To update: change a version below, run `scripts/vendor_docs_assets.sh`, open /docs and /redoc,
# run tests/http/test_docs_offline.py (its browser test renders both pages offline), commit.
set -euo pipefail

# ReDoc stays on 2.x: 3.x bundles OpenTelemetry and reports usage to Redocly unless told not
# to, and its bundle is an ES module twice the size; 2.x is also what FastAPI's own /redoc loads.
SWAGGER_UI_VERSION=5.36.0
REDOC_VERSION=2.5.4

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/src/modelserve/http/static/docs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "swagger-ui-dist@$SWAGGER_UI_VERSION" "redoc@$REDOC_VERSION" >/dev/null
mkdir swagger redoc
tar -xzf "swagger-ui-dist-$SWAGGER_UI_VERSION.tgz" -C swagger --strip-components=1
tar -xzf "redoc-$REDOC_VERSION.tgz" -C redoc --strip-components=1

mkdir -p "$dest"
# Only the files the pages use; init-*.js and docs.css in $dest are ours and are kept.
rm -f "$dest"/swagger-ui* "$dest"/redoc* "$dest"/oauth2-redirect.js "$dest"/favicon-32x32.png "$dest"/LICENSE.* "$dest"/NOTICE.*
cp swagger/swagger-ui-bundle.js swagger/swagger-ui.css swagger/favicon-32x32.png "$dest/"
# The OAuth2 redirect page's script, as a file: FastAPI's own page inlines it, which the CSP forbids.
cp swagger/oauth2-redirect.js "$dest/"
cp swagger/swagger-ui-bundle.js.LICENSE.txt "$dest/"
cp swagger/LICENSE "$dest/LICENSE.swagger-ui-dist"
cp swagger/NOTICE "$dest/NOTICE.swagger-ui-dist"
cp redoc/bundles/redoc.standalone.js redoc/bundles/redoc.standalone.js.LICENSE.txt "$dest/"
cp redoc/LICENSE "$dest/LICENSE.redoc"

cat >"$dest/VERSIONS" <<VERSIONS
# Written by scripts/vendor_docs_assets.sh: the npm packages the files here come from.
swagger-ui-dist $SWAGGER_UI_VERSION
redoc $REDOC_VERSION
VERSIONS
echo "vendored swagger-ui-dist $SWAGGER_UI_VERSION and redoc $REDOC_VERSION into $dest"
