"""API.md §1.2 add one tag, §1.3 delete one tag, §1.4 tags of an image,
§1.5 tags of a project."""
import json
import os
import urllib.parse
import uuid

import pytest

from conftest import Gateway, ims_error, run_cli

MISSING = "00000000-0000-4000-8000-00000000beef"


def tag(k, v):
    return {"key": k, "value": v}


def add_one(gw, image, body, project=None, token=None):
    kw = {} if token is None else {"token": token}
    return gw.request("POST", gw.tags_path(image, project), body, **kw)


def delete_one(gw, image, raw_key, project=None, token=None):
    kw = {} if token is None else {"token": token}
    return gw.request("DELETE", gw.tags_path(image, project) + "/" + raw_key, **kw)


# ---- §1.2 add one tag ------------------------------------------------------------

def test_add_one_204(gw, image):
    st, _, _, raw = add_one(gw, image, {"tag": tag("env", "prod")})
    assert st == 204 and raw == b""
    assert gw.image_tags(image) == [tag("env", "prod")]
    # overwrite
    assert add_one(gw, image, {"tag": tag("env", "dev")})[0] == 204
    # same value: no-op
    assert add_one(gw, image, {"tag": tag("env", "dev")})[0] == 204
    assert add_one(gw, image, {"tag": tag("empty", "")})[0] == 204
    assert gw.image_tags(image) == [tag("empty", ""), tag("env", "dev")]


@pytest.mark.parametrize("body,code", [
    ({}, "IMG.0001"),
    ({"tag": None}, "IMG.0001"),
    ({"tag": "k.v"}, "IMG.0001"),
    ({"tag": [tag("k", "v")]}, "IMG.0001"),
    ({"tags": [tag("k", "v")]}, "IMG.0001"),
    ({"tag": {"key": "k"}}, "IMG.0115"),
    ({"tag": {"value": "v"}}, "IMG.0115"),
    ({"tag": tag("", "v")}, "IMG.0115"),
    ({"tag": tag("  ", "v")}, "IMG.0115"),
    ({"tag": tag("a b", "v")}, "IMG.0115"),
    ({"tag": tag("a.b", "v")}, "IMG.0115"),
    ({"tag": tag("k" * 37, "v")}, "IMG.0115"),
    ({"tag": tag("k", "v" * 44)}, "IMG.0115"),
    ({"tag": tag("k", "a/b")}, "IMG.0115"),
    ({"tag": tag(5, "v")}, "IMG.0115"),
    ({"tag": tag("k", 5)}, "IMG.0115"),
])
def test_add_one_errors(gw, image, body, code):
    st, _, js, raw = add_one(gw, image, body)
    assert st == 400, raw
    ims_error(js, code)
    assert gw.image_tags(image) == []


def test_add_one_error_names_field(gw, image):
    st, _, js, _ = add_one(gw, image, {"tag": tag("bad key", "v")})
    assert st == 400
    assert "key" in ims_error(js, "IMG.0115")
    st, _, js, _ = add_one(gw, image, {"tag": tag("k", "bad value")})
    assert st == 400
    assert "value" in ims_error(js, "IMG.0115")


def test_add_one_body_errors(gw, image):
    st, _, js, _ = add_one(gw, image, b"")
    assert st == 400
    ims_error(js, "IMG.0007")
    st, _, js, _ = add_one(gw, image, b"{nope")
    assert st == 400
    ims_error(js, "IMG.0001")
    st, _, js, _ = add_one(gw, image, b"[]")
    assert st == 400
    ims_error(js, "IMG.0001")


def test_add_one_boundaries(gw, image):
    assert add_one(gw, image, {"tag": tag("k" * 36, "v" * 43)})[0] == 204
    assert gw.image_tags(image) == [tag("k" * 36, "v" * 43)]


def test_add_one_quota(gw, image):
    assert gw.batch(image, "create", [tag("q%d" % i, "v") for i in range(10)])[0] == 204
    st, _, js, _ = add_one(gw, image, {"tag": tag("eleventh", "v")})
    assert st == 400
    # the message names the body's field, `tag` (helper-65: it said `tags`)
    assert ims_error(js, "IMG.0116").startswith("tag: the image would hold 11 tags"), js
    assert len(gw.image_tags(image)) == 10
    assert add_one(gw, image, {"tag": tag("q1", "new")})[0] == 204


def test_add_one_unknown_image(gw):
    st, _, js, _ = add_one(gw, MISSING, {"tag": tag("k", "v")})
    assert st == 404
    ims_error(js, "IMG.0027")


# ---- §1.3 delete one tag -----------------------------------------------------------

def test_delete_one(gw, image):
    assert gw.batch(image, "create", [tag("a", "1"), tag("b", "2")])[0] == 204
    st, _, _, raw = delete_one(gw, image, "a")
    assert st == 204 and raw == b""
    assert gw.image_tags(image) == [tag("b", "2")]


def test_delete_one_not_idempotent(gw, image):
    assert gw.batch(image, "create", [tag("a", "1")])[0] == 204
    assert delete_one(gw, image, "a")[0] == 204
    st, _, js, _ = delete_one(gw, image, "a")
    assert st == 404
    ims_error(js, "IMG.0115")


