# One row per run of tests/adaptation.rs (viewer A): from each run's summary.json, viewer-a.jsonl and
# sessions.jsonl. usage: python3 table.py BATCH_DIR... (each holding BUILD-ROUND-SCENARIO/ run dirs)
import json,glob,sys,os,statistics
def bucket(phase, dt):
    if phase in ('viewers_started','start','top'): return 'join'
    if phase=='shaped': return 'step400' if dt<3 else 'on400'
    if phase=='audio_only': return 'step100' if dt<3.5 else 'on100'
    return 'after'
rows=[]
for batch in sys.argv[1:]:
    for d in sorted(glob.glob(batch.rstrip('/')+'/*-*-*/')):
        s=glob.glob(d+'*/summary.json')
        if not s: continue
        S=json.load(open(s[0])); ph=S['phases']; tm=S['figures']['timings_ms']; peer=S['figures']['viewer_a']['peer']
        c={}; prev=None; last=None
        for line in open(s[0].replace('summary.json','viewer-a.jsonl')):
            e=json.loads(line)
            if e.get('event')!='progress': continue
            p=e['pages'][0]; w=e['wall_ms']
            if prev:
                php={k:v for k,v in ph.items() if isinstance(v,int)}
                k=max([(v,k) for k,v in php.items() if v<=w],default=(ph['viewers_started'],'start'))
                b=bucket(k[1],(w-k[0])/1000); c[b]=c.get(b,0)+p['audio_concealed_samples']-prev['audio_concealed_samples']
            prev=p; last=p
        tot=last['audio_samples_received']
        paused=0.0; pw=None
        for l in open(s[0].replace('summary.json','sessions.jsonl')):
            e=json.loads(l); w=e['wall_ms']; b=e['body']
            if not b or not (ph['shaped'] <= w < ph['audio_only']): continue
            if any(x['peer']==peer and x['role']!='publisher' and x['paused'] for x in b['sessions']) and pw is not None: paused+=(w-pw)/1000
            pw=w
        name=d.rstrip('/').split('/')[-1]
        rows.append(dict(batch=os.path.basename(batch.rstrip('/')),run=name,build=name.split('-')[0],scen=name.split('-')[-1],
            below=tm.get('a_below_top_after_shaping',0)/1000,paused=tm.get('a_paused_after_100kbit',0)/1000,top=(tm.get('a_top_after_unshaping_api') or 0)/1000,
            freezes=last['total_freezes_duration_s'],conc=100*last['audio_concealed_samples']/tot,
            s400=100*c.get('step400',0)/tot,s100=100*c.get('step100',0)/tot,p400=paused))
print("| batch | run | below top after 400 kbit/s, s | paused after 100 kbit/s, s | top after unshaping, s | A's freezes, s | A's audio concealed | of it at the step to 400 | at the step to 100 | A paused while at 400 kbit/s, s |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print("| %(batch)s | %(run)s | %(below).1f | %(paused).1f | %(top).1f | %(freezes).2f | %(conc).2f %% | %(s400).2f %% | %(s100).2f %% | %(p400).1f |" % r)
print()
print("| build | scenario | runs | concealed, median [range] | at the step to 100, median | paused after 100 kbit/s ≥ 2 s | paused while at 400 kbit/s | freezes, median [range] | both bars (freezes < 1 s, concealed < 2 %) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for b in sorted(set(r['build'] for r in rows)):
    for sc in ('chromium','demo'):
        R=[r for r in rows if r['build']==b and r['scen']==sc]
        if not R: continue
        m=lambda k: statistics.median(r[k] for r in R)
        print("| %s | %s | %d | %.2f [%.2f–%.2f] %% | %.2f %% | %d | %d | %.2f [%.2f–%.2f] s | %d |" % (b, sc, len(R), m('conc'), min(r['conc'] for r in R), max(r['conc'] for r in R), m('s100'),
            sum(r['paused']>=2.0 for r in R), sum(r['p400']>0 for r in R), m('freezes'), min(r['freezes'] for r in R), max(r['freezes'] for r in R), sum(r['freezes']<1 and r['conc']<2 for r in R)))
