#!/usr/bin/env bash
# Runs a benchmark and prints its figures against the goals.
#   ./scripts/bench.sh [ARGS]       log path (controller + worker + watching client on loopback):
#                                   throughput, latency and peak RSS; ARGS go to bench_log_path,
#                                   e.g. ./scripts/bench.sh --log-mb 50 --latency-seconds 5
#   ./scripts/bench.sh ssh [ARGS]   SSH transfers, ours vs the OpenSSH clients on the same sshd;
#                                   ARGS go to bench_ssh_transfer, e.g. ./scripts/bench.sh ssh --mb 50
#   ./scripts/bench.sh artifact [ARGS]
#                                   an artifact from the build machine (sshd) through worker and
#                                   controller to the client's disk, vs `ssh host cat FILE > local`;
#                                   ARGS go to bench_artifact_transfer, e.g. --mb 50 --runs 1
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"

TARGET=bench_log_path
if [[ "${1:-}" == "ssh" ]]; then
  TARGET=bench_ssh_transfer
  shift
elif [[ "${1:-}" == "artifact" ]]; then
  TARGET=bench_artifact_transfer
  shift
fi

./scripts/bootstrap.sh
export CCACHE_BASEDIR="$ROOT"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
mkdir -p "$CCACHE_DIR"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target "$TARGET"
exec "$BUILD_DIR/bench/$TARGET" "$@"
