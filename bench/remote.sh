#!/usr/bin/env bash
# Remote restore: a `rest:` repository served by `rclone serve restic` on 127.0.0.1, behind
# the project's proxy (tests/support/faulty.rs, run as examples/latency-proxy) adding
# LATENCY_MS (20) to every request, as a server across a WAN would. restic and sluice restore
# the same snapshot RUNS (5) times each in alternating pairs, restic with a fresh
# `--cache-dir` every run (a new machine has no cache), and the script prints the median wall
# times, the ratio of each pair, and with GNU time each stage's median CPU time and peak RSS.
# Then it restores once more from a 128 MiB-pack repository, and with `--connections 2` and
# `16`, and prints every stage's peak RSS: the memory bound must not move with either.
#
#   bench/remote.sh          (make bench-remote)
#
# Data: NFILES (5000) files of 1-16 KiB in 250 directories and NLARGE (3) files of 24 MiB,
# seeded. Environment: BENCH_DIR (default target/bench), NFILES, NLARGE, RUNS, LATENCY_MS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$top/target/bench}
NFILES=${NFILES:-5000}
NLARGE=${NLARGE:-3}
RUNS=${RUNS:-5}
LATENCY_MS=${LATENCY_MS:-20}
bin=$top/target/release
proxy=$bin/examples/latency-proxy
data=$BENCH_DIR/remote-$NFILES-$NLARGE
out=$BENCH_DIR/out-remote
cpu=$BENCH_DIR/cpu-remote
export RESTIC_PASSWORD=bench
mkdir -p "$BENCH_DIR"
[ -x "$proxy" ] || (cd "$top" && cargo build --release --example latency-proxy >&2)

if [ ! -e "$data.complete" ]; then
  rm -rf "$data"
  python3 - "$data" "$NFILES" "$NLARGE" <<'PY'
