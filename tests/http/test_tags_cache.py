"""The GET tags answer cache (src/tagcache.c, fed by lapi, forgotten by the
store): repeated reads skip SQLite, and no read ever sees less than the last
write acknowledged before it started, on any worker."""
import re
import threading
import time

from test_group_commit import Client, run_threads


def cache_metrics(g):
    st, _, _, raw = g.request("GET", "/metrics")
    assert st == 200
    text = raw.decode()

    def metric(pattern):
        m = re.search(pattern, text, re.M)
        assert m, pattern + " missing from /metrics"
        return int(m.group(1))

    return {"hit": metric(r'^tagway_tags_cache_lookups_total\{result="hit"\} (\d+)$'),
            "miss": metric(r'^tagway_tags_cache_lookups_total\{result="miss"\} (\d+)$'),
            "entries": metric(r"^tagway_tags_cache_entries (\d+)$")}


def tags_path(g, image_id):
    return "/v2/%s/images/%s/tags" % (g.project, image_id)


def get_tags(c, image_id):
    st, js = c.request("GET", tags_path(c.g, image_id))
    return st, ({t["key"]: t["value"] for t in js["tags"]} if st == 200 else js)


def test_repeated_reads_hit_and_every_write_is_seen(gateway):
    g = gateway
    c = Client(g)
    try:
        image = c.create_image([{"key": "a", "value": "1"}])
        before = cache_metrics(g)
        assert get_tags(c, image) == (200, {"a": "1"})      # read from SQLite, kept
        assert get_tags(c, image) == (200, {"a": "1"})      # from the cache
        after = cache_metrics(g)
        assert after["hit"] - before["hit"] == 1, (before, after)
        assert after["miss"] - before["miss"] == 1, (before, after)
        assert after["entries"] >= 1

        # every kind of write forgets the answer it changes
        st, js = c.batch(image, "create", [{"key": "a", "value": "2"}, {"key": "b", "value": "x"}])
        assert st == 204, js
        assert get_tags(c, image) == (200, {"a": "2", "b": "x"})
        st, js = c.batch(image, "delete", [{"key": "b"}])
        assert st == 204, js
        assert get_tags(c, image) == (200, {"a": "2"})
        st, js = c.request("POST", tags_path(g, image), {"tag": {"key": "c", "value": "y"}})
        assert st == 204, js
        assert get_tags(c, image) == (200, {"a": "2", "c": "y"})
        st, js = c.request("DELETE", tags_path(g, image) + "/c")
        assert st == 204, js
        assert get_tags(c, image) == (200, {"a": "2"})
        st, js = c.request("DELETE", "/v2/images/" + image)
        assert st == 204, js
        st, _ = get_tags(c, image)
        assert st == 404
    finally:
        c.close()


def test_refused_write_keeps_the_answer_right(gateway):
    g = gateway
    c = Client(g)
    try:
        image = c.create_image([{"key": "a", "value": "1"}])
        assert get_tags(c, image) == (200, {"a": "1"})
        st, js = c.batch(image, "create", [{"key": "a", "value": "2"}, {"key": "", "value": "bad"}])
        assert st == 400, js
        assert get_tags(c, image) == (200, {"a": "1"})
        assert get_tags(c, image) == (200, {"a": "1"})
    finally:
        c.close()


def test_writes_that_change_nothing_keep_the_answer(gateway_factory):
    """Only a kept write that changes an image's tags forgets its answer: a
    DELETE of the id from another project (404) or a create that sets what
    is already there must not evict it (the store used to forget first and
    look the image up after)."""
    g = gateway_factory()
    other = g.new_credential(role="admin")
    image = g.create_image(image_tags=[{"key": "a", "value": "1"}])
    assert g.image_tags(image) == [{"key": "a", "value": "1"}]   # read, kept

    def next_read_hits():
        before = cache_metrics(g)
        assert g.image_tags(image) == [{"key": "a", "value": "1"}]
        after = cache_metrics(g)
        return after["hit"] - before["hit"] == 1 and after["miss"] == before["miss"]

    assert next_read_hits()
    st, _, js, _ = g.request("DELETE", "/v2/images/" + image, token=other["token"])
    assert st == 404, js
    assert next_read_hits(), "another project's 404 DELETE evicted the answer"
    st, _, js, _ = g.batch(image, "create", [{"key": "a", "value": "1"}])
    assert st == 204, js
    assert next_read_hits(), "a create that changed nothing evicted the answer"
    st, _, js, _ = g.batch(image, "create", [{"key": "a", "value": "2"}])
    assert st == 204, js
    before = cache_metrics(g)
    assert g.image_tags(image) == [{"key": "a", "value": "2"}]    # a change: read again
    assert cache_metrics(g)["miss"] - before["miss"] == 1


def test_cache_off(gateway_factory):
    g = gateway_factory(extra_args=("--tags-cache", "0"))
    c = Client(g)
    try:
        image = c.create_image([{"key": "a", "value": "1"}])
        for _ in range(3):
            assert get_tags(c, image) == (200, {"a": "1"})
        st, js = c.batch(image, "create", [{"key": "a", "value": "2"}])
        assert st == 204, js
        assert get_tags(c, image) == (200, {"a": "2"})
        m = cache_metrics(g)
        assert m["hit"] == 0 and m["entries"] == 0, m
    finally:
        c.close()


def test_no_read_sees_less_than_an_acknowledged_write(gateway):
    """Writers raise a counter tag of a few images while readers on other
    connections (so on both workers, inside their loop passes' snapshots)
    read them.  A read that starts after write n was acknowledged must see
    n or later; an answer kept from a snapshot older than a write would
    break that until the next write, and the last reads check no stale
    answer outlived the writes."""
    g = gateway
    setup = Client(g)
    images = [setup.create_image([{"key": "n", "value": "0"}]) for _ in range(3)]
    setup.close()
    acked = {i: 0 for i in images}      # the last acknowledged value per image
    lock = threading.Lock()
    stop = threading.Event()
    errors = []
    WRITERS, READERS, SECONDS = 3, 8, 3.0

    def worker(t, c):
        if t < WRITERS:
            image = images[t]
            n = 0
            deadline = time.time() + SECONDS
            while time.time() < deadline:
                n += 1
                st, js = c.batch(image, "create", [{"key": "n", "value": str(n)}])
                assert st == 204, js
                with lock:
                    acked[image] = n
            return
        k = t
        while not stop.is_set():
            image = images[k % len(images)]
            k += 1
            with lock:
                floor = acked[image]
            st, tags = get_tags(c, image)
            assert st == 200, tags
            if int(tags["n"]) < floor:
                errors.append((image, floor, tags["n"]))

    def stopper():
        time.sleep(SECONDS + 0.5)
        stop.set()

    threading.Thread(target=stopper).start()
    run_threads(g, WRITERS + READERS, worker)
    assert not errors, errors[:5]
    assert all(n > 20 for n in acked.values()), acked
    c = Client(g)
    try:
        for _ in range(2):
            for image in images:
                assert get_tags(c, image) == (200, {"n": str(acked[image])})
    finally:
        c.close()
    m = cache_metrics(g)
    assert m["hit"] > 100, m    # the readers were served from the cache
