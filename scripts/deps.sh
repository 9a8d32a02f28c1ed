#!/usr/bin/env bash
# scripts/deps.sh — install what edumig needs to build and test, from Debian's packages.
# Run as root on Debian 12. Set EDUMIG_SKIP_APT=1 to skip (packages already there).
set -euo pipefail
[ "${EDUMIG_SKIP_APT:-0}" = 1 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: not root; assuming the packages are installed (see README)" >&2
    exit 0
fi
pkgs=(
    build-essential pkg-config meson ninja-build python3
    libpq-dev uuid-dev libjson-c-dev libcrypt-dev
    postgresql-15 postgresql-client-15
    valgrind util-linux
    # tests/fuzz: libFuzzer and clang's sanitizer runtimes are in libclang-rt-14-dev, only
    # recommended by clang (skipped by --no-install-recommends)
    clang libclang-rt-14-dev
    "$@"
)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
