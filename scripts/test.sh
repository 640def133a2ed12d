#!/usr/bin/env bash
# Builds Free Agent and runs its unit, integration and end-to-end tests (benchmarks excluded).
# Usage: ./scripts/test.sh            (build dir: build/, override with BUILD_DIR=...)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"

# bootstrap.sh is idempotent and returns at once when every package is present.
./scripts/bootstrap.sh

export CCACHE_BASEDIR="$ROOT"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
mkdir -p "$CCACHE_DIR"

JOBS="$(nproc)"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD_DIR" -j"$JOBS"

# The QEMU tests boot the Debian 12 image: build it first (once per machine, then cached by its recipe's
# hash under /var/cache/freeagent/images) so no test spends its time limit on it.
if [ -z "${FREEAGENT_TEST_IMAGE:-}" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  FREEAGENT_TEST_IMAGE="$($SUDO "$ROOT/deploy/images/debian-12/build.sh")"
  export FREEAGENT_TEST_IMAGE
fi

cd "$BUILD_DIR"
set +e
ctest --output-on-failure -L 'unit|integration|e2e'
status=$?
set -e
exit "$status"
