"""API.md §6 operations, reloads, and script failures."""
import hashlib
import json
import os
import re
import threading
import time

import pytest

from conftest import JSON_CT, SLOWDOWN, ims_error

HEALTH_OK = """function ops.health()
  return shape.ok(200, { status = "ok" })
end"""


def replace_in(path, old, new):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert old in text, "%s does not contain %r" % (path, old)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, 1))


def line_of(path, needle):
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if needle in line:
                return i
    raise AssertionError(needle)


def test_healthz_no_auth(gw):
    st, h, js, raw = gw.request("GET", "/healthz", token=None)
    assert st == 200
    assert js == {"status": "ok"}
    assert h["Content-Type"] == JSON_CT
    assert h["X-Request-Id"]
    # a bad token does not matter either
    st, _, js, _ = gw.request("GET", "/healthz", token="bogus")
    assert st == 200 and js == {"status": "ok"}


def test_status_shape(gw):
    st, h, js, raw = gw.request("GET", "/admin/status")
    assert st == 200, raw
    assert h["Content-Type"] == JSON_CT
    assert isinstance(js["generation"], int) and js["generation"] >= 1
    assert js["policies"] == {"default": "ims"}
    assert isinstance(js["uptime_s"], (int, float)) and js["uptime_s"] >= 0
    assert isinstance(js["images"], int) and isinstance(js["tags"], int)
    assert isinstance(js["files"], list) and js["files"]
    for f in js["files"]:
        assert set(f) >= {"path", "sha256"}
        assert re.fullmatch(r"[0-9a-f]{64}", f["sha256"]), f
    paths = [f["path"] for f in js["files"]]
    assert any(p.endswith("handlers/ops.lua") for p in paths), paths
    assert any(p.endswith("routes.lua") for p in paths), paths
    assert any(p.endswith("ims.lua") for p in paths), paths


def test_status_counts_images_and_tags(gw):
    before = gw.status()
    iid = gw.create_image()
    assert gw.batch(iid, "create", [{"key": "a", "value": "1"}, {"key": "b", "value": "2"},
                                    {"key": "c", "value": "3"}])[0] == 204
    mid = gw.status()
    assert mid["images"] == before["images"] + 1
    assert mid["tags"] == before["tags"] + 3
    # overwrite does not add a (image, key) pair
    assert gw.batch(iid, "create", [{"key": "a", "value": "9"}])[0] == 204
    assert gw.status()["tags"] == mid["tags"]
    assert gw.batch(iid, "delete", [{"key": "a"}])[0] == 204
    assert gw.status()["tags"] == mid["tags"] - 1


def test_reload_increments_generation(gateway):
    g = gateway
    gen = g.status()["generation"]
    st, h, js, raw = g.reload()
    assert st == 200, raw
    assert h["Content-Type"] == JSON_CT
    assert js["generation"] == gen + 1
    assert isinstance(js["files"], list) and js["files"]
    for f in js["files"]:
        assert re.fullmatch(r"[0-9a-f]{64}", f["sha256"]), f
    assert g.status()["generation"] == gen + 1
    st, _, js2, _ = g.reload()
    assert js2["generation"] == gen + 2


def test_reload_files_hashes_match_disk(gateway):
    g = gateway
    path = g.script("handlers/ops.lua")
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n-- edited by the test\n")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    st, _, js, raw = g.reload()
    assert st == 200, raw
    entries = [f for f in js["files"] if f["path"].endswith("handlers/ops.lua")]
    assert len(entries) == 1, js["files"]
    assert entries[0]["sha256"] == digest
    status = g.status()
    assert [f for f in status["files"] if f["path"].endswith("handlers/ops.lua")][0]["sha256"] == digest
    with open(os.path.join(g.policies, "ims.lua"), "rb") as f:
        pdigest = hashlib.sha256(f.read()).hexdigest()
    assert [f for f in status["files"] if f["path"].endswith("ims.lua")][0]["sha256"] == pdigest


def test_reload_picks_up_policy_change(gateway):
    g = gateway
    iid = g.create_image()
    eleven = [{"key": "p%02d" % i, "value": "v"} for i in range(11)]
    assert g.batch(iid, "create", eleven)[0] == 400
    replace_in(os.path.join(g.policies, "ims.lua"), "max_tags = 10,", "max_tags = 12,")
    st, _, _, raw = g.reload()
    assert st == 200, raw
    st, _, _, raw = g.batch(iid, "create", eleven)
    assert st == 204, raw
    assert len(g.image_tags(iid)) == 11


