#!/usr/bin/env bash
# The main job: back up a directory into a local repository, restore it, verify it.
#
#   bench/demo.sh [DIR]        (make demo DIR=…; default: this source tree)
#
# The repository, its password file and the restored copy live under target/demo/ unless
# RESTIC_REPOSITORY / RESTIC_PASSWORD_FILE say otherwise. Running it again makes an
# incremental backup on top of the first one.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
src=$(cd "${1:-$top}" && pwd)
bin=$top/target/release
demo=$top/target/demo
mkdir -p "$demo"
export RESTIC_REPOSITORY=${RESTIC_REPOSITORY:-$demo/repo}
if [ -z "${RESTIC_PASSWORD_FILE:-}${RESTIC_PASSWORD:-}${RESTIC_PASSWORD_COMMAND:-}" ]; then
  export RESTIC_PASSWORD_FILE=$demo/password
  [ -s "$RESTIC_PASSWORD_FILE" ] || head -c 24 /dev/urandom | base64 > "$RESTIC_PASSWORD_FILE"
fi

[ -e "$RESTIC_REPOSITORY/config" ] || "$bin/init-repo"
echo "== backup of $src into $RESTIC_REPOSITORY" >&2
(cd "$src" && "$bin/chunk" . | "$bin/pack" | "$bin/push")
"$bin/snapshots" --latest 1 --json | sed -n 2p >&2

out=$demo/restore
rm -rf "$out"
echo "== restore into $out, then verify" >&2
"$bin/walk" latest | "$bin/fetch-pack" | "$bin/unpack" --target "$out" \
  | "$bin/verify" --quiet --target "$out" >/dev/null
diff -r --no-dereference "$src" "$out" >&2 || { echo "demo: the restored copy differs from $src" >&2; exit 1; }
echo "== restored copy matches $src byte for byte" >&2
