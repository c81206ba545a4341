"""AK/SK request signing (SDK-HMAC-SHA256) over HTTP: API.md §0.2 and
shared/spec/aksk-signing.md.

The signer below is written from the spec alone (it shares no code with
src/aksk.c) and is checked against the spec's test vector first; every
HTTP test then signs real requests with it, the way the Huawei Cloud SDKs
do, and checks what the gateway accepts and refuses."""
import datetime
import hashlib
import hmac
import http.client
import json
import os
import time
import urllib.parse
import uuid

import pytest

from conftest import Gateway, gateway_error, ims_error, run_cli

ALGORITHM = "SDK-HMAC-SHA256"
SIGNED = "content-type;host;user-agent;x-project-id;x-sdk-date"
SDK_CT = "application/json;charset=utf-8"
SDK_UA = "huaweicloud-usdk-python/3.0; os/Linux python/3.11.2 impl/CPython; app/tagway-tests"
EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# ---- the independent signer ---------------------------------------------------

def _seg(raw):
    """One path segment or query item, percent-encoded keeping only
    A-Z a-z 0-9 - _ . ~ literal, upper-case hex."""
    return urllib.parse.quote(raw, safe="-_.~")


def canonical_uri(path):
    decoded = urllib.parse.unquote_to_bytes(path)
    out = "/".join(_seg(s) for s in decoded.split(b"/"))
    if not out.endswith("/"):
        out += "/"
    return out


def canonical_query(query):
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        k, _, v = item.partition("=")
        pairs.append((urllib.parse.unquote_to_bytes(k), urllib.parse.unquote_to_bytes(v)))
    pairs.sort()
    return "&".join("%s=%s" % (_seg(k), _seg(v)) for k, v in pairs)


def canonical_request(method, path, query, headers, signed, body):
    lower = {k.lower(): v for k, v in headers.items()}
    head = "".join("%s:%s\n" % (name, lower[name].strip()) for name in signed.split(";"))
    return "\n".join([method.upper(), canonical_uri(path), canonical_query(query), head, signed,
                      hashlib.sha256(body).hexdigest()])


def string_to_sign(sdk_date, canonical):
    return "%s\n%s\n%s" % (ALGORITHM, sdk_date, hashlib.sha256(canonical.encode("utf-8")).hexdigest())


def signature(sk, sdk_date, canonical):
    return hmac.new(sk.encode("utf-8"), string_to_sign(sdk_date, canonical).encode("utf-8"),
                    hashlib.sha256).hexdigest()


def sdk_date(offset_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y%m%dT%H%M%SZ")


def sign(cred, method, target, body=b"", host="127.0.0.1", project=None, date=None,
         signed=SIGNED, extra=None, sign_body=None, sign_target=None, sk=None, ak=None):
    """-> headers of an SDK request.  `target` is path[?query] as sent;
    sign_body / sign_target sign something else than what is sent."""
    path, _, query = (sign_target or target).partition("?")
    headers = {
        "Content-Type": SDK_CT,
        "Host": host,
        "User-Agent": SDK_UA,
        "X-Project-Id": project or cred["project_id"],
        "X-Sdk-Date": sdk_date() if date is None else date,
    }
    headers.update(extra or {})
    canon = canonical_request(method, path, query, headers, signed,
                              body if sign_body is None else sign_body)
    sig = signature(sk or cred["sk"], headers["X-Sdk-Date"], canon)
    headers["Authorization"] = "%s Access=%s, SignedHeaders=%s, Signature=%s" % (
        ALGORITHM, ak or cred["ak"], signed, sig)
    return headers


def sdk_request(g, cred, method, target, body=None, **kw):
    """Sends a signed request (no token) -> (status, headers, json, raw)."""
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode("utf-8")
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = body or b""
    send_body = kw.pop("send_body", None)
    on_wire = kw.pop("on_wire", None)       # changes the signed headers before sending
    headers = sign(cred, method, target, data, host="127.0.0.1:%d" % g.port, **kw)
    if on_wire:
        on_wire(headers)
    wire = data if send_body is None else send_body
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        if wire or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(wire)))
        conn.endheaders(wire if wire else None)
        resp = conn.getresponse()
        raw = resp.read()
        st, rh = resp.status, resp.headers
    finally:
        conn.close()
    js = None
    if raw:
        try:
            js = json.loads(raw)
        except ValueError:
            pass
    return st, rh, js, raw


