"""API.md §0 (conventions) and §0.1 (error bodies, precedence)."""
import json
import time

import pytest

from conftest import JSON_CT, gateway_error, ims_error, random_project, raw_http, send_until_closed

MiB = 1024 * 1024
CJK = "\u90e8"          # 部
EMOJI = "\U0001F600"    # 4-byte UTF-8


# ---- headers --------------------------------------------------------------

def test_request_id_present_and_unique(gw, image):
    ids = []
    calls = [
        ("GET", "/healthz", None),
        ("GET", gw.tags_path(image), None),
        ("POST", gw.tags_path(image) + "/action", {"action": "create", "tags": [{"key": "r", "value": "1"}]}),
        ("GET", "/no/such/route", None),
        ("POST", "/v2/images", "not json"),
        ("GET", "/v2/%s/images/tags" % random_project(), None),
    ]
    for _ in range(5):
        for method, path, body in calls:
            st, h, _, _ = gw.request(method, path, body)
            rid = h["X-Request-Id"]
            assert rid, (method, path, st)
            ids.append(rid)
    # also without credentials
    st, h, _, _ = gw.request("GET", gw.tags_path(image), token=None)
    assert st == 401 and h["X-Request-Id"]
    ids.append(h["X-Request-Id"])
    assert len(set(ids)) == len(ids)


def test_content_type_on_json_bodies(gw, image):
    for method, path, body, status in [
        ("GET", "/healthz", None, 200),
        ("GET", gw.tags_path(image), None, 200),
        ("POST", "/v2/images", {"name": "ct-test"}, 201),
        ("POST", "/v2/images", "{bad", 400),
        ("GET", "/nowhere", None, 404),
    ]:
        st, h, js, raw = gw.request(method, path, body)
        assert st == status, (method, path, raw)
        assert raw and js is not None
        assert h["Content-Type"] == JSON_CT, (method, path, h["Content-Type"])


def test_204_has_no_body(gw, image):
    st, h, js, raw = gw.batch(image, "create", [{"key": "k", "value": "v"}])
    assert st == 204
    assert raw == b""


# ---- UTF-8 and lengths ------------------------------------------------------

def test_key_36_cjk_accepted_37_rejected(gw, image):
    k36, k37 = CJK * 36, CJK * 37
    st, _, _, raw = gw.batch(image, "create", [{"key": k36, "value": "v"}])
    assert st == 204, raw
    st, _, js, _ = gw.batch(image, "create", [{"key": k37, "value": "v"}])
    assert st == 400
    ims_error(js, "IMG.0115")
    assert gw.image_tags(image) == [{"key": k36, "value": "v"}]


def test_value_43_cjk_accepted_44_rejected(gw, image):
    st, _, _, raw = gw.batch(image, "create", [{"key": "k", "value": CJK * 43}])
    assert st == 204, raw
    st, _, js, _ = gw.batch(image, "create", [{"key": "k", "value": CJK * 44}])
    assert st == 400
    ims_error(js, "IMG.0115")
    assert gw.image_tags(image) == [{"key": "k", "value": CJK * 43}]


def test_emoji_key_rejected_by_charset(gw, image):
    st, _, js, _ = gw.batch(image, "create", [{"key": EMOJI, "value": "v"}])
    assert st == 400
    ims_error(js, "IMG.0115")
    assert gw.image_tags(image) == []


def test_delete_key_length_counts_code_points_of_4_byte_chars(gw, image):
    # No charset check on delete; 127 code points (508 bytes) is fine.
    st, _, _, raw = gw.batch(image, "delete", [{"key": EMOJI * 127}])
    assert st == 204, raw
    st, _, js, _ = gw.batch(image, "delete", [{"key": EMOJI * 128}])
    assert st == 400
    ims_error(js, "IMG.0115")


def test_image_name_length_in_code_points(gw):
    st, _, js, raw = gw.request("POST", "/v2/images", {"name": CJK * 128})
    assert st == 201, raw
    assert js["name"] == CJK * 128
    st, _, js, _ = gw.request("POST", "/v2/images", {"name": CJK * 129})
    assert st == 400
    ims_error(js, "IMG.0002")


