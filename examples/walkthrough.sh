#!/usr/bin/env bash
# walkthrough.sh: drives a RUNNING tagway gateway through every API with
# curl, printing each request (as a curl command you can paste) and each
# answer (status and body).  It starts nothing itself; `make demo` (or
# examples/demo.sh) starts a throw-away gateway and runs this against it.
#
# It doubles as a smoke test: it exits 1 when any step gets a status (or,
# for a few steps, a body) other than the one API.md promises, 2 on bad
# usage.
#
# Environment:
#   GW        gateway base URL                       (default http://127.0.0.1:8080)
#   TOKEN     X-Auth-Token of an ADMIN credential    (auth on; /admin/* needs admin)
#   PROJECT   that credential's project id           (auth on: required)
#   AUTH=off  the gateway runs with --auth off: send X-Project-Id: $PROJECT
#             instead of a token (PROJECT defaults to a random project id)
#   OBS_ROOT  the gateway's --obs-root folder, where the quick import's
#             object is dropped (default: <repo>/data/obs, as `make run`)
#   BODY_MAX  answers longer than this many characters are cut (default 1500)
#
# With the first-start credential of `make run`:
#   TOKEN=<token> PROJECT=<project_id> bash examples/walkthrough.sh
#
# Every image it creates carries the tag run=<random> so its queries count
# only this run's images; it deletes what it created before it ends.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

GW=${GW:-http://127.0.0.1:8080}
GW=${GW%/}
AUTH=${AUTH:-on}
OBS_ROOT=${OBS_ROOT:-$REPO/data/obs}
BODY_MAX=${BODY_MAX:-1500}

case "$AUTH" in
  on)
    if [ -z "${TOKEN:-}" ] || [ -z "${PROJECT:-}" ]; then
      echo "walkthrough: set TOKEN and PROJECT (an admin credential), or AUTH=off for a gateway run with --auth off" >&2
      exit 2
    fi
    AUTH_ARGS=(-H "X-Auth-Token: $TOKEN")
    AUTH_SHOWN='-H "X-Auth-Token: $TOKEN"'
    ;;
  off)
    PROJECT=${PROJECT:-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')}
    AUTH_ARGS=(-H "X-Project-Id: $PROJECT")
    AUTH_SHOWN='-H "X-Project-Id: $P"'
    ;;
  *)
    echo "walkthrough: AUTH must be on or off, not '$AUTH'" >&2
    exit 2
    ;;
esac
if ! [[ "$PROJECT" =~ ^[0-9a-f]{32}$ ]]; then
  echo "walkthrough: PROJECT must be 32 lowercase hex characters, not '$PROJECT'" >&2
  exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tagway-walk.XXXXXX") || exit 1
DROPPED=""
cleanup() {
  [ -n "$DROPPED" ] && rm -f "$DROPPED" && rmdir "$(dirname "$DROPPED")" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

RUN=$("$PY" -c 'import secrets; print(secrets.token_hex(4))')
P=$PROJECT
FAILURES=0
STEPS=0
STATUS=""            # status of the last call
BODY="$WORK/body"    # body of the last call

# ---- helpers ----------------------------------------------------------------

section() { printf '\n### %s\n' "$*"; }
note() { printf '    # %s\n' "$*"; }

# A single-quoted shell word (for printing commands that can be pasted).
shq() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+-]+$ ]]; then printf '%s' "$1"; return; fi
  local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"
}

