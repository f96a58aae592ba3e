#!/bin/bash
# alternated A/B of the leaf hop, unpaced, default threads, FIFO
cd /work/main
for r in 4 5 6; do
  for b in base pump sink; do
    target/release/tree --relay-bin /tmp/tb/hallcast-$b --edges 1 --viewers 50 --relay-arg=--set=media.adaptation=false --relay-arg=--set=media.realtime_priority=10 --warmup 5 --duration 15 --work-dir /tmp/tb/w --out /tmp/tb/$b-$r.json > /tmp/tb/$b-$r.log 2>&1
    echo "$b-$r $(grep edge-1 /tmp/tb/$b-$r.log) $(grep -o 'other processes [0-9.]* cores' /tmp/tb/$b-$r.log)"
  done
done
