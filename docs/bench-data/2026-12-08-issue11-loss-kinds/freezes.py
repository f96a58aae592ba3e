# Viewer A's freezes by phase of tests/adaptation.rs (the buckets of
# ../2026-12-07-issue11-what-a-cut-left/table.py: the step to 400 kbit/s is its first 3 s, the step
# to 100 kbit/s its first 3.5 s), from each run's summary.json and viewer-a.jsonl.
# usage: python3 freezes.py BATCH_DIR... (each holding BUILD-ROUND-SCENARIO/ run dirs)
import glob, json, os, statistics, sys


def bucket(phase, dt):
    if phase in ('viewers_started', 'start', 'top'):
        return 'join'
    if phase == 'shaped':
        return 'step400' if dt < 3 else 'on400'
    if phase == 'audio_only':
        return 'step100' if dt < 3.5 else 'on100'
    return 'after'


COLS = ['join', 'step400', 'on400', 'step100', 'on100', 'after']
rows = []
for batch in sys.argv[1:]:
    for d in sorted(glob.glob(batch.rstrip('/') + '/*-*-*/')):
        s = glob.glob(d + '*/summary.json')
        if not s:
            continue
        ph = json.load(open(s[0]))['phases']
        marks = {k: v for k, v in ph.items() if isinstance(v, int)}
        c = dict.fromkeys(COLS, 0.0)
        prev = None
        for line in open(s[0].replace('summary.json', 'viewer-a.jsonl')):
            e = json.loads(line)
            if e.get('event') != 'progress':
                continue
            p, w = e['pages'][0], e['wall_ms']
            if prev:
                at, name = max([(v, k) for k, v in marks.items() if v <= w],
                               default=(ph['viewers_started'], 'start'))
                c[bucket(name, (w - at) / 1000)] += (p['total_freezes_duration_s']
                                                     - prev['total_freezes_duration_s'])
            prev = p
        name = d.rstrip('/').split('/')[-1]
        rows.append(dict(batch=os.path.basename(batch.rstrip('/')), run=name,
                         build=name.split('-')[0], scen=name.split('-')[-1], **c))
print('| batch | run | ' + ' | '.join(COLS) + ' |')
print('|---|---|' + '---:|' * len(COLS))
for r in rows:
    print('| %s | %s | ' % (r['batch'], r['run']) + ' | '.join('%.2f' % r[k] for k in COLS) + ' |')
print()
print('| build | scenario | runs | ' + ' | '.join(k + ', median [range]' for k in COLS) + ' |')
print('|---|---|---:|' + '---:|' * len(COLS))
for key in sorted({(r['build'], r['scen']) for r in rows}):
    R = [r for r in rows if (r['build'], r['scen']) == key]
    print('| %s | %s | %d | ' % (key[0], key[1], len(R)) + ' | '.join(
        '%.2f [%.2f–%.2f]' % (statistics.median(r[k] for r in R), min(r[k] for r in R),
                              max(r[k] for r in R)) for k in COLS) + ' |')
