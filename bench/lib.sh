# Shared setup of the benchmark scripts; sourced, not run. Sets `here`, `top`, `bin`, `m`
# (the measuring wrapper), BENCH_DIR, PACKS, SHARED, and makes the data set once (`data`).
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$top/target/bench}
PACKS=${PACKS:-16 128}
SHARED=${SHARED:-$top/../shared}
bin=$top/target/release
m="python3 $here/measure.py"

mkdir -p "$BENCH_DIR"
data=$BENCH_DIR/data
if [ ! -e "$data.complete" ]; then
  rm -rf "$data"
  SEED=${SEED:-sluice-bench} bash "$SHARED/bench/mkdata.sh" "$data" >&2
  touch "$data.complete"
fi
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$BENCH_DIR/cache
