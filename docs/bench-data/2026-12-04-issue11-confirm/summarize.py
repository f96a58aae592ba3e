#!/usr/bin/env python3
"""Table of the alternated adaptation runs (docs/bench-data/2026-12-04-issue11-confirm/e2e.md).
Usage: summarize.py RUNS_DIR  (each run: NAME.summary.json, NAME = BUILD-rROUND-TEST)."""
import json, re, sys, pathlib, statistics

runs = sorted(pathlib.Path(sys.argv[1]).glob("*.summary.json"))
rows = []
for p in runs:
    name = p.name[: -len(".summary.json")]
    s = json.load(open(p))
    f = s.get("figures", {})
    t = f.get("timings_ms", {})
    checks = {c["check"]: c for c in s.get("checks", [])}
    failed = [c for c in checks if not checks[c]["ok"]]

    def secs(k):
        v = t.get(k)
        return None if v is None else v / 1000

    def detail_num(check, pat):
        c = checks.get(check)
        m = c and re.search(pat, c["detail"])
        return float(m.group(1)) if m else None

    a_out = detail_num("a_freezes_within_limit", r"([\d.]+) s of it outside")
    a_conc = detail_num("a_audio_continuous", r"\(([\d.]+) %")
    b_top = detail_num("b_stays_on_top_while_a_is_shaped", r"in (\d+) % of")
    b_page = detail_num("b_page_on_top_while_a_is_shaped", r"in (\d+) % of")
    b = f.get("viewer_b")
    b_sw = None
    if b:
        rec = b["windows"].get("recovery", {}).get("relay", {})
        b_sw = rec.get("switches_at_end")
    rows.append((name, secs("a_below_top_after_shaping"), secs("a_paused_after_100kbit"),
                 secs("a_top_after_unshaping_api"), a_out, a_conc, b_top, b_page, b_sw,
                 len(checks), failed, s.get("phase_error")))

def fmt(v, spec="{:.1f}"):
    return "—" if v is None else spec.format(v)

print("| run | below top after 400 kbit/s (s) | paused after 100 kbit/s (s) | back on top after unshaping (s) "
      "| A's freezes outside audio-only (s) | A's audio concealed (%) | B on layer 2 while A shaped, relay (%) "
      "| B's page 1280 wide while A shaped (%) | B's switches in the run | checks failed (issue limits) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for r in rows:
    name, below, paused, top, aout, aconc, btop, bpage, bsw, n, failed, perr = r
    fl = ", ".join(failed) if failed else "none"
    if perr:
        fl += f" (phase error: {perr[:80]})"
    print(f"| {name} | {fmt(below)} | {fmt(paused)} | {fmt(top)} | {fmt(aout, '{:.2f}')} | {fmt(aconc, '{:.2f}')} "
          f"| {fmt(btop, '{:.0f}')} | {fmt(bpage, '{:.0f}')} | {fmt(bsw, '{:.0f}')} | {len(failed)} of {n}: {fl} |")

print()
print("| build | test | runs | back on top after unshaping, median [range] (s) | A's freezes outside audio-only, median [range] (s) | B on layer 2 while A shaped, median [range] (%) |")
print("|---|---|---:|---:|---:|---:|")
groups = {}
for r in rows:
    build, _, test = r[0].split("-", 2)
    groups.setdefault((build, test), []).append(r)
def med(vals, spec="{:.1f}"):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    return f"{spec.format(statistics.median(vals))} [{spec.format(min(vals))}–{spec.format(max(vals))}]"
for (build, test), rs in sorted(groups.items()):
    print(f"| {build} | {test} | {len(rs)} | {med([r[3] for r in rs])} | {med([r[4] for r in rs], '{:.2f}')} "
          f"| {med([r[6] for r in rs], '{:.0f}')} |")
