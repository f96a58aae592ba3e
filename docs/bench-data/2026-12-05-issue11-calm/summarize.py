# One line per run of runs/*.summary.json: viewer A below the top after the step to
# 400 kbit/s, paused after the step to 100 kbit/s, back on top after unshaping (the sessions
# API, s), A's freezes (all of them, announced audio-only time included) and concealed audio,
# and the checks of the bars the run missed.
# usage: python3 summarize.py runs/*.summary.json
import json, sys
for f in sys.argv[1:]:
    j = json.load(open(f))
    tm = j['figures']['timings_ms']
    fin = j['figures']['viewer_a']['final']
    failed = [c['check'] for c in j['checks'] if not c['ok']]
    conc = 100 * fin['audio_concealed_samples'] / fin['audio_samples_received']
    name = f.split('/')[-1].replace('.summary.json', '')
    print("%-20s below %.1f paused %.1f top %4.1f | freezes %.2f conc %.2f%% | failed %s" % (
        name, tm.get('a_below_top_after_shaping', 0) / 1000, tm.get('a_paused_after_100kbit', 0) / 1000,
        (tm.get('a_top_after_unshaping_api') or 0) / 1000, fin['total_freezes_duration_s'], conc,
        ",".join(failed) or "none"))
