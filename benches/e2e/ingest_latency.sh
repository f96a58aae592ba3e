#!/usr/bin/env bash
# Ingest latency (docs/BENCHMARKS.md, "Ingest" -> "Latency"): per frame, encoder hand-off to a
# WebRTC viewer holding the whole frame, WHIP vs RTMP vs SRT ingest, the same H.264 (720p30),
# paths interleaved (whip, rtmp, srt, whip, ...) over ROUNDS rounds; then one SRT run with the
# caller asking for 20 ms (the connection keeps the listener's 120 ms: the larger wins).
# Debug builds (the machine's rules); JSON per invocation in OUT_DIR.
#   usage: benches/e2e/ingest_latency.sh   (env: ROUNDS=3 DURATION=20 OUT_DIR=...)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
out="${OUT_DIR:-$target/ingest-latency/runs}"
cargo build -p hallcast -p hallcast-benches --bin ingest_latency
bin="${HALLCAST_BIN:-$target/debug/hallcast}"
mkdir -p "$out"
"$target/debug/ingest_latency" --relay-bin "$bin" --rounds "${ROUNDS:-3}" \
  --duration "${DURATION:-20}" --work-dir "$target/ingest-latency" --label interleaved \
  --out "$out/interleaved.json"
"$target/debug/ingest_latency" --relay-bin "$bin" --paths srt --rounds 1 \
  --duration "${DURATION:-20}" --srt-latency-ms 20 --work-dir "$target/ingest-latency" \
  --label srt-caller-20ms --out "$out/srt-caller-20ms.json"
