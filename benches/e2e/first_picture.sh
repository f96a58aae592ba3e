#!/usr/bin/env bash
# First picture at a broadcast's start: points that are already waiting when the hall goes
# live. Each round starts `hallcast demo` (its built-in source: one 1280x720 layer,
# ~2 Mbit/s, a ~65 kB first keyframe) on a host of its own (a network namespace, linked to the
# points' namespace by a veth pair), and at once `hallcast-load` with SUBS subscribers (ramp
# 10/s) from the points' host: the first ones join as the source's WHIP session is created,
# before its media flows. With MODE=running the load starts WAIT_S seconds after the demo
# (viewers joining a running source), for comparison.
#
#   benches/e2e/first_picture.sh                       # the relay built from this tree
#   BINS="/tmp/old/hallcast target/release/hallcast" ROUNDS=6 benches/e2e/first_picture.sh
#
# Rounds alternate between the binaries in BINS. Prints one line per round: the binary, the
# subscribers' first keyframe (from each one's start: its WHEP POST, retried while the
# conference is not live yet) p50 and max in ms, their first packet p50, and how many had a
# whole keyframe. Needs root (ip netns). Environment: BINS, ROUNDS (4), SUBS (5), MODE
# (start | running), WAIT_S (5), WORK_DIR, LOAD_BIN, CARGO_TARGET_DIR.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
if [[ -z "${BINS:-}" ]]; then
  cargo build --release -p hallcast
  BINS="$target/release/hallcast"
fi
if [[ -z "${LOAD_BIN:-}" ]]; then
  cargo build --release -p hallcast-load
  LOAD_BIN="$target/release/hallcast-load"
fi
rounds="${ROUNDS:-4}"
subs="${SUBS:-5}"
mode="${MODE:-start}"
wait_s="${WAIT_S:-5}"
work="${WORK_DIR:-$target/first-picture-bench}"
mkdir -p "$work"

tag="fp$$"
relay_ns="${tag}-relay"
point_ns="${tag}-point"
demo_pid=""
cleanup() {
  if [[ -n "$demo_pid" ]]; then kill "$demo_pid" 2>/dev/null || true; fi
  ip netns del "$relay_ns" 2>/dev/null || true
  ip netns del "$point_ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$relay_ns"
ip netns add "$point_ns"
ip -n "$relay_ns" link add pt0 type veth peer name up0 netns "$point_ns"
ip -n "$relay_ns" addr add 10.97.0.1/30 dev pt0
ip -n "$point_ns" addr add 10.97.0.2/30 dev up0
for ns in "$relay_ns" "$point_ns"; do ip -n "$ns" link set lo up; done
ip -n "$relay_ns" link set pt0 up
ip -n "$point_ns" link set up0 up

read -r -a bins <<< "$BINS"
echo "# mode=$mode subscribers=$subs rounds=$rounds $(date -u +%FT%TZ)"
echo "# bin round ttfk_p50_ms ttfk_max_ms first_packet_p50_ms with_keyframe"
for ((r = 1; r <= rounds; r++)); do
  for bin in "${bins[@]}"; do
    dir="$work/$(basename "$bin")-$mode-$r"
    rm -rf "$dir" && mkdir -p "$dir"
    ip netns exec "$relay_ns" "$bin" demo --http 10.97.0.1:8080 --media 10.97.0.1:8443 \
      --data-dir "$dir/data" --info-file "$dir/info.json" > "$dir/demo.log" 2>&1 &
    demo_pid=$!
    for _ in $(seq 1 200); do [[ -s "$dir/info.json" ]] && break; sleep 0.05; done
    [[ -s "$dir/info.json" ]] || { echo "the demo did not start: $dir/demo.log" >&2; exit 1; }
    if [[ "$mode" == running ]]; then sleep "$wait_s"; fi
    token="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["viewer_token"])' "$dir/info.json")"
    ip netns exec "$point_ns" "$LOAD_BIN" --bind 10.97.0.2 \
      --whep http://10.97.0.1:8080/whep/hoi-nghi-demo --token "$token" \
      --subscribers "$subs" --ramp-per-sec 10 --warmup 1 --duration 2 \
      > "$dir/load.json" 2> "$dir/load.log"
    kill "$demo_pid" && wait "$demo_pid" 2>/dev/null || true
    demo_pid=""
    python3 - "$bin" "$r" "$dir/load.json" <<'EOF'
import json, sys
bin, r, path = sys.argv[1:]
x = json.load(open(path))
print(bin, r, round(x["ttfk_ms"]["p50"]), round(x["ttfk_ms"]["max"]),
      round(x["first_packet_ms"]["p50"]), f'{x["n_with_keyframe"]}/{x["n_subscribers"]}')
EOF
  done
done
