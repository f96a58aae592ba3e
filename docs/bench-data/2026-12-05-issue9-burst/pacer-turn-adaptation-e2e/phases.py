import json,glob,sys
def run(d):
    s=glob.glob(d+'/*/summary.json')[0]; j=json.load(open(s)); ph=j['phases']
    marks=sorted([(v,k) for k,v in ph.items() if isinstance(v,int)])
    prev=None; acc={}
    for l in open(s.replace('summary.json','viewer-a.jsonl')):
        e=json.loads(l)
        if e.get('event')!='progress': continue
        w=e.get('wall_ms') or e.get('t_ms'); p=e['pages'][0]
        fz=p['total_freezes_duration_s']; cs=p['audio_concealed_samples']
        if prev is not None:
            phase=max([m for m in marks if m[0]<=w], default=(0,'start'))[1]
            a=acc.setdefault(phase,[0,0]); a[0]+=fz-prev[0]; a[1]+=cs-prev[1]
        prev=(fz,cs)
    return acc
for pat in sys.argv[1:]:
    for d in sorted(x for x in glob.glob(pat) if not x.endswith('.log')):
        acc=run(d)
        print(f"{d.split('/')[-1]:16s}", ' '.join(f"{k}:{v[0]:.2f}s/{v[1]/48000:.2f}" for k,v in sorted(acc.items(), key=lambda x: x[0])))
