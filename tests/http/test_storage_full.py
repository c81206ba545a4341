"""A full disk (§0: a 2xx is durable; a refused request changes nothing).

The gateway runs with RLIMIT_FSIZE, so a write that would take one of its
files past the limit fails (EFBIG) as one on a full disk fails (ENOSPC),
and SQLite answers both with an I/O error.  Requests whose write group
cannot be committed are answered 503 and leave nothing; acknowledged ones
are all there, in SQLite and in the index, after a restart too; and the
gateway goes on by itself where the WAL can be reused instead of grown.
"""
import time

from conftest import ims_error

LIMIT = 1 << 20          # bytes: the WAL reaches it after ~60 write groups
ROUNDS = 400             # an image, then its ten tags, each round


def _tags(i):
    return [{"key": "k%d" % k, "value": "r%d-%d" % (i, k)} for k in range(10)]


def _fill(g):
    """Rounds of writes; -> acked {image id: tags}, statuses in order, refused bodies."""
    acked, statuses, refused = {}, [], []
    for i in range(ROUNDS):
        st, _, js, raw = g.request("POST", "/v2/images", {"name": "full-%d" % i})
        statuses.append(st)
        if st != 201:
            refused.append((st, js, raw))
            continue
        iid = js["id"]
        acked[iid] = []
        st, _, js, raw = g.batch(iid, "create", _tags(i))
        statuses.append(st)
        if st == 204:
            acked[iid] = _tags(i)
        else:
            refused.append((st, js, raw))
    return acked, statuses, refused


def _check_stored(g, acked):
    """Storage and the index hold exactly the acknowledged writes."""
    for iid, tags in acked.items():
        assert sorted(g.image_tags(iid), key=lambda t: t["key"]) == tags, iid
    assert g.count() == len(acked)
    tagged = sum(1 for tags in acked.values() if tags)
    assert g.count({"tags": [{"key": "k0", "values": []}]}) == tagged
    assert g.count({"without_any_tag": True}) == len(acked) - tagged


def test_a_full_disk_refuses_writes_with_503_and_loses_nothing_acknowledged(gateway_factory):
    g = gateway_factory(file_size_limit=LIMIT)
    t0 = time.monotonic()
    acked, statuses, refused = _fill(g)
    elapsed = time.monotonic() - t0

    assert refused, "no write failed: the file size limit did not bite"
    for st, js, raw in refused:
        assert st == 503, raw
        ims_error(js, "IMG.0061")
        assert "nothing of this request was stored" in js["error"]["message"], raw
    # the reason is logged, SQLite's words and what they mean, at most once
    # a second (a full disk fails every group), saying how many went unsaid
    lines = [o for o in g.log_objects() if str(o.get("msg", "")).startswith("storage: write group")]
    assert lines and all("disk I/O error" in o["reason"] and "full disk" in o["reason"]
                         for o in lines), lines[:3]
    assert len(lines) <= elapsed + 1, (len(lines), elapsed)
    logged = sum(1 + o["unlogged_before"] for o in lines)
    # and each one counted, for an alert (one client, one request at a
    # time: a group per refused request)
    failed = g.metric("tagway_sqlite_failed_groups_total")
    assert failed == len(refused) and logged <= failed, (failed, len(refused), logged)
    # the WAL is started over after a failure: writing goes on (not every
    # write after the first failure fails until a restart)
    first = statuses.index(503)
    assert statuses[first:].count(503) < len(statuses[first:]) // 4, statuses[first:first + 40]
    assert len(acked) > ROUNDS // 2
    assert g.running()
    _check_stored(g, acked)

    # a restart with room: the acknowledged writes, and only they
    g.stop()
    g.file_size_limit = None
    g.start()
    _check_stored(g, acked)
    assert g.metric("tagway_sqlite_failed_groups_total") == 0
    iid = g.create_image()
    assert g.batch(iid, "create", _tags(0))[0] == 204
    acked[iid] = _tags(0)
    _check_stored(g, acked)


def test_refused_tags_leave_the_image_as_it_was(gateway_factory):
    """An overwrite refused for want of space keeps the old values, in
    storage and in the index (one transaction per request)."""
    g = gateway_factory(file_size_limit=LIMIT)
    iid = g.create_image()
    assert g.batch(iid, "create", _tags(0))[0] == 204
    seen = {"ok": 0, "refused": 0}
    current = _tags(0)
    for i in range(1, ROUNDS):
        st, _, js, raw = g.batch(iid, "create", _tags(i))
        if st == 204:
            current, seen["ok"] = _tags(i), seen["ok"] + 1
        else:
            assert st == 503, raw
            seen["refused"] += 1
            assert sorted(g.image_tags(iid), key=lambda t: t["key"]) == current
            assert g.count({"tags": [{"key": "k3", "values": [current[3]["value"]]}]}) == 1
            assert g.count({"tags": [{"key": "k3", "values": [_tags(i)[3]["value"]]}]}) == 0
    assert seen["refused"] > 0 and seen["ok"] > 0, seen
    g.stop()
    g.file_size_limit = None
    g.start()
    assert sorted(g.image_tags(iid), key=lambda t: t["key"]) == current
    assert g.count({"tags": [{"key": "k9", "values": [current[9]["value"]]}]}) == 1
