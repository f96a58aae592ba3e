# Viewer A's media bytes per second (the sessions API's media_bytes: payload, resends included)
# around its pause for bandwidth: before it, in each of the four seconds after, and steady.
# usage: python3 after_pause.py RUN_DIR...  (each with */sessions.jsonl and */summary.json:
# the runs' result directories; sessions.jsonl is not kept here, ~1 MB a run)
import json,glob,sys
for d in sys.argv[1:]:
    f=glob.glob(d+'/*/sessions.jsonl')[0]; s=json.load(open(f.replace('sessions.jsonl','summary.json')))
    ph=s['phases']; a0=ph['audio_only']; peer=s['figures']['viewer_a']['peer']
    pts=[]; pause=None
    for l in open(f):
        e=json.loads(l); b=e.get('body')
        if not b: continue
        for x in b['sessions']:
            if x['peer']==peer and x['role']!='publisher':
                pts.append((e['wall_ms'],x['media_bytes']))
                if pause is None and x['paused'] and e['wall_ms']>a0: pause=e['wall_ms']
    def rate(t0,t1):
        a=[p for p in pts if t0<=p[0]<=t1]
        if len(a)<2: return float('nan')
        return (a[-1][1]-a[0][1])*8/((a[-1][0]-a[0][0])/1000)/1000
    if pause is None: print(d,'no pause'); continue
    print("%-18s pause +%.2f  before %4.0f | after pause: %4.0f %4.0f %4.0f %4.0f | steady %4.0f kbit/s" % (d.split('/')[-1], (pause-a0)/1000, rate(pause-1500,pause-250), rate(pause,pause+1000), rate(pause+1000,pause+2000), rate(pause+2000,pause+3000), rate(pause+3000,pause+4000), rate(pause+6000,pause+10000)))
