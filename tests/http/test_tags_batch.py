"""API.md §1.1: batch add/update or delete of image tags."""
import pytest

from conftest import ims_error

MISSING = "00000000-0000-4000-8000-00000000dead"


def tag(k, v=None):
    return {"key": k, "value": v} if v is not None else {"key": k}


def ten_tags(prefix="t"):
    return [tag("%s%d" % (prefix, i), "v%d" % i) for i in range(10)]


def assert_400(resp, code, *fragments):
    st, _, js, raw = resp
    assert st == 400, (st, raw)
    msg = ims_error(js, code)
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# ---- create ------------------------------------------------------------------------

def test_create_204_and_sorted_by_key(gw, image):
    tags = [tag("zeta", "1"), tag("Beta", "2"), tag("alpha", "3"), tag("_u", "4"),
            tag("-d", "5"), tag("9n", "6"), tag("\u90e8\u95e8", "7"), tag("Z", "8")]
    st, h, js, raw = gw.batch(image, "create", tags)
    assert st == 204 and raw == b""
    got = gw.image_tags(image)
    expected = sorted(tags, key=lambda t: t["key"].encode("utf-8"))
    assert got == expected
    assert [t["key"] for t in got] == ["-d", "9n", "Beta", "Z", "_u", "alpha", "zeta", "\u90e8\u95e8"]


def test_overwrite_same_key_new_value(gw, image):
    assert gw.batch(image, "create", [tag("env", "dev"), tag("team", "a")])[0] == 204
    assert gw.batch(image, "create", [tag("env", "prod")])[0] == 204
    assert gw.image_tags(image) == [tag("env", "prod"), tag("team", "a")]


def test_same_key_same_value_noop(gw, image):
    assert gw.batch(image, "create", [tag("env", "dev")])[0] == 204
    st, _, _, raw = gw.batch(image, "create", [tag("env", "dev")])
    assert st == 204, raw
    assert gw.image_tags(image) == [tag("env", "dev")]


def test_idempotent_repeat(gw, image):
    body = [tag("a", "1"), tag("b", ""), tag("c", "x.y")]
    r1 = gw.batch(image, "create", body)
    s1 = gw.image_tags(image)
    r2 = gw.batch(image, "create", body)
    s2 = gw.image_tags(image)
    assert r1[0] == 204 and r2[0] == 204
    assert s1 == s2 == [tag("a", "1"), tag("b", ""), tag("c", "x.y")]


def test_key_length_boundary(gw, image):
    k36 = "k" * 36
    assert gw.batch(image, "create", [tag(k36, "v")])[0] == 204
    assert_400(gw.batch(image, "create", [tag("k" * 37, "v")]), "IMG.0115", "tags[0].key")
    assert gw.image_tags(image) == [tag(k36, "v")]


def test_value_length_boundary(gw, image):
    assert gw.batch(image, "create", [tag("k", "v" * 43)])[0] == 204
    assert_400(gw.batch(image, "create", [tag("k", "w" * 44)]), "IMG.0115", "tags[0].value")
    assert gw.image_tags(image) == [tag("k", "v" * 43)]


def test_ten_tags_ok_eleventh_rejected(gw, image):
    assert gw.batch(image, "create", ten_tags())[0] == 204
    before = gw.image_tags(image)
    assert len(before) == 10
    assert_400(gw.batch(image, "create", [tag("eleventh", "x")]), "IMG.0116")
    # a mix of overwrite + one new key is also over quota and changes nothing
    assert_400(gw.batch(image, "create", [tag("t0", "changed"), tag("new", "x")]), "IMG.0116")
    assert gw.image_tags(image) == before
    # overwriting existing keys at the quota is fine
    assert gw.batch(image, "create", [tag("t0", "changed")])[0] == 204
    assert {t["key"]: t["value"] for t in gw.image_tags(image)}["t0"] == "changed"


def test_eleven_tags_in_one_batch(gw, image):
    tags = [tag("k%02d" % i, "v") for i in range(11)]
    assert_400(gw.batch(image, "create", tags), "IMG.0116")
    assert gw.image_tags(image) == []


def test_quota_counts_existing_tags(gw, image):
    assert gw.batch(image, "create", [tag("e%d" % i, "v") for i in range(8)])[0] == 204
    assert_400(gw.batch(image, "create", [tag("n1", "v"), tag("n2", "v"), tag("n3", "v")]), "IMG.0116")
    assert len(gw.image_tags(image)) == 8
    assert gw.batch(image, "create", [tag("n1", "v"), tag("n2", "v"), tag("e0", "w")])[0] == 204
    assert len(gw.image_tags(image)) == 10


@pytest.mark.parametrize("key", ["", "   ", " "])
def test_blank_key(gw, image, key):
    assert_400(gw.batch(image, "create", [tag(key, "v")]), "IMG.0115", "tags[0].key")
    assert gw.image_tags(image) == []


