#!/usr/bin/env bash
# What the tests run besides our binaries, installed on a Debian machine where missing:
# restic (the interop oracle), mandoc (man page lint), strace (syscall counts and fault
# injection), rclone and openssl (a REST server, over TLS), and moto_server (an S3 server) in
# a virtualenv of its own under target/venv (or $SLUICE_MOTO). Called by `make deps`.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
need=()
for c in restic mandoc strace rclone openssl; do
  command -v "$c" >/dev/null || need+=("$c")
done
want_moto=
if [ -z "${SLUICE_MOTO:-}" ] && [ ! -x target/venv/bin/moto_server ]; then
  want_moto=1
  # Debian's python3 makes virtualenvs with pip only once python3-venv is installed (its
  # ensurepip is importable without it, so that is no test).
  dpkg -s python3-venv >/dev/null 2>&1 || need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}"
fi
if [ -n "$want_moto" ]; then
  echo "installing moto[server] into target/venv" >&2
  python3 -m venv target/venv
  target/venv/bin/pip install -q 'moto[server]>=5,<6'
fi
