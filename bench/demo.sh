#!/usr/bin/env bash
# The main job: back up a directory into a local repository, restore it, verify it.
#
#   bench/demo.sh [DIR]        (make demo DIR=…; default: this source tree)
#
# The repository, its password file and the restored copy live under target/demo/ unless
# RESTIC_REPOSITORY / RESTIC_PASSWORD_FILE say otherwise (DEMO_DIR moves target/demo/,
# DEMO_BIN the binaries). None of it is backed up: the build directory target/, the
# repository and the restored copy are excluded wherever they lie inside DIR, so every run
# backs up the same files and a second run is an incremental backup that adds nothing.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd -P)
src=$(cd "${1:-$top}" && pwd -P)
bin=${DEMO_BIN:-$top/target/release}
demo=${DEMO_DIR:-$top/target/demo}
mkdir -p "$demo"
demo=$(cd "$demo" && pwd -P)
export RESTIC_REPOSITORY=${RESTIC_REPOSITORY:-$demo/repo}
if [ -z "${RESTIC_PASSWORD_FILE:-}${RESTIC_PASSWORD:-}${RESTIC_PASSWORD_COMMAND:-}" ]; then
  export RESTIC_PASSWORD_FILE=$demo/password
  [ -s "$RESTIC_PASSWORD_FILE" ] || head -c 24 /dev/urandom | base64 > "$RESTIC_PASSWORD_FILE"
fi
out=$demo/restore

[ -e "${RESTIC_REPOSITORY#local:}/config" ] || "$bin/init-repo"

# What must not be backed up, when it is inside DIR. The restored copy lacks exactly these,
# so diff's "Only in PARENT: NAME" lines for them are expected, and nothing else is.
excludes=() expected=()
for p in "$top/target" "$demo" "${RESTIC_REPOSITORY#local:}" "$out"; do
  case $p in /*) ;; *) continue ;; esac
  case $p in "$src"/*)
    # As a pattern: glob characters in the path stand for themselves.
    excludes+=(--exclude "$(printf '%s' "$p" | sed 's/[][*?\\]/\\&/g')")
    expected+=("Only in $(dirname "$p"): $(basename "$p")")
  esac
done

echo "== backup of $src into $RESTIC_REPOSITORY" >&2
# push prints its summary for the reader on stderr and restic's JSON summary into a file,
# where the snapshot id is read from.
(cd "$src" && "$bin/chunk" "${excludes[@]}" . | "$bin/pack" | "$bin/push" --json-file "$demo/summary.json" >/dev/null)
id=$(sed -n 's/.*"snapshot_id":"\([0-9a-f]*\)".*/\1/p' "$demo/summary.json")
[ -n "$id" ] || { echo "demo: push reported no snapshot id" >&2; exit 1; }
# How snapshots lists it, in words: its record (stdout is not a terminal, so no table) is
# for scripts, not for the person watching.
rec=$("$bin/snapshots" "$id" | sed -n 2p)
field() { printf '%s\n' "$rec" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
short=$(field short_id) when=$(field time) host=$(field hostname)
[ -n "$short" ] || { echo "demo: snapshots did not list snapshot $id" >&2; exit 1; }
zone=""
case $when in *Z) zone=" UTC" ;; esac
when=${when%%.*} when=${when%Z}
echo "== snapshots lists it: $short taken ${when/T/ }$zone on $host" >&2

rm -rf "$out"
echo "== restore of snapshot $id into $out, then verify" >&2
"$bin/walk" "$id" | "$bin/fetch-pack" | "$bin/unpack" --target "$out" \
  | "$bin/verify" --quiet --target "$out" >/dev/null
differ=$(diff -r --no-dereference "$src" "$out" 2>&1 || true)
if [ -n "$differ" ]; then
  unexpected=$differ
  if [ ${#expected[@]} -gt 0 ]; then
    unexpected=$(printf '%s\n' "$differ" | grep -v -x -F "${expected[@]/#/-e}" || true)
  fi
  if [ -n "$unexpected" ]; then
    printf '%s\n' "$unexpected" >&2
    echo "demo: the restored copy differs from $src" >&2
    exit 1
  fi
fi
note=""
[ ${#excludes[@]} -eq 0 ] || note=" (but for the excluded build and demo directories)"
echo "== restored copy matches $src byte for byte$note" >&2