def test_delete_one_absent_key(gw, image):
    st, _, js, _ = delete_one(gw, image, "never-there")
    assert st == 404
    ims_error(js, "IMG.0115")


def test_delete_one_unknown_image(gw):
    st, _, js, _ = delete_one(gw, MISSING, "k")
    assert st == 404
    ims_error(js, "IMG.0027")


def test_delete_one_cjk_percent_encoded(gw, image):
    key = "\u90e8\u95e8"   # 部门
    assert gw.batch(image, "create", [tag(key, "rd"), tag("x", "1")])[0] == 204
    encoded = urllib.parse.quote(key)
    assert encoded == "%E9%83%A8%E9%97%A8"
    st, _, _, raw = delete_one(gw, image, encoded)
    assert st == 204, raw
    assert gw.image_tags(image) == [tag("x", "1")]
    # lower-case hex escapes decode the same
    assert gw.batch(image, "create", [tag(key, "rd")])[0] == 204
    st, _, _, raw = delete_one(gw, image, encoded.lower())
    assert st == 204, raw
    assert gw.image_tags(image) == [tag("x", "1")]


def test_delete_one_percent_encoded_ascii(gw, image):
    assert gw.batch(image, "create", [tag("a-b", "1"), tag("c_d", "2")])[0] == 204
    assert delete_one(gw, image, "a%2Db")[0] == 204
    assert delete_one(gw, image, "c%5fd")[0] == 204
    assert gw.image_tags(image) == []


def test_delete_one_percent_encoded_slash_is_a_key(gw, image):
    # %2F decodes inside the {key} segment; the key "a/b" is simply absent.
    st, _, js, _ = delete_one(gw, image, "a%2Fb")
    assert st == 404
    ims_error(js, "IMG.0115")


@pytest.mark.parametrize("raw", ["%FF", "a%C3", "%ED%A0%80", "%C0%AF", "%F4%90%80%80"],
                         ids=["ff", "truncated", "surrogate", "overlong", "past-10ffff"])
def test_delete_one_key_not_utf8_is_400(gw, image, raw):
    """§0: a string that is not valid UTF-8 is a 400 IMG.0001, a path's once
    percent-decoded as well as a body's (it was a 404 whose message carried
    the bytes mangled); the image's tags are left as they are."""
    assert gw.batch(image, "create", [tag("x", "1")])[0] == 204
    st, _, js, raw_body = delete_one(gw, image, raw)
    assert st == 400, raw_body
    ims_error(js, "IMG.0001")
    assert js["error"]["message"].startswith("key: is not valid UTF-8"), js
    assert gw.image_tags(image) == [tag("x", "1")]
    # the same bytes in the image id: its segment is named
    st, _, js, _ = gw.request("GET", "/v2/%s/images/%s/tags" % (gw.project, raw))
    assert st == 400 and js["error"]["message"].startswith("image_id: "), js


