#!/usr/bin/env bash
# Runs the log path benchmark (controller + worker + watching client on loopback) and prints
# throughput, latency and peak RSS against the goals. Extra arguments go to bench_log_path,
# e.g. ./scripts/bench.sh --log-mb 50 --latency-seconds 5
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"

./scripts/bootstrap.sh
export CCACHE_BASEDIR="$ROOT"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
mkdir -p "$CCACHE_DIR"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target bench_log_path
exec "$BUILD_DIR/bench/bench_log_path" "$@"
