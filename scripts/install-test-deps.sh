#!/usr/bin/env bash
# Installs what hallcast's end-to-end tests need, on a fresh Debian machine (as root, or with sudo)
# that has the Rust toolchain, python3 and node/npm. Idempotent: what is there is left alone.
#
#   Chromium (+ chromedriver)   Debian packages, only if /usr/bin/chromium is missing
#   iproute2, nftables,         Debian packages, only if missing
#   systemd (systemd-analyze),
#   python3-venv, curl, jq
#   playwright-core             npm ci in tests/js (drives the system Chromium; downloads no browser)
#   aiortc, aiohttp, numpy,     a venv at tests/py/.venv, from PyPI (tests/py/requirements.txt)
#   prometheus_client           (its text parser reads /metrics in tests/observability.rs)
#   openapi-spec-validator      (validates /api/openapi.json in tests/openapi.rs)
#   kubernetes-validate,        (tests/deploy_k8s.rs: the Kubernetes manifests against the bundled
#   jsonschema, PyYAML           schemas, offline; the ServiceMonitor against our own schema)
#   coturn                      Debian package, only if `turnserver` is missing (tests/turn.rs)
#   ffmpeg                      Debian package, only if ffmpeg/ffprobe are missing (RTMP/SRT ingest, recordings)
#   PostgreSQL                  scripts/pg-test-setup.sh, when that script exists
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf '==> %s\n' "$*"; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  fi
fi

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get not found; install these by hand: $*" >&2
    exit 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get update"
    "${sudo_cmd[@]}" apt-get update -qq
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

# --- system packages -----------------------------------------------------------------------------
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver fonts-dejavu-core)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# `ip` (network namespaces: the reconnect test puts a viewer on a second host).
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# `nft` (the 1:1 NAT test puts the relay behind DNAT in its namespace).
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# `systemd-analyze` (tests/deploy.rs verifies the systemd units with it; no running systemd needed).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# `curl` (docs/api.md's runnable example; the docs' examples call the relay's API: tests/docs.rs runs them)
# and `jq` (the docs' examples read the relay's JSON).
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
# `openssl` (tests/https.rs and docs/deploy.md's HTTPS example make a private CA and a certificate).
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# `turnserver` (tests/turn.rs runs the shipped deploy/turn/turnserver.conf on loopback).
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
# `ffmpeg`, `ffprobe` (tests/ingest.rs pushes RTMP and SRT test patterns; recordings are checked
# with ffprobe and decoded with ffmpeg). Debian's build has libx264 and libsrt.
{ command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; } || missing+=(ffmpeg)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
else
  say "chromium, node, npm, python3-venv, iproute2, nftables, systemd-analyze, curl, jq, openssl, coturn and ffmpeg are present"
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "error: Node.js $(node --version) is too old for playwright-core; version 20 or newer is needed" >&2
  exit 1
fi

# --- playwright-core (tests/js) ------------------------------------------------------------------
if [ -f tests/js/node_modules/playwright-core/package.json ] &&
  [ tests/js/node_modules/.package-lock.json -nt tests/js/package-lock.json ]; then
  say "tests/js: node modules are up to date"
else
  say "tests/js: npm ci"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- aiortc venv (tests/py/.venv) ----------------------------------------------------------------
venv=tests/py/.venv
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import aiortc, aiohttp, numpy, av, prometheus_client, openapi_spec_validator, kubernetes_validate, jsonschema, yaml' >/dev/null 2>&1; then
  say "tests/py/.venv: aiortc, prometheus_client, openapi-spec-validator and kubernetes-validate are installed"
elif [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import aiortc, aiohttp, numpy, av' >/dev/null 2>&1; then
  say "tests/py/.venv: adding what tests/py/requirements.txt lists"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/py/requirements.txt
else
  say "tests/py/.venv: creating the venv and installing tests/py/requirements.txt"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/py/requirements.txt
fi

# --- PostgreSQL (the ledger's tests; owned by scripts/pg-test-setup.sh) ---------------------------
if [ -f scripts/pg-test-setup.sh ]; then
  say "scripts/pg-test-setup.sh"
  bash scripts/pg-test-setup.sh >/dev/null
fi

say "test dependencies are ready"
