#!/bin/bash
# Relay CPU (utime+stime of the hallcast process, /proc/PID/stat) idle for 10 s, then over 30 s
# of a pre-encoded 1080p30 RTMP push (docs/BENCHMARKS.md, "Ingest"). Nothing is encoded live:
# the FLV is made once (below) and pushed with -c copy.
#   usage: benches/e2e/ingest_cpu.sh [path/to/hallcast]
set -u
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/hallcast}
if [ ! -s /tmp/rtmp-1080p30.flv ]; then
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1920x1080:rate=30 \
    -f lavfi -i "sine=frequency=440:sample_rate=44100" -c:v libx264 -preset veryfast \
    -tune zerolatency -bf 0 -g 60 -pix_fmt yuv420p -b:v 4M -c:a aac -ac 2 -b:a 96k -t 20 \
    -f flv /tmp/rtmp-1080p30.flv
fi
rm -f /tmp/rtmp-cpu.json
$BIN demo --no-source --http 127.0.0.1:0 --media 127.0.0.1:0 --info-file /tmp/rtmp-cpu.json > /tmp/rtmp-cpu.log 2>&1 &
PID=$!
for i in $(seq 50); do [ -s /tmp/rtmp-cpu.json ] && break; sleep 0.2; done
URL=$(python3 -c "import json; print(json.load(open('/tmp/rtmp-cpu.json'))['rtmp_url'])")
ticks() { awk '{print $14+$15}' /proc/$PID/stat; }
HZ=$(getconf CLK_TCK)
sleep 2; a=$(ticks); sleep 10; b=$(ticks)
echo "idle: $(echo "scale=3; ($b-$a)/$HZ/10" | bc) cores"
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i /tmp/rtmp-1080p30.flv -c copy -t 45 -f flv "$URL" &
FF=$!
sleep 10; a=$(ticks); sleep 30; b=$(ticks)
echo "1080p30 push: $(echo "scale=3; ($b-$a)/$HZ/30" | bc) cores"
wait $FF
kill $PID; wait $PID 2>/dev/null
