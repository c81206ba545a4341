"""--workers N (issue: both cores): several event loops in one process,
each with its own Lua state and SQLite connection, sharing the tag index.
A worker is recognised by the first 16 hex digits of X-Request-Id (each
loop draws its own random prefix); the kernel spreads connections over the
loops (SO_REUSEPORT), so enough keep-alive connections reach every one."""
import http.client
import json
import os
import socket
import subprocess
import time

from conftest import BIN, SLOWDOWN, Gateway, ims_error
from test_ops import replace_in


class Conn:
    """One keep-alive connection: every request on it is served by the same
    worker, whose prefix is learnt from the first answer."""

    def __init__(self, g):
        self.g = g
        self.c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
        self.worker = None

    def request(self, method, path, body=None):
        hdrs = {"X-Auth-Token": self.g.token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        self.c.request(method, path, body=data, headers=hdrs)
        r = self.c.getresponse()
        raw = r.read()
        worker = r.headers["X-Request-Id"][:16]
        assert self.worker in (None, worker), "a keep-alive connection changed worker"
        self.worker = worker
        return r.status, (json.loads(raw) if raw else None)

    def close(self):
        self.c.close()


def conns_by_worker(g, workers, per, tries=96):
    """{worker prefix: [Conn] * per} for each of `workers` loops."""
    found, spare = {}, []
    for _ in range(tries):
        c = Conn(g)
        st, _ = c.request("GET", "/healthz")
        assert st == 200
        mine = found.setdefault(c.worker, [])
        (mine if len(mine) < per else spare).append(c)
        if len(found) == workers and all(len(v) == per for v in found.values()):
            break
    for c in spare:
        c.close()
    assert len(found) == workers and all(len(v) == per for v in found.values()), \
        "only %s connections per worker over %d tries" % ({w: len(v) for w, v in found.items()}, tries)
    return found


def slow_policy(g, name, seconds, prelude=""):
    """policies/<name>.lua: tms's rules under another name, spending
    `seconds` of CPU at every load (after `prelude`): sorted after ims.lua,
    a window in every build between reading ims.lua and the next worker's."""
    with open(os.path.join(g.policies, "tms.lua"), encoding="utf-8") as f:
        tms = f.read()
    with open(os.path.join(g.policies, name + ".lua"), "w", encoding="utf-8") as f:
        f.write(prelude + "local t0 = os.clock() while os.clock() - t0 < %s do end\n" % seconds
                + tms.replace('name = "tms"', 'name = "%s"' % name, 1))


def conns_per_worker(g, workers, tries=64):
    """{worker prefix: Conn}, one connection for each of `workers` loops."""
    return {w: v[0] for w, v in conns_by_worker(g, workers, 1, tries).items()}


def test_status_reports_the_workers(gateway_factory):
    for n in (1, 2, 3):
        g = gateway_factory(extra_args=["--workers", str(n)])
        st, _, js, raw = g.request("GET", "/admin/status")
        assert st == 200, raw
        assert js["workers"] == n
        listening = [o for o in g.log_objects() if o.get("msg") == "listening"]
        assert listening and listening[0]["workers"] == n
        g.kill9()


def test_every_worker_serves(gateway_factory):
    g = gateway_factory(extra_args=["--workers", "3"])
    conns = conns_per_worker(g, 3)
    assert len(set(conns)) == 3
    for c in conns.values():
        c.close()


def test_a_write_on_one_worker_is_seen_by_the_other_at_once(gateway_factory):
    """The index is shared and fed before the write is acknowledged: the
    next request on the other loop finds it, by id and by tag query."""
    g = gateway_factory(extra_args=["--workers", "2"])
    a, b = conns_per_worker(g, 2).values()
    p = g.project
    query = "/v2/%s/images/resource_instances/action" % p
    for i in range(20):
        writer, reader = (a, b) if i % 2 == 0 else (b, a)
        st, js = writer.request("POST", "/v2/images", {"name": "w-%d" % i})
        assert st == 201, js
        iid = js["id"]
        st, _ = writer.request("POST", "/v2/%s/images/%s/tags/action" % (p, iid),
                               {"action": "create", "tags": [{"key": "round", "value": str(i)}]})
        assert st == 204
        st, js = reader.request("GET", "/v2/%s/images/%s/tags" % (p, iid))
        assert st == 200 and js == {"tags": [{"key": "round", "value": str(i)}]}, js
        st, js = reader.request("POST", query, {"action": "filter",
                                                "tags": [{"key": "round", "values": [str(i)]}]})
        assert st == 200 and js["total_count"] == 1, js
        assert js["resources"][0]["resource_id"] == iid
        st, _ = reader.request("DELETE", "/v2/images/%s" % iid)
        assert st == 204
        st, js = writer.request("POST", query, {"action": "count",
                                                "tags": [{"key": "round", "values": [str(i)]}]})
        assert st == 200 and js["total_count"] == 0, js
    a.close()
    b.close()


def test_a_filter_page_agrees_with_its_total_while_another_worker_writes(gateway_factory):
    """Images of a tag are deleted and created while others page through
    them, every request on a new connection (so on either worker).  The
    index (fed after each commit) and a reader's SQLite snapshot can
    straddle another worker's commit, and a page then lost an image that
    total_count still counted: helper-17's probe saw 4 in ~6,000 queries
    in each 6 s run.  Every answer must list exactly min(total, limit)
    images, each with the tag."""
    import threading
    g = gateway_factory(extra_args=["--workers", "2"])
    query = "/v2/%s/images/resource_instances/action" % g.project
    body = {"action": "filter", "limit": 1000, "tags": [{"key": "env", "values": ["prod"]}]}
    tagged = {"name": "r", "image_tags": [{"key": "env", "value": "prod"}]}
    ids = [g.create_image(**tagged) for _ in range(150)]
    stop = time.time() + 6
    bad, queries = [], []

    def writer():
        for iid in ids:
            if time.time() > stop:
                break
            st, _, _, raw = g.request("DELETE", "/v2/images/%s" % iid)
            assert st == 204, raw
            g.create_image(**tagged)

    def reader():
        while time.time() < stop:
            st, _, js, raw = g.request("POST", query, body)
            queries.append(1)
            if st != 200 or len(js["resources"]) != min(js["total_count"], 1000):
                bad.append((st, js and js.get("total_count"), js and len(js.get("resources", []))))
            elif any(r["tags"] != [{"key": "env", "value": "prod"}] for r in js["resources"]):
                bad.append(("tags", js))

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(queries) > 100, len(queries)
    assert not bad, bad[:5]


def test_a_filter_page_lists_tags_that_match_while_another_worker_retags(gateway_factory):
    """Images flip between env=a and env=b while others ask for env=a and
    for NOT env=a, every request on a new connection (so on either worker).
    A page's ids come from the index and its tags from the worker's SQLite
    snapshot; when those straddled another worker's commit, a page listed
    an image whose tags contradict the query (helper-66: 4 in ~5,000
    queries).  Every listed image's tags must satisfy its query."""
    import random
    import threading
    g = gateway_factory(extra_args=["--workers", "2"])
    query = "/v2/%s/images/resource_instances/action" % g.project
    ids = [g.create_image(name="f", image_tags=[{"key": "env", "value": "a"}]) for _ in range(200)]
    bodies = [({"action": "filter", "limit": 1000, "tags": [{"key": "env", "values": ["a"]}]}, "a"),
              ({"action": "filter", "limit": 1000, "not_tags": [{"key": "env", "values": ["a"]}]}, "b")]
    stop = time.time() + 8 * SLOWDOWN
    bad, queries, flips = [], [], []

    def writer(seed):
        r = random.Random(seed)
        while time.time() < stop:
            iid = r.choice(ids)
            for value in ("b", "a"):
                st, _, _, raw = g.request("POST", "/v2/%s/images/%s/tags/action" % (g.project, iid),
                                          {"action": "create", "tags": [{"key": "env", "value": value}]})
                assert st == 204, raw
                flips.append(1)

    def reader(seed):
        r = random.Random(seed)
        while time.time() < stop:
            body, want = r.choice(bodies)
            st, _, js, raw = g.request("POST", query, body)
            queries.append(1)
            if st != 200 or len(js["resources"]) != min(js["total_count"], 1000):
                bad.append((st, raw[:200]))
                continue
            wrong = [res for res in js["resources"] if res["tags"] != [{"key": "env", "value": want}]]
            if wrong:
                bad.append((body, wrong[:2]))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)] + \
              [threading.Thread(target=reader, args=(10 + i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(queries) > 200 and len(flips) > 200, (len(queries), len(flips))
    assert not bad, (len(bad), len(queries), bad[:3])


def test_reload_reaches_every_worker_before_its_next_request(gateway_factory):
    g = gateway_factory(extra_args=["--workers", "2"])
    conns = conns_per_worker(g, 2)
    gens = {w: c.request("GET", "/admin/status")[1]["generation"] for w, c in conns.items()}
    assert len(set(gens.values())) == 1
    first = next(iter(conns.values()))
    st, js = first.request("POST", "/admin/reload")
    assert st == 200, js
    for w, c in conns.items():
        st, js = c.request("GET", "/admin/status")
        assert st == 200 and js["generation"] == gens[w] + 1, (w, js["generation"])
    # a policy change is served by both loops after one reload
    replace_in(os.path.join(g.policies, "ims.lua"), "max_tags = 10,", "max_tags = 1,")
    st, js = first.request("POST", "/admin/reload")
    assert st == 200, js
    for c in conns.values():
        st, js = c.request("POST", "/v2/images", {"name": "two-tags", "image_tags": [
            {"key": "a", "value": "1"}, {"key": "b", "value": "2"}]})
        assert st == 400, js
        ims_error(js, "IMG.0116")
    for c in conns.values():
        c.close()


def test_a_failed_reload_changes_no_worker(gateway_factory):
    g = gateway_factory(extra_args=["--workers", "2"])
    conns = conns_per_worker(g, 2)
    before = {w: c.request("GET", "/admin/status")[1]["generation"] for w, c in conns.items()}
    with open(g.script("router.lua"), "a", encoding="utf-8") as f:
        f.write("\nthis is not lua\n")
    st, js = next(iter(conns.values())).request("POST", "/admin/reload")
    assert st == 422, js
    for w, c in conns.items():
        st, js = c.request("GET", "/admin/status")
        assert st == 200 and js["generation"] == before[w]
    for c in conns.values():
        c.close()


def test_a_reload_during_another_is_refused_at_once(gateway_factory):
    """A reload while another worker's reload is still building is refused
    (422, try again) instead of stalling its worker's loop until the first
    is done; the first one lands."""
    import threading
    g = gateway_factory(extra_args=["--workers", "2"])
    conns = conns_per_worker(g, 2)
    (w1, c1), (w2, c2) = list(conns.items())
    gen = c1.request("GET", "/admin/status")[1]["generation"]
    with open(os.path.join(g.policies, "ims.lua"), encoding="utf-8") as f:
        text = f.read()
    with open(os.path.join(g.policies, "ims.lua"), "w", encoding="utf-8") as f:
        f.write("local t0 = os.clock() while os.clock() - t0 < 0.6 do end\n" + text)
    first = {}
    t = threading.Thread(target=lambda: first.update(r=c1.request("POST", "/admin/reload")))
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    st, js = c2.request("POST", "/admin/reload")
    assert st == 422 and "another reload is running" in js["error"]["message"], js
    assert time.monotonic() - t0 < 0.3 * SLOWDOWN
    t.join()
    assert first["r"][0] == 200, first
    for c in conns.values():
        assert c.request("GET", "/admin/status")[1]["generation"] == gen + 1
        c.close()


def test_a_file_edited_during_a_reload_reaches_every_worker_alike(gateway_factory):
    """A reload builds each worker's state in turn; each build read the
    files again, so one edited between two builds left the workers on
    different versions under one generation (an audit saw it with
    --watch).  Every build now gets the bytes the first one read: the edit
    waits for the next reload."""
    import hashlib
    import threading
    g = gateway_factory(extra_args=["--workers", "2", "--script-time-ms", "3000"])
    conns = conns_per_worker(g, 2)
    first = next(iter(conns.values()))
    slow_policy(g, "zz_slow", 0.8)
    ims = os.path.join(g.policies, "ims.lua")
    replace_in(ims, "max_tags = 10,", "max_tags = 3,")
    with open(ims, "rb") as f:
        version_a = hashlib.sha256(f.read()).hexdigest()
    done = {}
    t = threading.Thread(target=lambda: done.update(r=first.request("POST", "/admin/reload")))
    t.start()
    time.sleep(0.4)                     # the first build spins in zz_slow.lua
    replace_in(ims, "max_tags = 3,", "max_tags = 4,")
    t.join()
    assert done["r"][0] == 200, done
    for w, c in conns.items():
        st, js = c.request("GET", "/admin/status")
        files = {os.path.basename(f["path"]): f["sha256"] for f in js["files"]}
        assert files["ims.lua"] == version_a, (w, files["ims.lua"], version_a)
        st, js = c.request("POST", "/v2/images", {"name": "four", "image_tags": [
            {"key": k, "value": "1"} for k in "abcd"]})
        assert st == 400, (w, js)        # max_tags 3 on both, not 4 on one
        ims_error(js, "IMG.0116")
        c.close()


def test_a_module_created_during_a_reload_reaches_no_worker_yet(gateway_factory):
    """The same for a file the first build did not find (an optional
    module behind pcall(require, ...)): the next build must not find it
    either, or one worker runs it and the other not."""
    import threading
    g = gateway_factory(extra_args=["--workers", "2", "--script-time-ms", "3000"])
    conns = conns_per_worker(g, 2)
    first = next(iter(conns.values()))
    slow_policy(g, "zz_opt", 0.8, prelude="pcall(require, 'optmod')\n")
    done = {}
    t = threading.Thread(target=lambda: done.update(r=first.request("POST", "/admin/reload")))
    t.start()
    time.sleep(0.4)                     # the first build spins, optmod not found
    with open(g.script("optmod.lua"), "w", encoding="utf-8") as f:
        f.write("return {}\n")
    t.join()
    assert done["r"][0] == 200, done
    for w, c in conns.items():
        st, js = c.request("GET", "/admin/status")
        loaded = [os.path.basename(f["path"]) for f in js["files"]]
        assert "zz_opt.lua" in loaded and "optmod.lua" not in loaded, (w, loaded)
        c.close()


def test_the_import_limit_holds_across_workers(gateway_factory):
    """Submits race on both loops while the jobs run slowly; the
    per-project limit (5) is counted inside the write transaction, so
    exactly 5 are taken, whichever loop each submit reached."""
    import threading
    from test_import import put_object, slow_down
    g = gateway_factory(extra_args=["--workers", "2"])
    slow_down(g)
    url = put_object(g, "slow", "slow.zvhd2", 200 * 1024)     # minutes of steps
    conns = list(conns_per_worker(g, 2).values())
    body = {"name": "race", "os_version": "CentOS 7.9 64bit", "image_url": url, "min_disk": 40}
    results = []
    go = threading.Barrier(len(conns))

    def submit(c):
        go.wait()
        for _ in range(6):
            results.append(c.request("POST", "/v2/cloudimages/quickimport/action", body))

    ts = [threading.Thread(target=submit, args=(c,)) for c in conns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = [js for st, js in results if st == 200]
    refused = [js for st, js in results if st == 400]
    assert len(ok) == 5 and len(refused) == 7, results
    for js in refused:
        ims_error(js, "IMG.0194")
    st, _, js, _ = g.request("GET", "/admin/status")
    assert js["jobs"]["INIT"] + js["jobs"]["RUNNING"] == 5, js["jobs"]
    for c in conns:
        c.close()


def test_a_port_in_use_is_refused_not_shared(gateway_factory, tmp_path):
    """Each worker binds with SO_REUSEPORT; a second gateway on the same
    port must still fail, not take half of the first one's connections."""
    g = gateway_factory(extra_args=["--workers", "2"])
    other = Gateway(str(tmp_path / "other"), listen="127.0.0.1:%d" % g.port,
                    extra_args=["--workers", "2"])
    p = subprocess.run(other.command(), capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "cannot listen" in p.stderr, p.stderr
    # a plain listener on a port refuses a gateway too
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        third = Gateway(str(tmp_path / "third"), listen="127.0.0.1:%d" % s.getsockname()[1],
                        extra_args=["--workers", "2"])
        p = subprocess.run(third.command(), capture_output=True, text=True, timeout=20)
        assert p.returncode != 0 and "cannot listen" in p.stderr, p.stderr
    finally:
        s.close()
    assert g.request("GET", "/healthz")[0] == 200


def test_sigterm_stops_every_worker(gateway_factory):
    g = gateway_factory(extra_args=["--workers", "3"])
    conns = conns_per_worker(g, 3)
    for c in conns.values():
        c.close()
    t0 = time.monotonic()
    g.proc.terminate()
    assert g.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 5
    assert any(o.get("msg") == "stopped" for o in g.log_objects())
    assert BIN


def test_waiting_for_another_workers_write_is_not_the_scripts_time(gateway_factory):
    """One worker holds the write lock for its whole loop pass; a second
    worker's write waits for it.  That wait must not count against the
    waiting request's script budget (it used to end in 503s)."""
    import threading
    g = gateway_factory(extra_args=["--workers", "2", "--script-time-ms", "150"])
    # each create spends 60 ms of wall clock in its script after its write,
    # while its worker holds the write lock
    replace_in(g.script("handlers/images.lua"), "return shape.ok(201,",
           "do local t = gw.now_ms() while gw.now_ms() - t < 60 do end end\n  return shape.ok(201,")
    st, _, _, raw = g.reload()
    assert st == 200, raw
    conns = [c for v in conns_by_worker(g, 2, 2).values() for c in v]
    results = []

    def create(c):
        for i in range(5):
            results.append(c.request("POST", "/v2/images", {"name": "slow-%d" % i})[0])

    ts = [threading.Thread(target=create, args=(c,)) for c in conns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results.count(201) == 20, results
    for c in conns:
        c.close()


def test_a_reload_of_many_workers_does_not_use_up_the_callers_budget(gateway_factory):
    """Building a generation for every worker takes longer than a small
    script budget; the reload is the gateway's work, so it answers 200."""
    g = gateway_factory(extra_args=["--workers", "8", "--script-time-ms", "20"])
    for _ in range(3):
        st, _, js, raw = g.reload()
        assert st == 200, raw
    st, _, js, _ = g.request("GET", "/admin/status")
    assert st == 200 and js["workers"] == 8


def test_init_cannot_touch_storage(gateway_factory):
    """A reload builds every worker's state on the reloading thread; a
    script's init that reaches for storage is refused with a clear error
    and the old generation keeps serving."""
    g = gateway_factory(extra_args=["--workers", "2"])
    before = g.request("GET", "/admin/status")[2]["generation"]
    replace_in(g.script("main.lua"), "function main.init(ctx)\n", "function main.init(ctx)\n  gw.status()\n")
    st, _, js, raw = g.reload()
    assert st == 422, raw
    assert "not available while the scripts load" in raw.decode(), raw
    st, _, js, _ = g.request("GET", "/admin/status")
    assert st == 200 and js["generation"] == before


def test_a_stray_sigalrm_is_ignored(gateway_factory):
    """SIGALRM carries the script watchdog's interrupts; one sent from
    outside (kill -ALRM) changes nothing."""
    import signal
    g = gateway_factory(extra_args=["--workers", "2"])
    for _ in range(3):
        g.proc.send_signal(signal.SIGALRM)
    time.sleep(0.2)
    assert g.proc.poll() is None
    assert g.request("GET", "/healthz")[0] == 200
    assert g.create_image()


def test_a_queued_sigalrm_from_another_process_is_ignored(gateway_factory):
    """sigqueue(2) can attach any pointer to a signal; the watchdog's
    handler must not follow one that another process sent."""
    import ctypes
    import signal

    class Sigval(ctypes.Union):
        _fields_ = [("sival_int", ctypes.c_int), ("sival_ptr", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, Sigval]
    g = gateway_factory(extra_args=["--workers", "2"])
    for _ in range(3):
        assert libc.sigqueue(g.proc.pid, signal.SIGALRM, Sigval(sival_ptr=0x1234)) == 0
    time.sleep(0.2)
    assert g.proc.poll() is None, "the gateway died on a foreign queued SIGALRM"
    assert g.request("GET", "/healthz")[0] == 200
