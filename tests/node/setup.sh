#!/usr/bin/env bash
# Installs the Node.js packages of tests/node/package.json (aws-lambda-ric, @aws-sdk/client-lambda)
# into a cache directory, exactly as pinned by tests/node/package-lock.json.
#
#   SLUICE_NODE_CACHE  where to install (default: <repo>/.cache/node); the packages end up in
#                      $SLUICE_NODE_CACHE/node_modules
#
# Idempotent and cheap when warm: a stamp in node_modules records the hash of package.json,
# package-lock.json and the Node.js version it was built for, and the install is skipped
# while it matches and aws-lambda-ric's native addon is in place. Concurrent runs serialise
# on a lock file. aws-lambda-ric builds curl and aws-lambda-cpp from source on install: it
# needs g++, make, cmake, autoconf, automake, libtool and python3 (deploy/bootstrap.sh) and
# Node.js headers (found in /usr/include/node, so node-gyp downloads nothing).
# Prints the cache directory on its last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${SLUICE_NODE_CACHE:-$repo/.cache/node}"

for tool in node npm sha256sum flock; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "node-setup: $tool is not installed" >&2
    exit 1
  fi
done

mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
exec 9>"$cache/.setup.lock"
flock 9

stamp_file="$cache/node_modules/.sluice-stamp"
addon="$cache/node_modules/aws-lambda-ric/dist/rapid-client.node"
want="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1) node-$(node --version)"

if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ] && [ -f "$addon" ]; then
  echo "node-setup: up to date in $cache/node_modules" >&2
  echo "$cache"
  exit 0
fi

echo "node-setup: installing into $cache (builds aws-lambda-ric's native addon, about a minute)" >&2
cp "$here/package.json" "$here/package-lock.json" "$cache/"
rm -f "$stamp_file"

# node-gyp must build against the installed Node.js headers, not download them.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node_api.h ]; then
  export npm_config_nodedir=/usr
fi

log="$cache/npm-install.log"
if ! (cd "$cache" && npm ci --no-audit --no-fund --foreground-scripts) >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "node-setup: npm ci failed; full log in $log" >&2
  exit 1
fi
if [ ! -f "$addon" ]; then
  echo "node-setup: npm ci finished but $addon is missing; see $log" >&2
  exit 1
fi
echo "$want" >"$stamp_file"
echo "node-setup: installed into $cache/node_modules" >&2
echo "$cache"