@pytest.mark.parametrize("key", ["has space", "a.b", "a/b", " lead", "trail ", "a:b", "a=b", "a@b",
                                 "\u00e9t\u00e9", "tab\t", "\U0001F600"])
def test_key_bad_characters(gw, image, key):
    assert_400(gw.batch(image, "create", [tag(key, "v")]), "IMG.0115", "tags[0].key")
    assert gw.image_tags(image) == []


@pytest.mark.parametrize("key", ["\u4e00", "\u9fff", "\u4e00\u9fffAz09_-", "A", "_", "-"])
def test_key_charset_edges_accepted(gw, image, key):
    assert gw.batch(image, "create", [tag(key, "v")])[0] == 204
    assert gw.image_tags(image) == [tag(key, "v")]


@pytest.mark.parametrize("key", ["\u3400", "\ua000", "\u3002", "\uff21", "k\u0000"])
def test_key_charset_edges_rejected(gw, image, key):
    assert_400(gw.batch(image, "create", [tag(key, "v")]), "IMG.0115", "tags[0].key")


@pytest.mark.parametrize("value", ["a.b", "", "1.2.3", "\u90e8.v1", "-_.", ".", "\u4e00\u9fff"])
def test_value_accepted(gw, image, value):
    assert gw.batch(image, "create", [tag("k", value)])[0] == 204
    assert gw.image_tags(image) == [tag("k", value)]


@pytest.mark.parametrize("value", ["a b", "a/b", "a:b", "\U0001F600", "a,b"])
def test_value_bad_characters(gw, image, value):
    assert_400(gw.batch(image, "create", [tag("k", value)]), "IMG.0115", "tags[0].value")


def test_missing_value_on_create(gw, image):
    assert_400(gw.batch(image, "create", [tag("k")]), "IMG.0115", "tags[0].value")
    assert_400(gw.batch(image, "create", [{"key": "k", "value": None}]), "IMG.0115", "tags[0].value")
    assert gw.image_tags(image) == []


def test_missing_key_on_create(gw, image):
    assert_400(gw.batch(image, "create", [{"value": "v"}]), "IMG.0115", "tags[0].key")


@pytest.mark.parametrize("key", [123, 1.5, True, ["k"], {"k": "v"}])
def test_key_not_a_string(gw, image, key):
    assert_400(gw.batch(image, "create", [{"key": key, "value": "v"}]), "IMG.0115", "tags[0].key")
    assert gw.image_tags(image) == []


@pytest.mark.parametrize("value", [123, False, ["v"], {"v": 1}])
def test_value_not_a_string(gw, image, value):
    assert_400(gw.batch(image, "create", [{"key": "k", "value": value}]), "IMG.0115", "tags[0].value")


def test_duplicate_key_in_body(gw, image):
    msg = assert_400(gw.batch(image, "create", [tag("a", "1"), tag("dupkey", "1"), tag("dupkey", "2")]),
                     "IMG.0115", "dupkey")
    assert "tags[2]" in msg or "tags[1]" in msg
    assert gw.image_tags(image) == []
    # same value too
    assert_400(gw.batch(image, "create", [tag("same", "1"), tag("same", "1")]), "IMG.0115", "same")
    assert_400(gw.batch(image, "delete", [tag("gone"), tag("gone")]), "IMG.0115", "gone")


@pytest.mark.parametrize("action", ["Create", "CREATE", "Delete", "DELETE", "", "add", 123, True, None,
                                    ["create"], {"x": "create"}, " create", "create "])
def test_bad_action(gw, image, action):
    body = {"action": action, "tags": [tag("k", "v")]}
    if action is None:
        body = {"tags": [tag("k", "v")]}
    st, _, js, _ = gw.request("POST", gw.tags_path(image) + "/action", body)
    assert st == 400
    assert "action" in ims_error(js, "IMG.0001")
    assert gw.image_tags(image) == []


def test_action_null_is_missing(gw, image):
    st, _, js, _ = gw.request("POST", gw.tags_path(image) + "/action", {"action": None, "tags": [tag("k", "v")]})
    assert st == 400
    ims_error(js, "IMG.0001")


@pytest.mark.parametrize("tags", ["MISSING", None, [], "x", 5, {"key": "k", "value": "v"}, True])
@pytest.mark.parametrize("action", ["create", "delete"])
def test_bad_tags_field(gw, image, tags, action):
    body = {"action": action}
    if tags != "MISSING":
        body["tags"] = tags
    st, _, js, _ = gw.request("POST", gw.tags_path(image) + "/action", body)
    assert st == 400
    assert "tags" in ims_error(js, "IMG.0001")


