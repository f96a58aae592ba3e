import json,sys,glob
run,phase,a,b=sys.argv[1],sys.argv[2],float(sys.argv[3]),float(sys.argv[4])
d=glob.glob(run+'/*/summary.json')[0]
s=json.load(open(d)); ph=s['phases']; peer=s['figures']['viewer_a']['peer']; t0=ph[phase]
for l in open(d.replace('summary.json','sessions.jsonl')):
    e=json.loads(l); w=e['wall_ms']; bd=e['body']
    if not bd or not (a <= (w-t0)/1000 < b): continue
    ls=bd['layers'].get('hoi-nghi-demo',[])
    for x in bd['sessions']:
        if x['peer']==peer and x['role']!='publisher':
            print("%5.2f L%s T%s p%s %s est %s loss %s rtt %s sw %s sus %s bytes %s | %s" % ((w-t0)/1000, x['layer'], x['target_layer'], x['paused'], x['pause_reason'], x['estimate_bps'], x['loss'], x['rtt_ms'], x['switches'], x['sustain_bps'], x['media_bytes'], [y['bitrate_bps'] for y in ls]))