@pytest.mark.parametrize("body", [
    b'{"action":"create","tags":[{"key":"\xff","value":"v"}]}',
    b'{"action":"create","tags":[{"key":"k","value":"\xc3\x28"}]}',
    b'{"action":"create","tags":[{"key":"k","value":"v"}],"junk":"\xed\xa0\x80"}',
    b'{"action":"cr\xe9ate","tags":[{"key":"k","value":"v"}]}',
    b'{"action":"create","tags":[{"key":"\xc0\xaf","value":"v"}]}',
    b'{"action":"create","tags":[{"key":"k","value":"\xf4\x90\x80\x80"}]}',
    b'{"action":"create","tags":[{"key":"k","value":"\xe9\x83"}]}',
])
def test_invalid_utf8_body(gw, image, body):
    st, h, js, _ = gw.request("POST", gw.tags_path(image) + "/action", body)
    assert st == 400
    ims_error(js, "IMG.0001")
    assert h["Content-Type"] == JSON_CT
    assert gw.image_tags(image) == []


def test_unknown_fields_ignored(gw, image):
    body = {"action": "create", "extra": {"x": [1, 2]}, "version": 7,
            "tags": [{"key": "a", "value": "1", "comment": "ignored"}]}
    st, _, _, raw = gw.request("POST", gw.tags_path(image) + "/action", body)
    assert st == 204, raw
    assert gw.image_tags(image) == [{"key": "a", "value": "1"}]
    st, _, js, raw = gw.request("POST", "/v2/images", {"name": "unk", "colour": "blue", "size": 3})
    assert st == 201, raw
    assert "colour" not in js


# ---- body size ------------------------------------------------------------------

def padded_body(total):
    """A valid JSON object of exactly `total` bytes."""
    head = '{"name":"big","pad":"'
    tail = '"}'
    return (head + "x" * (total - len(head) - len(tail)) + tail).encode()


def test_body_over_1mib_is_413(gw):
    body = padded_body(MiB + 1)
    before = gw.status()["images"]
    st, h, js, _ = gw.request("POST", "/v2/images", body)
    assert st == 413
    gateway_error(js, h, "APIGW.0201")
    assert "more than 1048576 bytes (the gateway's --body-limit)" in js["error_msg"], js
    assert h["Content-Type"] == JSON_CT
    assert gw.status()["images"] == before


def test_body_of_exactly_1mib_is_accepted(gw):
    st, _, js, raw = gw.request("POST", "/v2/images", padded_body(MiB))
    assert st == 201, raw[:200]
    assert js["name"] == "big"


