#!/usr/bin/env bash
# Installs every build and test dependency of Sluice from Debian packages.
# Idempotent; run as root on Debian 12. Does nothing when all packages are present.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev git ca-certificates
  libevent-dev libjansson-dev libyaml-dev libssl-dev
  libhiredis-dev librdkafka-dev libpq-dev libmsgpack-dev
  redis-server postgresql postgresql-contrib
  python3 python3-pytest python3-jsonschema python3-yaml
  procps curl zip unzip
  autoconf automake libtool  # tests/node/setup.sh: aws-lambda-ric builds curl from source
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "bootstrap: all ${#PKGS[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "bootstrap: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi

echo "bootstrap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts packaged servers on install; the tests run their own on private ports.
for svc in redis-server postgresql; do
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
  service "$svc" stop >/dev/null 2>&1 || true
done
echo "bootstrap: done"
