#!/usr/bin/env bash
# The Free Agent demo: builds the project, builds (first run) or reuses the Debian 12 VM image,
# starts a controller and one worker (qemu driver) on this machine, submits examples/hello, which is
# built inside a fresh QEMU VM, follows its log live, downloads the artifact, prints its path and
# sha256 and the job's timeline (VM boot, SSH wait, source upload, build, artifacts, shutdown). Stops
# everything it started on exit, also on Ctrl-C; the VM is gone afterwards.
# Usage: ./scripts/demo.sh            (build dir: build/, override with BUILD_DIR=...)
#        DEMO_DRIVER=local ./scripts/demo.sh   runs the build on this host instead of in a VM
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"

if [ -t 2 ]; then
  say() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }
else
  say() { printf '[demo] %s\n' "$*" >&2; }
fi

./scripts/bootstrap.sh >&2
export CCACHE_BASEDIR="$ROOT"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
mkdir -p "$CCACHE_DIR"
say "building (first time takes a few minutes)"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target freeagent-controller freeagent-worker freeagent >&2

DEMO_DRIVER="${DEMO_DRIVER:-qemu}"
case "$DEMO_DRIVER" in
  qemu|local) ;;
  *) say "DEMO_DRIVER must be qemu or local, got \"$DEMO_DRIVER\""; exit 2 ;;
esac
if [ "$DEMO_DRIVER" = qemu ]; then
  say "preparing the Debian 12 VM image (the first run builds it with debootstrap, ~15 min; later runs reuse it)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  MANIFEST="$($SUDO "$ROOT/deploy/images/debian-12/build.sh")"
  say "image: $MANIFEST"
fi

CONTROLLER_BIN="$BUILD_DIR/controller/freeagent-controller"
WORKER_BIN="$BUILD_DIR/node/freeagent-worker"
CLI_BIN="$BUILD_DIR/cli/freeagent"

TMP="$(mktemp -d -t freeagent-demo-XXXXXX)"
OUT="$(mktemp -d -t freeagent-demo-out-XXXXXX)"
CONTROLLER_PID=""
WORKER_PID=""

# Stops one process by pid: SIGTERM, then (for the worker) a second SIGTERM that cancels running
# jobs, then SIGKILL.
stop_pid() {
  local pid="$1" name="$2" tries
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for tries in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    [ "$tries" = 10 ] && kill -TERM "$pid" 2>/dev/null
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not stop, killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_pid "$WORKER_PID" worker
  stop_pid "$CONTROLLER_PID" controller
  if [ "$status" -ne 0 ] && [ -d "$TMP" ]; then
    for log in "$TMP"/controller.log "$TMP"/worker.log; do
      [ -f "$log" ] && { say "last lines of $log:"; tail -n 20 "$log" >&2; }
    done
  fi
  rm -rf "$TMP"
  [ "$status" -eq 0 ] || rmdir "$OUT" 2>/dev/null || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Plaintext on loopback is explicit (--insecure); the worker and the CLI still need their tokens, which
# the controller knows only as sha256 hashes. Tokens travel in a file or the environment, never in argv.
WORKER_TOKEN="$(head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)"
CLIENT_TOKEN="$(head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)"
umask 077
printf '%s\n' "$WORKER_TOKEN" >"$TMP/worker.token"
cat >"$TMP/controller.toml" <<TOML
worker_tokens = ["$(printf '%s' "$WORKER_TOKEN" | sha256sum | cut -d' ' -f1)"]
admin_tokens = ["$(printf '%s' "$CLIENT_TOKEN" | sha256sum | cut -d' ' -f1)"]
TOML
umask 022

say "starting freeagent-controller (data dir $TMP/data; plaintext on loopback, tokens required)"
"$CONTROLLER_BIN" --config "$TMP/controller.toml" --insecure --listen 127.0.0.1:0 --data-dir "$TMP/data" \
  --port-file "$TMP/port" 2>"$TMP/controller.log" &
CONTROLLER_PID=$!
for _ in $(seq 150); do
  [ -s "$TMP/port" ] && break
  kill -0 "$CONTROLLER_PID" 2>/dev/null || { say "controller exited"; exit 2; }
  sleep 0.1
done
[ -s "$TMP/port" ] || { say "controller did not start serving"; exit 2; }
ADDRESS="127.0.0.1:$(cat "$TMP/port")"
export FREEAGENT_CONTROLLER="$ADDRESS" FREEAGENT_INSECURE=1 FREEAGENT_TOKEN="$CLIENT_TOKEN"
say "controller listening on $ADDRESS"

if [ "$DEMO_DRIVER" = qemu ]; then
  # Each job gets a VM cloned (qcow2 overlay) from the image; TCG emulation, as this kind of host has no
  # usable KVM. The worker pins the image's SSH host key from its manifest.
  cat >"$TMP/worker.toml" <<TOML
driver = "qemu"
slots = 1

[qemu]
accel = "tcg"

[images.debian-12]
manifest = "$MANIFEST"
cpus = 2
memory_mb = 2048
TOML
  say "starting freeagent-worker (qemu driver: each build in a fresh Debian 12 VM; work dir $TMP/work)"
  DRIVER_ARGS=(--config "$TMP/worker.toml")
else
  say "starting freeagent-worker (local driver: builds run on this host; work dir $TMP/work)"
  DRIVER_ARGS=(--driver local)
fi
FREEAGENT_TOKEN= "$WORKER_BIN" --controller "$ADDRESS" --insecure --token-file "$TMP/worker.token" \
  --name demo-worker "${DRIVER_ARGS[@]}" --work-dir "$TMP/work" 2>"$TMP/worker.log" &
WORKER_PID=$!

say "submitting examples/hello"
set +e
"$CLI_BIN" submit "$ROOT/examples/hello" --follow --download "$OUT" 2> >(tee "$TMP/submit.err" >&2)
result=$?
set -e
BUILD_ID="$(sed -n 's/^==> build \([^ ]*\) submitted.*/\1/p' "$TMP/submit.err" | head -n1)"

if [ "$result" -eq 0 ]; then
  for artifact in "$OUT"/*; do
    [ -f "$artifact" ] || continue
    say "artifact: $artifact"
    say "sha256:   $(sha256sum "$artifact" | cut -d' ' -f1)"
  done
  if [ -n "$BUILD_ID" ]; then
    say "timeline of $BUILD_ID (phases as the worker measured them):"
    "$CLI_BIN" show "$BUILD_ID" >&2
  fi
  if [ "$DEMO_DRIVER" = qemu ]; then
    say "VMs left on this host after the build: $(ls -A "$TMP/work/vms" 2>/dev/null | wc -l)"
  fi
else
  say "the build did not succeed (exit $result)"
fi
exit "$result"
