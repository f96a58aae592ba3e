#!/usr/bin/env bash
# The edge-tree benchmark (docs/BENCHMARKS.md, "Edge tree"): per-hop transit and CPU per hop
# (central -> edge -> 50 viewers, media.threads default and =1, the media threads under
# SCHED_FIFO), and the central's CPU serving 10 edges x 50 viewers against 500 viewers itself
# (central pinned to CPU 0, the rest to CPU 1).
# Release builds of the relay, the load generator and the benchmark (benches/src/bin/tree.rs).
# JSON per run in OUT_DIR (default target/tree-bench/runs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
out="${OUT_DIR:-$target/tree-bench/runs}"
cargo build --release -p hallcast -p hallcast-load -p hallcast-benches
bin="${HALLCAST_BIN:-$target/release/hallcast}"
mkdir -p "$out"
run() { # label [tree args...]
  local label=$1; shift
  "$target/release/tree" --relay-bin "$bin" --warmup 5 --duration 20 --work-dir "$out" \
    --label "$label" --out "$out/$label.json" "$@"
}
run hop-t2 --edges 1 --viewers 50
run hop-t1 --edges 1 --viewers 50 --relay-arg=--set=media.threads=1
# The media threads under SCHED_FIFO (needs root or CAP_SYS_NICE; refused, the relays warn and
# the run is the default policy's): the hop's transit without the core lost to other processes.
run hop-t2-rt --edges 1 --viewers 50 --relay-arg=--set=media.realtime_priority=10
run cpu-tree-10x50 --edges 10 --viewers 50
run cpu-tree-10x50-pinned --edges 10 --viewers 50 --pin-central 0 --pin-others 1
run cpu-flat-500-pinned --edges 0 --viewers 500 --procs-per-leaf 10 --pin-central 0 --pin-others 1
