#!/usr/bin/env bash
# Two builds of sluice on the same data, in alternating pairs: did a change make restore or
# backup slower? (make bench-versions BEFORE=<git revision>)
#
#   bench/versions.sh OLD_BIN_DIR NEW_BIN_DIR
#
# Restore: `walk latest | fetch-pack | unpack` of a restic 0.14 backup (16 MiB packs) into a
# fresh directory each run, after `sync`. Backup: `chunk | pack | push` into a fresh empty
# repository each run (same chunker polynomial). RUNS pairs (default 5), old first in odd
# pairs and new first in even ones; prints the median wall and CPU time of each build and
# the median of the pair-by-pair ratios new/old.
# Environment: BENCH_DIR, SHARED as for the other benchmarks; the data set is smaller than
# bench/restore.sh's by default (BIG_MIB=128 NSMALL=3000 NLOGS=1 LOG_MIB=96).
set -euo pipefail
old=$(cd "${1:?usage: versions.sh OLD_BIN_DIR NEW_BIN_DIR}" && pwd)
new=$(cd "${2:?usage: versions.sh OLD_BIN_DIR NEW_BIN_DIR}" && pwd)
export BIG_MIB=${BIG_MIB:-128} NSMALL=${NSMALL:-3000} NLOGS=${NLOGS:-1} LOG_MIB=${LOG_MIB:-96}
BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/bench/versions}
. "$(dirname "$0")/lib.sh"
. "$here/pairs.sh"
RUNS=${RUNS:-5}
work=$BENCH_DIR/work
rm -rf "$work"
mkdir -p "$work"
repo=$BENCH_DIR/repo-16
if [ ! -e "$repo.complete" ]; then
  rm -rf "$repo"
  restic init -q --repo "$repo" >&2
  (cd "$data" && restic backup -q --repo "$repo" --pack-size 16 .) >&2
  touch "$repo.complete"
fi
empty=$BENCH_DIR/empty
if [ ! -e "$empty.complete" ]; then
  rm -rf "$empty"
  RESTIC_FROM_PASSWORD=$RESTIC_PASSWORD restic init -q --repo "$empty" --copy-chunker-params --from-repo "$repo" >&2
  touch "$empty.complete"
fi

# run KIND BIN: one timed run of KIND (restore or backup) with the tools in BIN; prints
# "wall cpu".
run() {
  local kind=$1 b=$2 t0 t1 d f
  d=$(mktemp -d "$work/run.XXXXXX")
  f=$d/cpu
  if [ "$kind" = restore ]; then
    sync
    t0=$(now)
    (export RESTIC_REPOSITORY=$repo && timed "$f" "$b/walk" latest | timed "$f" "$b/fetch-pack" \
      | timed "$f" "$b/unpack" --target "$d/out" > /dev/null)
    t1=$(now)
  else
    cp -a "$empty" "$d/repo"
    sync
    t0=$(now)
    (cd "$data" && export RESTIC_REPOSITORY=$d/repo && timed "$f" "$b/chunk" . \
      | timed "$f" "$b/pack" --pack-size 16 | timed "$f" "$b/push" -q) 2>/dev/null
    t1=$(now)
  fi
  echo "$(awk "BEGIN { print $t1 - $t0 }") $(awk '{ c += $1 + $2 } END { print c }' "$f")"
  rm -rf "$d"
}

for kind in restore backup; do
  ow=() nw=() oc=() nc=() q=()
  for i in $(seq 1 "$RUNS"); do
    if [ $((i % 2)) = 1 ]; then
      read -r a ac < <(run "$kind" "$old"); read -r b bc < <(run "$kind" "$new")
    else
      read -r b bc < <(run "$kind" "$new"); read -r a ac < <(run "$kind" "$old")
    fi
    ow+=("$a") nw+=("$b") oc+=("$ac") nc+=("$bc") q+=("$(awk "BEGIN { printf \"%.3f\", $b / $a }")")
  done
  echo
  echo "| $kind | median wall (s) | median CPU (s) | wall, run by run |"
  echo "|---|---|---|---|"
  echo "| before | $(median "${ow[@]}") | $(median "${oc[@]}") | ${ow[*]} |"
  echo "| after | $(median "${nw[@]}") | $(median "${nc[@]}") | ${nw[*]} |"
  echo "| ratio after/before, pair by pair | $(median "${q[@]}") | | ${q[*]} |"
done