# Shows a path with the project id and this run's image ids as variables.
show_path() {
  local p=$1
  p=${p//$P/\$P}
  [ -n "${I1:-}" ] && p=${p//$I1/\$I}
  printf '%s' "$p"
}

# call EXPECTED METHOD PATH [BODY] [-- extra curl args]
#   EXPECTED: the status that counts as right.  BODY: sent as is (use the
#   string NONE for no body).  The caller's credentials are added unless
#   the extra args contain --no-auth.
call() {
  local expected=$1 method=$2 path=$3 data=${4-NONE}
  shift 3; [ $# -gt 0 ] && shift
  [ "${1-}" = "--" ] && shift
  local auth=("${AUTH_ARGS[@]}") shown=" $AUTH_SHOWN" extra=() a
  for a in "$@"; do
    if [ "$a" = "--no-auth" ]; then auth=(); shown=""; else extra+=("$a"); fi
  done
  local show_extra=""
  for a in "${extra[@]}"; do show_extra+=" $(shq "$a")"; done
  local args=(-sS -g --max-time 10 -o "$BODY" -w '%{http_code}' -X "$method" "${auth[@]}" "${extra[@]}")
  if [ "$data" != "NONE" ]; then
    args+=(-H "Content-Type: application/json" --data-binary "$data")
    printf '\n$ curl -X %s "$GW%s"%s%s -d %s\n' "$method" "$(show_path "$path")" "$shown" "$show_extra" "$(shq "$data")"
  else
    printf '\n$ curl -X %s "$GW%s"%s%s\n' "$method" "$(show_path "$path")" "$shown" "$show_extra"
  fi
  : >"$BODY"
  STATUS=$(curl "${args[@]}" "$GW$path" 2>"$WORK/curl.err")
  [ -n "$STATUS" ] || STATUS=000
  STEPS=$((STEPS + 1))
  printf '< %s\n' "$STATUS"
  if [ -s "$BODY" ]; then
    "$PY" - "$BODY" "$BODY_MAX" "${HEAD_LINES:-0}" <<'EOF'
import sys
raw = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
limit, head = int(sys.argv[2]), int(sys.argv[3])
if head:
    lines = raw.splitlines()
    text = "\n".join(lines[:head]) + ("\n... (%d lines in all)" % len(lines) if len(lines) > head else "")
else:
    text = raw if len(raw) <= limit else raw[:limit] + " ... (%d characters in all)" % len(raw)
print("< " + text.rstrip("\n").replace("\n", "\n< "))
EOF
  fi
  if [ "$STATUS" = "000" ]; then
    printf '!! no answer: %s\n' "$(cat "$WORK/curl.err")"
  fi
  if [ "$STATUS" != "$expected" ]; then
    printf '!! UNEXPECTED: wanted %s, got %s\n' "$expected" "$STATUS"
    FAILURES=$((FAILURES + 1))
    return 1
  fi
  return 0
}

# jget EXPR: evaluates a Python expression over the last body (as d) and
# prints it (strings bare, anything else as JSON).  Empty on failure.
jget() {
  "$PY" - "$BODY" "$1" <<'EOF' 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
v = eval(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
EOF
}

# check EXPR WHAT: the Python expression over the last body (d) must be
# true; otherwise the step counts as failed.
check() {
  local got
  got=$(jget "bool($1)")
  if [ "$got" = "true" ]; then
    note "ok: $2"
  else
    printf '!! UNEXPECTED: %s  (%s is not true)\n' "$2" "$1"
    FAILURES=$((FAILURES + 1))
  fi
}

# An IMS error body with this code whose message names this field.
check_ims_error() {
  check "d['error']['code'] == '$1' and '$2' in d['error']['message']" \
        "IMS error $1 naming '$2'"
}

# A gateway error body with this code.
check_gw_error() {
  check "d['error_code'] == '$1' and d['error_msg'] and d['request_id']" "gateway error $1"
}

need() {  # need VALUE WHAT: stops the walk when a value it needs is missing
  if [ -z "$1" ]; then
    printf '!! cannot go on without %s\n' "$2"
    printf '\nwalkthrough: FAILED after %d requests\n' "$STEPS"
    exit 1
  fi
}

# poll_job JOB_ID FINAL: polls both job APIs until the job leaves INIT and
# RUNNING (at most 30 s); the status must then be FINAL.
poll_job() {
  local job=$1 final=$2 status="" _
  for _ in $(seq 1 150); do
    call 200 GET "/v1/$P/jobs/$job" || return 1
    status=$(jget "d['status']")
    note "job status (GET /v1/{project_id}/jobs/{job_id}): $status"
    call 200 GET "/v1/cloudimages/job/$job" || return 1
    note "job status (GET /v1/cloudimages/job/{job_id}): $(jget "d['status']")"
    case "$status" in
      SUCCESS|FAIL) break ;;
    esac
    sleep 0.2
  done
  if [ "$status" != "$final" ]; then
    printf '!! UNEXPECTED: job %s ended %s, wanted %s\n' "$job" "${status:-(none)}" "$final"
    FAILURES=$((FAILURES + 1))
    return 1
  fi
  check "d['status'] == '$final' and d['end_time'].endswith('Z')" "both job APIs say $final, with an end_time"
}

echo "tagway walkthrough: GW=$GW AUTH=$AUTH PROJECT=$P (shown as \$P) run=$RUN"

# ---- 1. health ------------------------------------------------------------------
section "1. Health (no credentials)"
if ! call 200 GET /healthz NONE -- --no-auth; then
  printf '\nwalkthrough: no healthy gateway at %s (start one with `make run`, or run examples/demo.sh)\n' "$GW"
  exit 1
fi
check "d == {'status': 'ok'}" '{"status": "ok"}'

# ---- 2. images ------------------------------------------------------------------
section "2. Register images (POST /v2/images -> 201 with the image object)"
call 201 POST /v2/images "{\"name\": \"walk-web\", \"os_version\": \"Ubuntu 22.04 server 64bit\", \"image_tags\": [{\"key\": \"env\", \"value\": \"prod\"}, {\"key\": \"run\", \"value\": \"$RUN\"}]}"
I1=$(jget "d['id']"); need "$I1" "the first image's id"
check "d['status'] == 'active' and d['min_disk'] == 40 and d['type'] == 'ECS'" "status active, defaults applied"
note "I=$I1 (shown as \$I below)"
call 201 POST /v2/images "{\"name\": \"walk-db\", \"image_tags\": [{\"key\": \"env\", \"value\": \"staging\"}, {\"key\": \"run\", \"value\": \"$RUN\"}, {\"key\": \"deprecated\", \"value\": \"\"}]}"
I2=$(jget "d['id']"); need "$I2" "the second image's id"
call 201 POST /v2/images '{"name": "walk-bare", "architecture": "arm"}'
I3=$(jget "d['id']"); need "$I3" "the third image's id"
check "d['hw_firmware_type'] == 'uefi' and d['tags'] == []" "arm forces uefi; no tags"

# ---- 3. tags of one image --------------------------------------------------------
section "3. Batch create / overwrite tags (POST .../tags/action -> 204)"
call 204 POST "/v2/$P/images/$I1/tags/action" '{"action": "create", "tags": [{"key": "team", "value": "a"}, {"key": "部门", "value": "研发"}, {"key": "owner", "value": "ops"}]}'

section "4. Batch delete tags, by key (-> 204)"
call 204 POST "/v2/$P/images/$I1/tags/action" '{"action": "delete", "tags": [{"key": "team"}]}'

section "5. Add one tag (POST .../tags -> 204)"
call 204 POST "/v2/$P/images/$I1/tags" '{"tag": {"key": "tier", "value": "1"}}'

section "6. Delete one tag (DELETE .../tags/{key} -> 204; the key is percent-decoded)"
call 204 DELETE "/v2/$P/images/$I1/tags/tier"
CJK=$("$PY" -c 'import urllib.parse; print(urllib.parse.quote("部门"))')
note "key 部门 percent-encoded: $CJK"
call 204 DELETE "/v2/$P/images/$I1/tags/$CJK"
note "not idempotent: the same delete again is 404 IMG.0115"
call 404 DELETE "/v2/$P/images/$I1/tags/$CJK" && check_ims_error IMG.0115 "部门"

section "7. Tags of an image (GET .../tags -> 200, sorted by key)"
call 200 GET "/v2/$P/images/$I1/tags"
check "d['tags'] == [{'key': 'env', 'value': 'prod'}, {'key': 'owner', 'value': 'ops'}, {'key': 'run', 'value': '$RUN'}]" \
      "env, owner, run"

section "8. Tags of the project (GET /v2/{project_id}/images/tags -> 200)"
call 200 GET "/v2/$P/images/tags"
check "'$RUN' in [v for e in d['tags'] if e['key'] == 'run' for v in e['values']]" "run=$RUN listed"
check "[e['key'] for e in d['tags']] == sorted(e['key'] for e in d['tags']) and all(e['values'] == sorted(e['values']) for e in d['tags'])" \
      "keys and values sorted"

# ---- 4. queries --------------------------------------------------------------
Q="/v2/$P/images/resource_instances/action"
RUNTAG="{\"key\": \"run\", \"values\": [\"$RUN\"]}"
section "9. Query by tags (POST .../resource_instances/action; newest first)"
note "tags: every entry matches (AND across keys, OR across values)"
call 200 POST "$Q" "{\"action\": \"filter\", \"tags\": [$RUNTAG, {\"key\": \"env\", \"values\": [\"prod\", \"staging\"]}]}"
check "d['total_count'] == 2 and [r['resource_id'] for r in d['resources']] == ['$I2', '$I1']" "2 images, newest first"
note "tags_any: at least one entry matches"
call 200 POST "$Q" "{\"action\": \"filter\", \"tags\": [$RUNTAG], \"tags_any\": [{\"key\": \"owner\", \"values\": []}, {\"key\": \"deprecated\", \"values\": []}]}"
check "d['total_count'] == 2" "2 images"
note "not_tags_any: excludes images where any entry matches"
call 200 POST "$Q" "{\"action\": \"filter\", \"tags\": [$RUNTAG], \"not_tags_any\": [{\"key\": \"deprecated\", \"values\": []}]}"
check "d['total_count'] == 1 and d['resources'][0]['resource_id'] == '$I1'" "only \$I"
note "not_tags: excludes images where every entry matches"
call 200 POST "$Q" "{\"action\": \"filter\", \"tags\": [$RUNTAG], \"not_tags\": [{\"key\": \"env\", \"values\": [\"staging\"]}, {\"key\": \"deprecated\", \"values\": []}]}"
check "d['total_count'] == 1 and d['resources'][0]['resource_id'] == '$I1'" "only \$I"
note "matches: resource_name is a case-insensitive substring; limit/offset page (strings or integers)"
call 200 POST "$Q" "{\"action\": \"filter\", \"limit\": \"1\", \"offset\": \"1\", \"tags\": [$RUNTAG], \"matches\": [{\"key\": \"resource_name\", \"value\": \"WALK-\"}]}"
check "d['total_count'] == 2 and len(d['resources']) == 1 and d['resources'][0]['resource_id'] == '$I1'" \
      "total 2, the page holds the second (older) image"
check "d['resources'][0]['resource_detail'] == {'status': 'active'} and d['resources'][0]['resource_name'] == 'walk-web'" \
      "resource_name and resource_detail.status"

section "10. Count (action count -> {\"total_count\": N})"
call 200 POST "$Q" "{\"action\": \"count\", \"tags\": [$RUNTAG]}"
check "d == {'total_count': 2}" "2"
note "without_any_tag with an exact resource_id match"
call 200 POST "$Q" "{\"action\": \"count\", \"without_any_tag\": true, \"matches\": [{\"key\": \"resource_id\", \"value\": \"$I3\"}]}"
check "d == {'total_count': 1}" "1"

# ---- 5. quick import and jobs ---------------------------------------------------
section "11. Quick import (POST /v2/cloudimages/quickimport/action -> 200 {job_id}) and jobs"
BUCKET=walkthrough
OBJECT="disk-$RUN.zvhd2"
if mkdir -p "$OBS_ROOT/$BUCKET" && head -c 65536 /dev/zero >"$OBS_ROOT/$BUCKET/$OBJECT"; then
  DROPPED="$OBS_ROOT/$BUCKET/$OBJECT"
  note "dropped a 64 KiB object at \$OBS_ROOT/$BUCKET/$OBJECT (OBS_ROOT=$OBS_ROOT)"
else
  printf '!! cannot write to OBS_ROOT=%s (set it to the gateway'"'"'s --obs-root)\n' "$OBS_ROOT"
  FAILURES=$((FAILURES + 1))
fi
call 200 POST /v2/cloudimages/quickimport/action "{\"name\": \"walk-imported\", \"os_version\": \"Ubuntu 22.04 server 64bit\", \"image_url\": \"$BUCKET:$OBJECT\", \"min_disk\": 40, \"tags\": [\"env.prod\", \"run.$RUN\", \"source.quick-import\"]}"
JOB=$(jget "d['job_id']"); need "$JOB" "the import's job_id"
check "len(d['job_id']) == 32 and all(c in '0123456789abcdef' for c in d['job_id'])" "job_id is 32 lowercase hex"
poll_job "$JOB" SUCCESS
IMPORTED=$(jget "d['entities']['image_id']")
check "d['job_type'] == 'imsImportImageJob' and d['error_code'] is None" "job_type imsImportImageJob, no error"
need "$IMPORTED" "the imported image's id"
call 200 GET "/v2/images/$IMPORTED"
check "d['status'] == 'active' and {'key': 'source', 'value': 'quick-import'} in d['tags']" "the imported image is active with its tags"

section "12. A failing import (the object does not exist -> job FAIL, IMG.0057)"
call 200 POST /v2/cloudimages/quickimport/action "{\"name\": \"walk-missing\", \"os_version\": \"Ubuntu 22.04 server 64bit\", \"image_url\": \"$BUCKET:missing-$RUN.zvhd2\", \"min_disk\": 40}"
JOB2=$(jget "d['job_id']"); need "$JOB2" "the failing import's job_id"
poll_job "$JOB2" FAIL
check "d['error_code'] == 'IMG.0057' and d['fail_reason'] and d['entities']['error_code'] == 'IMG.0057'" \
      "error_code IMG.0057 with a fail_reason"
KILLED=$(jget "d['entities'].get('image_id') or ''")
if [ -n "$KILLED" ]; then
  call 200 GET "/v2/images/$KILLED" && check "d['status'] == 'killed'" "its image is killed"
fi

# ---- 6. read and delete an image -------------------------------------------------
section "13. Read and delete an image (GET -> 200, DELETE -> 204, then 404 IMG.0027)"
call 200 GET "/v2/images/$I1"
check "d['id'] == '$I1' and d['name'] == 'walk-web' and d['created_at'].endswith('Z') and len(d['tags']) == 3" \
      "the image object with its 3 tags"
call 204 DELETE "/v2/images/$I1"
call 404 GET "/v2/images/$I1" && check_ims_error IMG.0027 "$I1"
call 200 POST "$Q" "{\"action\": \"count\", \"tags\": [$RUNTAG]}"
check "d == {'total_count': 2}" "the deleted image is gone from queries (2 left: walk-db and the import)"

# ---- 7. errors -------------------------------------------------------------------
section "14. Errors: IMS shape {error: {code, message}} naming the field; gateway shape {error_code, error_msg, request_id}"
if [ "$AUTH" = "on" ]; then
  note "401: no credentials"
  call 401 GET "/v2/$P/images/tags" NONE -- --no-auth && check_gw_error APIGW.0301
  note "401: a wrong token"
  call 401 GET "/v2/$P/images/tags" NONE -- --no-auth -H "X-Auth-Token: not-a-token" && check_gw_error APIGW.0301
  note "403: another project in the path"
  call 403 GET "/v2/ffffffffffffffffffffffffffffffff/images/tags" && check_gw_error APIGW.0302
else
  note "401 needs authentication: skipped with AUTH=off (run against a gateway with auth on to see it)"
  note "auth off and no project in the path nor X-Project-Id: 400 IMG.0067"
  call 400 POST /v2/images '{"name": "no-project"}' -- --no-auth && check_ims_error IMG.0067 "X-Project-Id"
fi
note "404: unknown route"
call 404 GET /v2/no/such/route && check_gw_error APIGW.0101
note "404: known path, another method"
call 404 PUT "/v2/images/$I2" '{"name": "x"}' && check_gw_error APIGW.0101
note "400: a bad tag key, named with its index"
call 400 POST "/v2/$P/images/$I2/tags/action" '{"action": "create", "tags": [{"key": "ok", "value": "1"}, {"key": "bad key", "value": "v"}]}' \
  && check_ims_error IMG.0115 "tags[1].key"
note "400: invalid action"
call 400 POST "/v2/$P/images/$I2/tags/action" '{"action": "Create", "tags": [{"key": "k", "value": "v"}]}' \
  && check_ims_error IMG.0001 "action"
note "400: empty body"
call 400 POST "/v2/$P/images/$I2/tags/action" '' && check "d['error']['code'] == 'IMG.0007'" "IMS error IMG.0007"
note "400: query validation (limit out of range)"
call 400 POST "$Q" '{"action": "filter", "limit": "0"}' && check_ims_error IMG.0001 "limit"
note "400: quick import, min_disk given as a string"
call 400 POST /v2/cloudimages/quickimport/action '{"name": "x", "os_version": "Ubuntu 22.04 server 64bit", "image_url": "walkthrough:x.zvhd2", "min_disk": "40"}' \
  && check_ims_error IMG.0055 "min_disk"
note "404: unknown image, unknown job"
call 404 POST "/v2/$P/images/00000000-0000-0000-0000-000000000000/tags" '{"tag": {"key": "k", "value": "v"}}' \
  && check_ims_error IMG.0027 "00000000-0000-0000-0000-000000000000"
call 404 GET "/v1/cloudimages/job/00000000000000000000000000000000" && check "d['error']['code'] == 'IMG.0023'" "IMS error IMG.0023"

# ---- 8. operations ---------------------------------------------------------------
section "15. Metrics (GET /metrics, Prometheus text; first lines)"
note "credentials are needed only with metrics_auth = true in the configuration"
HEAD_LINES=12 call 200 GET /metrics
if grep -q '^tagway_requests_total{' "$BODY"; then
  note "ok: tagway_requests_total present ($(grep -c '^tagway_' "$BODY") samples)"
else
  printf '!! UNEXPECTED: no tagway_requests_total in /metrics\n'; FAILURES=$((FAILURES + 1))
fi

section "16. Status (GET /admin/status, admin role)"
call 200 GET /admin/status
GEN=$(jget "d['generation']")
check "isinstance(d['generation'], int) and isinstance(d['files'], list) and d['policies']['default']" \
      "generation, files, policies"

section "17. Reload scripts and policies (POST /admin/reload, admin role)"
call 200 POST /admin/reload
if [ -n "$GEN" ]; then
  check "d['generation'] > $GEN and len(d['files']) > 0" "the generation went up from $GEN"
fi

# ---- clean up --------------------------------------------------------------------
section "18. Clean up this run's images"
for id in "$I2" "$I3" "$IMPORTED" "$KILLED"; do
  [ -n "$id" ] && call 204 DELETE "/v2/images/$id"
done
call 200 POST "$Q" "{\"action\": \"count\", \"tags\": [$RUNTAG]}"
check "d == {'total_count': 0}" "nothing of this run is left"

echo
if [ "$FAILURES" -ne 0 ]; then
  printf 'walkthrough: FAILED: %d unexpected answer(s) in %d requests\n' "$FAILURES" "$STEPS"
  exit 1
fi
printf 'walkthrough: OK, %d requests\n' "$STEPS"
