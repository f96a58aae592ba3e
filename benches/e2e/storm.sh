#!/usr/bin/env bash
# Join-storm benchmark: 50 steady subscribers measured (relay CPU, delivery, audio delay)
# through a quiet phase, a storm of 500 registered connection points joining within 1 s
# (each with its own signed join link, each declaring a headcount), watching 4 s, leaving and
# rejoining (3 waves), and a quiet phase after. Runs twice: storm clients receiving audio and
# video, then audio only (the joins' own cost without the fan-out of 500 more viewers).
# Writes docs/BENCHMARKS-storm.md.
#
#   benches/e2e/storm.sh
#   HALLCAST_BIN=/path/to/hallcast benches/e2e/storm.sh      # measure a relay built elsewhere
#   benches/e2e/storm.sh --points 200 --waves 2              # extra arguments go to hallcast-load storm
#
# Environment: OUT (report path), WORK_DIR (logs and JSON), CARGO_TARGET_DIR. Run it on an
# otherwise idle machine: the relay, the publisher and all clients share its cores.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
out="${OUT:-$root/docs/BENCHMARKS-storm.md}"
work="${WORK_DIR:-$target/storm-bench}"

if [[ -z "${HALLCAST_BIN:-}" ]]; then
  cargo build --release -p hallcast
  HALLCAST_BIN="$target/release/hallcast"
fi
cargo build --release -p hallcast-load
load="$target/release/hallcast-load"

mkdir -p "$work" "$(dirname "$out")"
"$load" storm --relay-bin "$HALLCAST_BIN" --work-dir "$work/av" --out "$work/av.md" "$@"
"$load" storm --relay-bin "$HALLCAST_BIN" --storm-audio-only --work-dir "$work/audio" \
  --out "$work/audio.md" "$@"
{
  cat "$work/av.md"
  echo
  echo "---"
  echo
  sed '1s/^# /## /' "$work/audio.md"
} > "$out"
echo "wrote $out"
