#!/bin/bash
# Alternated end-to-end runs of tests/adaptation.rs, one relay build against another.
# usage: batch.sh TEST_BINARY BIN_DIR NEW [OUT]
#   TEST_BINARY: what `cargo test -q -p hallcast-tests --test adaptation --no-run` built
#                (target/debug/deps/adaptation-<hash>)
#   BIN_DIR:     holds hallcast-base and hallcast-NEW (debug builds of `hallcast`)
#   OUT:         one directory per run, BUILD-ROUND-SCENARIO (default /tmp/alt/runs)
# Four rounds; odd rounds run base first, even rounds NEW first; both scenarios each round.
set -u
T=$1 BIN=$2 NEW=$3 OUT=${4:-/tmp/alt/runs}
mkdir -p "$OUT"
for r in 1 2 3 4; do
  if [ $((r % 2)) = 1 ]; then order="base $NEW"; else order="$NEW base"; fi
  for s in chromium demo; do
    for b in $order; do
      test=chromium_simulcast_two_viewers_one_shaped
      [ $s = demo ] && test=demo_simulcast_source_one_shaped_viewer
      d=$OUT/$b-$r-$s; mkdir -p "$d"
      HALLCAST_BIN=$BIN/hallcast-$b HALLCAST_RESULTS_DIR=$d "$T" --nocapture --test-threads 1 $test \
        > "$OUT/$b-$r-$s.log" 2>&1
      rc=$?
      echo "$(date +%T) $b-$r-$s rc=$rc"
    done
  done
done