# ---- the spec's test vector ------------------------------------------------------

VEC = {
    "ak": "HPUAEXAMPLEAK0000001",
    "sk": "exampleSecretKey0123456789abcdefghijABCD",
    "path": "/v2/0605767b3a80d5762fa7c00b8e7ee5bd/images/6663f1dd-92a7-4fc3-9af7-faf8fa739834/tags/action",
    "headers": {
        "content-type": "application/json;charset=utf-8",
        "host": "127.0.0.1:39227",
        "user-agent": "huaweicloud-usdk-python/3.0; os/Linux##1_SMP_PREEMPT_DYNAMIC_@0#x86_64 python/3.11.2 "
                      "impl/CPython; app/3e9528b9-8140-4ad8-8911-63dd1696fbed",
        "x-project-id": "0605767b3a80d5762fa7c00b8e7ee5bd",
        "x-sdk-date": "20261122T044810Z",
    },
    "body": b'{"action": "create", "tags": [{"key": "acc-370bd7cb-b1", "value": "v1"}, '
            b'{"key": "acc-370bd7cb-b2", "value": "v2"}, {"key": "acc-370bd7cb-b3", "value": ""}]}',
}


def test_signer_reproduces_spec_vector():
    assert len(VEC["body"]) == 157
    assert hashlib.sha256(VEC["body"]).hexdigest() == \
        "04d9b1fa47040b79124346e4a54ea0b8fa9d98970d457b26dc04495b53c33dec"
    canon = canonical_request("POST", VEC["path"], "", VEC["headers"], SIGNED, VEC["body"])
    assert canon.split("\n")[1] == VEC["path"] + "/"
    assert canon.split("\n")[2] == ""
    assert hashlib.sha256(canon.encode()).hexdigest() == \
        "bf723bae769513d9053c2f77c9832089f7dae967863ef411e2c0b5af54658c48"
    assert signature(VEC["sk"], "20261122T044810Z", canon) == \
        "df63032c0281aa4e7132ed8de1f9153a9da502c2d7b0fbd745b8ee5b5c79fd8b"


def test_signer_canonical_forms():
    # the spec's own example and the fine points the tests below rely on
    assert canonical_uri("/tags/x%2Fy") == "/tags/x/y/"
    assert canonical_uri("/v2/p/images/i/tags/%E9%83%A8%E9%97%A8") == \
        "/v2/p/images/i/tags/%E9%83%A8%E9%97%A8/"
    assert canonical_uri("/a%20b/c~d/") == "/a%20b/c~d/"
    assert canonical_uri("/") == "/"
    assert canonical_query("b=2&a=1&a=0") == "a=0&a=1&b=2"
    assert canonical_query("k=%e4%b8%ad&x=a+b") == "k=%E4%B8%AD&x=a%2Bb"
    assert canonical_query("") == ""


# ---- one gateway for this module -------------------------------------------------

@pytest.fixture(scope="module")
def g(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("aksk"))
    gate = Gateway(os.path.join(root, "gw"))
    try:
        gate.start()
        gate.stop()
        gate.creds = {
            "a": gate.new_credential(role="member"),
            "b": gate.new_credential(role="member"),
        }
        gate.start()
        yield gate
    finally:
        gate.kill9()


def make_image(g, cred, tags=()):
    return g.create_image(token=cred["token"], image_tags=list(tags))


def tags_of(g, cred, image):
    return g.image_tags(image, project=cred["project_id"], token=cred["token"])


def assert_401(st, h, js):
    assert st == 401, (st, js)
    gateway_error(js, h, "APIGW.0301")


# ---- accepted requests ------------------------------------------------------------

