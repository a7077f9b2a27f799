#!/usr/bin/env bash
# Build the web UI into ui/dist when it is missing or stale, so `make up` and `make test` need only Node.js.
#   stale = the hash of the sources, configs and lock file differs from the one recorded in dist/.build-hash
#   npm ci runs only when package-lock.json changed since the last install (node_modules/.lock-hash),
#   with npm's cache under ~/.cache/maple/npm so a second machine build downloads nothing.
# Usage: ui/build.sh [--force]
set -euo pipefail
cd "$(dirname "$0")"

sources_hash() {
  { sha256sum package.json package-lock.json index.html vite.config.ts tsconfig.json
    find src -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1
}

hash=$(sources_hash)
if [[ "${1:-}" != "--force" && -f dist/.build-hash && "$(cat dist/.build-hash)" == "$hash" && -f dist/index.html ]]; then
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "maple: building the web UI needs Node.js 20 or later with npm (not found on PATH)." >&2
  echo "       Install Node.js, or set MAPLE_API_UI_DIR to an already built ui/dist." >&2
  exit 1
fi

cache="${MAPLE_CACHE_DIR:-$HOME/.cache/maple}/npm"
lock=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f node_modules/.lock-hash || "$(cat node_modules/.lock-hash)" != "$lock" ]]; then
  echo "maple: installing the web UI's packages (npm ci)"
  npm ci --cache "$cache" --prefer-offline --no-audit --no-fund --loglevel=error
  echo "$lock" > node_modules/.lock-hash
fi

echo "maple: building the web UI (vite build)"
npx --no-install vite build --logLevel warn
echo "$hash" > dist/.build-hash
