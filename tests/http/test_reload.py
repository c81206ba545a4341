"""Hot reload while requests are in flight: a request is served wholly by
the generation it started in, and no request fails because of a reload."""
import http.client
import os
import re
import signal
import threading
import time

from conftest import JSON_CT, rewrite_health


def test_sighup_during_a_slow_request(gateway):
    g = gateway
    rewrite_health(g, '  local t = os.clock()\n  while os.clock() - t < 0.5 do end\n'
                      '  return shape.ok(200, { status = "ok", gen = "old" })')
    st, _, js, _ = g.reload()
    assert st == 200, js
    gen_before = js["generation"]
    rewrite_health(g, '  return shape.ok(200, { status = "ok", gen = "new" })')

    result = {}

    def slow():
        result["answer"] = g.request("GET", "/healthz", token=None)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.15)                      # the slow request is running now
    g.proc.send_signal(signal.SIGHUP)
    t.join(timeout=10)
    st, h, js, _ = result["answer"]
    assert st == 200 and js == {"status": "ok", "gen": "old"}, js
    # the reload is processed right after; from then on the new generation serves
    deadline = time.monotonic() + 3
    while True:
        st, _, js, _ = g.request("GET", "/healthz", token=None)
        if js.get("gen") == "new" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert st == 200 and js == {"status": "ok", "gen": "new"}
    assert g.status()["generation"] == gen_before + 1


def test_no_request_fails_during_repeated_reloads(gateway):
    g = gateway
    image = g.create_image(image_tags=[{"key": "k", "value": "v"}])
    stop = threading.Event()
    failures, answered = [], [0]

    def load():
        while not stop.is_set():
            st, _, js, raw = g.request("GET", g.tags_path(image))
            if st != 200 or js != {"tags": [{"key": "k", "value": "v"}]}:
                failures.append((st, raw[:200]))
            answered[0] += 1

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    gen0 = g.status()["generation"]
    try:
        for _ in range(20):
            st, _, js, _ = g.reload()
            assert st == 200, js
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert failures == []
    assert answered[0] > 20
    assert g.status()["generation"] == gen0 + 20


def test_failed_reload_keeps_serving_under_load(gateway):
    g = gateway
    with open(g.script("handlers/ops.lua"), "a", encoding="utf-8") as f:
        f.write("\nthis is not lua\n")
    gen0 = g.status()["generation"]
    st, h, js, raw = g.reload()
    assert st == 422 and h["Content-Type"] == JSON_CT
    assert js["error"]["code"] == "TGW.0001"
    assert re.search(r"ops\.lua:\d+:", js["error"]["message"]), js
    # the path as it can be copied: "/" is not written as "\/"
    assert b"handlers/ops.lua:" in raw and b"\\/" not in raw, raw
    # and the status line names the status (libevent alone says "Client Error")
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
    conn.request("POST", "/admin/reload", headers={"X-Auth-Token": g.token})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert (resp.status, resp.reason) == (422, "Unprocessable Entity")
    st, _, js, _ = g.request("GET", "/healthz", token=None)
    assert st == 200 and js == {"status": "ok"}
    assert g.status()["generation"] == gen0


def test_a_module_loads_with_the_scripts_not_while_serving(gateway):
    """Every worker of a generation runs the bytes the reload read: a module
    first required inside a request is not read from the disk of the moment
    (one worker's, unchecked, live without a reload); it fails its request
    with the reason logged, and a module loaded with the scripts serves."""
    g = gateway
    with open(g.script("lazy.lua"), "w", encoding="utf-8") as f:
        f.write('return { v = "one" }\n')
    rewrite_health(g, '  return shape.ok(200, {status = require("lazy").v})')
    st, _, js, raw = g.reload()
    assert st == 200, raw
    st, _, js, raw = g.request("GET", "/healthz")
    assert st == 500, raw
    objs = g.wait_logged(lambda os_: any("modules load with the scripts" in o.get("traceback", "")
                                         for o in os_))
    tb = next(o["traceback"] for o in objs if "modules load with the scripts" in o.get("traceback", ""))
    assert "require 'lazy'" in tb and "handlers/ops.lua" in tb, tb
    # required at load (the top of the handler's module), the same module serves
    path = g.script("handlers/ops.lua")
    with open(path, encoding="utf-8") as f:
        src = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write('local lazy = require "lazy"\n' + src.replace('require("lazy").v', "lazy.v"))
    st, _, js, raw = g.reload()
    assert st == 200, raw
    st, _, js, raw = g.request("GET", "/healthz")
    assert st == 200 and js == {"status": "one"}, raw
    # and an edit of it waits for the next reload, on every worker
    with open(g.script("lazy.lua"), "w", encoding="utf-8") as f:
        f.write('return { v = "two" }\n')
    assert {g.request("GET", "/healthz")[2]["status"] for _ in range(6)} == {"one"}
    st, _, js, raw = g.reload()
    assert st == 200, raw
    assert {g.request("GET", "/healthz")[2]["status"] for _ in range(6)} == {"two"}


