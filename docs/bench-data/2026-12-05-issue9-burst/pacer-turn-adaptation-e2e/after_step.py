import json,glob
for b in ('base','new'):
    for i in range(1,7):
        d=f'{b}-{i}-demo'
        s=glob.glob(f'/tmp/alt2/{d}/*/summary.json')[0]
        j=json.load(open(s)); t100=j['phases']['audio_only']
        mx=0; first_pause=None; rtt400=None
        for l in open(s.replace('summary.json','sessions.jsonl')):
            e=json.loads(l); t=e['wall_ms']-t100
            for x in e['body'].get('sessions',[]):
                if x['role']!='publisher' and (x.get('peer') or '').endswith('.2'):
                    if 0<=t<=2000 and x['estimate_bps']: mx=max(mx,x['estimate_bps'])
                    if t>=0 and x['paused'] and first_pause is None: first_pause=t
                    if t>=0 and rtt400 is None and (x['rtt_ms'] or 0)>=400: rtt400=t
        print(f"{d:12s} paused {j['figures']['timings_ms'].get('a_paused_after_100kbit')} max est 0-2s {mx/1e6:.2f} Mbit/s, rtt>=400 from {rtt400}")
