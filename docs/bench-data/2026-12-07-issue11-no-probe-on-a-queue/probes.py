# For decision-print runs: around the step to 100 kbit/s, the layer-1 probe (start, failure) and the
# pause, in seconds from the step (the step's instant in the allocator's clock: the pause's instant
# less the summary's "a_paused_after_100kbit").
# usage: python3 probes.py RESULTS_DIR:RELAY_LOG ...
import json,glob,re,sys
print('| run | probe started | probe failed | paused | a probe for layer 1 under way at the step or started after it |')
print('|---|---:|---:|---:|---|')
for arg in sys.argv[1:]:
    res,log=arg.split(':')
    S=json.load(open(glob.glob(res+'/*/summary.json')[0]))
    after=S['figures']['timings_ms'].get('a_paused_after_100kbit')
    ev=[]
    for l in open(log):
        m=re.search(r'DBGUPD \S+ t=(\d+) .*target=(\S+) probe=(\S+) pf=(\w+) chg=true',l)
        if m: ev.append((int(m[1]),m[2],m[3],m[4]=='true'))
    pauses=[e for e in ev if e[1]=='Paused' and e[2]=='None' and not e[3]]
    if after is None or not pauses: continue
    # the first pause after a layer-0 phase
    pt=next((e[0] for i,e in enumerate(ev) if e[1]=='Paused' and i>0 and ev[i-1][1].startswith('Layer')),None)
    step=pt-after
    before=[e for e in ev if e[0]<=pt and e[0]>=step-3000]
    st=[e[0] for e in before if e[2].startswith('Some(Layer(Layer(1')]
    fl=[e[0] for e in before if e[3] and e[2]=='None']
    s=st[-1] if st else None; f=next((x for x in fl if s is not None and x>=s),None)
    f2=lambda x: '–' if x is None else f'{(x-step)/1000:+.2f}'
    near='yes' if f is not None and f>step else 'no'
    print(f'| {res.rstrip("/").split("/")[-2]}/{res.rstrip("/").split("/")[-1]} | {f2(s)} | {f2(f)} | {f2(pt)} | {near} |')
