"""Group commit (src/http.c, src/store.c): every worker's writes run on one
writer connection inside one open transaction, each request in its own
savepoint; a worker ending a loop pass commits the group (unless another
worker's commit covered it), syncs the WAL, then answers.  API.md §0: a 2xx
answer to a write means the write is durable; a rejected request changes
nothing; each request is atomic."""
import http.client
import json
import os
import threading
import time
import uuid

import pytest

JSON = {"Content-Type": "application/json"}


class Client:
    """One keep-alive connection of its own (one per thread)."""

    def __init__(self, g):
        self.g = g
        self.conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=30)

    def request(self, method, path, body=None):
        headers = dict(JSON, **{"X-Auth-Token": self.g.token})
        data = json.dumps(body) if body is not None else None
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)

    def create_image(self, tags=()):
        st, js = self.request("POST", "/v2/images", {"name": "gc-" + uuid.uuid4().hex[:8],
                                                      "image_tags": list(tags)})
        assert st == 201, js
        return js["id"]

    def batch(self, image_id, action, tags):
        return self.request("POST", "/v2/%s/images/%s/tags/action" % (self.g.project, image_id),
                            {"action": action, "tags": tags})

    def close(self):
        self.conn.close()


def run_threads(g, n, fn):
    """Runs fn(i, client) in n threads started together; re-raises the first error."""
    errors = []
    barrier = threading.Barrier(n)

    def body(i):
        c = None
        try:
            c = Client(g)
            barrier.wait(timeout=30)
            fn(i, c)
        except Exception as e:          # collected, re-raised below
            errors.append("thread %d: %r" % (i, e))
            barrier.abort()
        finally:
            if c:
                c.close()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


def commits(g):
    return g.metric("tagway_sqlite_commits_total")


def as_tags(d):
    return [{"key": k, "value": v} for k, v in sorted(d.items())]


THREADS, IMAGES_PER_THREAD, WRITES_PER_THREAD = 32, 4, 20


