#!/usr/bin/env bash
# demo.sh: starts a throw-away gateway (temporary database and object store,
# a copy of lua/ and policies/, a free loopback port, --auth off), runs
# examples/walkthrough.sh against it, stops it with SIGTERM and checks that
# both exited 0.  `make demo`.
#
# Environment: TAGWAY_BIN (default <repo>/build/tagway); KEEP=1 keeps the
# temporary folder (database, object store, gateway log) for a look.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
BIN=${TAGWAY_BIN:-$REPO/build/tagway}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

if [ ! -x "$BIN" ]; then
  echo "demo: $BIN is not built (run make)" >&2
  exit 2
fi
for tool in curl "$PY"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "demo: $tool is needed" >&2; exit 2; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tagway-demo.XXXXXX") || exit 1
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -KILL "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "demo: kept $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A snapshot of the scripts and policies: the walkthrough reloads them, and a
# file being edited meanwhile in the working tree must not change the run.
mkdir -p "$TMP/obs" "$TMP/lua" "$TMP/policies"
cp -RL "$REPO/lua/." "$TMP/lua/" && cp -RL "$REPO/policies/." "$TMP/policies/" || exit 1
"$BIN" serve --listen 127.0.0.1:0 --db "$TMP/t.db" --auth off --obs-root "$TMP/obs" \
  --scripts "$TMP/lua" --policies "$TMP/policies" \
  </dev/null >"$TMP/gateway.out" 2>"$TMP/gateway.log" &
PID=$!

# The port comes from the "listening" log line (JSON) on stderr.
PORT=""
for _ in $(seq 1 150); do
  PORT=$("$PY" - "$TMP/gateway.log" <<'EOF'
import json, sys
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        obj = json.loads(line)
    except ValueError:
        continue
    if isinstance(obj, dict) and obj.get("msg") == "listening" and "port" in obj:
        print(obj["port"])
        break
EOF
)
  [ -n "$PORT" ] && break
  if ! kill -0 "$PID" 2>/dev/null; then
    wait "$PID"; rc=$?
    echo "demo: the gateway exited with status $rc before listening:" >&2
    cat "$TMP/gateway.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$PORT" ]; then
  echo "demo: the gateway did not report its port within 15 s:" >&2
  cat "$TMP/gateway.log" >&2
  exit 1
fi
echo "demo: gateway pid $PID listening on 127.0.0.1:$PORT (database $TMP/t.db)"

GW="http://127.0.0.1:$PORT" AUTH=off OBS_ROOT="$TMP/obs" bash "$HERE/walkthrough.sh"
walk=$?

kill -TERM "$PID"
wait "$PID"
gw_rc=$?
PID=""

if [ "$gw_rc" -ne 0 ]; then
  echo "demo: the gateway exited with status $gw_rc after SIGTERM; last log lines:" >&2
  tail -n 20 "$TMP/gateway.log" >&2
fi
if [ "$walk" -ne 0 ]; then
  echo "demo: the walkthrough failed (status $walk); last gateway log lines:" >&2
  tail -n 20 "$TMP/gateway.log" >&2
fi
if [ "$walk" -ne 0 ] || [ "$gw_rc" -ne 0 ]; then
  exit 1
fi
echo "demo: OK (walkthrough passed, gateway stopped cleanly, $(grep -c '"request_id"' "$TMP/gateway.log") requests logged)"
