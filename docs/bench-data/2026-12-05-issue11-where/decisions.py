# Viewer A's allocator decisions (the decision print, decision-print.patch) placed in the run's phases.
# usage: python3 decisions.py RELAY_LOG SUMMARY_JSON  (the alignment is by the pause: within ~0.5 s)
import re,sys,json
log, summ = sys.argv[1], sys.argv[2]
ph=json.load(open(summ))['phases']; tm=json.load(open(summ))['figures']['timings_ms']
lines=[l for l in open(log) if l.startswith('DBG')]
ptrs={}
for l in lines:
    p=l.split()[1]; ptrs.setdefault(p,[]).append(l)
a=[p for p,ls in ptrs.items() if any('target=Paused' in l for l in ls)]
a=a[0] if a else None
# pause time in allocator clock -> aligns with phases.audio_only + a_paused_after_100kbit (API, ±0.5 s)
pz=[int(re.search(r't=(\d+)',l).group(1)) for l in ptrs[a] if 'SWITCH target=Paused' in l][0]
off=ph['audio_only']+tm['a_paused_after_100kbit']-pz  # wall = t + off (approx)
for p,ls in ptrs.items():
    print('viewer', 'A' if p==a else 'other', p, len(ls), 'lines')
    for l in ls:
        t=int(re.search(r't=(\d+)',l).group(1)); w=t+off
        phase=max([(v,k) for k,v in ph.items() if isinstance(v,int) and v<=w], default=(ph['viewers_started'],'start'))
        l=re.sub(r' (prevq|lossy|backoff|resets|reset_bps)=[^ ]*','',l.strip())
        print("  %-10s +%5.2f  %s" % (phase[1], (w-phase[0])/1000, l.split(' ',2)[2]))
