#!/usr/bin/env python3
"""measure.py OUT.json CMD... — run CMD with stdin/stdout passed through and record its wall
time, CPU time and peak RSS (of CMD and its children) in OUT.json. Exits with CMD's status."""
import json
import resource
import subprocess
import sys
import time

out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
rc = subprocess.call(cmd)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    json.dump({"cmd": cmd[0].rsplit("/", 1)[-1], "wall": wall, "user": ru.ru_utime,
               "sys": ru.ru_stime, "rss_kib": ru.ru_maxrss, "rc": rc}, f)
sys.exit(rc)
