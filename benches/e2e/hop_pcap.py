#!/usr/bin/env python3
"""Per-hop transit from a loopback capture, independent of the relay's own histogram.

Used to check `hallcast_transit_seconds` against the wire (docs/BENCHMARKS.md, "Edge tree").
Capture during a `target/release/tree --edges 1 --viewers 50 ...` run:

    timeout 10 tcpdump -i lo -s 96 -w hop.pcap -n udp

then
    hop_pcap.py hop.pcap edge 127:108      # the edge (127.0.0.11): parent -> its 50 viewers
    hop_pcap.py hop.pcap central 108:102   # the central (127.0.0.1): publisher -> the edge
    hop_pcap.py hop.pcap e2e 127:102       # both hops: publisher -> the edge's viewers

The optional OUT:IN pairs map the payload type a consumer negotiated to the source's.
Matching: the SRTP header is in the clear; per outgoing stream, frames (RTP timestamps) are
aligned with the source's by a constant timestamp offset found at one frame, and packets by
their order within the frame; frames whose packet counts differ are skipped. Limits: a GSO
send is captured as one datagram (only its first segment is seen), so with GSO on (a burst to
one destination) this undercounts; use it on relays whose sends are one datagram per packet.
"""
import bisect
import collections
import struct
import sys

path, mode = sys.argv[1], sys.argv[2]
ptmap = dict(tuple(int(y) for y in x.split(':')) for x in sys.argv[3:])
edge = bytes([127, 0, 0, 11])
central = bytes([127, 0, 0, 1])

f = open(path, 'rb')
linktype = struct.unpack('<IHHiIII', f.read(24))[6]
inc = collections.defaultdict(list)  # ssrc -> [(t, seq, ts, pt)]
out = collections.defaultdict(list)
while True:
    h = f.read(16)
    if len(h) < 16:
        break
    sec, usec, incl, _ = struct.unpack('<IIII', h)
    d = f.read(incl)
    t = sec + usec / 1e6
    ip = {1: d[14:], 113: d[16:], 276: d[20:]}[linktype]
    if ip[0] >> 4 != 4 or ip[9] != 17:
        continue
    src, dst = ip[12:16], ip[16:20]
    pl = ip[(ip[0] & 15) * 4 + 8:]
    if len(pl) < 12 or not 128 <= pl[0] < 192:
        continue
    pt = pl[1] & 127
    if 72 <= pt <= 78:  # RTCP (packet types 200-206)
        continue
    seq, ts, ssrc = struct.unpack('>HII', pl[2:12])
    p = (t, seq, ts, pt)
    if mode == 'edge':
        if dst == edge and src != edge:
            inc[ssrc].append(p)
        elif src == edge and dst != edge:
            out[ssrc].append(p)
    elif mode == 'e2e':  # publisher -> central ... edge -> its viewers
        if src == central and dst == central:
            inc[ssrc].append(p)
        elif src == edge and dst != edge:
            out[ssrc].append(p)
    else:  # the central, publisher and central on 127.0.0.1
        if src == central and dst == central:
            inc[ssrc].append(p)
        elif src == central and dst == edge:
            out[ssrc].append(p)


def frames(pk):
    fr = collections.OrderedDict()
    for p in pk:
        fr.setdefault(p[2], []).append(p)
    for k in fr:
        fr[k].sort(key=lambda p: p[1])
    return fr


by_pt = collections.defaultdict(list)
for ssrc, pk in inc.items():
    by_pt[pk[0][3]].append(ssrc)
res = collections.defaultdict(list)
for ssrc, pk in out.items():
    pt = pk[0][3]
    cands = by_pt.get(ptmap.get(pt, pt), [])
    if not cands:
        continue
    fi = frames(inc[max(cands, key=lambda s: len(inc[s]))])
    fo = frames(pk)
    its = list(fi)
    itimes = [fi[k][0][0] for k in its]
    ots = list(fo)
    k0 = ots[len(ots) // 10]
    j = bisect.bisect_right(itimes, fo[k0][0][0]) - 1
    off = (k0 - its[j]) & 0xffffffff
    for k, ps in fo.items():
        ins = fi.get((k - off) & 0xffffffff)
        if not ins or len(ins) != len(ps):
            continue
        for a, b in zip(ins, ps):
            res[pt].append(b[0] - a[0])
for pt, v in sorted(res.items()):
    v.sort()
    n = len(v)
    q = lambda x: v[min(n - 1, int(x * n))] * 1e3
    print(f'pt {pt}: {n} packets, transit p50 {q(.5):.3f} p90 {q(.9):.3f} p99 {q(.99):.3f} '
          f'p99.9 {q(.999):.3f} max {v[-1]*1e3:.3f} ms')
