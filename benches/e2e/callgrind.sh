#!/usr/bin/env bash
# The relay's instructions per forwarded packet under callgrind, on the simulated network of
# `relay_cpu` (a binary of hallcast-benches: a publisher and N viewers wired to the sans-IO
# relay in memory, virtual time). Two runs, of 4 and 8 simulated seconds, in parallel; every
# `Relay` entry point is collected (`--toggle-collect`), so set-up outside them (key
# generation, the simulated peers) is not counted, and the 4 s run's count taken from the 8 s
# run's leaves the joins out as well:
#
#   instructions per packet = (I refs at 8 s − I refs at 4 s) ÷ (packets at 8 s − at 4 s)
#
# Repeatable to ~30 instructions per packet run to run, so an A/B needs no rounds; it is
# the measure the per-packet work in docs/BENCHMARKS.md ("Per-packet cost against the floor")
# is read by. The native time of the real path is measured separately (floor.sh, run.sh).
#
#   benches/e2e/callgrind.sh LABEL                       # target/release/relay_cpu, N = 100
#   RELAY_CPU=/path/to/relay_cpu benches/e2e/callgrind.sh LABEL --adaptation-off
#   N=200 OUT_DIR=/tmp/cg benches/e2e/callgrind.sh LABEL
#
# Writes OUT_DIR/LABEL-{4,8}.out (callgrind), LABEL-{4,8}.log (relay_cpu's report and
# valgrind's summary) and prints the figure. `benches/e2e/callgrind_groups.py OUT_DIR LABEL`
# then splits it by subsystem. Needs valgrind (apt) and a release build: `cargo build --release
# -p hallcast-benches --bin relay_cpu` (debug info is on in the release profile).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
label="${1:?usage: callgrind.sh LABEL [relay_cpu arguments...]}"
shift
bin="${RELAY_CPU:-${CARGO_TARGET_DIR:-$root/target}/release/relay_cpu}"
out="${OUT_DIR:-$root/target/callgrind}"
n="${N:-100}"
command -v valgrind >/dev/null || { echo "error: valgrind is not installed (apt install valgrind)" >&2; exit 1; }
[ -x "$bin" ] || { echo "error: $bin not found: cargo build --release -p hallcast-benches --bin relay_cpu" >&2; exit 1; }
mkdir -p "$out"

collect=()
for f in handle_timeout handle_datagram handle_command poll_transmit handle_sent \
  handle_shard_message poll_event poll_shard_message; do
  collect+=("--toggle-collect=hallcast_rtc::relay::Relay::$f")
done

pids=()
for s in 4 8; do
  valgrind --tool=callgrind --callgrind-out-file="$out/$label-$s.out" "${collect[@]}" \
    "$bin" "$n" --rounds 1 --seconds "$s" "$@" >"$out/$label-$s.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do
  wait "$p" || { echo "error: a run failed; see $out/$label-*.log" >&2; exit 1; }
done

refs() { grep -h 'Collected' "$out/$label-$1.log" | awk '{gsub(",", "", $4); print $4}' || true; }
packets() { grep -ho "([0-9]* packets in $1" "$out/$label-$1.log" | grep -o '[0-9]*' | head -1 || true; }
a=$(refs 4) b=$(refs 8) p4=$(packets 4) p8=$(packets 8)
[ -n "$a" ] && [ -n "$b" ] && [ -n "$p4" ] && [ -n "$p8" ] && [ "$p8" -gt "$p4" ] || {
  echo "error: no counts in $out/$label-*.log" >&2
  exit 1
}
echo "$label: $(((b - a) / (p8 - p4))) instructions per packet ($p4 / $p8 packets; $out/$label-*)"
