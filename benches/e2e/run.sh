#!/usr/bin/env bash
# End-to-end benchmark of the relay: one publisher (~2 Mbit/s pre-encoded 720p H.264 + Opus) and
# 50/100/200 real WebRTC subscribers (str0m: ICE, DTLS-SRTP, RTCP) on loopback. Builds the relay
# and the load generator (release), runs `hallcast-load bench`, and writes docs/BENCHMARKS-e2e.md.
#
#   benches/e2e/run.sh                      # N = 50,100,200, 20 s windows
#   SIZES=10,50 DURATION=10 benches/e2e/run.sh
#   HALLCAST_BIN=/path/to/hallcast benches/e2e/run.sh   # measure a relay built elsewhere
#   benches/e2e/run.sh --relay-arg=--set=media.gso=false  # extra arguments go to hallcast-load bench
#
# Environment: SIZES, RAMP (subscribers/s), WARMUP, DURATION, BASELINE (seconds), OUT (report
# path), WORK_DIR (logs and per-step JSON), CARGO_TARGET_DIR. Run it on an otherwise idle
# machine: the relay, the publisher and the subscribers share its cores.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
sizes="${SIZES:-50,100,200}"
out="${OUT:-$root/docs/BENCHMARKS-e2e.md}"
work="${WORK_DIR:-$target/e2e-bench}"

if [[ -z "${HALLCAST_BIN:-}" ]]; then
  cargo build --release -p hallcast
  HALLCAST_BIN="$target/release/hallcast"
fi
cargo build --release -p hallcast-load

mkdir -p "$(dirname "$out")"
exec "$target/release/hallcast-load" bench \
  --relay-bin "$HALLCAST_BIN" \
  --sizes "$sizes" \
  --ramp-per-sec "${RAMP:-20}" \
  --warmup "${WARMUP:-5}" \
  --duration "${DURATION:-20}" \
  --baseline "${BASELINE:-5}" \
  --work-dir "$work" \
  --out "$out" \
  "$@"
