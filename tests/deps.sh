#!/usr/bin/env bash
# What the tests run besides our binaries, installed on a Debian machine where missing:
# restic (the interop oracle), mandoc (man page lint), strace (syscall counts and fault
# injection), rclone and openssl (a REST server, over TLS), unzip (checks unpack --zip),
# moto_server (an S3 server) in a virtualenv of its own under target/venv (or
# $SLUICE_MOTO), and npm's s3rver (a second S3 server, for HTTPS) under target/npm (or
# $SLUICE_S3RVER), with Debian's nodejs and npm.
# Called by `make deps`.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
need=()
for c in restic mandoc strace rclone openssl unzip; do
  command -v "$c" >/dev/null || need+=("$c")
done
want_moto=
if [ -z "${SLUICE_MOTO:-}" ] && [ ! -x target/venv/bin/moto_server ]; then
  want_moto=1
  # Debian's python3 makes virtualenvs with pip only once python3-venv is installed (its
  # ensurepip is importable without it, so that is no test).
  dpkg -s python3-venv >/dev/null 2>&1 || need+=(python3-venv)
fi
want_s3rver=
if [ -z "${SLUICE_S3RVER:-}" ] && [ ! -x target/npm/node_modules/.bin/s3rver ]; then
  want_s3rver=1
  command -v node >/dev/null || need+=(nodejs)
  command -v npm >/dev/null || need+=(npm)
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
if [ -n "$want_s3rver" ]; then
  echo "installing s3rver into target/npm" >&2
  npm install --prefix target/npm --no-audit --no-fund --loglevel=error s3rver@3.7.1
fi
