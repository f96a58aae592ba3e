#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's: installs what the tests need
# (scripts/install-test-deps.sh), starts PostgreSQL for the ledger's PostgreSQL tests
# (scripts/pg-test-setup.sh), builds the hallcast binary the end-to-end tests run and the criterion
# benches (so they cannot rot), then runs every test of the workspace, the PostgreSQL ones
# included. Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

started=$(date +%s)
say() { printf '==> [%4ss] %s\n' "$(($(date +%s) - started))" "$*"; }

say "installing test dependencies"
bash scripts/install-test-deps.sh

# The ledger's PostgreSQL tests always run. The setup prints `export HALLCAST_TEST_PG_URL=...`;
# `set -e` does not see a failure inside `eval "$(...)"`, so its exit status is checked here.
say "PostgreSQL for the ledger's tests (scripts/pg-test-setup.sh)"
if ! pg_env="$(bash scripts/pg-test-setup.sh)"; then
  echo "error: scripts/pg-test-setup.sh failed (its messages are above): the ledger's PostgreSQL tests cannot run" >&2
  exit 1
fi
eval "$pg_env"
if [ -z "${HALLCAST_TEST_PG_URL:-}" ]; then
  echo "error: scripts/pg-test-setup.sh printed no HALLCAST_TEST_PG_URL: the ledger's PostgreSQL tests cannot run" >&2
  exit 1
fi
features=(--features hallcast-ledger/pg-tests)

# The end-to-end tests start target/debug/hallcast (and the tree tests hallcast-load); build them
# first so they are never stale.
say "cargo build -p hallcast -p hallcast-load"
cargo build -p hallcast -p hallcast-load

# The criterion benches are not built by `cargo test`; building them here (dev profile, sharing the
# test build's dependencies) keeps them compiling.
say "cargo build --workspace --benches"
cargo build --workspace --benches

log="$(mktemp -t hallcast-test.XXXXXX.log)"
say "cargo test --workspace --no-fail-fast ${features[*]} $*   (full output: $log)"
set +e
cargo test --workspace --no-fail-fast "${features[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

echo
say "summary (cargo test exit status $status)"
grep -E '^(test result:|failures:|    [a-z_:]+$|error(\[|:))' "$log" || true
passed=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{p += $4; f += $6} END {print p + 0}')
failed=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{f += $6} END {print f + 0}')
echo "${passed} passed, ${failed} failed"
exit "$status"
