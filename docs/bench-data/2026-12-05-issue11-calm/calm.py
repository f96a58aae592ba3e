# Where the "from calm" rule (alloc.rs QUEUE_GROWN, QUEUE_CALM_RISE) would have acted in runs
# recorded with the decision print (../2026-12-05-issue11-where/decision-print.patch).
# usage: python3 calm.py FILE...   (raw DBG lines: runs/*/dbg-lines.txt, runs/*.decisions.txt)
# The print shows round-trip readings with a queue of 30 ms or more only: a reading missing
# from it (none within 300 ms before) was under 30 ms, taken here as calm. The rule needs that
# reading 20 ms under the next, which the print cannot show: where the next one is under 50 ms
# this is marked "?".
import re, sys

CONGESTED, CALM_RISE, OVERRUN, SHARE, GAP = 50, 20, 120, 0.2, 300
SETTLE = 1200  # LOSS_SETTLE; the round trip's share of the settle is left out (lower bound)
for f in sys.argv[1:]:
    by = {}
    for l in open(f):
        m = re.match(r'(DBG\w+) (\S+) t=(\d+) (.*)', l)
        if m:
            by.setdefault(m.group(2), []).append((int(m.group(3)), m.group(1), m.group(4)))
    for v, rows in by.items():
        reads = [(t, int(x.split('=')[1])) for t, k, x in rows if k == 'DBGRTT']
        evs = [(t, x.split()[0], x.split()[1]) for t, k, x in rows if k == 'DBGALLOC']
        for i, (t, q) in enumerate(reads):
            if i == 0 or q < OVERRUN:
                continue
            pt, pq = reads[i - 1]
            if t - pt > GAP or pq >= q or q - pq < SHARE * (t - pt):
                continue
            if i >= 2 and pt - reads[i - 2][0] <= GAP:
                ppq = reads[i - 2][1]
                if ppq >= CONGESTED or pq - ppq < CALM_RISE:
                    continue
                calm = str(ppq)
            else:
                calm = '<30' + ('?' if pq < CONGESTED else '')
            last = [e for e in evs if e[0] <= t and e[1] in ('PROBE', 'PROBE-FAIL', 'SWITCH')]
            if last and last[-1][1] == 'PROBE':
                continue  # a sustained probe under way
            if any(0 <= t - e[0] < SETTLE for e in evs if e[1] in ('SWITCH', 'PROBE-FAIL')):
                continue  # within the settle of a switch down or a failed probe
            if t < 6000:
                continue  # warm-up
            acted = [e for e in evs if e[0] >= t][:1]
            print(f"{f}: {v} t={t} queue {calm} -> {pq} -> {q} ms; next decision {acted}")
