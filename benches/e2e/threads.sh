#!/usr/bin/env bash
# The relay engine's A/B and saturation runs (docs/BENCHMARKS.md, "Issue 9"):
#   BEFORE=/path/to/old/hallcast benches/e2e/threads.sh ab          # before vs media.threads=1 and =2, N=100,200
#   benches/e2e/threads.sh saturation                                # media.threads=1 vs =2, N=400,600
# Configurations alternate for ROUNDS rounds (default 2). Release builds of the relay and the load
# generator from this tree are used (HALLCAST_BIN overrides the relay). Run on an otherwise idle
# machine. Reports and per-step JSON go to WORK_DIR (default target/threads-bench).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
work="${WORK_DIR:-$target/threads-bench}"
rounds="${ROUNDS:-2}"
mode="${1:-ab}"
if [[ -z "${HALLCAST_BIN:-}" ]]; then
  cargo build --release -p hallcast -p hallcast-load
  HALLCAST_BIN="$target/release/hallcast"
else
  cargo build --release -p hallcast-load
fi
load="$target/release/hallcast-load"
mkdir -p "$work"
run() { # name relay-bin sizes ramp [relay args...]
  local name=$1 bin=$2 sizes=$3 ramp=$4; shift 4
  "$load" bench --relay-bin "$bin" "$@" --sizes "$sizes" --ramp-per-sec "$ramp" --warmup 5 \
    --duration 15 --baseline 5 --work-dir "$work/$name" --out "$work/$name.md" > "$work/$name.log" 2>&1
  echo "$name: $work/$name.md"
}
for round in $(seq 1 "$rounds"); do
  case "$mode" in
    ab)
      if [[ -n "${BEFORE:-}" ]]; then run "before-$round" "$BEFORE" 100,200 20; fi
      run "t1-$round" "$HALLCAST_BIN" 100,200 20 --relay-arg=--set=media.threads=1
      run "t2-$round" "$HALLCAST_BIN" 100,200 20 --relay-arg=--set=media.threads=2
      ;;
    saturation)
      run "sat-t1-$round" "$HALLCAST_BIN" 400,600 50 --relay-arg=--set=media.threads=1 --attempts 1
      run "sat-t2-$round" "$HALLCAST_BIN" 400,600 50 --relay-arg=--set=media.threads=2 --attempts 1
      ;;
    *) echo "usage: $0 ab|saturation" >&2; exit 2 ;;
  esac
done
