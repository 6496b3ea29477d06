#!/usr/bin/env bash
# Streaming-out benchmark: `restic dump` against `walk | fetch-pack | unpack --stdout|--tar`
# on one large random file, every process measured (wall, CPU, peak RSS).
#
#   bench/dump.sh            (make bench-dump)
#
# Makes a file of DUMP_MIB MiB (default 1024) of reproducible random bytes, backs it up with
# restic (128 MiB packs), then streams it out with restic and with sluice, as the bare file
# and as a tar of its directory, RUNS (5) times in alternating pairs. Each output is hashed
# on the fly and must equal the source: a wrong figure is worse than none. Prints a markdown
# table of the medians and the ratio of each pair; results land in
# $BENCH_DIR/dump-results.md. Environment: BENCH_DIR (default target/bench), DUMP_MIB, RUNS,
# SLUICE_BIN (default target/release).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$top/target/bench}
DUMP_MIB=${DUMP_MIB:-1024}
bin=${SLUICE_BIN:-$top/target/release}
m="python3 $here/measure.py"
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$BENCH_DIR/cache

d=$BENCH_DIR/dump-$DUMP_MIB
repo=$d/repo
if [ ! -e "$d.complete" ]; then
  rm -rf "$d"
  mkdir -p "$d/data/dir"
  # AES-CTR of zeros under a fixed key: the same bytes on every machine, at GB/s.
  # (openssl's stream is cut by head, so its status is not the pipeline's: the size is checked.)
  head -c "$((DUMP_MIB << 20))" \
    < <(openssl enc -aes-256-ctr -nosalt -pass pass:sluice-dump -pbkdf2 < /dev/zero 2>/dev/null) \
    > "$d/data/dir/big.bin"
  [ "$(stat -c %s "$d/data/dir/big.bin")" = "$((DUMP_MIB << 20))" ]
  restic init -q --repo "$repo" >&2
  (cd "$d/data" && restic backup -q --repo "$repo" --pack-size 128 .) >&2
  touch "$d.complete"
fi
export RESTIC_REPOSITORY=$repo
want=$(sha256sum < "$d/data/dir/big.bin" | cut -d' ' -f1)
results=$BENCH_DIR/dump-results-$(date +%s)
mkdir -p "$results"
sync

check() { # NAME HASH-FILE
  local got
  got=$(cut -d' ' -f1 < "$2")
  [ "$got" = "$want" ] || { echo "$1: output differs from the source" >&2; exit 1; }
}

for n in $(seq "${RUNS:-5}"); do
  $m "$results/restic-file@$n.json" restic dump --no-cache latest /dir/big.bin \
    | sha256sum > "$results/h1"
  check restic-file "$results/h1"
  $m "$results/sluice-file@$n.1.json" "$bin/walk" latest:/dir/big.bin \
    | $m "$results/sluice-file@$n.2.json" "$bin/fetch-pack" \
    | $m "$results/sluice-file@$n.3.json" "$bin/unpack" --stdout | sha256sum > "$results/h2"
  check sluice-file "$results/h2"

  $m "$results/restic-tar@$n.json" restic dump --no-cache latest /dir \
    | tar -xO dir/big.bin | sha256sum > "$results/h3"
  check restic-tar "$results/h3"
  $m "$results/sluice-tar@$n.1.json" "$bin/walk" latest:/dir \
    | $m "$results/sluice-tar@$n.2.json" "$bin/fetch-pack" \
    | $m "$results/sluice-tar@$n.3.json" "$bin/unpack" --tar | tar -xO dir/big.bin | sha256sum > "$results/h4"
  check sluice-tar "$results/h4"
done

python3 "$here/report.py" "$results" | tee "$BENCH_DIR/dump-results.md"
