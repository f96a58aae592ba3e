#!/bin/bash
# Relay CPU (utime+stime of the hallcast process, /proc/PID/stat) idle for 10 s, then over 30 s
# of a pre-encoded 1080p30 push over RTMP (default) or SRT (docs/BENCHMARKS.md, "Ingest").
# Nothing is encoded live: the FLV / MPEG-TS is made once (below) and pushed with -c copy.
#   usage: benches/e2e/ingest_cpu.sh [path/to/hallcast] [rtmp|srt]
set -u
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/hallcast}
PROTO=${2:-rtmp}
case "$PROTO" in
  rtmp) FILE=/tmp/rtmp-1080p30.flv; FORMAT=flv; KEY=rtmp_url ;;
  srt) FILE=/tmp/srt-1080p30.ts; FORMAT=mpegts; KEY=srt_url ;;
  *) echo "usage: $0 [path/to/hallcast] [rtmp|srt]" >&2; exit 2 ;;
esac
if [ ! -s "$FILE" ]; then
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1920x1080:rate=30 \
    -f lavfi -i "sine=frequency=440:sample_rate=44100" -c:v libx264 -preset veryfast \
    -tune zerolatency -bf 0 -g 60 -pix_fmt yuv420p -b:v 4M -c:a aac -ac 2 -b:a 96k -t 20 \
    -f $FORMAT "$FILE"
fi
rm -f /tmp/$PROTO-cpu.json
$BIN demo --no-source --http 127.0.0.1:0 --media 127.0.0.1:0 --info-file /tmp/$PROTO-cpu.json > /tmp/$PROTO-cpu.log 2>&1 &
PID=$!
for i in $(seq 50); do [ -s /tmp/$PROTO-cpu.json ] && break; sleep 0.2; done
URL=$(python3 -c "import json; print(json.load(open('/tmp/$PROTO-cpu.json'))['$KEY'])")
ticks() { awk '{print $14+$15}' /proc/$PID/stat; }
HZ=$(getconf CLK_TCK)
sleep 2; a=$(ticks); sleep 10; b=$(ticks)
echo "idle: $(echo "scale=3; ($b-$a)/$HZ/10" | bc) cores"
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$FILE" -c copy -t 45 -f $FORMAT "$URL" &
FF=$!
sleep 10; a=$(ticks); sleep 30; b=$(ticks)
echo "1080p30 $PROTO push: $(echo "scale=3; ($b-$a)/$HZ/30" | bc) cores"
wait $FF
kill $PID; wait $PID 2>/dev/null
