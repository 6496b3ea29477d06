#!/usr/bin/env bash
# Many small files: restore of NFILES (50,000) files of 1-16 KiB, restic against sluice.
#
#   bench/smallfiles.sh         (make bench-small)
#
# Makes the data set once (seeded, so every run restores the same bytes), backs it up with
# restic, then restores it RUNS (5) times each in alternating pairs — restic, sluice, restic,
# sluice… — each into a fresh directory after `sync`, and prints the median wall times, the
# ratio of each pair and the median ratio. Every sluice restore is compared with the data.
# The restored copies are all kept until the end (about 2 × RUNS + 2 times the data on disk).
# With GNU time (/usr/bin/time) it also prints each stage's median CPU time (user + system)
# and peak RSS, and restic's: the stages run at once on two cores, so CPU seconds say
# where the time goes when wall time alone cannot.
# Environment: BENCH_DIR (default target/bench), NFILES, RUNS, AFTER_DELETE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$top/target/bench}
NFILES=${NFILES:-50000}
RUNS=${RUNS:-5}
bin=$top/target/release
data=$BENCH_DIR/small-$NFILES
repo=$BENCH_DIR/repo-small-$NFILES
out=$BENCH_DIR/out-small
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$BENCH_DIR/cache RESTIC_REPOSITORY=$repo
mkdir -p "$BENCH_DIR"

if [ ! -e "$data.complete" ]; then
  rm -rf "$data"
  python3 - "$data" "$NFILES" <<'EOF'
import os, random, sys
dest, n = sys.argv[1], int(sys.argv[2])
rng = random.Random("sluice-small")
for i in range(n):
    d = os.path.join(dest, "d%02d" % (i % 50), "e%02d" % ((i // 50) % 20))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d.bin" % i), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 16 * 1024)))
EOF
  touch "$data.complete"
fi
if [ ! -e "$repo.complete" ]; then
  rm -rf "$repo"
  restic init -q >&2
  (cd "$data" && restic backup -q .) >&2
  touch "$repo.complete"
fi

. "$here/pairs.sh"
cpu=$BENCH_DIR/cpu-small
rm -rf "$cpu"; discard "$out"; mkdir -p "$cpu" "$out"
# Every run restores into a directory of its own, and all of them are removed only at the end:
# on ext4 without a journal (this VM's disk), inodes freed in the last seconds to minutes are
# skipped when new files are made, so a restore timed right after deleting the previous
# run's 50,000 files measures that deletion more than the restore (RESULTS.md, "small files").
# AFTER_DELETE=1 measures the old way instead: the previous run's copy is deleted just before.
fresh() {
  if [ -n "${AFTER_DELETE:-}" ]; then rm -rf "${out:?}"/*; fi
  mktemp -d "$out/$1-XXXXXX"
}
restic_run() {
  local dest; dest=$(fresh restic); sync
  local t0; t0=$(now)
  timed "$cpu/restic" restic restore -q --no-cache latest --target "$dest" >&2
  awk "BEGIN { print $(now) - $t0 }"
}
sluice_run() {
  local dest; dest=$(fresh sluice); sync
  local t0 t; t0=$(now)
  timed "$cpu/walk" "$bin/walk" latest | timed "$cpu/fetch-pack" "$bin/fetch-pack" |
    timed "$cpu/unpack" "$bin/unpack" --target "$dest" >/dev/null
  t=$(awk "BEGIN { print $(now) - $t0 }")
  diff -r --no-dereference "$data" "$dest" >&2 || { echo "sluice restore differs from the data" >&2; exit 1; }
  echo "$t"
}

restic_run >/dev/null; sluice_run >/dev/null   # warm-up: caches, page cache of the repository
rm -f "$cpu"/*
r=(); s=(); q=()
for _ in $(seq "$RUNS"); do
  a=$(restic_run); b=$(sluice_run)
  r+=("$a"); s+=("$b"); q+=("$(awk "BEGIN { printf \"%.3f\", $b / $a }")")
done
pair_table "$NFILES files of 1-16 KiB"
stage_table
discard "$out"
