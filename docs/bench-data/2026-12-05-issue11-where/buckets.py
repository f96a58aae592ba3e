# Concealed audio and freezes of viewer A by phase of a tests/adaptation.rs run.
# usage: python3 buckets.py RUN_DIR... (each with summary.json and viewer-a.jsonl)
import json,sys,glob
rows=[]
def bucket(phase, dt):
    if phase in ('viewers_started','start','top'): return 'join'
    if phase=='shaped': return 'step400' if dt<3 else 'on400'
    if phase=='audio_only': return 'step100' if dt<3.5 else 'on100'
    return 'after'
B=['join','step400','on400','step100','on100','after']
print("| run | scenario | " + " | ".join(B) + " | total concealed | freezes: " + " / ".join(B) + " | total |")
print("|---|---|" + "---:|"*(len(B)*2+2))
for run in sys.argv[1:]:
    d=(glob.glob(run+'/summary.json')+glob.glob(run+'/*/summary.json'))[0]; s=json.load(open(d)); ph={k:v for k,v in s['phases'].items() if isinstance(v,int)}
    c={b:0 for b in B}; f={b:0.0 for b in B}; prev=None
    for line in open(d.replace('summary.json','viewer-a.jsonl')):
        e=json.loads(line)
        if e.get('event')!='progress': continue
        p=e['pages'][0]; w=e['wall_ms']
        if prev:
            ph_=max([(v,k) for k,v in ph.items() if v<=w],default=(ph['viewers_started'],'start'))
            b=bucket(ph_[1],(w-ph_[0])/1000)
            c[b]+=p['audio_concealed_samples']-prev['audio_concealed_samples']
            f[b]+=p['total_freezes_duration_s']-prev['total_freezes_duration_s']
        else:
            c['join']+=p['audio_concealed_samples']; f['join']+=p['total_freezes_duration_s']
        prev=p
    tot=p['audio_samples_received']
    print("| %s | %s | %s | %.2f %% | %s | %.2f s |" % (run, s['test'].split('_')[0], " | ".join("%.2f %%"%(100*c[b]/tot) for b in B), 100*p['audio_concealed_samples']/tot, " | ".join("%.2f"%f[b] for b in B), p['total_freezes_duration_s']))
