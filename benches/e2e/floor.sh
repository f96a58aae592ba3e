#!/usr/bin/env bash
# Per-packet cost against the floor. The floor (`floor`, a binary of hallcast-benches) sends the
# e2e bench's packet stream (pre-encoded 720p H.264 ~1.9 Mbit/s + Opus, ~290 packets/s) to N
# UDP sockets with no WebRTC stack: per packet and subscriber a copy, SRTP AEAD_AES_256_GCM with
# the subscriber's key, the relay's own SendQueue (sendmmsg + UDP GSO); receivers in a child
# process whose CPU is not counted. Then, unless RELAY=0, the relay's e2e bench
# (`hallcast-load bench`, as benches/e2e/run.sh) for the same N, and the ratio
# relay µs CPU / forwarded packet ÷ floor µs CPU / packet.
#
#   benches/e2e/floor.sh                          # N = 100,200; floor with GSO on and off; relay
#   RELAY=0 benches/e2e/floor.sh                  # the floor only
#   FLOOR=0 benches/e2e/floor.sh                  # the relay only, against floor JSON in OUT_DIR
#   SIZES=100 DURATION=10 benches/e2e/floor.sh
#   HALLCAST_BIN=/path/to/hallcast benches/e2e/floor.sh   # measure a relay built elsewhere
#   benches/e2e/floor.sh --relay-arg=--set=media.threads=1  # extra arguments go to hallcast-load bench
#
# Environment: SIZES, DURATION (seconds measured, floor and relay), RELAY, FLOOR (1/0), RAMP, WARMUP,
# BASELINE (as run.sh), OUT_DIR (per-run JSON and the relay's report), WORK_DIR (relay logs),
# CARGO_TARGET_DIR.
# CPU is each process's own accounting (getrusage / /proc), never wall time. Run it on an
# otherwise idle machine.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
sizes="${SIZES:-100,200}"
duration="${DURATION:-20}"
relay="${RELAY:-1}"
run_floor="${FLOOR:-1}"
out_dir="${OUT_DIR:-$target/floor-bench}"
work_dir="${WORK_DIR:-$target/floor-bench/relay}"
mkdir -p "$out_dir"

IFS=',' read -ra ns <<<"$sizes"
if [[ "$run_floor" == 1 ]]; then
  cargo build --release -p hallcast-benches --bin floor
  floor="$target/release/floor"
  for n in "${ns[@]}"; do
    for gso in true false; do
      tag=$([[ $gso == true ]] && echo gso || echo nogso)
      echo "floor N=$n gso=$gso" >&2
      "$floor" --subscribers "$n" --duration "$duration" --gso "$gso" >"$out_dir/floor-n$n-$tag.json"
    done
  done
fi

if [[ "$relay" == 1 ]]; then
  # One command for both: built separately, their shared dependencies' features differ and
  # each build would undo the other's.
  cargo build --release -p hallcast -p hallcast-load
  HALLCAST_BIN="${HALLCAST_BIN:-$target/release/hallcast}"
  "$target/release/hallcast-load" bench \
    --relay-bin "$HALLCAST_BIN" \
    --sizes "$sizes" \
    --ramp-per-sec "${RAMP:-20}" \
    --warmup "${WARMUP:-5}" \
    --duration "$duration" \
    --baseline "${BASELINE:-5}" \
    --work-dir "$work_dir" \
    --out "$out_dir/relay-e2e.md" \
    "$@" >/dev/null
  for n in "${ns[@]}"; do
    cp "$work_dir/n$n.json" "$out_dir/relay-n$n.json"
  done
fi

echo
echo "| N | floor µs/pkt (GSO) | floor µs/pkt (no GSO) | relay µs/fwd pkt | relay ÷ floor (GSO) | relay ÷ floor (no GSO) |"
echo "|---|---:|---:|---:|---:|---:|"
for n in "${ns[@]}"; do
  fg=$(jq '.us_per_packet' "$out_dir/floor-n$n-gso.json")
  fn=$(jq '.us_per_packet' "$out_dir/floor-n$n-nogso.json")
  if [[ -f "$out_dir/relay-n$n.json" && "$relay" == 1 ]]; then
    r=$(jq '.subscribe.window.relay.cpu_us_per_forwarded_packet' "$out_dir/relay-n$n.json")
    jq -rn --argjson n "$n" --argjson fg "$fg" --argjson fn "$fn" --argjson r "$r" \
      '"| \($n) | \($fg*100|round/100) | \($fn*100|round/100) | \($r*100|round/100) | \($r/$fg*100|round/100)× | \($r/$fn*100|round/100)× |"'
  else
    jq -rn --argjson n "$n" --argjson fg "$fg" --argjson fn "$fn" \
      '"| \($n) | \($fg*100|round/100) | \($fn*100|round/100) | not run | | |"'
  fi
done
echo
echo "Per-run JSON: $out_dir"
