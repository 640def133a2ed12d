#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 in build-fuzz (override with FUZZ_BUILD_DIR) and runs each
# for SECONDS (default 60) on its seed corpus in tests/fuzz/corpus/<target>. New inputs go to a scratch
# corpus, crashes to build-fuzz/artifacts/<target>/. Exits non-zero if any target found a crash.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-60}"
shift || true
BUILD_DIR="${FUZZ_BUILD_DIR:-build-fuzz}"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(fuzz_config fuzz_redactor fuzz_archive)
  [ -f signing/p12.cc ] && TARGETS+=(fuzz_profile fuzz_p12)
fi

if ! command -v clang++-14 >/dev/null || [ ! -f /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ]; then
  echo "fuzz.sh: needs clang-14 and libclang-rt-14-dev (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi

CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFREEAGENT_FUZZ=ON >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${TARGETS[@]}"

status=0
for t in "${TARGETS[@]}"; do
  name="${t#fuzz_}"
  scratch="$BUILD_DIR/corpus/$name"
  artifacts="$BUILD_DIR/artifacts/$name/"
  mkdir -p "$scratch" "$artifacts"
  echo "==> $t for ${SECONDS_EACH}s"
  log="$BUILD_DIR/$t.log"
  if "$BUILD_DIR/tests/fuzz/$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts" -print_final_stats=1 "$scratch" "tests/fuzz/corpus/$name" >"$log" 2>&1; then
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    echo "    ok: ${runs:-?} runs, ${cov:-cov: ?}, no crash"
  else
    echo "    FAILED (see $log; inputs in $artifacts)"
    tail -30 "$log"
    status=1
  fi
done
exit $status