def test_admin_reload_outcomes_are_logged_and_a_busy_one_says_when_to_retry(gateway):
    """A reload through the endpoint is logged as a SIGHUP's or the watch's
    is; one refused because another was building says so in the message and
    with Retry-After (the 422 TGW.0001 of the contract stands), so automation
    can tell "try again" from a broken script without parsing text."""
    g = gateway
    path = g.script("handlers/ops.lua")
    with open(path, encoding="utf-8") as f:
        good = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(good + "\nthis is not lua\n")
    st, h, js, raw = g.reload()
    assert st == 422 and "Retry-After" not in h, raw
    objs = g.wait_logged(lambda os_: any(o.get("msg") == "reload (admin) failed" for o in os_))
    failed = [o for o in objs if o.get("msg") == "reload (admin) failed"]
    assert failed and "handlers/ops.lua:" in failed[0]["error"], failed
    # each build slow (0.3 s a worker), two asked at once: on two workers,
    # one finds the other building (on one worker they queue, and both pass)
    with open(path, "w", encoding="utf-8") as f:
        f.write("local t0 = os.clock() while os.clock() - t0 < 0.3 do end\n" + good)
    busy = None
    for _ in range(20):
        results = []
        threads = [threading.Thread(target=lambda: results.append(g.reload())) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r[0] for r in results) in ([200, 200], [200, 422]), [r[3] for r in results]
        busy = next((r for r in results if r[0] == 422), None)
        if busy:
            break
    assert busy, "two reloads at once never met in 20 tries"
    st, h, js, raw = busy
    assert js["error"]["code"] == "TGW.0001", raw
    assert js["error"]["message"] in ("another reload is running; try again",
                                      "a reload is still settling; try again"), raw
    assert h["Retry-After"] == "1", dict(h)
    objs = g.wait_logged(lambda os_: sum(o.get("msg") == "reload (admin) ok" for o in os_) >= 1)
    assert any(o.get("msg") == "reload (admin) ok" for o in objs)


def test_an_error_object_that_is_not_a_string_is_placed_where_it_was_raised(gateway):
    """error({}) or an object with __tostring carries no position: the log
    (a request's traceback) and a refused reload name the file and line
    that raised it, not the router that re-raised it, or nothing."""
    g = gateway
    path = g.script("handlers/ops.lua")
    with open(path, encoding="utf-8") as f:
        good = f.read()
    rewrite_health(g, '  error(setmetatable({}, {__tostring = function() return "custom" end}))')
    with open(path, encoding="utf-8") as f:
        line = f.read().split("\n").index(
            '  error(setmetatable({}, {__tostring = function() return "custom" end}))') + 1
    assert g.reload()[0] == 200
    st, _, js, raw = g.request("GET", "/healthz")
    assert st == 500, raw
    objs = g.wait_logged(lambda os_: any(": custom" in o.get("traceback", "") for o in os_))
    tb = next(o["traceback"] for o in objs if ": custom" in o.get("traceback", ""))
    # (a long path is shortened with "..." as Lua's own positions are)
    assert tb.split("\n")[0].endswith("/handlers/ops.lua:%d: custom" % line), tb
    # at load: a reload refused naming the file and line
    with open(path, "w", encoding="utf-8") as f:
        f.write("error({})\n" + good)
    st, _, js, raw = g.reload()
    assert st == 422, raw
    assert re.match(r"^\S*/handlers/ops\.lua:1: table: 0x[0-9a-f]+$", js["error"]["message"]), raw