def test_script_error_500_generic(gateway):
    g = gateway
    path = g.script("handlers/ops.lua")
    replace_in(path, 'return shape.ok(200, { status = "ok" })', 'error("boom")')
    lineno = line_of(path, 'error("boom")')
    st, _, js, raw = g.reload()
    assert st == 200, raw
    st, h, js, raw = g.request("GET", "/healthz")
    assert st == 500, raw
    assert h["Content-Type"] == JSON_CT
    assert h["X-Request-Id"]
    msg = ims_error(js, "IMG.0061")
    assert "boom" not in raw.decode()
    assert ".lua" not in raw.decode()
    assert "ops" not in msg and "traceback" not in raw.decode()
    rid = h["X-Request-Id"]
    # traceback in the log, with file:line
    deadline = time.monotonic() + 2
    while True:
        lines = [l for l in g.stderr_lines() if "boom" in l]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert lines, "no traceback line with 'boom' on stderr"
    assert any(re.search(r"ops\.lua:%d" % lineno, l) for l in lines), lines
    assert any(rid in l for l in lines), "traceback line does not carry the request id"
    # access log says 500
    entries = g.access_log(rid)
    assert len(entries) == 1 and entries[0]["status"] == 500
    # the next request to another route is served
    st, _, js, raw = g.request("GET", "/admin/status")
    assert st == 200, raw
    iid = g.create_image()
    assert g.batch(iid, "create", [{"key": "k", "value": "v"}])[0] == 204
    # health keeps failing the same way (not a crashed state)
    assert g.request("GET", "/healthz")[0] == 500
    assert g.running()


def test_script_infinite_loop_503(gateway):
    g = gateway
    path = g.script("handlers/ops.lua")
    replace_in(path, 'return shape.ok(200, { status = "ok" })', "while true do end")
    st, _, _, raw = g.reload()
    assert st == 200, raw
    t0 = time.monotonic()
    st, h, js, raw = g.request("GET", "/healthz", timeout=15)
    elapsed = time.monotonic() - t0
    assert st == 503, raw
    assert elapsed < 5, elapsed
    ims_error(js, "IMG.0061")
    assert h["Content-Type"] == JSON_CT
    # keeps serving
    st, _, js, raw = g.request("GET", "/admin/status")
    assert st == 200, raw
    iid = g.create_image()
    assert g.image_tags(iid) == []
    # fix it and reload: health is back
    replace_in(path, "while true do end", 'return shape.ok(200, { status = "ok" })')
    assert g.reload()[0] == 200
    st, _, js, _ = g.request("GET", "/healthz")
    assert st == 200 and js == {"status": "ok"}


def _looping_health(g):
    replace_in(g.script("handlers/ops.lua"), 'return shape.ok(200, { status = "ok" })',
               "local n = 0 while true do n = n + 1 end")
    st, _, _, raw = g.reload()
    assert st == 200, raw


def test_body_over_the_script_memory_cap_is_503_not_a_crash(gateway_factory):
    """The request table (with the whole body) is built inside the protected
    call: a body larger than the scripts' memory cap fails that request
    (503, the memory budget), where it used to abort the process."""
    g = gateway_factory(extra_args=["--script-memory-mb", "4", "--body-limit", str(8 << 20)])
    body = json.dumps({"name": "big", "description": "a" * (5 << 20)})
    st, _, js, raw = g.request("POST", "/v2/images", body)
    assert st == 503, raw[:300]
    ims_error(js, "IMG.0061")
    assert g.running()
    st, _, js, _ = g.request("GET", "/healthz")
    assert st == 200 and js == {"status": "ok"}


