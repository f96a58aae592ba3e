#!/usr/bin/env bash
# The soak (issue 13 C.2) at full length: `hallcast demo` under 30 minutes of continuous churn
# (points' viewers joining and leaving, the publisher reconnecting every 20 s); RSS, fds,
# threads, tasks and the ledger's bytes per event must stay flat. The CI runs the same test for
# 3 minutes (its default). Usage: scripts/soak.sh [SECONDS]   (default 1800)
# Series and fitted growth per hour: target/debug/e2e-results/<test>/soak.json (or under
# $HALLCAST_RESULTS_DIR); docs/BENCHMARKS.md, "Soak", says how to read them.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

seconds="${1:-1800}"
cargo build -p hallcast -p hallcast-load
HALLCAST_SOAK_SECONDS="$seconds" cargo test -p hallcast-tests --test soak -- --nocapture