@pytest.mark.parametrize("elem", ["k=v", 1, None, ["k", "v"], True])
def test_tag_element_not_object(gw, image, elem):
    st, _, js, _ = gw.request("POST", gw.tags_path(image) + "/action",
                              {"action": "create", "tags": [tag("ok", "v"), elem]})
    assert st == 400
    assert "tags[1]" in ims_error(js, "IMG.0001")
    assert gw.image_tags(image) == []


def test_error_names_field_with_index(gw, image):
    good = [tag("a", "1"), tag("b", "2")]
    assert_400(gw.batch(image, "create", good + [tag("bad key", "v")]), "IMG.0115", "tags[2].key")
    assert_400(gw.batch(image, "create", good + [tag("c", "bad value")]), "IMG.0115", "tags[2].value")
    assert_400(gw.batch(image, "create", [tag("a", "1"), tag("b", "x" * 44)]), "IMG.0115", "tags[1].value")
    assert_400(gw.batch(image, "delete", good + [tag("")]), "IMG.0115", "tags[2].key")
    assert_400(gw.batch(image, "delete", good + [tag("k", "v" * 256)]), "IMG.0115", "tags[2].value")


def test_atomic_one_bad_tag_changes_nothing(gw, image):
    assert gw.batch(image, "create", [tag("keep", "old"), tag("other", "1")])[0] == 204
    before = gw.image_tags(image)
    st, _, _, _ = gw.request("GET", "/v2/images/" + image)
    updated_before = gw.request("GET", "/v2/images/" + image)[2]["updated_at"]
    resp = gw.batch(image, "create", [tag("keep", "new"), tag("fresh", "1"), tag("bad/key", "x"), tag("z", "1")])
    assert_400(resp, "IMG.0115", "tags[2].key")
    assert gw.image_tags(image) == before
    assert gw.request("GET", "/v2/images/" + image)[2]["updated_at"] == updated_before
    # a delete batch with a bad 3rd entry deletes nothing
    resp = gw.batch(image, "delete", [tag("keep"), tag("other"), tag("   ")])
    assert_400(resp, "IMG.0115", "tags[2].key")
    assert gw.image_tags(image) == before


def test_unknown_image_404(gw):
    st, _, js, _ = gw.batch(MISSING, "create", [tag("k", "v")])
    assert st == 404
    ims_error(js, "IMG.0027")
    st, _, js, _ = gw.batch(MISSING, "delete", [tag("k")])
    assert st == 404
    ims_error(js, "IMG.0027")
    st, _, js, _ = gw.batch("not-a-uuid", "create", [tag("k", "v")])
    assert st == 404
    ims_error(js, "IMG.0027")


def test_quota_checked_after_image_found(gw):
    tags = [tag("k%02d" % i, "v") for i in range(11)]
    st, _, js, _ = gw.batch(MISSING, "create", tags)
    assert st == 404
    ims_error(js, "IMG.0027")


# ---- delete ------------------------------------------------------------------------

def test_delete_by_key(gw, image):
    assert gw.batch(image, "create", [tag("a", "1"), tag("b", "2"), tag("c", "3")])[0] == 204
    st, _, _, raw = gw.batch(image, "delete", [tag("a"), tag("c")])
    assert st == 204 and raw == b""
    assert gw.image_tags(image) == [tag("b", "2")]


def test_delete_value_ignored(gw, image):
    assert gw.batch(image, "create", [tag("a", "1"), tag("b", "2")])[0] == 204
    assert gw.batch(image, "delete", [tag("a", "not-the-value")])[0] == 204
    assert gw.batch(image, "delete", [tag("b", "")])[0] == 204
    assert gw.image_tags(image) == []


def test_delete_absent_key_ok(gw, image):
    assert gw.batch(image, "create", [tag("a", "1")])[0] == 204
    st, _, _, raw = gw.batch(image, "delete", [tag("absent"), tag("also-absent", "x")])
    assert st == 204, raw
    assert gw.image_tags(image) == [tag("a", "1")]
    st, _, _, raw = gw.batch(image, "delete", [tag("absent"), tag("a")])
    assert st == 204, raw
    assert gw.image_tags(image) == []


@pytest.mark.parametrize("key", ["", "   "])
def test_delete_blank_key(gw, image, key):
    assert_400(gw.batch(image, "delete", [tag(key)]), "IMG.0115", "tags[0].key")


def test_delete_missing_key_or_not_string(gw, image):
    assert_400(gw.batch(image, "delete", [{"value": "v"}]), "IMG.0115", "tags[0].key")
    assert_400(gw.batch(image, "delete", [{"key": 7}]), "IMG.0115", "tags[0].key")
    assert_400(gw.batch(image, "delete", [{"key": "k", "value": 7}]), "IMG.0115", "tags[0].value")


def test_delete_key_length(gw, image):
    assert gw.batch(image, "delete", [tag("k" * 127)])[0] == 204
    assert_400(gw.batch(image, "delete", [tag("k" * 128)]), "IMG.0115", "tags[0].key")