def test_time_budget_is_kept_by_the_watchdog(gateway_factory):
    """Without instruction counting (the default) a runaway is stopped by
    the watchdog thread: 503 near the configured time, not long after."""
    g = gateway_factory(extra_args=["--script-time-ms", "300"])
    _looping_health(g)
    for _ in range(3):
        t0 = time.monotonic()
        st, _, js, raw = g.request("GET", "/healthz", timeout=15)
        elapsed = time.monotonic() - t0
        assert st == 503, raw
        ims_error(js, "IMG.0061")
        assert 0.28 <= elapsed < 1.0 * SLOWDOWN, elapsed
    budget = lambda objs: [o for o in objs if o.get("kind") == "budget"]
    kills = budget(g.wait_logged(lambda objs: len(budget(objs)) >= 3))
    assert len(kills) == 3 and "script budget exceeded" in kills[0]["traceback"]
    # the message names where the loop ran, not only that a budget ran out
    first = kills[0]["traceback"].split("\n")[0]
    assert re.search(r"handlers/ops\.lua:\d+: script budget exceeded", first), first
    st, _, js, raw = g.request("GET", "/admin/status")
    assert st == 200, raw


def test_instruction_budget_counts_when_asked(gateway_factory):
    """--script-instructions N counts VM instructions: the same loop dies
    long before a generous time budget would stop it."""
    g = gateway_factory(extra_args=["--script-instructions", "200000", "--script-time-ms", "20000"])
    _looping_health(g)
    t0 = time.monotonic()
    st, _, js, raw = g.request("GET", "/healthz", timeout=30)
    assert st == 503, raw
    assert time.monotonic() - t0 < 2.0
    st, _, _, raw = g.request("GET", "/admin/status")
    assert st == 200, raw


def test_reload_syntax_error_422(gateway):
    g = gateway
    gen = g.status()["generation"]
    path = g.script("handlers/ops.lua")
    replace_in(path, "function ops.health()", "function ops.health( return")
    lineno = line_of(path, "function ops.health( return")
    st, h, js, raw = g.reload()
    assert st == 422, raw
    assert h["Content-Type"] == JSON_CT
    assert set(js) == {"error"}
    assert js["error"]["code"] == "TGW.0001"
    msg = js["error"]["message"]
    m = re.search(r"ops\.lua:(\d+):", msg)
    assert m, msg
    assert int(m.group(1)) == lineno, (msg, lineno)
    assert "stack traceback" not in msg
    # old generation keeps serving, generation unchanged
    st, _, js, _ = g.request("GET", "/healthz")
    assert st == 200 and js == {"status": "ok"}
    assert g.status()["generation"] == gen
    iid = g.create_image()
    assert g.batch(iid, "create", [{"key": "k", "value": "v"}])[0] == 204
    # fixing the file makes the next reload succeed
    replace_in(path, "function ops.health( return", "function ops.health()")
    st, _, js, raw = g.reload()
    assert st == 200, raw
    assert js["generation"] == gen + 1


def test_reload_runtime_error_at_load_422(gateway):
    g = gateway
    gen = g.status()["generation"]
    path = g.script("handlers/ops.lua")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write('error("load-time failure")\n' + text)
    st, _, js, raw = g.reload()
    assert st == 422, raw
    assert js["error"]["code"] == "TGW.0001"
    assert re.search(r"ops\.lua:1:", js["error"]["message"]), js
    assert g.status()["generation"] == gen
    assert g.request("GET", "/healthz")[0] == 200


def test_reload_bad_policy_422(gateway):
    g = gateway
    gen = g.status()["generation"]
    replace_in(os.path.join(g.policies, "ims.lua"), 'name = "ims",', 'name = "ims",\n  max_tags = ,')
    st, _, js, raw = g.reload()
    assert st == 422, raw
    assert js["error"]["code"] == "TGW.0001"
    assert re.search(r"ims\.lua:\d+:", js["error"]["message"]), js
    assert g.status()["generation"] == gen
    iid = g.create_image()
    assert g.batch(iid, "create", [{"key": "k" * 37, "value": "v"}])[0] == 400


def test_sighup_reloads(gateway):
    import signal
    g = gateway
    gen = g.status()["generation"]
    g.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 3
    while g.status()["generation"] != gen + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert g.status()["generation"] == gen + 1
    objs = g.wait_logged(lambda objs: any(o.get("msg") == "reload (SIGHUP) ok" for o in objs))
    assert any(o.get("msg") == "reload (SIGHUP) ok" for o in objs)


