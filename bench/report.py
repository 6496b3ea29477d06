#!/usr/bin/env python3
"""report.py DIR — print the markdown table of a bench run from the JSON files in DIR.

Each run is a file NAME.json (one command) or a group NAME.*.json (the stages of one
pipeline, run concurrently: wall time is the longest stage's, CPU the sum, RSS per stage)."""
import glob
import json
import os
import sys

d = sys.argv[1]
runs = {}
for path in sorted(glob.glob(os.path.join(d, "*.json"))):
    name = os.path.basename(path)[:-5]
    run, _, stage = name.partition(".")
    with open(path) as f:
        runs.setdefault(run, []).append((stage, json.load(f)))

def mib(kib):
    return kib / 1024

print("| run | wall s | CPU s (user+sys) | peak RSS MiB | per stage: RSS MiB (CPU s) |")
print("|---|---:|---:|---:|---|")
totals = {}
for run, stages in runs.items():
    wall = max(s["wall"] for _, s in stages)
    cpu = sum(s["user"] + s["sys"] for _, s in stages)
    rss = max(s["rss_kib"] for _, s in stages)
    bad = [s["cmd"] for _, s in stages if s["rc"] != 0]
    per = ", ".join(f"{s['cmd']} {mib(s['rss_kib']):.1f} ({s['user'] + s['sys']:.2f})"
                    for _, s in stages) if len(stages) > 1 else ""
    flag = f" FAILED: {', '.join(bad)}" if bad else ""
    print(f"| {run}{flag} | {wall:.2f} | {cpu:.2f} | {mib(rss):.1f} | {per} |")
    totals[run] = (wall, cpu, rss, stages)

print()
for pack in sorted({r.split("-")[-1] for r in totals}):
    r, s = totals.get(f"restic-restore-{pack}"), totals.get(f"sluice-restore-{pack}")
    rv, sv = totals.get(f"restic-verify-{pack}"), totals.get(f"sluice-verify-{pack}")
    rb, sb = totals.get(f"restic-backup-{pack}"), totals.get(f"sluice-backup-{pack}")
    for label, a, b in (("restore", r, s), ("restore+verify", rv, sv), ("backup", rb, sb)):
        if a and b:
            print(f"- {pack} MiB packs, {label}: sluice/restic wall {b[0] / a[0]:.2f}, "
                  f"CPU {b[1] / a[1]:.2f}, peak RSS {b[2] / a[2]:.2f}")
for kind in ("verify", "backup"):
  packs = sorted({r.split("-")[-1] for r in totals if r.startswith(f"sluice-{kind}-")}, key=int)
  if len(packs) >= 2:
    lo, hi = totals[f"sluice-{kind}-{packs[0]}"][3], totals[f"sluice-{kind}-{packs[-1]}"][3]
    worst = 0.0
    for (name, a), (_, b) in zip(sorted(lo, key=lambda x: x[0]), sorted(hi, key=lambda x: x[0])):
        diff = mib(b["rss_kib"] - a["rss_kib"])
        worst = max(worst, abs(diff))
        print(f"- {kind}: {a['cmd']}: peak RSS {mib(a['rss_kib']):.1f} MiB at {packs[0]} MiB packs, "
              f"{mib(b['rss_kib']):.1f} MiB at {packs[-1]} MiB packs ({diff:+.1f})")
    print(f"- {kind}: largest per-stage RSS difference between pack sizes: {worst:.1f} MiB")
