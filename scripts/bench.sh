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
#   ./scripts/bench.sh cancel [ARGS]
#                                   client cancel -> SIGTERM seen by the step in the guest (sshd),
#                                   p50/p99 over --runs 50
#   ./scripts/bench.sh scale [ARGS]
#                                   the controller with N simulated workers and 10,000 one-step builds,
#                                   e.g. ./scripts/bench.sh scale --workers 100,1000,2000 --jobs 10000
#   ./scripts/bench.sh vm [ARGS]    a plain QEMU boot to SSH vs a worker job on the same Debian 12 image
#                                   (TCG): the job timeline, the worker's boot overhead and the non-build
#                                   overhead for --mb 50 MB of source and of artifact
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
elif [[ "${1:-}" == "cancel" ]]; then
  TARGET=bench_cancel_latency
  shift
elif [[ "${1:-}" == "scale" ]]; then
  TARGET=bench_controller_scale
  shift
elif [[ "${1:-}" == "vm" ]]; then
  TARGET=bench_vm_boot
  shift
fi

./scripts/bootstrap.sh
export CCACHE_BASEDIR="$ROOT"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
mkdir -p "$CCACHE_DIR"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target "$TARGET"
exec "$BUILD_DIR/bench/$TARGET" "$@"
