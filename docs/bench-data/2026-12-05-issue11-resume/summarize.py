# usage: python3 summarize.py [RESULTS_DIR_GLOB ...]  (default '/tmp/alt/*-*-*/': one dir per run,
# HALLCAST_RESULTS_DIR of the adaptation test, named BUILD-ROUND-SCENARIO)
import json,glob,sys,subprocess
rows=[]
pats=sys.argv[1:] or ['/tmp/alt/*-*-*/']
for d in sorted(d if d.endswith('/') else d+'/' for p in pats for d in glob.glob(p) if not d.endswith('.log')):
    s=glob.glob(d+'*/summary.json')
    if not s: continue
    j=json.load(open(s[0])); tm=j['figures']['timings_ms']
    failed=[c['check'] for c in j['checks'] if not c['ok']]
    name=d.rstrip('/').split('/')[-1]
    # A freezes/concealed from last viewer-a sample
    last=None
    for l in open(s[0].replace('summary.json','viewer-a.jsonl')):
        e=json.loads(l)
        if e.get('event')=='progress': last=e['pages'][0]
    conc=100*last['audio_concealed_samples']/last['audio_samples_received']
    print("%-16s below %.1f paused %.1f top %.1f | freezes %.2f conc %.2f%% | failed %s" % (name, tm.get('a_below_top_after_shaping',0)/1000, tm.get('a_paused_after_100kbit',0)/1000, (tm.get('a_top_after_unshaping_api') or 0)/1000, last['total_freezes_duration_s'], conc, ",".join(failed)))
