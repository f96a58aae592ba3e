#!/usr/bin/env bash
# Regenerates the small media assets shipped in assets/ (run once; the outputs are committed).
#
#   assets/tone-440hz.ogg  exactly 1 s of a 440 Hz sine as Ogg/Opus: mono, 48 kHz, 20 ms frames,
#                          CBR 32 kbit/s, 50 audio packets (~4 kB). Looped forever by
#                          hallcast-client's test source.
#
# Needs: ffmpeg built with libopus (Debian: apt-get install -y --no-install-recommends ffmpeg)
# and python3 (standard library only).
#
# Why not a plain `ffmpeg -t 1`: an Opus encoder prepends its look-ahead (pre-skip, 312 samples),
# so one second of input becomes 51 packets whose first 6.5 ms are a fade-in. Looping that clicks
# once a second. Instead we encode 3 s of the tone (440 Hz has exactly 440 periods per second, so
# the signal repeats every second), keep the 50 packets of the middle second — the encoder is in
# its steady state there and the packet after the last kept one would decode to the same waveform
# as the first kept one — and write them as a fresh Ogg stream with pre-skip 0 and granule
# positions counting from zero. Packets are copied byte for byte; nothing is re-encoded.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$here/assets/tone-440hz.ogg"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=3" \
  -af "volume=0.5" -ac 1 -ar 48000 \
  -c:a libopus -b:a 32k -vbr off -frame_duration 20 -application audio \
  -map_metadata -1 -fflags +bitexact -flags:a +bitexact \
  "$tmp/tone-3s.ogg"

python3 - "$tmp/tone-3s.ogg" "$out" <<'PY'
import struct
import sys

src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()

# Ogg CRC-32: polynomial 0x04C11DB7, no reflection, initial value 0, no final xor.
TABLE = []
for i in range(256):
    r = i << 24
    for _ in range(8):
        r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
    TABLE.append(r & 0xFFFFFFFF)

def crc(buf):
    c = 0
    for b in buf:
        c = ((c << 8) ^ TABLE[((c >> 24) ^ b) & 0xFF]) & 0xFFFFFFFF
    return c

# Split the source into logical packets (segments of 255 continue a packet).
packets, partial, pos = [], b"", 0
while pos < len(data):
    assert data[pos:pos + 4] == b"OggS", "not an Ogg page"
    n_segs = data[pos + 26]
    lacing = data[pos + 27:pos + 27 + n_segs]
    body = pos + 27 + n_segs
    for lace in lacing:
        partial += data[body:body + lace]
        body += lace
        if lace < 255:
            packets.append(partial)
            partial = b""
    pos = body

head, tags, audio = packets[0], packets[1], packets[2:]
assert head.startswith(b"OpusHead") and tags.startswith(b"OpusTags")
assert all(len(p) > 0 for p in audio)
# One second = 50 packets of 20 ms. Keep the middle second of the three.
keep = audio[50:100]
assert len(keep) == 50, len(keep)
# Every packet must be one 20 ms frame: TOC config in {1,5,9,13,15,19,23,27,31}, frame code 0.
for p in keep:
    assert (p[0] >> 3) in (1, 5, 9, 13, 15, 19, 23, 27, 31) and p[0] & 3 == 0, hex(p[0])

# OpusHead: version, channels, pre-skip (u16 LE at 10), rate (u32 LE at 12), gain, mapping.
head = head[:10] + struct.pack("<H", 0) + head[12:]
tags = b"OpusTags" + struct.pack("<I", 8) + b"hallcast" + struct.pack("<I", 0)

serial = 0x48414C4C  # "HALL"
pages, seq = [], 0

def page(packets_on_page, granule, flags):
    global seq
    lacing = b""
    for p in packets_on_page:
        lacing += b"\xff" * (len(p) // 255) + bytes([len(p) % 255])
    assert len(lacing) <= 255
    hdr = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, seq, 0, len(lacing))
    raw = bytearray(hdr + lacing + b"".join(packets_on_page))
    struct.pack_into("<I", raw, 22, crc(raw))
    seq += 1
    return bytes(raw)

out = page([head], 0, 0x02)          # beginning of stream
out += page([tags], 0, 0x00)
# Ten packets (200 ms) per page, granule = samples decoded by the end of the page.
for i in range(0, 50, 10):
    last = i + 10 >= 50
    out += page(keep[i:i + 10], (i + 10) * 960, 0x04 if last else 0x00)

open(dst, "wb").write(out)
print(f"wrote {dst}: {len(out)} bytes, {len(keep)} packets")
PY
