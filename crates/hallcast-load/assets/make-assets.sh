#!/usr/bin/env bash
# Regenerates the pre-encoded media that `hallcast-load publish` loops (the outputs are committed;
# run this only to change them).
#
#   loop-720p30.h264  10 s of 1280x720 at 30 fps, H.264 constrained baseline (profile 42c01f),
#                     ~1.9 Mbit/s, an IDR every 2 s (60 frames, no scene-cut IDRs), Annex B with an
#                     access unit delimiter before every frame (the loader splits frames on it), SPS
#                     and PPS repeated before every IDR. Content: testsrc2 (moving pattern and a
#                     counter) with strong temporal noise, so every frame costs bits like a camera
#                     picture does and the bitrate stays near its target.
#   tone-48k.ogg      1 s of a 440 Hz tone, Opus mono 48 kHz, 20 ms frames (50 packets, CBR 32 kbit/s).
#
# Needs ffmpeg with libx264 and libopus (Debian: apt-get install -y --no-install-recommends ffmpeg).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=10,noise=alls=24:allf=t+u,format=yuv420p" \
  -c:v libx264 -profile:v baseline -level:v 3.1 -preset veryfast -tune zerolatency \
  -b:v 1900k -maxrate 2000k -bufsize 1000k \
  -x264-params "keyint=60:min-keyint=60:scenecut=0:aud=1:repeat-headers=1" \
  -bsf:v h264_mp4toannexb -f h264 "$here/loop-720p30.h264"

ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=1" -af "volume=0.5" -ac 1 \
  -c:a libopus -b:a 32k -vbr off -frame_duration 20 -application audio \
  -map_metadata -1 -fflags +bitexact -flags:a +bitexact "$here/tone-48k.ogg"

ls -l "$here"/loop-720p30.h264 "$here"/tone-48k.ogg
