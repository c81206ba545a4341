"""Hot reload while requests are in flight: a request is served wholly by
the generation it started in, and no request fails because of a reload."""
import os
import re
import signal
import threading
import time

from conftest import JSON_CT


def rewrite_health(g, body_lua):
    path = g.script("handlers/ops.lua")
    with open(path, encoding="utf-8") as f:
        src = f.read()
    new, n = re.subn(r"function ops\.health\(\)\n.*?\nend\n",
                     "function ops.health()\n" + body_lua + "\nend\n", src, flags=re.S)
    assert n == 1, "ops.health not found in the script copy"
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


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
    st, h, js, _ = g.reload()
    assert st == 422 and h["Content-Type"] == JSON_CT
    assert js["error"]["code"] == "TGW.0001"
    assert re.search(r"ops\.lua:\d+:", js["error"]["message"]), js
    st, _, js, _ = g.request("GET", "/healthz", token=None)
    assert st == 200 and js == {"status": "ok"}
    assert g.status()["generation"] == gen0
