#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's: installs what the tests need
# (scripts/install-test-deps.sh), builds the hallcast binary the end-to-end tests run, then runs
# every test of the workspace. Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

started=$(date +%s)
say() { printf '==> [%4ss] %s\n' "$(($(date +%s) - started))" "$*"; }

say "installing test dependencies"
bash scripts/install-test-deps.sh

features=()
if [ -f scripts/pg-test-setup.sh ] && grep -q '^pg-tests' crates/hallcast-ledger/Cargo.toml 2>/dev/null; then
  # Sets HALLCAST_TEST_PG_URL for the ledger's PostgreSQL tests.
  eval "$(bash scripts/pg-test-setup.sh)"
  features=(--features hallcast-ledger/pg-tests)
fi

# The end-to-end tests start target/debug/hallcast; build it first so it is never stale.
say "cargo build -p hallcast"
cargo build -p hallcast

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
