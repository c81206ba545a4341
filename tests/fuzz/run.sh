#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (ASan + UBSan + libFuzzer) into
# build/fuzz/ and runs each for FUZZ_SECONDS (default 60) from the seed
# corpus tests/fuzz/corpus/<harness>/.  New corpus entries go to
# build/fuzz/corpus/<harness>/ (the seeds stay as committed); crashes,
# leaks and timeouts are written to tests/fuzz/crashes/<harness>-*.
#
#   tests/fuzz/run.sh                 build, then fuzz every harness
#   tests/fuzz/run.sh build           build only
#   tests/fuzz/run.sh fuzz_aksk       build, then fuzz one harness
#   FUZZ_SECONDS=300 FUZZ_JOBS=2 tests/fuzz/run.sh   (2 processes per harness)
#
# Needs clang and libclang-rt-14-dev (make fuzz installs them).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=build/fuzz
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-1}
CC=${FUZZ_CC:-clang}
HARNESSES=(fuzz_request fuzz_aksk)
PKGS="lua5.4 lua5.4-cjson libevent sqlite3"

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE $SAN $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -lroaring -lpthread -lm"

build() {
  command -v "$CC" >/dev/null || { echo "run.sh: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
  mkdir -p "$OUT/obj"
  local objs=()
  for src in src/*.c; do
    [ "$src" = src/main.c ] && continue
    local obj="$OUT/obj/$(basename "${src%.c}").o"
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find src -name '*.h' -newer "$obj")" ]; then
      echo "  CC  $src" >&2
      $CC $CFLAGS -fsanitize=fuzzer-no-link -c -o "$obj" "$src"
    fi
    objs+=("$obj")
  done
  for h in "${HARNESSES[@]}"; do
    local bin="$OUT/$h" newest
    newest=$(ls -t "tests/fuzz/$h.c" "${objs[@]}" | head -1)
    if [ ! -x "$bin" ] || [ "$newest" -nt "$bin" ]; then
      echo "  LD  $bin" >&2
      $CC $CFLAGS -fsanitize=fuzzer -Isrc -DTAGWAY_ROOT="\"$ROOT\"" -o "$bin" "tests/fuzz/$h.c" \
        "${objs[@]}" $LIBS
    fi
  done
}

fuzz() {
  local h=$1
  mkdir -p "$OUT/corpus/$h" tests/fuzz/crashes
  echo "== $h for ${FUZZ_SECONDS}s" >&2
  # FUZZ_JOBS > 1: libFuzzer's fork mode (children share the corpus)
  local par=()
  [ "$FUZZ_JOBS" -gt 1 ] && par=(-fork="$FUZZ_JOBS")
  # leak detection off: the harness keeps its host and database for the
  # whole run on purpose (LLVMFuzzerInitialize), and Lua states live on.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} \
  "$OUT/$h" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
    ${par[@]+"${par[@]}"} -print_final_stats=1 \
    -artifact_prefix="tests/fuzz/crashes/$h-" \
    -dict="tests/fuzz/$h.dict" \
    "$OUT/corpus/$h" "tests/fuzz/corpus/$h" 2>&1 | tee "$OUT/$h.log" | grep -E "^(#[0-9]+ +(INITED|DONE)|stat::|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)" || true
  return "${PIPESTATUS[0]}"
}

build
[ "${1:-}" = build ] && exit 0
status=0
for h in "${HARNESSES[@]}"; do
  if [ -n "${1:-}" ] && [ "$1" != "$h" ]; then continue; fi
  fuzz "$h" || status=1
done
exit $status
