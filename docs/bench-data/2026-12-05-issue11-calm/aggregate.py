# Per round and build: runs, runs meeting every bar, A's concealed audio (whole run; the first 3.5 s
# at 100 kbit/s), paused after the step to 100 kbit/s, below the top after the step to 400
# kbit/s, back on top after unshaping (medians [range]).
# usage: python3 aggregate.py ROOT  (ROOT/bN/BUILD-I-SCENARIO/TEST/{summary.json,viewer-a.jsonl},
# the results directories of the runs; viewer-a.jsonl is not kept here: ~170 kB a run)
import json,glob,statistics as st
def step100(d):
    s=json.load(open(glob.glob(d+'/*/summary.json')[0])); ph=s['phases']
    a,u=ph['audio_only'],ph['audio_only']+3500
    prev=None; c=0; tot=None
    for l in open(glob.glob(d+'/*/viewer-a.jsonl')[0]):
        e=json.loads(l)
        if e.get('event')!='progress': continue
        p=e['pages'][0]; w=e['wall_ms']
        if prev and a<w<=u: c+=p['audio_concealed_samples']-prev['audio_concealed_samples']
        prev=p
    return 100*c/p['audio_samples_received']
rows={}
import sys
ROOT=sys.argv[1]
for b in ['b1','b2','b3','b4','b5']:
    for d in sorted(glob.glob(f'{ROOT}/{b}/*-*-*/')):
        d=d.rstrip('/'); name=d.split('/')[-1]; build=name.split('-')[0]
        s=json.load(open(glob.glob(d+'/*/summary.json')[0])); tm=s['figures']['timings_ms']; fin=s['figures']['viewer_a']['final']
        ok=all(c['ok'] for c in s['checks'])
        rows.setdefault((b,build),[]).append(dict(ok=ok,conc=100*fin['audio_concealed_samples']/fin['audio_samples_received'],paused=tm.get('a_paused_after_100kbit',0)/1000,below=tm.get('a_below_top_after_shaping',0)/1000,top=(tm.get('a_top_after_unshaping_api') or 0)/1000,s100=step100(d)))
def fmt(rs):
    m=lambda k: st.median([r[k] for r in rs]); mx=lambda k:max(r[k] for r in rs); mn=lambda k:min(r[k] for r in rs)
    return "%d | %d of %d | %.2f [%.2f–%.2f] %% | %.2f [%.2f–%.2f] %% | %.1f [%.1f–%.1f] s | %.1f [%.1f–%.1f] s | %.1f [%.1f–%.1f] s" % (len(rs), sum(r['ok'] for r in rs), len(rs), m('conc'),mn('conc'),mx('conc'), m('s100'),mn('s100'),mx('s100'), m('paused'),mn('paused'),mx('paused'), m('below'),mn('below'),mx('below'), m('top'),mn('top'),mx('top'))
for k,rs in rows.items(): print(k[0],k[1],'|',fmt(rs))
allbase=[r for k,rs in rows.items() if k[1]=='base' for r in rs]
print('all base |',fmt(allbase))