import os, random, sys
dest, n, large = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random("sluice-remote")
for i in range(n):
    d = os.path.join(dest, "d%02d" % (i % 25), "e%02d" % ((i // 25) % 10))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d.bin" % i), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 16 * 1024)))
os.makedirs(os.path.join(dest, "large"), exist_ok=True)
for i in range(large):
    with open(os.path.join(dest, "large", "l%d.bin" % i), "wb") as f:
        for _ in range(24):
            f.write(rng.randbytes(1 << 20))
PY
  touch "$data.complete"
fi
# repo PACK_MIB: a restic repository of the data with packs of that size, made once.
repo() {
  local r=$BENCH_DIR/repo-remote-$NFILES-$NLARGE-$1
  if [ ! -e "$r.complete" ]; then
    rm -rf "$r"
    restic -r "$r" init -q >&2
    (cd "$data" && restic -r "$r" --cache-dir "$BENCH_DIR/cache-remote-backup" backup -q --pack-size "$1" .) >&2
    rm -rf "$BENCH_DIR/cache-remote-backup"
    touch "$r.complete"
  fi
  echo "$r"
}
repo16=$(repo 16)
repo128=$(repo 128)

# Servers: rclone for each repository, one latency proxy in front of each. The proxies run
# until their input (a pipe this script holds open) closes.
. "$here/pairs.sh"
pids=()
cleanup() {
  exec 3>&- 4>&- 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$BENCH_DIR"/cache-remote-*
  discard "$out"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# serve REPO FD: sets `port` to the proxy's port. Not in a subshell: the proxy lives as long
# as this shell holds FD open.
serve() {
  local fifo=$BENCH_DIR/proxy-$2.in portfile=$BENCH_DIR/proxy-$2.port
  port=$(free_port)
  rclone serve restic --addr "127.0.0.1:$port" "$1" </dev/null >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (exec 5<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  rm -f "$fifo" "$portfile"; mkfifo "$fifo"
  "$proxy" "$port" "$LATENCY_MS" <"$fifo" >"$portfile" &
  pids+=($!)
  eval "exec $2>\"\$fifo\""
  for _ in $(seq 100); do [ -s "$portfile" ] && break; sleep 0.1; done
  port=$(cat "$portfile")
  rm -f "$fifo" "$portfile"
}
serve "$repo16" 3; p16=$port
serve "$repo128" 4; p128=$port
url16=rest:http://127.0.0.1:$p16/
url128=rest:http://127.0.0.1:$p128/

# Every run restores into a fresh directory of its own, all removed only at the end: on ext4
# without a journal, inodes freed in the last seconds to minutes are skipped when new files
# are made, so a restore right after deleting the previous run's files measures that
# deletion as much as the restore (RESULTS.md, "Many small files").
fresh() { mkdir -p "$out"; mktemp -d "$out/$1-XXXXXX"; }
restic_run() { # URL TAG
  local dest; dest=$(fresh restic); sync
  local c t0; c=$(mktemp -d "$BENCH_DIR/cache-remote-XXXX"); t0=$(now)
  timed "$cpu/$2restic" restic -r "$1" --cache-dir "$c" restore -q latest --target "$dest" >&2
  awk "BEGIN { print $(now) - $t0 }"
  rm -rf "$c"
}
sluice_run() { # URL TAG [fetch-pack flags]
  local url=$1 tag=$2; shift 2
  local dest; dest=$(fresh sluice); sync
  local t0 t; t0=$(now)
  export RESTIC_REPOSITORY=$url
  timed "$cpu/${tag}walk" "$bin/walk" latest | timed "$cpu/${tag}fetch-pack" "$bin/fetch-pack" "$@" |
    timed "$cpu/${tag}unpack" "$bin/unpack" --target "$dest" >/dev/null
  unset RESTIC_REPOSITORY
  t=$(awk "BEGIN { print $(now) - $t0 }")
  diff -r --no-dereference "$data" "$dest" >&2 || { echo "sluice restore differs from the data" >&2; exit 1; }
  echo "$t"
}

rm -rf "$cpu"; mkdir -p "$cpu"
restic_run "$url16" warm >/dev/null; sluice_run "$url16" warm >/dev/null
rm -f "$cpu"/*
r=(); s=(); q=()
# Other work on the machine skews both sides: say how busy it was.
load() { cut -d' ' -f1-3 /proc/loadavg; }
load0=$(load)
for _ in $(seq "$RUNS"); do
  a=$(restic_run "$url16" ""); b=$(sluice_run "$url16" "")
  r+=("$a"); s+=("$b"); q+=("$(awk "BEGIN { printf \"%.3f\", $b / $a }")")
done
echo "load average (1, 5, 15 min) before the pairs: $load0; after: $(load); cores: $(nproc)"
echo
pair_table "rest: + ${LATENCY_MS} ms per request, $NFILES small files + $NLARGE x 24 MiB, 16 MiB packs"
stage_table
if [ -x /usr/bin/time ]; then
  # Memory: pack size and connections must not move any stage's peak.
  sluice_run "$url128" p128- >/dev/null
  sluice_run "$url16" c2- --connections 2 >/dev/null
  sluice_run "$url16" c16- --connections 16 >/dev/null
  sluice_run "$url128" p128c16- --connections 16 >/dev/null
  restic_run "$url128" p128- >/dev/null
  echo
  echo "| peak RSS (MiB) | restic | walk | fetch-pack | unpack |"
  echo "|---|---|---|---|---|"
  row() { # LABEL TAG
    local cells="" st
    for st in restic walk fetch-pack unpack; do
      if [ -s "$cpu/$2$st" ]; then cells+=" $(median $(mib "$cpu/$2$st")) |"; else cells+=" - |"; fi
    done
    echo "| $1 |$cells"
  }
  row "16 MiB packs, default connections (5)" ""
  row "128 MiB packs, default connections (5)" p128-
  row "16 MiB packs, --connections 2" c2-
  row "16 MiB packs, --connections 16" c16-
  row "128 MiB packs, --connections 16" p128c16-
fi