# Keys the ims create policy refuses, loaded with `tagway load` (which
# checks structure, not tag policy); §1.3 has no charset or length check.
@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    g = Gateway(str(tmp_path_factory.mktemp("loaded") / "g"))
    try:
        g.start()
        g.stop()
        image_id = str(uuid.uuid4())
        keys = {"has space": "v 1", "a.b/c": "x", "k" * 60: "long", "\U0001F600": "emoji", "plain": "p",
                "batch del me": "b", "\t": "tab"}
        line = {"id": image_id, "project_id": g.project, "name": "loaded",
                "tags": [tag(k, v) for k, v in keys.items()]}
        path = os.path.join(g.root, "load.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
        p = run_cli("load", "--db", g.db, path)
        assert p.returncode == 0, p.stderr
        g.start()
        yield g, image_id, keys
    finally:
        g.kill9()


def test_loaded_tags_visible(loaded):
    g, image_id, keys = loaded
    got = g.image_tags(image_id)
    assert got == sorted([tag(k, v) for k, v in keys.items()], key=lambda t: t["key"].encode())


def test_delete_one_key_with_space_percent20(loaded):
    g, image_id, _ = loaded
    st, _, _, raw = delete_one(g, image_id, "has%20space")
    assert st == 204, raw
    assert "has space" not in [t["key"] for t in g.image_tags(image_id)]


def test_delete_one_no_charset_or_length_check(loaded):
    g, image_id, _ = loaded
    for raw_key, key in [("a.b%2Fc", "a.b/c"), ("k" * 60, "k" * 60), ("%F0%9F%98%80", "\U0001F600")]:
        st, _, _, raw = delete_one(g, image_id, raw_key)
        assert st == 204, (raw_key, raw)
        assert key not in [t["key"] for t in g.image_tags(image_id)]


def test_batch_delete_key_with_space(loaded):
    g, image_id, _ = loaded
    assert "batch del me" in [t["key"] for t in g.image_tags(image_id)]
    st, _, _, raw = g.batch(image_id, "delete", [{"key": "batch del me", "value": "other value"},
                                                 {"key": "still absent key"}])
    assert st == 204, raw
    assert "batch del me" not in [t["key"] for t in g.image_tags(image_id)]
    assert "plain" in [t["key"] for t in g.image_tags(image_id)]


# ---- §1.4 tags of an image ---------------------------------------------------------

def test_tags_of_image_empty(gw, image):
    st, h, js, raw = gw.request("GET", gw.tags_path(image))
    assert st == 200
    assert js == {"tags": []}
    assert raw.replace(b" ", b"") == b'{"tags":[]}'


def test_tags_of_image_unknown(gw):
    st, _, js, _ = gw.request("GET", gw.tags_path(MISSING))
    assert st == 404
    ims_error(js, "IMG.0027")


def test_tags_of_image_exact_shape(gw, image):
    assert gw.batch(image, "create", [tag("b", ""), tag("a", "1")])[0] == 204
    st, _, js, _ = gw.request("GET", gw.tags_path(image))
    assert st == 200
    assert js == {"tags": [{"key": "a", "value": "1"}, {"key": "b", "value": ""}]}


# ---- §1.5 tags of a project ---------------------------------------------------------

@pytest.fixture
def fresh_project(gw):
    return gw.take_credential()


def project_tags(gw, cred):
    st, _, js, raw = gw.request("GET", "/v2/%s/images/tags" % cred["project_id"], token=cred["token"])
    assert st == 200, raw
    return js


def test_project_tags_empty(gw, fresh_project):
    st, _, js, raw = gw.request("GET", "/v2/%s/images/tags" % fresh_project["project_id"],
                                token=fresh_project["token"])
    assert st == 200
    assert js == {"tags": []}
    assert raw.replace(b" ", b"") == b'{"tags":[]}'


def test_project_tags_sorted_distinct(gw, fresh_project):
    c = fresh_project
    tok = c["token"]
    i1 = gw.create_image(token=tok, image_tags=[tag("env", "prod"), tag("team", "b"), tag("Zed", "1")])
    i2 = gw.create_image(token=tok, image_tags=[tag("env", "dev"), tag("team", "b"), tag("only_empty", "")])
    i3 = gw.create_image(token=tok, image_tags=[tag("env", "prod"), tag("mixed", ""),
                                                tag("\u90e8\u95e8", "\u7814\u53d1"), tag("_u", "x")])
    i4 = gw.create_image(token=tok, image_tags=[tag("mixed", "b"), tag("env", "Prod"), tag("only_empty", "")])
    js = project_tags(gw, c)
    assert js == {"tags": [
        {"key": "Zed", "values": ["1"]},
        {"key": "_u", "values": ["x"]},
        {"key": "env", "values": ["Prod", "dev", "prod"]},
        {"key": "mixed", "values": ["", "b"]},
        {"key": "only_empty", "values": [""]},
        {"key": "team", "values": ["b"]},
        {"key": "\u90e8\u95e8", "values": ["\u7814\u53d1"]},
    ]}
    # values of a deleted image disappear
    st, _, _, _ = gw.request("DELETE", "/v2/images/" + i3, token=tok)
    assert st == 204
    js = project_tags(gw, c)
    assert js == {"tags": [
        {"key": "Zed", "values": ["1"]},
        {"key": "env", "values": ["Prod", "dev", "prod"]},
        {"key": "mixed", "values": ["b"]},
        {"key": "only_empty", "values": [""]},
        {"key": "team", "values": ["b"]},
    ]}
    # a tag change is reflected
    assert gw.batch(i1, "delete", [{"key": "Zed"}, {"key": "env"}], project=c["project_id"], token=tok)[0] == 204
    assert gw.batch(i2, "create", [tag("team", "a")], project=c["project_id"], token=tok)[0] == 204
    js = project_tags(gw, c)
    assert js == {"tags": [
        {"key": "env", "values": ["Prod", "dev"]},
        {"key": "mixed", "values": ["b"]},
        {"key": "only_empty", "values": [""]},
        {"key": "team", "values": ["a", "b"]},
    ]}
    for i in (i1, i2, i4):
        assert gw.request("DELETE", "/v2/images/" + i, token=tok)[0] == 204
    assert project_tags(gw, c) == {"tags": []}


def test_project_tags_isolated_between_projects(gw):
    a, b = gw.take_credential(), gw.take_credential()
    gw.create_image(token=a["token"], image_tags=[tag("only_a", "1")])
    gw.create_image(token=b["token"], image_tags=[tag("only_b", "2")])
    assert project_tags(gw, a) == {"tags": [{"key": "only_a", "values": ["1"]}]}
    assert project_tags(gw, b) == {"tags": [{"key": "only_b", "values": ["2"]}]}


def test_batch_delete_of_a_loaded_tab_key(loaded):
    """A key that `tagway load` stored and no policy would accept (a tab) can
    be removed by a batch delete: blank means empty or only spaces (§1.1)."""
    g, image_id, keys = loaded
    st, _, _, raw = g.batch(image_id, "delete", [{"key": "\t"}])
    assert st == 204, raw
    assert "\t" not in [t["key"] for t in g.image_tags(image_id)]
