#!/usr/bin/env bash
# Vendor the JS/CSS the admin console loads (htmx, uPlot) into src/modelserve/console/static/,
# and axe-core (accessibility checks, test-only, never served) into tests/console/assets/.
# Fetches the pinned npm packages with `npm pack` (tarballs only: no install scripts run, no
# node_modules) and copies the few files needed, plus their licenses.
#
# To update: change a version below, run `scripts/vendor_console_assets.sh`, run
# `pytest tests/console` (its browser tests load every page under the console's CSP), commit.
set -euo pipefail

# htmx stays on 2.x: 4.x rewrote the request layer and its attributes' defaults.
HTMX_VERSION=2.0.11
UPLOT_VERSION=1.6.32
AXE_CORE_VERSION=4.14.1

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/src/modelserve/console/static"
tests="$root/tests/console/assets"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "htmx.org@$HTMX_VERSION" "uplot@$UPLOT_VERSION" "axe-core@$AXE_CORE_VERSION" >/dev/null
mkdir htmx uplot axe
tar -xzf "htmx.org-$HTMX_VERSION.tgz" -C htmx --strip-components=1
tar -xzf "uplot-$UPLOT_VERSION.tgz" -C uplot --strip-components=1
tar -xzf "axe-core-$AXE_CORE_VERSION.tgz" -C axe --strip-components=1

mkdir -p "$dest" "$tests"
# Only the vendored files; console.css and console.js in $dest are ours and are kept.
rm -f "$dest"/htmx.min.js "$dest"/uPlot.* "$dest"/LICENSE.*
cp htmx/dist/htmx.min.js "$dest/"
cp htmx/LICENSE "$dest/LICENSE.htmx"
cp uplot/dist/uPlot.iife.min.js uplot/dist/uPlot.min.css "$dest/"
cp uplot/LICENSE "$dest/LICENSE.uplot"
cp axe/axe.min.js "$tests/"
cp axe/LICENSE "$tests/LICENSE.axe-core"

cat >"$dest/VERSIONS" <<VERSIONS
# Written by scripts/vendor_console_assets.sh: the npm packages the files here come from.
htmx.org $HTMX_VERSION
uplot $UPLOT_VERSION
VERSIONS
cat >"$tests/VERSIONS" <<VERSIONS
# Written by scripts/vendor_console_assets.sh: test-only, not served by the app.
axe-core $AXE_CORE_VERSION
VERSIONS
echo "vendored htmx.org $HTMX_VERSION, uplot $UPLOT_VERSION (console) and axe-core $AXE_CORE_VERSION (tests)"