@pytest.mark.parametrize("size", [MiB + 2, 3 * MiB // 2, 2 * MiB])
def test_huge_body_is_413_json(gw, size):
    head = ("POST /v2/images HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "X-Auth-Token: %s\r\nContent-Length: %d\r\n\r\n" % (gw.token, size)).encode()
    body = b'{"name":"' + b"x" * (size - 11) + b'"}'
    st, h, raw = raw_http(gw.port, head, body)
    assert st == 413
    assert h.get("content-type") == JSON_CT, h
    assert h.get("x-request-id"), h
    js = json.loads(raw)
    assert js["error_code"] == "APIGW.0201"
    assert js["request_id"] == h["x-request-id"]


@pytest.mark.parametrize("size", [2 * MiB + 4097, 5 * MiB, 40 * MiB])
def test_body_beyond_buffering_cap_is_refused_and_server_healthy(gw, size):
    """Past 2x the limit the gateway does not buffer at all: evhttp itself
    refuses it (413, closing the connection; README documents this), nothing
    is stored and other clients are unaffected.  At 32x, sixteen such
    uploads held 480 MB."""
    before = gw.status()["images"]
    head = ("POST /v2/images HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "X-Auth-Token: %s\r\nContent-Length: %d\r\n\r\n" % (gw.token, size)).encode()
    body = b'{"name":"' + b"x" * (size - 11) + b'"}'
    st, h, raw = raw_http(gw.port, head, body)
    assert st == 413
    # evhttp's own answer, sent before the body is read: not the JSON one
    assert h.get("content-type", "").startswith("text/html") and not h.get("x-request-id"), h
    st, _, js, _ = gw.request("GET", "/healthz")
    assert st == 200 and js == {"status": "ok"}
    assert gw.status()["images"] == before


def test_body_2mib_is_413(gw, image):
    body = b'{"action":"create","tags":[{"key":"k","value":"' + b"v" * (2 * MiB) + b'"}]}'
    st, h, js, _ = gw.request("POST", gw.tags_path(image) + "/action", body)
    assert st == 413
    gateway_error(js, h, "APIGW.0201")


# ---- malformed bodies -------------------------------------------------------------

def test_empty_body(gw, image):
    st, _, js, _ = gw.request("POST", gw.tags_path(image) + "/action", b"")
    assert st == 400
    ims_error(js, "IMG.0007")
    st, _, js, _ = gw.request("POST", gw.tags_path(image) + "/action", None)
    assert st == 400
    ims_error(js, "IMG.0007")
    st, _, js, _ = gw.request("POST", "/v2/images", b"")
    assert st == 400
    ims_error(js, "IMG.0007")
    st, _, js, _ = gw.request("POST", gw.tags_path(image), b"")
    assert st == 400
    ims_error(js, "IMG.0007")


@pytest.mark.parametrize("body", [
    b'{"action":"create","tags":[{"key":"k","value":"v"}]',
    b'{"action":',
    b"action=create",
    b"{'action':'create'}",
    b'{"action":"create","tags":[{"key":"k","value":"v"}]} trailing',
])
def test_invalid_json(gw, image, body):
    st, _, js, _ = gw.request("POST", gw.tags_path(image) + "/action", body)
    assert st == 400
    ims_error(js, "IMG.0001")
    assert gw.image_tags(image) == []


# Bodies lua-cjson decodes though they are not JSON (RFC 8259): each was
# answered, and a write committed, before the strict check (src/json.c).
NOT_JSON = [
    # (id, body, what the message says, the byte it names: the offending one)
    ("form-feed-in-object", b'{"action":"create","tags":[{"key":"ff","value":"v"}],"x":{\f}}',
     "an object member without a quoted name", 59),
    ("vertical-tab-between", b'{"action":"create",\v"tags":[{"key":"vt","value":"v"}]}',
     "an object member without a quoted name", 20),
    ("raw-tab-in-string", b'{"action":"create","tags":[{"key":"a\tb","value":"v"}]}',
     "a raw control character in a string (it must be escaped)", 37),
    ("raw-0x01-in-string", b'{"action":"create","tags":[{"key":"k","value":"v\x01"}]}',
     "a raw control character in a string (it must be escaped)", 49),
    ("trailing-dot-number", b'{"action":"create","tags":[{"key":"k","value":"v"}],"n":40.}',
     "a number without digits after its decimal point", 60),
    ("leading-zero", b'{"action":"create","tags":[{"key":"k","value":"v"}],"n":007}',
     "a number with a leading zero", 58),
    ("bad-escape", b'{"action":"create","tags":[{"key":"k\\q","value":"v"}]}',
     "an unknown escape in a string", 38),
    # half a surrogate pair names no character: lua-cjson refused these
    # with no reason, the check names the escape
    ("lone-high-surrogate", b'{"action":"create","tags":[{"key":"k","value":"\\ud83d"}]}',
     "a \\u escape of a high surrogate without a low one after it", 48),
    ("reversed-pair", b'{"action":"create","tags":[{"key":"k","value":"\\udc00\\ud800"}]}',
     "a \\u escape of a low surrogate without a high one before it", 48),
    ("byte-order-mark", b'\xef\xbb\xbf{"action":"create","tags":[{"key":"k","value":"v"}]}',
     "a byte order mark before the text (JSON has none)", 1),
]


@pytest.mark.parametrize("case,body,why,byte", NOT_JSON, ids=[c[0] for c in NOT_JSON])
def test_what_lua_cjson_takes_but_json_is_not_is_refused(gw, image, case, body, why, byte):
    """§0: a body that is not JSON is 400 IMG.0001, naming what is wrong and
    where, and stores nothing."""
    msg = ims_error(gw.request("POST", gw.tags_path(image) + "/action", body)[2], "IMG.0001")
    assert msg == "request body is not valid JSON: %s at byte %d" % (why, byte), msg
    assert gw.image_tags(image) == []


@pytest.mark.parametrize("body,byte", [(b"\f", 1), (b"\v", 1), (b" \f ", 2), (b"\x0b\x0c", 1)])
def test_a_body_of_form_feeds_is_not_json_rather_than_empty(gw, image, body, byte):
    """JSON's whitespace is space, tab, CR and LF: a form feed is a character."""
    msg = ims_error(gw.request("POST", gw.tags_path(image) + "/action", body)[2], "IMG.0001")
    assert msg == "request body is not valid JSON: an unexpected character where a value " \
                  "should be at byte %d" % byte, msg


@pytest.mark.parametrize("body,msg", [
    (b"hello", "request body is not valid JSON: an unexpected character where a value should be at byte 1"),
    (b"[", "request body is not valid JSON: the text ends where a value should be at byte 2"),
    (b'{"action": "create"', "request body is not valid JSON: the text ends inside an array or object at byte 20"),
    (b"[]", "request body must be a JSON object"),
    (b' "create"', "request body must be a JSON object"),
    (b"5", "request body must be a JSON object"),
    (b"null", "request body must be a JSON object"),
])
def test_text_that_is_not_json_is_told_from_json_that_is_not_an_object(gw, image, body, msg):
    """§0: both are 400 IMG.0001; the message says which."""
    got = ims_error(gw.request("POST", gw.tags_path(image) + "/action", body)[2], "IMG.0001")
    assert got == msg, got
    assert gw.image_tags(image) == []


def test_other_bodies_are_checked_as_strictly(gw, image):
    """The check is the body's, whatever the route: an image registration and
    a query refuse the same texts (and register or count nothing)."""
    before = gw.count()
    st, _, js, _ = gw.request("POST", "/v2/images", b'{"name":"dot","min_disk":40.}')
    assert st == 400, js
    assert "decimal point" in ims_error(js, "IMG.0001")
    assert gw.count() == before
    query = "/v2/%s/images/resource_instances/action" % gw.project
    st, _, js, _ = gw.request("POST", query, b'{"action":"count","tags":[{"key":"a\x01b","values":[]}]}')
    assert st == 400, js
    assert "raw control character" in ims_error(js, "IMG.0001")
    # escaped, the same characters are fine
    st, _, js, _ = gw.request("POST", query, b'{"action":"count","tags":[{"key":"a\\u0001b","values":[]}]}')
    assert st == 200 and js == {"total_count": 0}, js


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"123", b"true", b"null",
                                  b'[{"action":"create","tags":[{"key":"k","value":"v"}]}]'])
def test_body_not_an_object(gw, image, body):
    st, _, js, _ = gw.request("POST", gw.tags_path(image) + "/action", body)
    assert st == 400
    ims_error(js, "IMG.0001")
    st, _, js, _ = gw.request("POST", "/v2/images", body)
    assert st == 400
    ims_error(js, "IMG.0001")


def test_wrong_type_names_field(gw, image):
    st, _, js, _ = gw.batch(image, "create", "not-an-array")
    assert st == 400
    assert "tags" in ims_error(js, "IMG.0001")


# ---- access log -------------------------------------------------------------------

def test_access_log_line_per_request(gw, image):
    cases = [
        ("POST", gw.tags_path(image) + "/action",
         {"action": "create", "tags": [{"key": "log", "value": "1"}]}, 204,
         "POST /v2/{project_id}/images/{image_id}/tags/action"),
        ("GET", gw.tags_path(image), None, 200, "GET /v2/{project_id}/images/{image_id}/tags"),
        ("GET", "/v2/images/" + image, None, 200, "GET /v2/images/{image_id}"),
        ("POST", "/v2/images", {"name": 5}, 400, "POST /v2/images"),
        ("GET", "/healthz", None, 200, "GET /healthz"),
    ]
    for method, path, body, status, route in cases:
        st, h, _, _ = gw.request(method, path, body)
        assert st == status
        rid = h["X-Request-Id"]
        entries = gw.access_log(rid)
        assert len(entries) == 1, (rid, entries)
        e = entries[0]
        assert e["request_id"] == rid
        assert e["method"] == method
        assert e["route"] == route
        assert e["status"] == status
        assert isinstance(e["latency_us"], int) and e["latency_us"] >= 0


def test_access_log_for_gateway_errors(gw):
    for method, path, token, status in [
        ("GET", "/no/such/thing", None, 404),
        ("GET", "/v2/%s/images/tags" % gw.project, None, 401),
        ("GET", "/v2/%s/images/tags" % random_project(), gw.token, 403),
    ]:
        st, h, _, _ = gw.request(method, path, token=token)
        assert st == status
        entries = gw.access_log(h["X-Request-Id"])
        assert len(entries) == 1
        assert entries[0]["status"] == status and entries[0]["method"] == method
        assert isinstance(entries[0]["latency_us"], int)


# ---- §0.1 precedence ------------------------------------------------------------------

def test_413_before_unknown_route(gw):
    st, h, js, _ = gw.request("POST", "/no/such/route", padded_body(MiB + 10), token=None)
    assert st == 413
    gateway_error(js, h, "APIGW.0201")


def test_413_before_401(gw, image):
    st, h, js, _ = gw.request("POST", gw.tags_path(image) + "/action", padded_body(MiB + 10), token=None)
    assert st == 413
    gateway_error(js, h, "APIGW.0201")


@pytest.mark.parametrize("method,path", [
    ("GET", "/v2/nothing"),
    ("GET", "/"),
    ("POST", "/healthz"),
    ("PUT", "/v2/images"),
    ("GET", "/v2/images"),
    ("PATCH", "/v2/images/00000000-0000-0000-0000-000000000000"),
    ("PUT", "/v2/{p}/images/00000000-0000-0000-0000-000000000000/tags"),
    ("GET", "/v2/{p}/images/00000000-0000-0000-0000-000000000000/tags/action"),
    ("GET", "/admin/reload"),
])
def test_unknown_route_404_before_401(gw, method, path):
    path = path.replace("{p}", gw.project)
    st, h, js, _ = gw.request(method, path, body=b"{}" if method in ("PUT", "PATCH", "POST") else None,
                              token=None)
    assert st == 404
    gateway_error(js, h, "APIGW.0101")
    st, h, js, _ = gw.request(method, path, body=b"{}" if method in ("PUT", "PATCH", "POST") else None)
    assert st == 404
    gateway_error(js, h, "APIGW.0101")


def test_401_before_403(gw):
    other = random_project()
    st, h, js, _ = gw.request("GET", "/v2/%s/images/tags" % other, token=None)
    assert st == 401
    gateway_error(js, h, "APIGW.0301")
    st, h, js, _ = gw.request("POST", "/admin/reload", token="nope")
    assert st == 401
    gateway_error(js, h, "APIGW.0301")


def test_401_before_400(gw, image):
    st, h, js, _ = gw.request("POST", gw.tags_path(image) + "/action", b"not json", token=None)
    assert st == 401
    gateway_error(js, h, "APIGW.0301")


def test_403_before_400(gw, image):
    other = random_project()
    st, h, js, _ = gw.request("POST", "/v2/%s/images/%s/tags/action" % (other, image), b"not json")
    assert st == 403
    gateway_error(js, h, "APIGW.0302")
    st, h, js, _ = gw.request("POST", "/v2/%s/images/%s/tags/action" % (other, image), b"")
    assert st == 403
    gateway_error(js, h, "APIGW.0302")


def test_403_before_404(gw):
    other = random_project()
    st, h, js, _ = gw.request("GET", "/v2/%s/images/%s/tags" % (other, "00000000-0000-0000-0000-000000000000"))
    assert st == 403
    gateway_error(js, h, "APIGW.0302")


def test_400_before_image_not_found(gw):
    missing = "00000000-0000-0000-0000-000000000001"
    path = gw.tags_path(missing) + "/action"
    for body, code in [
        (b"", "IMG.0007"),
        (b"[]", "IMG.0001"),
        ({"action": "Create", "tags": [{"key": "k", "value": "v"}]}, "IMG.0001"),
        ({"action": "create", "tags": [{"key": "bad key", "value": "v"}]}, "IMG.0115"),
    ]:
        st, _, js, _ = gw.request("POST", path, body)
        assert st == 400, body
        ims_error(js, code)
    st, _, js, _ = gw.request("POST", gw.tags_path(missing), {"tag": {"key": "a.b", "value": "v"}})
    assert st == 400
    ims_error(js, "IMG.0115")
    # and with a valid body, the missing image is a 404
    st, _, js, _ = gw.request("POST", path, {"action": "create", "tags": [{"key": "k", "value": "v"}]})
    assert st == 404
    ims_error(js, "IMG.0027")


# ---- from helper-18's audit against API.md ------------------------------------

def test_head_answers_the_get_headers_without_a_body(gw, image):
    """HEAD on a GET route: the GET answer's status and headers, its length
    as Content-Length, and no body, so a keep-alive connection stays in step
    (the body used to follow the headers with no length)."""
    import http.client
    path = "/v2/%s/images/%s/tags" % (gw.project, image)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        hdrs = {"X-Auth-Token": gw.token}
        conn.request("GET", path, headers=hdrs)
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200 and body
        conn.request("HEAD", path, headers=hdrs)
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b""
        assert r.getheader("Content-Length") == str(len(body))
        assert r.getheader("X-Request-Id")
        conn.request("GET", "/healthz")                 # the same connection, in step
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())
    finally:
        conn.close()
    # the raw bytes: nothing after the headers of a HEAD answer
    st, h, rest = raw_http(gw.port, b"HEAD %s HTTP/1.1\r\nHost: x\r\nX-Auth-Token: %s\r\n"
                           b"Connection: close\r\n\r\n" % (path.encode(), gw.token.encode()))
    assert st == 200 and rest == b"", (st, h, rest)


@pytest.mark.parametrize("method", ["TRACE", "CONNECT"])
def test_other_methods_evhttp_knows_get_the_gateway_404(gw, image, method):
    path = "/v2/%s/images/%s/tags" % (gw.project, image)
    st, h, body = raw_http(gw.port, b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                           % (method.encode(), path.encode()))
    assert st == 404, (st, body)
    assert h.get("x-request-id"), h
    # evhttp counts no body for a CONNECT answer: the length is ours, else
    # a client waits for the close, which evhttp never makes for one
    assert h.get("content-length") == str(len(body)), h
    js = json.loads(body)
    assert js["error_code"] == "APIGW.0101", js
    if method == "CONNECT":             # and the connection is closed after it
        data = send_until_closed(gw.port, b"CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        assert data.startswith(b"HTTP/1.1 404") and data.count(b"HTTP/1.1 ") == 1, data


@pytest.mark.parametrize("method", ["FOO", "PROPFIND", "get", "MKCOL"])
def test_methods_evhttp_does_not_know_get_the_gateway_404(gw, image, method):
    """§0.1: an unknown method on any path is 404 APIGW.0101 with the JSON
    body and X-Request-Id, as every answer (libevent 2.1 answered these with
    its own HTML 501 before any callback of ours ran).  evhttp reads no body
    after such a method, so the connection closes after the answer: a body
    sent along is never taken for a second request."""
    path = "/v2/%s/images/%s/tags" % (gw.project, image)
    st, h, body = raw_http(gw.port, b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method.encode(), path.encode()))
    assert st == 404, (st, body)
    assert h.get("x-request-id") and h.get("content-type") == JSON_CT, h
    js = json.loads(body)
    assert js["error_code"] == "APIGW.0101" and js["request_id"] == h["x-request-id"], js
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    data = send_until_closed(gw.port, b"%s /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                             % (method.encode(), len(smuggled), smuggled))
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert data.startswith(b"HTTP/1.1 404"), data


@pytest.mark.parametrize("head", [
    "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    "HEAD /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n",
    "TRACE /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n",
    "FOO /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n",
], ids=["connect-pipelined", "head-body", "trace-body", "unknown-body"])
def test_a_write_behind_a_request_evhttp_reads_no_body_for_is_never_run(gw, image, head):
    """evhttp reads no body after HEAD, TRACE or a method it does not know,
    and keeps a CONNECT's connection open whatever the answer says: a
    write sent behind one (as its body, or pipelined) was run as the next
    request, its answer lost, the client told the connection closed.  The
    connection now closes after the first answer and the write never runs."""
    key = "smuggled-" + head.split(" ", 1)[0].lower()
    body = json.dumps({"action": "create", "tags": [{"key": key, "value": "1"}]})
    write = ("POST /v2/%s/images/%s/tags/action HTTP/1.1\r\nHost: x\r\nX-Auth-Token: %s\r\n"
             "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
             % (gw.project, image, gw.token, len(body), body)).encode()
    data = send_until_closed(gw.port, head.format(n=len(write)).encode() + write)
    assert data.count(b"HTTP/1.1 ") == 1, data
    time.sleep(0.2)                     # had it run, its group would be committed by now
    assert key not in [t["key"] for t in gw.image_tags(image)]


@pytest.mark.parametrize("path,name", [("/v2/images/%FF", "image_id"), ("/v2/{p}/images/%FF/tags", "image_id"),
                                       ("/v2/{p}/images/{i}/tags/%FF", "key"),
                                       ("/v1/cloudimages/job/%FF", "job_id")])
def test_a_path_segment_not_utf8_is_400(gw, image, path, name):
    """§0: a string that is not valid UTF-8 is a 400 IMG.0001, a path
    segment's once percent-decoded too, naming the segment (it was a 404
    whose message echoed the byte as U+FFFD); the body stays UTF-8."""
    path = path.replace("{p}", gw.project).replace("{i}", image)
    method = "DELETE" if path.endswith("tags/%FF") else "GET"
    st, _, js, raw = gw.request(method, path)
    assert st == 400, raw
    raw.decode("utf-8")                                  # strict: raises if not UTF-8
    ims_error(js, "IMG.0001")
    assert js["error"]["message"].startswith(name + ": is not valid UTF-8"), js
