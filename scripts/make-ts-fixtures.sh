#!/usr/bin/env bash
# Regenerates the small MPEG-TS files the SRT ingest's demultiplexer is unit-tested on
# (crates/hallcast-ingest/testdata/, committed; run once when they must change).
#
#   h264-aac.ts   1 s of a 160x120 test pattern at 30 fps, H.264 (libx264, no B-frames, an IDR
#                 every 15 frames) and AAC-LC 48 kHz mono in ADTS: 30 access units, 48 frames.
#   hevc-aac.ts   the same picture as HEVC (libx265): the relay must refuse it.
#   h264-mp2.ts   H.264 with MPEG-1 layer II audio: refused as well.
#
# Needs ffmpeg with libx264 and libx265 (Debian's). The outputs are made with bit-exact flags, but
# encoders still differ between versions: the tests check counts and structure, not bytes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$here/crates/hallcast-ingest/testdata"
mkdir -p "$out"
common=(-hide_banner -loglevel error -y
  -f lavfi -i "testsrc2=size=160x120:rate=30:duration=1"
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=1"
  -map 0:v -map 1:a -map_metadata -1 -fflags +bitexact -flags +bitexact)

ffmpeg "${common[@]}" \
  -c:v libx264 -preset ultrafast -profile:v baseline -bf 0 -g 15 -keyint_min 15 -sc_threshold 0 -b:v 100k \
  -c:a aac -b:a 32k -ac 1 -ar 48000 \
  -f mpegts "$out/h264-aac.ts"

ffmpeg "${common[@]}" -t 0.3 \
  -c:v libx265 -preset ultrafast -x265-params log-level=error -b:v 100k \
  -c:a aac -b:a 32k -ac 1 -ar 48000 \
  -f mpegts "$out/hevc-aac.ts"

ffmpeg "${common[@]}" -t 0.3 \
  -c:v libx264 -preset ultrafast -bf 0 -b:v 100k \
  -c:a mp2 -b:a 64k -ac 1 -ar 48000 \
  -f mpegts "$out/h264-mp2.ts"

ls -l "$out"
