#!/usr/bin/env bash
# A waiting viewer page's word that the hall went live: each round starts `hallcast demo
# --no-source` on loopback, holds `GET /api/v1/conferences/{c}/status?wait_live=25` (what the
# page holds while it shows "waiting"), starts a WHIP publisher (`hallcast-load publish`) 1 s
# later, and prints when the held request was answered, in ms after the publisher's start
# (wall clock; the publisher's own WHIP exchange included). Before the hold the page offered
# again every Retry-After (2 s, +0-20 % jitter): up to ~2.4 s after the hall went live.
#
#   BIN=target/debug/hallcast LOAD=target/release/hallcast-load ROUNDS=5 benches/e2e/wait_live.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN=${BIN:-$root/target/debug/hallcast}
LOAD=${LOAD:-$root/target/release/hallcast-load}
for r in $(seq 1 "${ROUNDS:-5}"); do
  d=$(mktemp -d)
  "$BIN" demo --no-source --http 127.0.0.1:18090 --media 127.0.0.1:18453 --data-dir $d/data --info-file $d/info.json > $d/demo.log 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do [[ -s $d/info.json ]] && break; sleep 0.05; done
  key=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["stream_key"])' $d/info.json)
  ( curl -s "http://127.0.0.1:18090/api/v1/conferences/hoi-nghi-demo/status?wait_live=25" > $d/status.json; date +%s%3N > $d/answered ) &
  cpid=$!
  sleep 1
  t0=$(date +%s%3N)
  "$LOAD" publish --whip http://127.0.0.1:18090/whip/hoi-nghi-demo --key "$key" --duration 3 > $d/pub.log 2>&1 &
  ppid=$!
  wait $cpid
  t1=$(cat $d/answered)
  echo "round $r: held request answered $((t1 - t0)) ms after the publisher started; $(cat $d/status.json | cut -c1-80)"
  wait $ppid || true
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf $d
done
