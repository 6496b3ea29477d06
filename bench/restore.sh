#!/usr/bin/env bash
# Restore benchmark: restic and sluice side by side on the same repositories.
#
#   bench/restore.sh            (make bench-restore)
#
# Makes the shared bench data set with a fixed seed (once; BENCH_DIR keeps it), backs it up
# with restic at each pack size in PACKS, then restores every repository with restic and with
# the sluice pipeline, with and without verification, RUNS (5) times in alternating pairs
# (restic, sluice, restic, sluice…), each into a fresh directory after `sync`, measuring
# every process (wall, CPU, peak RSS). Prints a markdown table of the medians and the ratio
# of each pair; results land in $BENCH_DIR/results.md. Every sluice restore is compared
# with the data. Environment: BENCH_DIR (default target/bench), PACKS ("16 128"), RUNS,
# SHARED (../shared), and mkdata.sh's own BIG_MIB, NSMALL, NLOGS, LOG_MIB for a smaller set.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
results=$BENCH_DIR/results-$(date +%s)
mkdir -p "$results"

first=
for pack in $PACKS; do
  repo=$BENCH_DIR/repo-$pack
  if [ ! -e "$repo.complete" ]; then
    rm -rf "$repo"
    if [ -z "$first" ]; then
      restic init -q --repo "$repo" >&2
    else
      # Same chunker polynomial as the first repository: the same blobs, so only the pack
      # size differs between the runs being compared.
      RESTIC_FROM_PASSWORD=$RESTIC_PASSWORD restic init -q --repo "$repo" \
        --copy-chunker-params --from-repo "$first" >&2
    fi
    (cd "$data" && restic backup -q --repo "$repo" --pack-size "$pack" .) >&2
    touch "$repo.complete"
  fi
  first=${first:-$repo}
  sync
  export RESTIC_REPOSITORY=$repo
  for n in $(seq "${RUNS:-5}"); do
    # Each run writes into a directory of its own, made after the last one was removed and
    # the disk was synced: no run inherits another's dirty pages.
    out=$(mktemp -d "$BENCH_DIR/out-XXXXXX"); sync
    $m "$results/restic-restore-$pack@$n.json" restic restore -q --no-cache latest --target "$out" >&2
    rm -rf "$out"; out=$(mktemp -d "$BENCH_DIR/out-XXXXXX"); sync
    $m "$results/sluice-restore-$pack@$n.1.json" "$bin/walk" latest \
      | $m "$results/sluice-restore-$pack@$n.2.json" "$bin/fetch-pack" \
      | $m "$results/sluice-restore-$pack@$n.3.json" "$bin/unpack" --target "$out" >/dev/null
    # The restore must be right, or its figures mean nothing.
    diff -r --no-dereference "$data" "$out" >&2 || { echo "sluice restore differs from the data" >&2; exit 1; }
    rm -rf "$out"; out=$(mktemp -d "$BENCH_DIR/out-XXXXXX"); sync
    $m "$results/restic-verify-$pack@$n.json" restic restore -q --no-cache --verify latest --target "$out" >&2
    rm -rf "$out"; out=$(mktemp -d "$BENCH_DIR/out-XXXXXX"); sync
    $m "$results/sluice-verify-$pack@$n.1.json" "$bin/walk" latest \
      | $m "$results/sluice-verify-$pack@$n.2.json" "$bin/fetch-pack" \
      | $m "$results/sluice-verify-$pack@$n.3.json" "$bin/unpack" --target "$out" \
      | $m "$results/sluice-verify-$pack@$n.4.json" "$bin/verify" --quiet --target "$out" >/dev/null
    diff -r --no-dereference "$data" "$out" >&2 || { echo "sluice restore differs from the data" >&2; exit 1; }
    rm -rf "$out"
  done
done

python3 "$here/report.py" "$results" | tee "$BENCH_DIR/results.md"
