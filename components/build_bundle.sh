#!/usr/bin/env bash
# Build components/static/vendor/three-bundle.js (three.js + GLTFLoader + RoomEnvironment, pinned by
# package-lock.json) with esbuild. Idempotent: does nothing when the bundle is newer than its inputs.
set -euo pipefail
cd "$(dirname "$0")"

bundle=static/vendor/three-bundle.js
if ! command -v npm >/dev/null 2>&1; then
    echo "build_bundle: npm not found; the avatar will load three.js from the CDN fallback" >&2
    exit 0
fi
if [ ! -d node_modules/three ] || [ ! -d node_modules/esbuild ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
fi
up_to_date=1
for input in three_entry.js package.json package-lock.json build_bundle.sh node_modules/.package-lock.json; do
    [ -f "$bundle" ] && [ "$bundle" -nt "$input" ] || up_to_date=0
done
if [ "$up_to_date" = 1 ]; then
    echo "build_bundle: $bundle is up to date"
    exit 0
fi
mkdir -p static/vendor
npx --no-install esbuild three_entry.js --bundle --format=esm --minify --target=es2020 \
    --legal-comments=eof --outfile="$bundle"
echo "build_bundle: wrote $bundle"
