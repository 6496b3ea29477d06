# Helpers of the benchmarks that time restic and sluice in alternating pairs; sourced, not
# run. The caller fills the arrays r (restic's wall times), s (sluice's) and q (the ratio of
# each pair), and `timed` files under $cpu.
now() { date +%s.%N; }
# discard DIR...: removes what a benchmark made. Under `make bench` (BENCH_TRASH set) it is
# only moved aside, and removed once every benchmark is done: on ext4 without a journal a
# mass deletion makes file creation slower for minutes after (RESULTS.md, "Many small
# files"), and the next benchmark would measure it.
discard() {
  local d
  for d in "$@"; do
    [ -e "$d" ] || continue
    if [ -n "${BENCH_TRASH:-}" ]; then
      mkdir -p "$BENCH_TRASH"
      mv "$d" "$(mktemp -d "$BENCH_TRASH/XXXXXX")/"
    else
      rm -rf "$d"
    fi
  done
}
# timed FILE CMD...: runs CMD, appending "user system maxrss_kb" to FILE (with GNU time).
timed() {
  local f=$1; shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -a -o "$f" -f '%U %S %M' "$@"
  else
    "$@"
  fi
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
mib() { awk '{ printf "%.0f\n", $3 / 1024 }' "$1"; }
# pair_table HEADING: the wall-time table of the pairs.
pair_table() {
  echo "| $1 | median wall (s) | runs |"
  echo "|---|---|---|"
  echo "| restic restore | $(median "${r[@]}") | ${r[*]} |"
  echo "| sluice walk, fetch-pack, unpack | $(median "${s[@]}") | ${s[*]} |"
  echo "| ratio sluice/restic, pair by pair | $(median "${q[@]}") | ${q[*]} |"
}
# stage_table [PREFIX]: median CPU and peak RSS of each stage's timed runs.
stage_table() {
  [ -x /usr/bin/time ] || return 0
  local stage c
  echo
  echo "| stage | median CPU, user + system (s) | median peak RSS (MiB) |"
  echo "|---|---|---|"
  for stage in restic walk fetch-pack unpack; do
    c=$(awk '{ printf "%.2f\n", $1 + $2 }' "$cpu/${1:-}$stage")
    echo "| $stage | $(median $c) | $(median $(mib "$cpu/${1:-}$stage")) |"
  done
}
