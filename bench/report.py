#!/usr/bin/env python3
"""report.py DIR — print the markdown table of a bench run from the JSON files in DIR.

Each run is a file NAME.json (one command) or a group NAME.*.json (the stages of one
pipeline, run concurrently: wall time is the longest stage's, CPU the sum, RSS per stage).
A NAME ending in @N is the N-th of repeated runs: the table gives the median of each figure
over them (peak RSS: the largest), and the ratios sluice/restic are taken pair by pair,
sluice's run N against restic's run N, then their median."""
import glob
import json
import os
import re
import statistics
import sys

d = sys.argv[1]
groups = {}
for path in sorted(glob.glob(os.path.join(d, "*.json"))):
    name = os.path.basename(path)[:-5]
    run, _, stage = name.partition(".")
    with open(path) as f:
        groups.setdefault(run, []).append((stage, json.load(f)))

def mib(kib):
    return kib / 1024

def median(xs):
    return statistics.median(xs) if xs else 0.0

# One entry per run, then the runs of each kind (the name without @N), in run order.
runs = {}
for run, stages in groups.items():
    base, _, n = run.partition("@")
    stages.sort(key=lambda x: x[0])
    runs.setdefault(base, []).append((int(n or 0), {
        "wall": max(s["wall"] for _, s in stages),
        "cpu": sum(s["user"] + s["sys"] for _, s in stages),
        "rss": max(s["rss_kib"] for _, s in stages),
        "bad": [s["cmd"] for _, s in stages if s["rc"] != 0],
        "stages": [(s["cmd"], s["rss_kib"], s["user"] + s["sys"]) for _, s in stages],
    }))
for base in runs:
    runs[base].sort(key=lambda x: x[0])

print("| run | runs | median wall s | median CPU s (user+sys) | peak RSS MiB | per stage: peak RSS MiB (median CPU s) |")
print("|---|---:|---:|---:|---:|---|")
totals = {}
for base, rs in sorted(runs.items()):
    wall = median([r["wall"] for _, r in rs])
    cpu = median([r["cpu"] for _, r in rs])
    rss = max(r["rss"] for _, r in rs)
    bad = sorted({c for _, r in rs for c in r["bad"]})
    per = ""
    if len(rs[0][1]["stages"]) > 1:
        cells = []
        for i, (cmd, _, _) in enumerate(rs[0][1]["stages"]):
            srss = max(r["stages"][i][1] for _, r in rs)
            scpu = median([r["stages"][i][2] for _, r in rs])
            cells.append(f"{cmd} {mib(srss):.1f} ({scpu:.2f})")
        per = ", ".join(cells)
    flag = f" FAILED: {', '.join(bad)}" if bad else ""
    print(f"| {base}{flag} | {len(rs)} | {wall:.2f} | {cpu:.2f} | {mib(rss):.1f} | {per} |")
    totals[base] = rs

def pairs(a, b, key):
    """sluice/restic of each pair (runs with the same number), in run order."""
    bn = dict(b)
    return [bn[n][key] / r[key] for n, r in a if n in bn and r[key] > 0]

print()
# restic-WHAT against sluice-WHAT, for every WHAT both ran (restore-16, verify-128, backup-16…).
for what in sorted({b[len("restic-"):] for b in totals if b.startswith("restic-")}):
    a, b = totals.get(f"restic-{what}"), totals.get(f"sluice-{what}")
    if not (a and b):
        continue
    q = pairs(a, b, "wall")
    c = pairs(a, b, "cpu")
    rss = max(r["rss"] for _, r in b) / max(r["rss"] for _, r in a)
    each = " ".join(f"{x:.3f}" for x in q)
    print(f"- {what}: sluice/restic wall {median(q):.3f} (median of {len(q)} pairs: {each}), "
          f"CPU {median(c):.2f}, peak RSS {rss:.2f}")
for kind in ("verify", "backup"):
    packs = sorted({r.rsplit("-", 1)[-1] for r in totals if r.startswith(f"sluice-{kind}-")}, key=int)
    if len(packs) < 2:
        continue
    lo, hi = totals[f"sluice-{kind}-{packs[0]}"], totals[f"sluice-{kind}-{packs[-1]}"]
    worst = 0.0
    for i, (cmd, _, _) in enumerate(lo[0][1]["stages"]):
        a = max(r["stages"][i][1] for _, r in lo)
        b = max(r["stages"][i][1] for _, r in hi)
        worst = max(worst, abs(mib(b - a)))
        print(f"- {kind}: {cmd}: peak RSS {mib(a):.1f} MiB at {packs[0]} MiB packs, "
              f"{mib(b):.1f} MiB at {packs[-1]} MiB packs ({mib(b - a):+.1f})")
    print(f"- {kind}: largest per-stage RSS difference between pack sizes: {worst:.1f} MiB")
