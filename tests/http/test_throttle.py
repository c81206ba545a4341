"""Throttling (API.md §0.1: 429 APIGW.0308): a policy's `rate_limit`
({per_second, burst}) limits each project bound to it, one bucket per
project shared by every worker; admin routes are exempt; credentials are
checked first (401/403 win); a refused request changes nothing; a reload
applies a changed limit at once.  Each gateway runs from its own copy of
policies/, edited here."""
import math
import os
import re
import time

from conftest import gateway_error, random_project


def set_rate_limit(g, text):
    """Puts `rate_limit = <text>` into the gateway's ims policy (or takes it
    out with text None) and reloads; -> the reload's (status, body)."""
    path = os.path.join(g.policies, "ims.lua")
    with open(path, encoding="utf-8") as f:
        src = re.sub(r"\n  rate_limit = [^\n]*", "", f.read())
    if text is not None:
        src = src.replace("\n  max_tags = 10,", "\n  max_tags = 10,\n  rate_limit = %s," % text, 1)
        assert "rate_limit" in src
    with open(path, "w", encoding="utf-8") as f:
        f.write(src)
    st, _, js, raw = g.reload()
    return st, js, raw


def statuses(g, n, path, token):
    return [g.request("GET", path, token=token)[0] for _ in range(n)]


def test_a_project_over_its_burst_gets_429_and_others_do_not(gateway_factory):
    # two workers: the bucket is one per project, not one per worker (a
    # fresh connection per request lets the kernel spread them)
    g = gateway_factory(extra_args=["--workers", "2"])
    st, _, raw = set_rate_limit(g, "{ per_second = 0.1, burst = 8 }")
    assert st == 200, raw
    path = "/v2/%s/images/tags" % g.project
    got = statuses(g, 20, path, g.token)
    assert got == [200] * 8 + [429] * 12, got
    st, h, js, _ = g.request("GET", path)
    assert st == 429
    gateway_error(js, h, "APIGW.0308")
    assert g.project in js["error_msg"] and "0.1 per second" in js["error_msg"], js
    # Retry-After: the wait the message gives, in whole seconds up
    wait = float(re.search(r"retry in ([0-9.]+) s", js["error_msg"]).group(1))
    assert 1 <= int(h["Retry-After"]) <= 10 and int(h["Retry-After"]) == math.ceil(wait - 0.0005), (h, wait)
    assert "Retry-After" not in g.request("GET", "/admin/status")[1]
    # another project (same policy) has a bucket of its own
    other = g.new_credential(project=random_project())
    got = statuses(g, 8, "/v2/%s/images/tags" % other["project_id"], other["token"])
    assert got == [200] * 8, got
    # admin routes get through a throttled project's flood
    st, _, js, raw = g.request("GET", "/admin/status")
    assert st == 200, raw
    # credentials come first: a bad token is 401 however throttled
    st, h, js, _ = g.request("GET", path, token="not-a-token")
    assert st == 401
    gateway_error(js, h, "APIGW.0301")


def test_a_refused_write_changes_nothing(gateway_factory):
    g = gateway_factory()
    iid = g.create_image()
    assert g.batch(iid, "create", [{"key": "a", "value": "1"}])[0] == 204
    st, _, raw = set_rate_limit(g, "{ per_second = 0.1, burst = 1 }")
    assert st == 200, raw
    path = g.tags_path(iid) + "/action"
    got = [g.request("POST", path, {"action": "create", "tags": [{"key": k, "value": "2"}]})[0]
           for k in ("b", "c", "d")]
    assert got == [204, 429, 429], got
    st, _, raw = set_rate_limit(g, None)          # no limit: reads go again
    assert st == 200, raw
    assert g.image_tags(iid) == [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]
    # the bucket outlives the reloads: put back, the limit finds it empty
    set_rate_limit(g, "{ per_second = 0.1, burst = 1 }")
    assert g.request("POST", path, {"action": "delete", "tags": [{"key": "a"}]})[0] == 429
    set_rate_limit(g, None)
    assert [t["key"] for t in g.image_tags(iid)] == ["a", "b"]


def test_tokens_come_back_at_the_rate_and_a_reload_changes_it(gateway_factory):
    g = gateway_factory()
    path = "/v2/%s/images/tags" % g.project
    st, _, raw = set_rate_limit(g, "{ per_second = 0.1, burst = 2 }")
    assert st == 200, raw
    assert statuses(g, 3, path, g.token) == [200, 200, 429]
    # at 0.1 a second nothing comes back soon; at 20 a second one does in 50 ms
    st, _, raw = set_rate_limit(g, "{ per_second = 20, burst = 2 }")
    assert st == 200, raw
    time.sleep(0.3)
    assert statuses(g, 3, path, g.token) == [200, 200, 429]
    # burst defaults to one second's worth
    st, _, raw = set_rate_limit(g, "{ per_second = 3 }")
    assert st == 200, raw
    time.sleep(1.2)
    assert statuses(g, 4, path, g.token)[:3] == [200, 200, 200]


def test_a_bad_rate_limit_fails_the_reload_naming_the_field(gateway_factory):
    g = gateway_factory()
    for text, field in [("{ per_second = 0 }", "rate_limit.per_second"),
                        ("{ per_second = '5' }", "rate_limit.per_second"),
                        ("{ per_second = 5, burst = 0.5 }", "rate_limit.burst"),
                        ("{ per_second = 5, brust = 9 }", "rate_limit.brust"),
                        ("5", "rate_limit")]:
        gen = g.status()["generation"]
        st, js, raw = set_rate_limit(g, text)
        assert st == 422, (text, raw)
        assert "ims.lua" in js["error"]["message"] and field in js["error"]["message"], (text, js)
        assert g.status()["generation"] == gen
    # the policy as it was still serves, unthrottled
    path = "/v2/%s/images/tags" % g.project
    assert statuses(g, 30, path, g.token) == [200] * 30
