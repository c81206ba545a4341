#!/usr/bin/env bash
# Replays every kept input under tests/fuzz/regressions/<harness>/ (and the
# seed corpus) through the built harness binaries, once each: a regression
# makes the harness abort and this script fail.  Builds the harnesses first
# (tests/fuzz/run.sh build).  tests/http/test_fuzz_regressions.py replays
# the same files through the HTTP server as part of `make test`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
bash tests/fuzz/run.sh build
TAGWAY_FUZZ_TMP=$(mktemp -d)
export TAGWAY_FUZZ_TMP
trap 'rm -rf "$TAGWAY_FUZZ_TMP"' EXIT
status=0
for h in fuzz_request fuzz_aksk; do
  files=()
  for dir in "tests/fuzz/regressions/$h" "tests/fuzz/corpus/$h"; do
    [ -d "$dir" ] || continue
    while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$dir" -type f ! -name '.*' -print0 | sort -z)
  done
  [ ${#files[@]} -eq 0 ] && continue
  echo "== $h: ${#files[@]} inputs" >&2
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "build/fuzz/$h" -runs=1 "${files[@]}" >"build/fuzz/$h.regress.log" 2>&1 \
    || { echo "FAILED: $h (see build/fuzz/$h.regress.log)" >&2; tail -30 "build/fuzz/$h.regress.log" >&2; status=1; }
done
[ $status -eq 0 ] && echo "fuzz regressions: ok" >&2
exit $status
