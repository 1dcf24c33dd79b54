#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs (PostgreSQL from Debian, a
# Python venv with the official Azure SDK), checks format and lints, runs the Rust tests (store
# conformance on SQLite and PostgreSQL, integration tests of the real binary) and the Python SDK
# tests over HTTPS. Under CI=true nothing may be skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d /tmp/strongbox-test.XXXXXX)
chmod 755 "$work"

log() { printf '\n== %s\n' "$*"; }

cleanup() {
  if [ -f "$work/pg/data/postmaster.pid" ]; then
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bindir/pg_ctl" -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true
    else "$bindir/pg_ctl" -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true; fi
  fi
  rm -rf "$work"
}
trap cleanup EXIT

log "toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version

log "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log "openssl CLI (the CIK channel test makes a PKCS#12 file with it)"
if ! command -v openssl >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl
fi
openssl version

log "systemd-analyze (the packaging test verifies and scores the units with it)"
if ! command -v systemd-analyze >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd
fi
systemd-analyze --version | head -n 1

log "PostgreSQL"
export STRONGBOX_TEST_PG_URL
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
STRONGBOX_TEST_PG_URL=$(scripts/pg-start.sh "$work/pg" "$pg_port")
echo "PostgreSQL at $STRONGBOX_TEST_PG_URL"

log "Rust tests"
cargo test --workspace --locked
if [ -z "${KUBECONFIG:-}" ]; then
  echo "Kubernetes live target test: skipped (KUBECONFIG not set; the Secret manifest and the file target ran)"
fi

log "Python SDK tests"
# The sign-in tests drive Debian's headless Chromium through its chromedriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver >/dev/null; fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r sdk-tests/python/requirements.txt
# The Azure CLI pins its own management SDKs, so it gets a venv of its own.
if [ ! -x .venv-az/bin/python ]; then
  python3 -m venv .venv-az
fi
.venv-az/bin/pip install --quiet --disable-pip-version-check -r sdk-tests/python/requirements-azcli.txt
export STRONGBOX_AZ="$root/.venv-az/bin/az"
# `cargo test --workspace` above built the binary the SDK tests run.
STRONGBOX_BIN="$root/target/debug/strongbox" .venv/bin/python -m pytest -q sdk-tests/python

log "all tests passed"
