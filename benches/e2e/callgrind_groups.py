#!/usr/bin/env python3
"""The relay's instructions per forwarded packet by subsystem, from a pair of runs of
benches/e2e/callgrind.sh: each function's exclusive cost (`callgrind_annotate`, inlined code
counted where it is written: std's `Instant` arithmetic inlined into str0m counts as std's)
at 8 s minus at 4 s, divided by the packets between the runs, summed into groups by source
file and symbol. The groups add up to callgrind.sh's figure.

    benches/e2e/callgrind_groups.py OUT_DIR LABEL [LABEL...]
"""
import os
import re
import subprocess
import sys

# (group, test on the source file and the symbol), first match wins.
GROUPS = [
    ("SRTP (aws-lc and str0m srtp)", lambda f, s: "aws-lc" in f or "aws_lc" in s or "/srtp" in f or "srtp" in s.lower()),
    ("memcpy / memset", lambda f, s: "memmove" in f or "memset" in f),
    ("allocation", lambda f, s: "malloc" in f or "__rdl_" in s or "__rust_alloc" in s),
    ("Instant / Duration arithmetic (std)", lambda f, s: "Timespec" in s or "std::time::Instant" in s or "core::time::Duration" in s),
    ("str0m estimator and RTCP feedback", lambda f, s: "/bwe/" in f or "str0m::bwe_" in s or "handle_rtcp" in s),
    ("str0m pacer", lambda f, s: "/pacer/" in f or "pacer" in s.lower()),
    ("str0m transport-wide CC registers", lambda f, s: "twcc" in f or "twcc" in s.lower()),
    ("str0m send/receive streams", lambda f, s: "/streams/" in f or "str0m::streams" in s),
    ("str0m RTP headers, extensions, RTCP", lambda f, s: "/rtp/" in f or "str0m::rtp_" in s),
    ("str0m session, Rtc, timeouts", lambda f, s: "vendor/str0m" in f or "str0m" in s),
    ("hallcast relay and core", lambda f, s: "hallcast" in f or "hallcast" in s),
    ("ICE, DTLS, SCTP", lambda f, s: "/is-" in f or "dimpl" in f or "sctp" in f),
    ("other", lambda f, s: True),
]

LINE = re.compile(r"\s*([\d,]+) \([\s\d.]+%\)\s+(\S+?\.(?:rs|S|c|h)|\?\?\?):(.*?)(?: \[|$)")


def costs(out):
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", out], check=True, capture_output=True, text=True
    ).stdout
    by = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            key = (m.group(2), m.group(3))
            by[key] = by.get(key, 0) + int(m.group(1).replace(",", ""))
    return by


def packets(log):
    m = re.search(r"\((\d+) packets in", open(log).read())
    if not m:
        sys.exit(f"error: no packet count in {log}")
    return int(m.group(1))


def split(out_dir, label):
    path = lambda s, ext: os.path.join(out_dir, f"{label}-{s}.{ext}")
    a, b = costs(path(4, "out")), costs(path(8, "out"))
    n = packets(path(8, "log")) - packets(path(4, "log"))
    groups = {name: 0 for name, _ in GROUPS}
    for key, v in b.items():
        name = next(g for g, test in GROUPS if test(*key))
        groups[name] += v - a.get(key, 0)
    return {g: v / n for g, v in groups.items()}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out_dir, labels = sys.argv[1], sys.argv[2:]
    cols = [split(out_dir, label) for label in labels]
    print("| instructions / packet | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    print("| **total** | " + " | ".join(f"**{sum(c.values()):,.0f}**".replace(",", " ") for c in cols) + " |")
    for name, _ in GROUPS:
        print(f"| {name} | " + " | ".join(f"{c[name]:,.0f}".replace(",", " ") for c in cols) + " |")


if __name__ == "__main__":
    main()
