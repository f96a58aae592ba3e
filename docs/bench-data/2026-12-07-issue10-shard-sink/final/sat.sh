#!/bin/bash
cd /work/main
for r in 1 2; do for b in base new; do
  target/release/hallcast-load bench --relay-bin /tmp/tb/hallcast-$b --relay-arg=--set=media.threads=2 --relay-arg=--set=media.adaptation=false --sizes 600 --ramp-per-sec 50 --warmup 5 --duration 15 --baseline 5 --attempts 1 --work-dir /tmp/tb/sw-$b-$r --out /tmp/tb/r/sat-$b-$r.md > /tmp/tb/r/sat-$b-$r.log 2>&1
  echo "sat-$b-$r: $(grep -E '^\| *600 ' /tmp/tb/r/sat-$b-$r.md | head -1)"
done; done
