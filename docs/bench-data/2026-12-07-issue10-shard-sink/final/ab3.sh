#!/bin/bash
cd /work/main
run() { # label bin extra...
  local l=$1 b=$2; shift 2
  target/release/tree --relay-bin /tmp/tb/hallcast-$b --edges 1 --viewers 50 --relay-arg=--set=media.realtime_priority=10 "$@" --warmup 5 --duration 15 --work-dir /tmp/tb/w --out /tmp/tb/r/$l.json > /tmp/tb/r/$l.log 2>&1
  echo "$l $(grep '| edge-1' /tmp/tb/r/$l.log) | central: $(grep '| central' /tmp/tb/r/$l.log | awk -F'|' '{print $8}') | $(grep -o 'other processes [0-9.]* cores' /tmp/tb/r/$l.log)"
}
mkdir -p /tmp/tb/r
for r in 1 2 3; do for b in base new; do run unpaced-$b-$r $b --relay-arg=--set=media.adaptation=false; done; done
for r in 1 2; do for b in base new; do run t1-$b-$r $b --relay-arg=--set=media.adaptation=false --relay-arg=--set=media.threads=1; done; done
for r in 1 2; do for b in base new; do run paced-$b-$r $b; done; done