@pytest.mark.parametrize("answer,why", [
    ('return 200, {1, 2}, "text/plain"', "a table as the body"),
    ('return 200, "x", "text/plain\\r\\nX-Injected: 1"', "invalid content type"),
])
def test_handler_answers_of_the_wrong_shape_are_500(gateway, answer, why):
    """What a handler returns is checked, not coerced: a table body or a
    content type with a line break fails the request (500, logged)."""
    g = gateway
    replace_in(g.script("handlers/ops.lua"), 'return shape.ok(200, { status = "ok" })', answer)
    assert g.reload()[0] == 200
    st, h, js, raw = g.request("GET", "/healthz")
    assert st == 500, raw
    assert "X-Injected" not in h
    errors = g.wait_logged(lambda objs: [o for o in objs if why in o.get("traceback", "")])
    assert any(why in o.get("traceback", "") for o in errors)


@pytest.mark.parametrize("answer,why", [
    ('return 100, \'{"x":1}\', nil', "invalid status"),
    ('return 199, nil, nil', "invalid status"),
    ('return 204, "{}", nil', "a body with status 204"),
    ('return 205, "x", nil', "a body with status 205"),
    ('return 304, "x", nil', "a body with status 304"),
], ids=["100", "199", "204-body", "205-body", "304-body"])
def test_a_write_answered_with_a_status_that_cannot_be_sent_is_undone(gateway, answer, why):
    """A 1xx is no final answer (evhttp sent it as the status line with no
    length, the body read as the next answer, and the write was kept, 1xx
    being below 300); 204, 205 and 304 carry no body, yet evhttp sent the
    one it was given.  Either fails the request: 500, logged, the write
    undone, and the connection's next answer is whole."""
    import http.client
    g = gateway
    iid = g.create_image()
    replace_in(g.script("handlers/tags.lua"),
               "  return shape.no_content()\nend\n\nlocal function delete_tags(",
               "  " + answer + "\nend\n\nlocal function delete_tags(")
    assert g.reload()[0] == 200
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
    try:
        body = json.dumps({"action": "create", "tags": [{"key": "k", "value": "v"}]})
        conn.request("POST", g.tags_path(iid) + "/action", body=body,
                     headers={"X-Auth-Token": g.token, "Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        assert resp.status == 500, (resp.status, raw)
        assert json.loads(raw)["error"]["code"] == "IMG.0061"
        conn.request("GET", "/healthz")     # the same connection
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read()) == {"status": "ok"}
    finally:
        conn.close()
    assert g.image_tags(iid) == []
    errors = g.wait_logged(lambda objs: [o for o in objs if why in o.get("traceback", "")])
    assert any(why in o.get("traceback", "") for o in errors)


@pytest.mark.parametrize("retry", ['"soon"', "0", "-1", "1e9", "0/0"])
def test_an_invalid_retry_after_from_handle_is_500(gateway, retry):
    """main.handle's sixth value is a Retry-After in seconds (the router's
    429 sets it): anything but a number in (0, 86400] fails the request
    rather than reaching a header."""
    g = gateway
    replace_in(g.script("main.lua"), "  return router.dispatch(req)",
               "  local s, b, c, r, p = router.dispatch(req)\n  return s, b, c, r, p, " + retry)
    assert g.reload()[0] == 200             # answered by the generation before it
    st, h, js, raw = g.request("GET", "/healthz")
    assert st == 500 and "Retry-After" not in h, (st, raw)
    errors = g.wait_logged(lambda objs: [o for o in objs if "invalid retry_after" in o.get("traceback", "")])
    assert any("invalid retry_after" in o.get("traceback", "") for o in errors)


def test_a_backtracking_pattern_is_stopped_by_the_time_budget(gateway_factory):
    """A pattern match runs in C, where no count hook fires: the matcher
    itself answers to the budget, so the request is a 503 near the budget
    (the stock one would hold the worker for good), and SIGTERM still
    stops the gateway."""
    g = gateway_factory(extra_args=["--script-time-ms", "300"])
    replace_in(g.script("handlers/ops.lua"), 'return shape.ok(200, { status = "ok" })',
               "local s = ('.'):rep(42) .. '1'\n"
               "  s:find('^(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.%a$')\n"
               "  return shape.ok(200, { status = 'ok' })")
    assert g.reload()[0] == 200
    for _ in range(2):
        t0 = time.monotonic()
        st, _, js, raw = g.request("GET", "/healthz", timeout=15)
        assert st == 503, raw
        ims_error(js, "IMG.0061")
        assert time.monotonic() - t0 < 1.5 * SLOWDOWN
    st, _, _, raw = g.request("GET", "/admin/status")
    assert st == 200, raw
    g.stop()
    assert g.proc.returncode == 0


def test_a_request_cannot_poison_failures_or_modules(gateway_factory):
    """What one request does to the failure metatable or a module table
    does not reach later requests: a 400 stays a 400."""
    g = gateway_factory(extra_args=["--workers", "1"])
    replace_in(g.script("handlers/ops.lua"), 'return shape.ok(200, { status = "ok" })',
               "local ok, e = pcall(shape.fail, 400, 'X', 'm')\n"
               "  local mt = getmetatable(e)\n"
               "  local poisoned = pcall(function() mt.__gc = function() end end)\n"
               "  local shaped = pcall(function() require('shape').fail = function() error('poisoned') end end)\n"
               "  return shape.ok(200, { mt = tostring(mt), poisoned = poisoned, shaped = shaped })")
    assert g.reload()[0] == 200
    st, _, js, raw = g.request("GET", "/healthz")
    assert st == 200 and js == {"mt": "false", "poisoned": False, "shaped": False}, raw
    st, _, js, raw = g.request("POST", "/v2/images", {"name": "x", "image_tags": [{"key": "", "value": "v"}]})
    assert st == 400, raw
    ims_error(js, "IMG.0115")


def test_log_lines_of_concurrent_workers_stay_whole(gateway):
    """Every line on stderr is one whole JSON object while both workers log
    at once: a script's gw.log and a failing script's traceback are written
    in pieces (the value is escaped as it goes), and stderr's line buffer is
    shared, so unless each line is written under the stream's lock another
    thread's output lands inside it and both lines are lost to a reader."""
    g = gateway
    with open(g.script("handlers/chatty.lua"), "w", encoding="utf-8") as f:
        f.write('''local shape = require "shape"
local chatty = {}
function chatty.talk(ctx)
  for i = 1, 20 do gw.log(string.rep('say "so"\\\\ ', 60) .. ctx.params.n .. "/" .. i) end
  return shape.no_content()
end
function chatty.fail(ctx)
  error(string.rep("fails\\t", 100) .. ctx.params.n)
end
return chatty
''')
    path = g.script("routes.lua")
    with open(path, encoding="utf-8") as f:
        src = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(src.rstrip().rstrip("}") +
                '  { method = "GET", path = "/chatty/talk/{n}", handler = "chatty.talk" },\n'
                '  { method = "GET", path = "/chatty/fail/{n}", handler = "chatty.fail" },\n}\n')
    st, _, js, _ = g.reload()
    assert st == 200, js
    before = len(g.stderr_lines())
    statuses = []

    def client(t):
        for i in range(12):
            n = "%d-%d" % (t, i)
            st, _, _, _ = g.request("GET", "/chatty/%s/%s" % ("talk" if i % 3 else "fail", n))
            statuses.append(st)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(statuses)) == [204, 500], statuses
    talks, fails = statuses.count(204), statuses.count(500)
    assert (talks, fails) == (48, 24)

    def done(objs):
        return (sum(1 for o in objs if str(o.get("msg", "")).startswith('say "so"\\ ')) >= talks * 20 and
                sum(1 for o in objs if o.get("kind") == "error") >= fails)
    g.wait_logged(done, timeout=5)
    lines = g.stderr_lines()[before:]
    broken = [ln for ln in lines if ln.startswith("{") or '"msg"' in ln or "traceback" in ln]
    broken = [ln for ln in broken if not isinstance(_json_obj(ln), dict)]
    assert broken == [], "%d of %d lines are not whole JSON objects, e.g. %r" % (
        len(broken), len(lines), broken[0][:300])
    objs = [_json_obj(ln) for ln in lines]
    said = sorted(o["msg"].rsplit(" ", 1)[1] for o in objs if str(o.get("msg", "")).startswith('say "so"\\ '))
    assert said == sorted("%d-%d/%d" % (t, i, k) for t in range(6) for i in range(12) if i % 3
                          for k in range(1, 21))
    tracebacks = [o for o in objs if o.get("kind") == "error"]
    assert len(tracebacks) == fails
    assert all("fails\tfails\t" in o["traceback"] for o in tracebacks)


def _json_obj(line):
    try:
        return json.loads(line)
    except ValueError:
        return None
