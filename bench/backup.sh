#!/usr/bin/env bash
# Backup benchmark: restic and sluice side by side, each into a fresh repository.
#
#   bench/backup.sh            (make bench-backup)
#
# Uses the same data set as bench/restore.sh (made once with a fixed seed, kept in
# BENCH_DIR). For each pack size in PACKS, backs the set up with `restic backup` and with
# `chunk | pack | push` (each into its own new repository made by restic init), measuring
# every process (wall, CPU, peak RSS), RUNS (5) times in alternating pairs, each into a fresh
# repository after `sync`, and checks sluice's repositories with `restic check` (reading
# every pack of the first). Prints a markdown table of the medians and the ratio of each
# pair. Environment: BENCH_DIR, PACKS, RUNS, SHARED as for bench/restore.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
results=$BENCH_DIR/backup-results-$(date +%s)
mkdir -p "$results"

# One chunker polynomial for every repository, so all runs cut the same blobs.
poly=$BENCH_DIR/backup-polynomial
rm -rf "$poly"
restic init -q --repo "$poly" >&2
for pack in $PACKS; do
  for n in $(seq "${RUNS:-5}"); do
    r=$BENCH_DIR/backup-restic-$pack s=$BENCH_DIR/backup-sluice-$pack
    rm -rf "$r" "$s"
    RESTIC_FROM_PASSWORD=$RESTIC_PASSWORD restic init -q --repo "$r" --copy-chunker-params --from-repo "$poly" >&2
    RESTIC_FROM_PASSWORD=$RESTIC_PASSWORD restic init -q --repo "$s" --copy-chunker-params --from-repo "$poly" >&2
    sync
    (cd "$data" && $m "$results/restic-backup-$pack@$n.json" restic backup -q --no-cache --repo "$r" --pack-size "$pack" .) >&2
    sync
    (cd "$data" && export RESTIC_REPOSITORY=$s \
      && $m "$results/sluice-backup-$pack@$n.1.json" "$bin/chunk" . \
      | $m "$results/sluice-backup-$pack@$n.2.json" "$bin/pack" --pack-size "$pack" \
      | $m "$results/sluice-backup-$pack@$n.3.json" "$bin/push" -q)
    read_data=; [ "$n" = 1 ] && read_data=--read-data
    restic check -q --no-cache $read_data --repo "$s" >&2 || { echo "restic check failed on sluice's repository" >&2; exit 1; }
    rm -rf "$r" "$s"
  done
done
rm -rf "$poly"

python3 "$here/report.py" "$results" | tee "$BENCH_DIR/backup-results.md"
