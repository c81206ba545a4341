"""Crash safety (API.md §0 "a 2xx answer to a write means the write is
durable", §7 SIGTERM): the server is killed with SIGKILL at random moments
(fixed seed) while several threads create images and batch-create tags;
after each kill the database passes PRAGMA integrity_check, every
acknowledged write is in it, and after a restart the tag index answers
exactly what SQLite holds.  SIGTERM under the same load exits 0 with every
acknowledged write stored."""
import http.client
import json
import random
import sqlite3
import threading
import time

SEED = 20261122
THREADS = 4
KILL_CYCLES = 4
FIRST_KEY = "k0"
BATCH_KEYS = [["k1", "k2", "k3"], ["k4", "k5", "k6"], ["k7", "k8", "k9"]]
ALL_KEYS = [FIRST_KEY] + [k for batch in BATCH_KEYS for k in batch]
VALUES = ["v0", "v1", "v2", "v3", "v4"]


def _post(port, path, body, token, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", "X-Auth-Token": token})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, raw
    finally:
        conn.close()


class Load:
    """THREADS writers; each acknowledged write is recorded as
    (image id, {key: value}) in self.acked."""

    def __init__(self, g, seed):
        self.g = g
        self.port = g.port
        self.token = g.token
        self.project = g.project
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = []          # (image_id, {key: value})
        self.sent = 0
        self.errors = 0
        self.unexpected = []
        self.threads = [threading.Thread(target=self._run, args=(self.rng.random(),), daemon=True)
                        for _ in range(THREADS)]

    def _ack(self, iid, tags):
        with self.lock:
            self.acked.append((iid, dict(tags)))

    def _run(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            try:
                first = {FIRST_KEY: rng.choice(VALUES)}
                self.sent += 1
                st, raw = _post(self.port, "/v2/images",
                                {"name": "crash-%08x" % rng.getrandbits(32),
                                 "image_tags": [{"key": k, "value": v} for k, v in first.items()]}, self.token)
                if st != 201:
                    self.unexpected.append((st, raw))
                    continue
                iid = json.loads(raw)["id"]
                self._ack(iid, first)
                for keys in BATCH_KEYS:
                    if self.stop.is_set():
                        break
                    tags = {k: rng.choice(VALUES) for k in keys}
                    self.sent += 1
                    st, raw = _post(self.port, "/v2/%s/images/%s/tags/action" % (self.project, iid),
                                    {"action": "create",
                                     "tags": [{"key": k, "value": v} for k, v in tags.items()]}, self.token)
                    if st != 204:
                        self.unexpected.append((st, raw))
                        break
                    self._ack(iid, tags)
            except (OSError, http.client.HTTPException):
                # killed or stopping: this write is not acknowledged
                self.errors += 1
                time.sleep(0.01)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=20)
            assert not t.is_alive(), "a load thread hangs"


# ---- checks ---------------------------------------------------------------------

def integrity_ok(db):
    con = sqlite3.connect(db)
    try:
        rows = con.execute("PRAGMA integrity_check").fetchall()
        assert rows == [("ok",)], rows
        fk = con.execute("PRAGMA foreign_key_check").fetchall()
        assert fk == [], fk
    finally:
        con.close()


def sql_tags(db, project):
    """image id -> {key: value} for every image of the project."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        out = {iid: {} for (iid,) in con.execute("SELECT id FROM images WHERE project_id = ?", (project,))}
        for iid, k, v in con.execute(
                "SELECT i.id, t.key, t.value FROM image_tags t JOIN images i ON i.seq = t.seq "
                "WHERE i.project_id = ?", (project,)):
            out[iid][k] = v
        return out
    finally:
        con.close()


def check_acked(db, project, acked):
    stored = sql_tags(db, project)
    missing = []
    for iid, tags in acked:
        have = stored.get(iid)
        if have is None:
            missing.append((iid, "image"))
            continue
        for k, v in tags.items():
            if have.get(k) != v:
                missing.append((iid, k, v, have.get(k)))
    assert not missing, "%d acknowledged writes lost, e.g. %s" % (len(missing), missing[:5])
    return stored


def check_index_matches_sqlite(g):
    """Every tag key/value the load writes: the index's count equals the
    number of images that have it in SQLite."""
    stored = sql_tags(g.db, g.project)
    assert g.count({}) == len(stored)
    assert g.count({"without_any_tag": True}) == sum(1 for t in stored.values() if not t)
    for k in ALL_KEYS:
        assert g.count({"tags": [{"key": k, "values": []}]}) == sum(1 for t in stored.values() if k in t), k
        for v in VALUES:
            want = sum(1 for t in stored.values() if t.get(k) == v)
            got = g.count({"tags": [{"key": k, "values": [v]}]})
            assert got == want, (k, v, got, want)
    # tags of the project, and a page of the filter, agree with SQLite too
    st, _, js, raw = g.request("GET", "/v2/%s/images/tags" % g.project)
    assert st == 200, raw
    want = {}
    for t in stored.values():
        for k, v in t.items():
            want.setdefault(k, set()).add(v)
    assert {e["key"]: set(e["values"]) for e in js["tags"]} == want
    st, _, js, raw = g.request("POST", "/v2/%s/images/resource_instances/action" % g.project,
                               {"action": "filter", "limit": 1000})
    assert st == 200, raw
    for res in js["resources"]:
        assert {t["key"]: t["value"] for t in res["tags"]} == stored[res["resource_id"]]


def check_acked_via_api(g, acked):
    merged = {}
    for iid, tags in acked:
        merged.setdefault(iid, {}).update(tags)
    for iid, tags in merged.items():
        st, _, js, raw = g.request("GET", "/v2/images/" + iid)
        assert st == 200, raw
        have = {t["key"]: t["value"] for t in js["tags"]}
        assert all(have.get(k) == v for k, v in tags.items()), (iid, tags, have)


# ---- tests ------------------------------------------------------------------------

def test_sigkill_during_writes_loses_nothing_acknowledged(gateway):
    g = gateway
    rng = random.Random(SEED)
    all_acked = []
    total_sent = 0
    for cycle in range(KILL_CYCLES):
        load = Load(g, rng.random()).start()
        time.sleep(rng.uniform(0.3, 1.2))
        g.kill9()                                    # SIGKILL at a random moment
        load.finish()
        assert not load.unexpected, load.unexpected[:3]
        assert load.acked, "no write was acknowledged in cycle %d" % cycle
        total_sent += load.sent
        all_acked += load.acked
        integrity_ok(g.db)
        check_acked(g.db, g.project, all_acked)
        g.start()
        check_index_matches_sqlite(g)
        check_acked_via_api(g, all_acked)
    assert len(all_acked) > KILL_CYCLES * 5
    # the live index (kept by commits, not rebuilt) after load without a kill
    load = Load(g, rng.random()).start()
    time.sleep(0.5)
    load.finish()
    assert not load.unexpected, load.unexpected[:3]
    all_acked += load.acked
    check_acked(g.db, g.project, all_acked)
    check_index_matches_sqlite(g)


def test_sigterm_during_writes_exits_0_and_keeps_acknowledged(gateway):
    g = gateway
    rng = random.Random(SEED + 1)
    all_acked = []
    for cycle in range(2):
        load = Load(g, rng.random()).start()
        time.sleep(rng.uniform(0.3, 0.8))
        elapsed = g.stop()                            # SIGTERM; asserts exit 0
        load.finish()
        assert elapsed < 10, elapsed
        assert not load.unexpected, load.unexpected[:3]
        assert load.acked
        all_acked += load.acked
        integrity_ok(g.db)
        check_acked(g.db, g.project, all_acked)
        g.start()
        check_index_matches_sqlite(g)
        check_acked_via_api(g, all_acked)