def concurrent_writers(g):
    """32 threads, own connections: 4 image creates then 20 batch creates
    each (on the thread's own images).  Returns (expected tags, writes)."""
    images = [[] for _ in range(THREADS)]
    expected = {}
    lock = threading.Lock()

    def writer(t, c):
        mine = [c.create_image() for _ in range(IMAGES_PER_THREAD)]
        images[t] = mine
        want = {i: {} for i in mine}
        for w in range(WRITES_PER_THREAD):
            img = mine[w % IMAGES_PER_THREAD]
            key, value = "k%d" % (w // IMAGES_PER_THREAD), "t%d-w%d" % (t, w)
            st, js = c.batch(img, "create", [{"key": key, "value": value},
                                             {"key": "owner", "value": "t%d" % t}])
            assert st == 204, (st, js)
            want[img][key] = value
            want[img]["owner"] = "t%d" % t
        with lock:
            expected.update(want)

    run_threads(g, THREADS, writer)
    return expected, THREADS * (IMAGES_PER_THREAD + WRITES_PER_THREAD)


def test_concurrent_acknowledged_writes_survive_sigkill(gateway):
    g = gateway
    expected, writes = concurrent_writers(g)
    assert len(expected) == THREADS * IMAGES_PER_THREAD
    # every acknowledged write must be on disk: kill at once, no shutdown
    g.kill9()
    assert g.proc.returncode == -9
    g.start()
    for image_id, tags in expected.items():
        assert g.image_tags(image_id) == as_tags(tags), image_id
    status = g.status()
    assert status["images"] == len(expected)
    assert status["tags"] == sum(len(t) for t in expected.values())


def test_commits_are_grouped_under_concurrency(gateway):
    g = gateway
    before = commits(g)
    _, writes = concurrent_writers(g)
    after = commits(g)
    made = after - before
    assert made > 0, "no commit counted for %d writes" % writes
    assert made < writes, "%d commits for %d concurrent write requests: nothing was grouped" % (made, writes)


def store_checks_only(g):
    """Edits the gateway's copy of handlers/tags.lua so that the tag quota and
    the image's existence are checked only inside the store's transaction
    (after the request's savepoint has been opened and written to), with no
    expected tags passed to gw.tags_apply."""
    path = g.script(os.path.join("handlers", "tags.lua"))
    with open(path, encoding="utf-8") as f:
        src = f.read()
    for old, new in (
            ('  if not map then\n    fail(404, "IMG.0027"',
             '  if not map then\n    do return {}, 0 end\n    fail(404, "IMG.0027"'),
            # no expected tags either: the store alone decides
            ("pol.max_tags, current, seq)", "pol.max_tags)"),
            ("  if count > pol.max_tags then\n    fail(400, \"IMG.0116\", string.format(\"%s: the image would",
             "  if false and count > pol.max_tags then\n    fail(400, \"IMG.0116\", string.format(\"%s: the image would")):
        assert src.count(old) == 1, old
        src = src.replace(old, new)
    with open(path, "w", encoding="utf-8") as f:
        f.write(src)
    st, _, _, raw = g.reload()
    assert st == 200, raw


@pytest.mark.parametrize("checks", ["shipped-scripts", "store-checks-only"])
def test_failing_requests_in_a_group_do_not_affect_the_others(gateway, checks):
    g = gateway
    if checks == "store-checks-only":
        store_checks_only(g)
    setup = Client(g)
    nine = {"q%d" % i: "v0" for i in range(9)}
    full = [setup.create_image(as_tags(nine)) for _ in range(12)]   # 9 tags each
    good = [[setup.create_image() for _ in range(2)] for _ in range(12)]
    setup.close()
    images_before = g.status()["images"]
    outcomes = {"good": 0, "quota": 0, "missing": 0, "overwrite": 0, "bad_tag": 0}
    lock = threading.Lock()
    ROUNDS = 10

    def count(kind):
        with lock:
            outcomes[kind] += 1

    def worker(i, c):
        kind = ("good", "quota", "overwrite", "missing", "bad_tag")[i % 5]
        for r in range(ROUNDS):
            if kind == "good":            # adds g<r> on one of its two images
                img = good[i // 5][r % 2]
                st, js = c.batch(img, "create", [{"key": "g%d" % r, "value": "w%d" % i}])
                assert st == 204, (st, js)
            elif kind == "quota":         # overwrite q0 + two new keys on a 9-tag image: 11 > 10
                img = full[i // 5]
                st, js = c.batch(img, "create", [{"key": "q0", "value": "bad"},
                                                 {"key": "new%da" % r, "value": "x"},
                                                 {"key": "new%db" % r, "value": "x"}])
                assert st == 400 and js["error"]["code"] == "IMG.0116", (st, js)
            elif kind == "overwrite":     # same images, overwrites only: stays at 9 tags
                img = full[i // 5]
                st, js = c.batch(img, "create", [{"key": "q%d" % (r % 9), "value": "w%d" % r}])
                assert st == 204, (st, js)
            elif kind == "missing":       # unknown images: create and delete
                action = "delete" if r % 2 and checks == "shipped-scripts" else "create"
                st, js = c.batch(str(uuid.uuid4()), action, [{"key": "lost", "value": "x"}])
                assert st == 404 and js["error"]["code"] == "IMG.0027", (st, js)
            else:                         # a valid tag then an invalid one: nothing applied
                img = good[(i // 5) % len(good)][0]
                st, js = c.batch(img, "create", [{"key": "half", "value": "x"},
                                                 {"key": "bad key", "value": "x"}])
                assert st == 400 and js["error"]["code"] == "IMG.0115", (st, js)
            count(kind)

    n = 60                     # 12 of each kind
    before = commits(g)
    run_threads(g, n, worker)
    made = commits(g) - before
    assert outcomes == {k: 12 * ROUNDS for k in outcomes}, outcomes

    # expected state: good images hold their thread's keys; 9-tag images hold
    # the overwrites (last value per key) and nothing of the quota failures
    want = {}
    for i in range(n):
        if i % 5 == 0:
            for r in range(ROUNDS):
                want.setdefault(good[i // 5][r % 2], {})["g%d" % r] = "w%d" % i
    for img in full:
        want[img] = dict(nine)
    for i in range(n):
        if i % 5 == 2:
            img = full[i // 5]
            for r in range(ROUNDS):
                want[img]["q%d" % (r % 9)] = "w%d" % r

    def check_all():
        for img, tags in want.items():
            assert g.image_tags(img) == as_tags(tags), img
        # the in-memory index saw no trace of the failed requests
        for body in ({"action": "count", "tags_any": [{"key": "q0", "values": ["bad"]}]},
                     {"action": "count", "tags_any": [{"key": "new%da" % r, "values": []}
                                                      for r in range(ROUNDS)]},
                     {"action": "count", "tags": [{"key": "half", "values": []}]},
                     {"action": "count", "tags": [{"key": "lost", "values": []}]}):
            st, _, js, raw = g.request("POST", "/v2/%s/images/resource_instances/action" % g.project, body)
            assert st == 200 and js == {"total_count": 0}, (body, raw)
        st, _, js, raw = g.request("POST", "/v2/%s/images/resource_instances/action" % g.project,
                                   {"action": "count", "tags": [{"key": "q0", "values": ["w9"]}]})
        assert js == {"total_count": len(full)}, raw
        status = g.status()
        assert status["images"] == images_before
        assert status["tags"] == sum(len(t) for t in want.values())

    check_all()
    g.kill9()
    g.start()
    check_all()
    assert made < 12 * ROUNDS * 2, "%d commits: the concurrent requests were not grouped" % made


def test_every_acknowledged_write_waited_for_a_sync(gateway):
    """COMMIT does not sync (synchronous=NORMAL); the WAL sync that follows
    it must come before the answer.  One write at a time: each answer needs
    a sync made after its own commit, so the syncs counted grow at least as
    fast as the answers (a skipped sync would show here, not in a kill -9
    test: the page cache survives a killed process)."""
    g = gateway
    c = Client(g)
    image = c.create_image()
    syncs, before = g.metric("tagway_sqlite_syncs_total"), commits(g)
    n = 15
    for i in range(n):
        st, js = c.batch(image, "create", [{"key": "k", "value": "v%d" % i}])
        assert st == 204, (st, js)
    c.close()
    assert g.metric("tagway_sqlite_syncs_total") - syncs >= n
    assert commits(g) - before >= n


def test_read_check_write_is_atomic_across_workers(gateway):
    """An immutable key set by many requests at once, on both workers: the
    overwrite rule is checked against the tags read after gw.write_begin,
    so exactly one request sets it and every other one is refused (a check
    against a snapshot older than another worker's uncommitted write would
    let several through, each answered 204)."""
    g = gateway
    path = os.path.join(g.policies, "ims.lua")
    with open(path, encoding="utf-8") as f:
        src = f.read()
    old = 'overwrite = { ["*"] = "replace" },'
    assert src.count(old) == 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(src.replace(old, 'overwrite = { ["*"] = "replace", owner = "immutable" },'))
    st, _, _, raw = g.reload()
    assert st == 200, raw
    setup = Client(g)
    images = [setup.create_image() for _ in range(4)]
    setup.close()
    results = {img: [] for img in images}
    lock = threading.Lock()

    def claim(i, c):
        for img in images:
            st, js = c.batch(img, "create", [{"key": "owner", "value": "t%d" % i}])
            with lock:
                results[img].append((i, st, js))

    run_threads(g, 24, claim)
    for img, got in results.items():
        won = [i for i, st, _ in got if st == 204]
        assert len(won) == 1, (img, sorted(won))
        for i, st, js in got:
            if st != 204:
                assert st == 400 and js["error"]["code"] == "IMG.0115", (st, js)
                assert "immutable" in js["error"]["message"], js
        assert g.image_tags(img) == [{"key": "owner", "value": "t%d" % won[0]}]


def test_a_refused_write_leaves_the_database_writable_for_others(gateway):
    """A request that takes the writer and then fails (here a delete of a
    key the image does not have: gw.write_begin, read, 404) must not leave
    the group's transaction, and so SQLite's write lock, open: the CLI
    (another process) must be able to write at once."""
    from conftest import run_cli
    g = gateway
    c = Client(g)
    image = c.create_image([{"key": "a", "value": "1"}])
    st, js = c.request("DELETE", "/v2/%s/images/%s/tags/nokey" % (g.project, image))
    assert st == 404, (st, js)
    c.close()
    t0 = time.monotonic()
    r = run_cli("credentials", "create", "--db", g.db, "--project", g.project, "--role", "member")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 3, "the CLI waited for SQLite's write lock"
    # and the server still writes afterwards
    c = Client(g)
    st, js = c.batch(image, "create", [{"key": "b", "value": "2"}])
    assert st == 204, (st, js)
    c.close()