def test_delete_value_length(gw, image):
    assert gw.batch(image, "create", [tag("k", "v")])[0] == 204
    assert_400(gw.batch(image, "delete", [tag("k", "v" * 256)]), "IMG.0115", "tags[0].value")
    assert gw.image_tags(image) == [tag("k", "v")]
    assert gw.batch(image, "delete", [tag("k", "v" * 255)])[0] == 204
    assert gw.image_tags(image) == []


def test_delete_has_no_charset_check(gw, image):
    for key in ["has space", "a.b/c", "a:b=c@d", "\U0001F600", "\u00e9t\u00e9"]:
        st, _, _, raw = gw.batch(image, "delete", [tag(key, "any value / with . chars")])
        assert st == 204, (key, raw)


def test_delete_at_quota_then_add(gw, image):
    assert gw.batch(image, "create", ten_tags())[0] == 204
    assert gw.batch(image, "delete", [tag("t3")])[0] == 204
    assert gw.batch(image, "create", [tag("fresh", "1")])[0] == 204
    keys = [t["key"] for t in gw.image_tags(image)]
    assert len(keys) == 10 and "fresh" in keys and "t3" not in keys


def test_a_tag_given_as_an_empty_array_is_malformed(gw, image):
    """§0.1: a tag not an object is IMG.0001 (an empty JSON array decoded to
    the same Lua table as {} and passed as an object, then failed IMG.0115)."""
    for action in ("create", "delete"):
        st, _, js, raw = gw.batch(image, action, [[]])
        assert st == 400, raw
        assert ims_error(js, "IMG.0001").startswith("tags[0]"), js
    st, _, js, raw = gw.request("POST", gw.tags_path(image), {"tag": []})
    assert st == 400, raw
    assert ims_error(js, "IMG.0001").startswith("tag"), js


def test_list_longer_than_any_quota(gw, image):
    """A create of more entries than any image may hold (the quota, and at
    least 1,000) answers the quota error before any per-entry work, and
    nothing changes.  A delete has no bound (API.md §1.1 sets none, and
    deleting absent keys succeeds): 1,500 keys, one present, is 204
    (helper-65 found such a delete refused with IMG.0001; kept small
    enough for the script budget under valgrind)."""
    assert gw.batch(image, "create", [tag("keep", "1"), tag("stay", "2")])[0] == 204
    assert_400(gw.batch(image, "create", [tag("k%d" % i, "") for i in range(1001)]),
               "IMG.0116", "1001 tags", "more than the 10 allowed")
    st, _, _, raw = gw.batch(image, "delete", [tag("k%d" % i) for i in range(1499)] + [tag("keep")])
    assert st == 204, raw
    assert gw.image_tags(image) == [tag("stay", "2")]
    # an invalid entry late in a long delete is named, and nothing changes
    st, _, js, raw = gw.batch(image, "delete", [tag("stay")] + [tag("k%d" % i) for i in range(1200)] + [tag("")])
    assert st == 400, raw
    assert ims_error(js, "IMG.0115").startswith("tags[1201].key"), js
    assert gw.image_tags(image) == [tag("stay", "2")]
    # the image comes before the quota (API.md §9): an unknown one is 404
    for action in ("create", "delete"):
        st, _, js, raw = gw.batch(MISSING, action, [tag("k%d" % i, "") for i in range(1001)])
        assert st == 404, raw
        ims_error(js, "IMG.0027")


@pytest.mark.parametrize("key", ["\t", "\n", " \t"])
def test_delete_key_of_other_white_space_is_not_blank(gw, image, key):
    """Blank is empty or only spaces (§1.1); a delete checks no character
    set, so a tab key is a key like any other: absent here, 204."""
    assert gw.batch(image, "create", [tag("keep", "1")])[0] == 204
    st, _, _, raw = gw.batch(image, "delete", [tag(key)])
    assert st == 204, raw
    assert gw.image_tags(image) == [tag("keep", "1")]


def test_deep_json_in_an_ignored_field(gw, image):
    """Unknown fields are ignored (§0), however deeply valid JSON nests them,
    up to 1,000 levels; deeper is refused by name, not called invalid."""
    body = '{"action": "create", "tags": [{"key": "d", "value": "1"}], "x": %s}'
    st, _, _, raw = gw.request("POST", gw.tags_path(image) + "/action", body % ("[" * 200 + "]" * 200))
    assert st == 204, raw
    assert gw.image_tags(image) == [tag("d", "1")]
    msg = assert_400(gw.request("POST", gw.tags_path(image) + "/action", body % ("[" * 1000 + "]" * 1000)),
                     "IMG.0001", "deeper than 1000 levels")
    assert "not valid JSON" not in msg