def test_get_with_content_type_and_no_body(g):
    a = g.creds["a"]
    iid = make_image(g, a, [{"key": "k", "value": "v"}])
    st, h, js, raw = sdk_request(g, a, "GET", "/v2/%s/images/%s/tags" % (a["project_id"], iid))
    assert st == 200, raw
    assert js == {"tags": [{"key": "k", "value": "v"}]}
    assert h["X-Request-Id"]


def test_get_without_project_in_path(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    st, _, js, raw = sdk_request(g, a, "GET", "/v2/images/" + iid)
    assert st == 200, raw
    assert js["id"] == iid


def test_post_with_body(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    body = {"action": "create", "tags": [{"key": "sdk-1", "value": "v1"}, {"key": "sdk-2", "value": ""}]}
    st, _, _, raw = sdk_request(g, a, "POST", "/v2/%s/images/%s/tags/action" % (a["project_id"], iid), body)
    assert st == 204, raw
    assert tags_of(g, a, iid) == [{"key": "sdk-1", "value": "v1"}, {"key": "sdk-2", "value": ""}]


def test_post_image_create_signed(g):
    a = g.creds["a"]
    st, _, js, raw = sdk_request(g, a, "POST", "/v2/images", {"name": "signed-" + uuid.uuid4().hex[:6]})
    assert st == 201, raw
    st, _, js2, _ = g.request("GET", "/v2/images/" + js["id"], token=a["token"])
    assert st == 200 and js2["id"] == js["id"]


def test_delete_percent_encoded_cjk_key(g):
    a = g.creds["a"]
    iid = make_image(g, a, [{"key": "部门", "value": "研发"}, {"key": "keep", "value": "1"}])
    path = "/v2/%s/images/%s/tags/%%E9%%83%%A8%%E9%%97%%A8" % (a["project_id"], iid)
    st, _, _, raw = sdk_request(g, a, "DELETE", path)
    assert st == 204, raw
    assert tags_of(g, a, iid) == [{"key": "keep", "value": "1"}]
    # lower-case hex on the wire canonicalises the same (decode, re-encode)
    g.batch(iid, "create", [{"key": "部门", "value": "x"}], project=a["project_id"], token=a["token"])
    st, _, _, raw = sdk_request(g, a, "DELETE", path.lower())
    assert st == 204, raw
    assert tags_of(g, a, iid) == [{"key": "keep", "value": "1"}]


def test_delete_encoded_slash_in_key_signs_as_two_segments(g):
    # /tags/x%2Fy canonicalises to /tags/x/y/ (spec); the key "x/y" does
    # not exist, so a correct signature gets 404 IMG.0115, not 401.
    a = g.creds["a"]
    iid = make_image(g, a)
    st, _, js, raw = sdk_request(g, a, "DELETE", "/v2/%s/images/%s/tags/x%%2Fy" % (a["project_id"], iid))
    assert st == 404, raw
    ims_error(js, "IMG.0115")


def test_delete_key_with_space_and_reserved_chars(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    # not existing: signature accepted -> 404 from the handler
    for key in ["a b", "a+b", "a~b.c_d-e", "%", "é"]:
        st, _, js, raw = sdk_request(g, a, "DELETE", "/v2/%s/images/%s/tags/%s" % (
            a["project_id"], iid, urllib.parse.quote(key, safe="-_.~")))
        assert st == 404, (key, raw)
        ims_error(js, "IMG.0115")


def test_query_string(g):
    a = g.creds["a"]
    make_image(g, a, [{"key": "q", "value": "1"}])
    # unsorted, repeated keys, encoded characters, '+', an item without '='
    target = "/v2/%s/images/tags?zeta=1&alpha=b&alpha=a&sp=a%%20b&plus=a+b&cjk=%%E4%%B8%%AD&flag" % a["project_id"]
    st, _, js, raw = sdk_request(g, a, "GET", target)
    assert st == 200, raw
    assert {"key": "q", "values": ["1"]} in js["tags"]
    # a signature over another query fails
    st, h, js, _ = sdk_request(g, a, "GET", target, sign_target=target.split("?")[0] + "?x=1")
    assert_401(st, h, js)


def test_security_token_signed(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    st, _, js, raw = sdk_request(g, a, "GET", "/v2/%s/images/%s/tags" % (a["project_id"], iid),
                                 extra={"X-Security-Token": "temporary-session-token"},
                                 signed=SIGNED + ";x-security-token")
    assert st == 200, raw


def test_header_values_trimmed(g):
    # signed header values are trimmed in the canonical form
    a = g.creds["a"]
    iid = make_image(g, a)
    st, _, _, raw = sdk_request(g, a, "GET", "/v2/%s/images/%s/tags" % (a["project_id"], iid),
                                extra={"User-Agent": "  padded agent  "})
    assert st == 200, raw


def test_a_tab_before_a_header_value_is_not_part_of_it(g):
    """evhttp drops the spaces before a value but kept a tab, which the
    signature trimmed and the date, project and token checks did not."""
    a = g.creds["a"]
    iid = make_image(g, a)
    path = "/v2/%s/images/%s/tags" % (a["project_id"], iid)
    for name in ("X-Sdk-Date", "X-Project-Id"):
        def tab(h, name=name):
            h[name] = "\t" + h[name]
        st, _, _, raw = sdk_request(g, a, "GET", path, on_wire=tab)
        assert st == 200, (name, raw)
    st, _, _, raw = g.request("GET", path, token="\t" + a["token"])
    assert st == 200, raw


def test_date_14_minutes_skew_accepted(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    for off in (-14 * 60, 14 * 60):
        st, _, _, raw = sdk_request(g, a, "GET", "/v2/%s/images/%s/tags" % (a["project_id"], iid),
                                    date=sdk_date(off))
        assert st == 200, (off, raw)


# ---- refused requests -------------------------------------------------------------

def unchanged_after(g, cred, iid, fn):
    before = tags_of(g, cred, iid)
    fn()
    assert tags_of(g, cred, iid) == before


def test_bad_signature_401(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    body = {"action": "create", "tags": [{"key": "bad", "value": "sig"}]}
    path = "/v2/%s/images/%s/tags/action" % (a["project_id"], iid)

    def go():
        # right algorithm, wrong key
        st, h, js, _ = sdk_request(g, a, "POST", path, body, sk=a["sk"][:-1] + ("0" if a["sk"][-1] != "0" else "1"))
        assert_401(st, h, js)
        # signature of another method
        hd = sign(a, "GET", path, json.dumps(body).encode(), host="127.0.0.1:%d" % g.port)
        st, h, js, _ = g.request("POST", path, json.dumps(body), headers=hd, token=None)
        assert_401(st, h, js)
        # a signature of 64 zeros
        hd = sign(a, "POST", path, json.dumps(body).encode(), host="127.0.0.1:%d" % g.port)
        hd["Authorization"] = hd["Authorization"].rsplit("=", 1)[0] + "=" + "0" * 64
        st, h, js, _ = g.request("POST", path, json.dumps(body), headers=hd, token=None)
        assert_401(st, h, js)
        # a Host header other than the one signed
        hd = sign(a, "POST", path, json.dumps(body).encode(), host="example.com:%d" % g.port)
        hd["Host"] = "127.0.0.1:%d" % g.port
        st, h, js, _ = g.request("POST", path, json.dumps(body), headers=hd, token=None)
        assert_401(st, h, js)
    unchanged_after(g, a, iid, go)


def test_unknown_ak_401(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    st, h, js, _ = sdk_request(g, a, "GET", "/v2/%s/images/%s/tags" % (a["project_id"], iid),
                               ak="TGWUNKNOWN00000000")
    assert_401(st, h, js)


def test_date_16_minutes_skew_401(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    for off in (-16 * 60, 16 * 60, -24 * 3600):
        st, h, js, _ = sdk_request(g, a, "GET", "/v2/%s/images/%s/tags" % (a["project_id"], iid),
                                   date=sdk_date(off))
        assert_401(st, h, js)
    for bad in ["20261122T044810", "2026-11-22T04:48:10Z", "", "garbage", "20261332T000000Z"]:
        st, h, js, _ = sdk_request(g, a, "GET", "/v2/%s/images/%s/tags" % (a["project_id"], iid), date=bad)
        assert_401(st, h, js)


def test_tampered_body_401(g):
    a = g.creds["a"]
    iid = make_image(g, a, [{"key": "orig", "value": "1"}])
    path = "/v2/%s/images/%s/tags/action" % (a["project_id"], iid)
    signed_body = json.dumps({"action": "create", "tags": [{"key": "t", "value": "1"}]}).encode()
    sent_body = json.dumps({"action": "create", "tags": [{"key": "t", "value": "2"}]}).encode()
    unchanged_after(g, a, iid, lambda: assert_401(*sdk_request(g, a, "POST", path, signed_body,
                                                                send_body=sent_body)[:3]))
    # a body sent where the signature covers none
    unchanged_after(g, a, iid, lambda: assert_401(*sdk_request(g, a, "POST", path, b"",
                                                                send_body=sent_body)[:3]))


def test_tampered_path_and_query_401(g):
    a = g.creds["a"]
    i1, i2 = make_image(g, a), make_image(g, a)
    st, h, js, _ = sdk_request(g, a, "GET", "/v2/%s/images/%s/tags" % (a["project_id"], i2),
                               sign_target="/v2/%s/images/%s/tags" % (a["project_id"], i1))
    assert_401(st, h, js)
    st, h, js, _ = sdk_request(g, a, "GET", "/v2/%s/images/tags?a=2" % a["project_id"],
                               sign_target="/v2/%s/images/tags?a=1" % a["project_id"])
    assert_401(st, h, js)


def test_sdk_date_not_signed_401(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    st, h, js, _ = sdk_request(g, a, "GET", "/v2/%s/images/%s/tags" % (a["project_id"], iid),
                               signed="content-type;host;user-agent;x-project-id")
    assert_401(st, h, js)


def test_signed_header_missing_from_request_401(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    # x-domain-id listed as signed but not sent
    hd = sign(a, "GET", "/v2/%s/images/%s/tags" % (a["project_id"], iid), host="127.0.0.1:%d" % g.port,
              signed=SIGNED + ";x-domain-id", extra={"X-Domain-Id": "d"})
    del hd["X-Domain-Id"]
    st, h, js, _ = g.request("GET", "/v2/%s/images/%s/tags" % (a["project_id"], iid), headers=hd, token=None)
    assert_401(st, h, js)


def test_security_token_not_signed_401(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    st, h, js, _ = sdk_request(g, a, "GET", "/v2/%s/images/%s/tags" % (a["project_id"], iid),
                               extra={"X-Security-Token": "temporary-session-token"})
    assert_401(st, h, js)


def test_malformed_authorization_401(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    path = "/v2/%s/images/%s/tags" % (a["project_id"], iid)
    good = sign(a, "GET", path, host="127.0.0.1:%d" % g.port)
    auth = good["Authorization"]
    for bad in [
        "SDK-HMAC-SHA256",
        "SDK-HMAC-SHA256 Access=%s" % a["ak"],
        auth.replace("Signature=", "Signature=zz"),
        auth.replace(", Signature=", ", Access=X, Signature="),
        auth + ", Extra=1",
        "SDK-HMAC-SHA256 " + "A" * 5000,
        auth.replace("SignedHeaders=" + SIGNED, "SignedHeaders="),
        auth.replace("SignedHeaders=" + SIGNED, "SignedHeaders=;;"),
    ]:
        hd = dict(good, Authorization=bad)
        st, h, js, _ = g.request("GET", path, headers=hd, token=None)
        assert_401(st, h, js)


def test_other_projects_x_project_id_403(g):
    a, b = g.creds["a"], g.creds["b"]
    ia = make_image(g, a, [{"key": "mine", "value": "a"}])
    ib = make_image(g, b, [{"key": "theirs", "value": "b"}])
    # X-Project-Id of B, signed correctly with A's AK: 403, on paths of
    # either project and on paths with no project
    for method, target, body in [
        ("GET", "/v2/%s/images/%s/tags" % (b["project_id"], ib), None),
        ("GET", "/v2/%s/images/%s/tags" % (a["project_id"], ia), None),
        ("GET", "/v2/images/" + ib, None),
        ("POST", "/v2/images", {"name": "sneaky"}),
        ("POST", "/v2/%s/images/%s/tags/action" % (b["project_id"], ib),
         {"action": "create", "tags": [{"key": "x", "value": "y"}]}),
    ]:
        st, h, js, _ = sdk_request(g, a, method, target, body, project=b["project_id"])
        assert st == 403, (method, target, st, js)
        gateway_error(js, h, "APIGW.0302")
    # A's own X-Project-Id but B's project in the path: 403 as well
    st, h, js, _ = sdk_request(g, a, "GET", "/v2/%s/images/%s/tags" % (b["project_id"], ib))
    assert st == 403
    gateway_error(js, h, "APIGW.0302")
    assert tags_of(g, b, ib) == [{"key": "theirs", "value": "b"}]
    assert tags_of(g, a, ia) == [{"key": "mine", "value": "a"}]


def test_missing_x_project_id_refused(g):
    a = g.creds["a"]
    iid = make_image(g, a)
    hd = sign(a, "GET", "/v2/images/" + iid, host="127.0.0.1:%d" % g.port,
              signed="content-type;host;user-agent;x-sdk-date")
    del hd["X-Project-Id"]
    st, h, js, _ = g.request("GET", "/v2/images/" + iid, headers=hd, token=None)
    assert st in (401, 403), st
    gateway_error(js, h, "APIGW.0302" if st == 403 else "APIGW.0301")


# ---- revocation -------------------------------------------------------------------

def _poll_until_401(fn, limit=3.0):
    t0 = time.monotonic()
    while True:
        st, h, js = fn()
        elapsed = time.monotonic() - t0
        if st == 401 or elapsed > limit:
            return st, h, js, elapsed
        time.sleep(0.05)


def test_revoked_ak_refused_within_1s(gateway_factory):
    gate = gateway_factory()
    cred = gate.new_credential()
    iid = make_image(gate, cred)
    path = "/v2/%s/images/%s/tags" % (cred["project_id"], iid)
    st, _, _, raw = sdk_request(gate, cred, "GET", path)
    assert st == 200, raw
    p = run_cli("credentials", "revoke", "--db", gate.db, "--ak", cred["ak"])
    assert p.returncode == 0, p.stderr
    st, h, js, elapsed = _poll_until_401(lambda: sdk_request(gate, cred, "GET", path)[:3])
    assert_401(st, h, js)
    assert elapsed <= 1.1, "revoked AK refused only after %.2fs" % elapsed
    # and the token of the same credential too
    st, h, js, _ = gate.request("GET", path, token=cred["token"])
    assert_401(st, h, js)


def test_revoke_by_token_revokes_ak(gateway_factory):
    gate = gateway_factory()
    cred = gate.new_credential()
    other = gate.new_credential(project=cred["project_id"])
    iid = make_image(gate, cred)
    path = "/v2/%s/images/%s/tags" % (cred["project_id"], iid)
    assert sdk_request(gate, cred, "GET", path)[0] == 200
    p = run_cli("credentials", "revoke", "--db", gate.db, "--token", cred["token"])
    assert p.returncode == 0, p.stderr
    st, h, js, elapsed = _poll_until_401(lambda: sdk_request(gate, cred, "GET", path)[:3])
    assert_401(st, h, js)
    assert elapsed <= 1.1, "AK of a revoked token refused only after %.2fs" % elapsed
    # another credential of the same project is untouched
    st, _, _, raw = sdk_request(gate, other, "GET", path)
    assert st == 200, raw


def test_list_marks_revoked_ak(gateway_factory):
    gate = gateway_factory()
    cred = gate.new_credential()
    assert run_cli("credentials", "revoke", "--db", gate.db, "--ak", cred["ak"]).returncode == 0
    p = run_cli("credentials", "list", "--db", gate.db)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    mine = [r for r in rows if r.get("ak") == cred["ak"]]
    assert len(mine) == 1 and mine[0]["revoked"] is True, rows
