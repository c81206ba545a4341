"""API.md §2: query images by tag -- POST /v2/{project_id}/images/resource_instances/action.

Validation (every rule of the §2 table and the §9 limit/offset fine points,
400 IMG.0001 naming the field), semantics against a hand-built fixture with
exact id sets, the response shape, newest-first order and paging, the index
kept in step with every write (and untouched by failed writes), and project
isolation.  Every project used here is a fresh one taken from the shared
gateway's credential pool (conftest `gw`), so the expected sets are exact."""
import json
import os
import re
import sqlite3
import subprocess
import time
import uuid

import pytest

from conftest import BIN, JSON_CT, gateway_error, ims_error, random_project, run_cli

QUERY = "/v2/%s/images/resource_instances/action"
IMPORT = "/v2/cloudimages/quickimport/action"
BUCKET = "bkt-query"
OS_VERSION = "CentOS 7.9 64bit"


# ---- helpers -----------------------------------------------------------------------

class Proj:
    """A fresh project of the shared gateway: its credential and helpers."""

    def __init__(self, g, cred):
        self.g, self.cred = g, cred
        self.id, self.token = cred["project_id"], cred["token"]
        self.path = QUERY % self.id

    def post(self, body, project=None):
        path = QUERY % project if project else self.path
        return self.g.request("POST", path, body, token=self.token)

    def ok(self, body):
        st, h, js, raw = self.post(body)
        assert st == 200, (body, st, raw)
        assert h["Content-Type"] == JSON_CT
        return js

    def filter(self, **fields):
        body = {"action": "filter", "limit": 1000}
        body.update(fields)
        js = self.ok(body)
        assert isinstance(js["resources"], list), js
        return js

    def ids(self, **fields):
        """Ordered ids of a filter (limit 1000), checking total_count."""
        js = self.filter(**fields)
        got = [r["resource_id"] for r in js["resources"]]
        assert js["total_count"] == len(got), js
        return got

    def count(self, **fields):
        body = {"action": "count"}
        body.update(fields)
        js = self.ok(body)
        assert set(js) == {"total_count"}, js
        assert isinstance(js["total_count"], int), js
        return js["total_count"]

    def image(self, name=None, tags=None):
        fields = {}
        if name is not None:
            fields["name"] = name
        if tags is not None:
            fields["image_tags"] = [{"key": k, "value": v} for k, v in tags]
        return self.g.create_image(token=self.token, **fields)

    def batch(self, iid, action, tags):
        return self.g.batch(iid, action, tags, project=self.id, token=self.token)

    def snapshot(self):
        """Everything a query can show of this project."""
        return self.filter()


def uniq(prefix="k"):
    return prefix + uuid.uuid4().hex[:10]


def assert_bad(resp, field):
    """400 IMG.0001 whose message names `field` (not as part of a longer name)."""
    st, _, js, raw = resp
    assert st == 400, (field, st, raw)
    msg = ims_error(js, "IMG.0001")
    assert re.search(r"(?<![A-Za-z_])" + re.escape(field), msg), (field, msg)
    return msg


def tg(k, v):
    return {"key": k, "value": v}


# ---- fixtures ------------------------------------------------------------------------

# The semantic fixture: (name, tags in the order they are written).  Tags
# are given out of key order on purpose (responses sort them by key).
FIXTURE = [
    ("Alpha-Web-01", [("tier", "web"), ("env", "prod"), ("team", "a")]),   # 0
    ("alpha-db-02", [("env", "prod"), ("team", "b"), ("tier", "db")]),     # 1
    ("BETA-web-03", [("team", "a"), ("env", "dev")]),                      # 2
    ("beta_db_04", [("env", "dev"), ("team", "b"), ("tier", "db")]),       # 3
    ("gamma.05", [("env", "test")]),                                        # 4
    ("gammax05", []),                                                       # 5
    ("Delta 06", [("team", "a"), ("tier", "web")]),                         # 6
    ("delta-07", []),                                                       # 7
    ("epsilon-08", [("owner", "x"), ("env", "")]),                          # 8
    ("\u90e8\u95e8-09", [("\u90e8\u95e8", "\u7814\u53d1")]),                # 9  部门-09, 部门=研发
    ("zeta-10", [("tier", "web"), ("owner", "y"), ("env", "prod"), ("Z", "up")]),  # 10
    ("ZETA-11", [("team", "b")]),                                           # 11
]
ALL = set(range(len(FIXTURE)))


@pytest.fixture(scope="module")
def pa(gw):
    """Project A: the 12 images of FIXTURE, created in order.  Even images
    get their tags at creation, odd ones through a batch afterwards."""
    p = Proj(gw, gw.take_credential())
    p.ids_ = []
    for i, (name, tags) in enumerate(FIXTURE):
        if i % 2 == 0 or not tags:
            iid = p.image(name, tags)
        else:
            iid = p.image(name)
            st, _, _, raw = p.batch(iid, "create", [tg(k, v) for k, v in tags])
            assert st == 204, raw
        p.ids_.append(iid)
    return p


@pytest.fixture(scope="module")
def pb(gw, pa):
    """Project B: two images of its own, made after A's."""
    p = Proj(gw, gw.take_credential())
    p.ids_ = [p.image("Alpha-Web-01", [("env", "prod"), ("team", "a")]),
              p.image("b-only", [("bkey", "1")])]
    return p


@pytest.fixture(scope="module")
def pc(gw):
    """Project C: for the write tests (each uses keys of its own)."""
    return Proj(gw, gw.take_credential())


PAGED = 33
PNAME = "page-%02d-Paging-Fixture"


@pytest.fixture(scope="module")
def pp(gw):
    """Project P: 33 images "page-NN-Paging-Fixture"; every third has
    m3=yes; images 4 and 20 also have rare=1.  The names are long enough
    that a name match on a small candidate set (a resource_id, a rare tag)
    takes the index's per-candidate path rather than its full name scan."""
    p = Proj(gw, gw.take_credential())
    p.ids_ = []
    for i in range(PAGED):
        tags = [("m3", "yes")] if i % 3 == 0 else [("other", str(i))]
        if i in (4, 20):
            tags.append(("rare", "1"))
        p.ids_.append(p.image(PNAME % i, tags))
    p.full = list(reversed(p.ids_))
    return p


# ---- validation: action, body ------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {},
    {"action": None},
    {"action": "Filter"},
    {"action": "COUNT"},
    {"action": "FILTER"},
    {"action": 1},
    {"action": ""},
    {"action": "list"},
    {"action": ["filter"]},
    {"action": " filter"},
], ids=lambda b: repr(b.get("action", "<missing>")))
def test_action_invalid(pa, body):
    assert_bad(pa.post(body), "action")


def test_action_filter_and_count_accepted(pa):
    assert pa.ok({"action": "filter"})["total_count"] == 12
    assert pa.ok({"action": "count"}) == {"total_count": 12}


def test_body_errors(pa):
    st, _, js, raw = pa.g.request("POST", pa.path, b"", token=pa.token)
    assert st == 400, raw
    ims_error(js, "IMG.0007")
    for bad in ['["filter"]', '{"action": "filter"', '"filter"', '{"action": "filter",}']:
        st, _, js, raw = pa.g.request("POST", pa.path, bad, token=pa.token)
        assert st == 400, (bad, raw)
        ims_error(js, "IMG.0001")


# ---- validation: limit / offset ---------------------------------------------------------

@pytest.mark.parametrize("limit", [1001, "1001", 0, "0", -1, "-1", "abc", "5.0", "+5", " 5",
                                   "5 ", "", 5.5, "0x10", "1e2", True, [5], {"v": 5},
                                   10 ** 6, "١٢"], ids=repr)
def test_limit_invalid(pa, limit):
    assert_bad(pa.post({"action": "filter", "limit": limit}), "limit")


@pytest.mark.parametrize("limit,n", [(1, 1), ("1", 1), (1000, 12), ("1000", 12), ("007", 7),
                                     (7, 7), ("12", 12), (None, 10), ("0000000000000001", 1),
                                     ("0" * 40 + "7", 7)], ids=repr)
def test_limit_valid(pa, limit, n):
    full = pa.ids()
    body = {"action": "filter"}
    if limit is not None:
        body["limit"] = limit
    js = pa.ok(body)
    assert js["total_count"] == 12
    assert [r["resource_id"] for r in js["resources"]] == full[:n]


@pytest.mark.parametrize("offset", [-1, "-1", "x", "", "+1", " 1", "1.0", 1.5, True, [1]], ids=repr)
def test_offset_invalid(pa, offset):
    assert_bad(pa.post({"action": "filter", "offset": offset}), "offset")


@pytest.mark.parametrize("offset,start", [(0, 0), ("0", 0), (3, 3), ("3", 3), ("003", 3),
                                          (None, 0), (11, 11), ("12", 12), (10 ** 12, 12),
                                          ("0000000000000000003", 3)], ids=repr)
def test_offset_valid(pa, offset, start):
    full = pa.ids()
    body = {"action": "filter", "limit": 4}
    if offset is not None:
        body["offset"] = offset
    js = pa.ok(body)
    assert js["total_count"] == 12
    assert [r["resource_id"] for r in js["resources"]] == full[start:start + 4]


def test_offset_without_upper_bound(pa):
    """§2: offset is "≥ 0" with no upper bound; a 14-digit offset (integer
    or digit string, §9) is past the end -> empty page, not a 400."""
    for offset in [10 ** 13, "10000000000000", 10 ** 16, "10000000000000000", 10 ** 30,
                   "9" * 40]:
        st, _, js, raw = pa.post({"action": "filter", "offset": offset})
        assert st == 200, (offset, raw)
        assert js == {"total_count": 12, "resources": []}, js


def test_huge_limit_names_the_range(pa):
    """A limit of any length is a number (§9): past 1000 it breaks the range
    rule, not the integer one."""
    for limit in [10 ** 16, "10000000000000000", "9" * 40]:
        msg = assert_bad(pa.post({"action": "filter", "limit": limit}), "limit")
        assert "from 1 to 1000" in msg, (limit, msg)


def test_nul_terms_match_nothing(pa):
    """§2 checks no character set, so a NUL in a term is no error; but
    nothing stored holds one (writes refuse them), so that term matches no
    image, with AND/OR/NOT doing the rest."""
    env = [{"key": "env", "values": ["prod"]}]                    # images 0, 1, 10
    nul_key = [{"key": "env\x00", "values": []}]
    assert pa.count(tags=nul_key) == 0
    assert pa.count(tags=[{"key": "env", "values": ["prod\x00"]}]) == 0
    assert pa.count(tags=[{"key": "env", "values": ["prod\x00", "prod"]}]) == 3
    assert pa.count(tags=[{"key": "env\x00", "values": []}, env[0]]) == 0
    assert pa.count(tags_any=nul_key) == 0
    assert pa.count(tags_any=nul_key + env) == 3
    assert pa.count(not_tags=nul_key + env) == 12                  # NOT(never AND ...)
    assert pa.count(not_tags=env) == 9
    assert pa.count(not_tags_any=nul_key) == 12
    assert pa.count(not_tags_any=nul_key + env) == 9
    assert pa.count(matches=[{"key": "resource_name", "value": "alpha\x00"}]) == 0
    assert pa.count(matches=[{"key": "resource_id", "value": pa.ids_[0] + "\x00"}]) == 0
    js = pa.filter(tags=nul_key)
    assert js == {"total_count": 0, "resources": []}, js


LOAD_BAD_LINES = [
    # (id, the second line's fields past project_id, what the error says)
    ("deleted", {"name": "gone", "status": "deleted", "tags": []}, "deleted"),
    ("status-unknown", {"name": "x", "status": "weird", "tags": []}, "status must be one of"),
    ("status-number", {"name": "x", "status": 1, "tags": []}, "status: must be a string"),
    # a tag's fault named as the API names it (tags[0] the first)
    ("value-null", {"name": "x", "tags": [{"key": "a", "value": "1"}, {"key": "b", "value": None}]},
     "tags[1].value: each tag needs a string value"),
    ("key-empty", {"name": "x", "tags": [{"key": "", "value": "v"}]},
     "tags[0].key: each tag needs a non-empty string key"),
    ("key-twice", {"name": "x", "tags": [{"key": "k", "value": "1"}, {"key": "m", "value": "2"},
                                         {"key": "k", "value": "3"}]},
     "tags[2].key: duplicate key 'k' (tags[0] has it)"),
    ("tag-not-object", {"name": "x", "tags": ["k=v"]}, "tags[0]: each tag must be an object"),
    ("tags-missing", {"name": "x"}, "tags must be an array"),
    ("tags-object", {"name": "x", "tags": {"k": "v"}}, "tags must be an array"),
    # lua-cjson decodes {} as it decodes []: helper-66 found this line loaded
    ("tags-empty-object", {"name": "x", "tags": {}}, "tags must be an array"),
    ("tags-empty-object-spaced", b'{"project_id": "%PROJECT%", "name": "x", "tags": { \t}}',
     "tags must be an array"),
    ("tag-empty-object", {"name": "x", "tags": [{}]}, "tags[0].key: each tag needs a non-empty string key"),
    ("tags-string", {"name": "x", "tags": "k=v"}, "tags must be an array"),
    ("tags-null", {"name": "x", "tags": None}, "tags must be an array"),
    # cjson checks neither: a stored NUL cut the name short in C, and bytes
    # that are not UTF-8 went out in every JSON answer carrying them
    ("name-nul", {"name": "a\u0000b", "tags": []}, "UTF-8 text without NUL"),
    ("name-surrogate", {"name": "a\ud800", "tags": []},
     "not valid JSON (a \\u escape of a high surrogate without a low one after it at byte 62)"),
    ("project-nul", {"project_id": "%PROJECT%\u0000x", "name": "x", "tags": []}, "UTF-8 text without NUL"),
    ("key-nul", {"name": "x", "tags": [{"key": "k\u0000", "value": "v"}]}, "UTF-8 text without NUL"),
    ("value-surrogate", {"name": "x", "tags": [{"key": "k", "value": "\udfff"}]},
     "not valid JSON (a \\u escape of a low surrogate without a high one before it"),
    ("not-json", b'{"project_id": ', "not valid JSON"),
    # lua-cjson decodes these; JSON (and the gateway's bodies) refuse them
    ("raw-control", b'{"project_id": "%PROJECT%", "name": "a\x01", "tags": []}',
     "not valid JSON (a raw control character in a string (it must be escaped) at byte 62)"),
    ("trailing-dot", b'{"project_id": "%PROJECT%", "name": "x", "tags": [], "n": 40.}',
     "not valid JSON (a number without digits after its decimal point at byte 85)"),
    ("too-deep", b'{"project_id": "%PROJECT%", "name": "x", "tags": [], "n": ' + b"[" * 1000 + b"]" * 1000 + b"}",
     "nests JSON deeper than 1000 levels"),
    ("not-object", b'["x"]', "not a JSON object"),
    ("raw-ff", b'{"project_id": "%PROJECT%", "name": "a\xff", "tags": []}', "UTF-8 text without NUL"),
    ("raw-overlong", b'{"project_id": "%PROJECT%", "name": "x", "tags": [{"key": "\xc0\xaf", "value": ""}]}',
     "UTF-8 text without NUL"),
]


@pytest.mark.parametrize("case,fields,why", LOAD_BAD_LINES, ids=[c[0] for c in LOAD_BAD_LINES])
def test_load_refuses_a_bad_line(tmp_path, case, fields, why):
    """§7: `tagway load` checks each line's structure (`tags` is required,
    `[]` for none; a status is one an image lives through, and a deleted
    image is gone from every query, so the store keeps none); a bad line is
    named and nothing of the file is stored."""
    project = random_project()
    first = json.dumps({"project_id": project, "name": "kept", "tags": [{"key": "k", "value": "v"}]})
    if isinstance(fields, bytes):       # bytes no JSON encoder writes
        second = fields
    else:
        second = json.dumps(dict({"project_id": project}, **fields)).encode()
    path = tmp_path / "load.jsonl"
    path.write_bytes(first.encode() + b"\n" + second.replace(b"%PROJECT%", project.encode()) + b"\n")
    # into a database that holds one image already: it is kept, and only it
    db = str(tmp_path / "t.db")
    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"project_id": project, "name": "before", "tags": []}) + "\n")
    assert run_cli("load", "--db", db, str(seed)).returncode == 0
    p = subprocess.run([BIN, "load", "--db", db, str(path)], capture_output=True, timeout=20)
    p.stderr = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "line 2" in p.stderr and why in p.stderr, p.stderr
    con = sqlite3.connect(db)
    try:
        assert [r[0] for r in con.execute("SELECT name FROM images")] == ["before"]
    finally:
        con.close()
    # into a database this run started: it is said so (a mistyped --db), and
    # left for the operator, as is a path that existed, empty, before
    fresh = tmp_path / "new" / "deeper" / "t.db"
    p = subprocess.run([BIN, "load", "--db", str(fresh), str(path)], capture_output=True, timeout=20)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 1 and "nothing was stored" in err, err
    assert "%s did not exist before this run, which created it empty" % fresh in err, err
    assert fresh.exists()
    pre = tmp_path / "pre.db"
    pre.write_bytes(b"")
    p = subprocess.run([BIN, "load", "--db", str(pre), str(path)], capture_output=True, timeout=20)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 1 and "did not exist before" not in err and pre.exists(), err


def test_load_takes_every_live_status_and_no_tags(tmp_path):
    project = random_project()
    statuses = ["queued", "saving", "active", "killed"]
    lines = [{"project_id": project, "name": s, "status": s, "tags": []} for s in statuses]
    lines.append({"project_id": project, "name": "default", "tags": [{"key": "k", "value": ""}]})
    # braces inside strings are text, not the empty objects the loader marks;
    # an empty object in a field the loader ignores is no fault
    lines.append({"project_id": project, "name": 'x{ }y"{}', "status": "active", "extra": {},
                  "tags": [{"key": "{}", "value": "{ \t}"}]})
    path = tmp_path / "load.jsonl"
    path.write_text("".join(json.dumps(l) + "\n" for l in lines))
    db = str(tmp_path / "t.db")
    p = run_cli("load", "--db", db, str(path))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["images"] == 6 and json.loads(p.stdout)["tags"] == 2, p.stdout
    con = sqlite3.connect(db)
    try:
        got = dict(con.execute("SELECT name, status FROM images"))
        tags = dict(con.execute("SELECT key, value FROM image_tags"))
    finally:
        con.close()
    assert got == dict({s: s for s in statuses}, default="active", **{'x{ }y"{}': "active"}), got
    assert tags == {"k": "", "{}": "{ \t}"}, tags


def test_load_names_a_repeated_id(tmp_path):
    project = random_project()
    iid = "0b0b0b0b-1111-4222-8333-444444444444"
    lines = [{"id": iid, "project_id": project, "name": n, "tags": []} for n in ("a", "b")]
    path = tmp_path / "load.jsonl"
    path.write_text("".join(json.dumps(l) + "\n" for l in lines))
    p = run_cli("load", "--db", str(tmp_path / "t.db"), str(path))
    assert p.returncode == 1
    assert "line 2: id: '%s' repeats an earlier line or an image already stored" % iid in p.stderr, p.stderr


@pytest.mark.parametrize("extra", [
    {"limit": "abc"}, {"limit": 0}, {"limit": 1001}, {"limit": -1}, {"limit": "+5"},
    {"limit": 5.5}, {"limit": [1]}, {"offset": -1}, {"offset": "x"}, {"offset": {}},
    {"limit": "abc", "offset": "x"},
], ids=lambda e: json.dumps(e))
def test_count_ignores_limit_offset(pa, extra):
    body = {"action": "count"}
    body.update(extra)
    st, _, js, raw = pa.post(body)
    assert st == 200, raw
    assert js == {"total_count": 12}


# ---- validation: tags / tags_any / not_tags / not_tags_any --------------------------------

TAG_FIELDS = ["tags", "tags_any", "not_tags", "not_tags_any"]


def entry(k="env", values=()):
    return {"key": k, "values": list(values)}


K127, K128 = "k" * 127, "k" * 128
V255, V256 = "v" * 255, "v" * 256
CJK = "\u90e8"   # 3 bytes in UTF-8: lengths are code points

TAG_REJECT = [
    # (id, field value, fragment naming the field; {f} = the field)
    ("string", "env", "{f}"),
    ("object", {"key": "env", "values": []}, "{f}"),
    ("empty-object", {}, "{f}"),
    ("number", 1, "{f}"),
    ("true", True, "{f}"),
    ("empty-array", [], "{f}"),
    ("11-entries", [entry("k%d" % i) for i in range(11)], "{f}"),
    ("entry-string", ["env"], "{f}[0]"),
    ("entry-number", [entry("a"), 5], "{f}[1]"),
    ("entry-array", [["env", []]], "{f}[0]"),
    ("entry-null", [None], "{f}[0]"),
    ("key-missing", [{"values": []}], "{f}[0].key"),
    ("key-null", [{"key": None, "values": []}], "{f}[0].key"),
    ("key-empty", [entry("")], "{f}[0].key"),
    ("key-blank", [entry("   ")], "{f}[0].key"),
    ("key-spaces-blank", [entry("a"), entry("  ")], "{f}[1].key"),
    ("key-number", [{"key": 5, "values": []}], "{f}[0].key"),
    ("key-bool", [{"key": True, "values": []}], "{f}[0].key"),
    ("key-array", [{"key": ["env"], "values": []}], "{f}[0].key"),
    ("key-object", [{"key": {"k": "env"}, "values": []}], "{f}[0].key"),
    ("key-128", [entry(K128)], "{f}[0].key"),
    ("key-128-cjk", [entry(CJK * 128)], "{f}[0].key"),
    ("values-missing", [{"key": "env"}], "{f}[0].values"),
    ("values-null", [{"key": "env", "values": None}], "{f}[0].values"),
    ("values-string", [{"key": "env", "values": "prod"}], "{f}[0].values"),
    ("values-object", [{"key": "env", "values": {}}], "{f}[0].values"),
    ("values-object-nonempty", [{"key": "env", "values": {"v": "prod"}}], "{f}[0].values"),
    ("values-number", [{"key": "env", "values": 1}], "{f}[0].values"),
    ("values-11", [entry("env", ["v%d" % i for i in range(11)])], "{f}[0].values"),
    ("value-256", [entry("env", ["ok", V256])], "{f}[0].values[1]"),
    ("value-256-cjk", [entry("env", [CJK * 256])], "{f}[0].values[0]"),
    ("value-number", [entry("env", ["a", 5])], "{f}[0].values[1]"),
    ("value-null", [entry("env", [None])], "{f}[0].values[0]"),
    ("value-array", [entry("env", [["a"]])], "{f}[0].values[0]"),
    ("value-object", [entry("env", [{"v": "a"}])], "{f}[0].values[0]"),
    ("dup-key", [entry("env", ["a"]), entry("env", ["b"])], "{f}[1].key"),
    ("dup-key-third", [entry("a"), entry("b"), entry("a")], "{f}[2].key"),
    ("dup-value", [entry("env", ["prod", "dev", "prod"])], "{f}[0].values[2]"),
    ("dup-empty-value", [entry("env", ["", ""])], "{f}[0].values[1]"),
    ("second-entry-bad", [entry("env", ["prod"]), entry("team", [V256])], "{f}[1].values[0]"),
]


@pytest.mark.parametrize("field", TAG_FIELDS)
@pytest.mark.parametrize("case,value,frag", TAG_REJECT, ids=[c[0] for c in TAG_REJECT])
def test_tag_field_invalid(pa, field, case, value, frag):
    for action in ("filter", "count"):
        assert_bad(pa.post({"action": action, field: value}), frag.format(f=field))


TAG_ACCEPT = [
    ("10-entries", [entry("k%d" % i) for i in range(10)]),
    ("10-values", [entry("env", ["v%d" % i for i in range(10)])]),
    ("values-empty", [entry("env")]),
    ("value-empty-string", [entry("env", [""])]),
    ("key-127", [entry(K127)]),
    ("key-127-cjk", [entry(CJK * 127)]),
    ("value-255", [entry("env", [V255])]),
    ("value-255-cjk", [entry("env", [CJK * 255])]),
    ("no-charset-check", [entry("a b:c/d=e@f!", ["x y", "<>&%_*"])]),
    ("same-value-two-entries", [entry("env", ["prod"]), entry("team", ["prod"])]),
    ("case-differs", [entry("env", ["prod", "PROD"]), entry("ENV")]),
    ("null-is-absent", None),
]


@pytest.mark.parametrize("field", TAG_FIELDS)
@pytest.mark.parametrize("case,value", TAG_ACCEPT, ids=[c[0] for c in TAG_ACCEPT])
def test_tag_field_valid(pa, field, case, value):
    js = pa.ok({"action": "filter", field: value, "limit": 1000})
    assert isinstance(js["total_count"], int) and isinstance(js["resources"], list), js
    assert pa.ok({"action": "count", field: value}) == {"total_count": js["total_count"]}


def test_same_key_in_different_fields_ok(pa):
    body = {"action": "filter", "limit": 1000}
    for f in TAG_FIELDS:
        body[f] = [entry("env", ["prod"])]
    js = pa.ok(body)
    # tags env=prod AND NOT(env=prod): nothing.
    assert js == {"total_count": 0, "resources": []}


def test_values_object_written_with_escaped_name(pa):
    """§2: values must be an array; {} is an object however its member name
    is spelled in the JSON text ("\\u0076alues" decodes to "values")."""
    for f in TAG_FIELDS:
        body = '{"action": "filter", "%s": [{"key": "env", "\\u0076alues": {}}]}' % f
        st, _, js, raw = pa.g.request("POST", pa.path, body, token=pa.token)
        assert st == 400, (body, raw)
        msg = ims_error(js, "IMG.0001")
        assert f + "[0].values" in msg, msg


def test_unknown_field_holding_values_object_is_ignored(pa):
    """§0: unknown fields are ignored -- an unrelated {"values": {}} elsewhere
    in the body must not make a valid `values: []` invalid."""
    body = {"action": "filter", "limit": 1000, "tags": [entry("env")],
            "note": {"values": {}}}
    st, _, js, raw = pa.post(body)
    assert st == 200, raw
    assert {pa.ids_.index(r["resource_id"]) for r in js["resources"]} == {0, 1, 2, 3, 4, 8, 10}


# ---- validation: without_any_tag ------------------------------------------------------------

@pytest.mark.parametrize("value", ["true", 1, 0, "yes", [], {}, [True]], ids=repr)
def test_without_any_tag_not_boolean(pa, value):
    for action in ("filter", "count"):
        assert_bad(pa.post({"action": action, "without_any_tag": value}), "without_any_tag")


# ---- validation: matches -------------------------------------------------------------------

def m(k, v):
    return {"key": k, "value": v}


MATCH_REJECT = [
    ("string", "resource_name", "matches"),
    ("object", m("resource_name", "a"), "matches"),
    ("empty-object", {}, "matches"),
    ("empty-array", [], "matches"),
    ("entry-string", ["resource_name"], "matches[0]"),
    ("entry-null", [None], "matches[0]"),
    ("key-unknown", [m("name", "a")], "matches[0].key"),
    ("key-unknown-second", [m("resource_id", "a"), m("id", "a")], "matches[1].key"),
    ("key-case", [m("Resource_Name", "a")], "matches[0].key"),
    ("key-missing", [{"value": "a"}], "matches[0].key"),
    ("key-number", [m(1, "a")], "matches[0].key"),
    ("key-dup-name", [m("resource_name", "a"), m("resource_name", "b")], "matches[1].key"),
    ("key-dup-id", [m("resource_id", "a"), m("resource_name", "b"), m("resource_id", "a")],
     "matches[2].key"),
    ("value-256", [m("resource_name", V256)], "matches[0].value"),
    ("value-256-cjk", [m("resource_id", CJK * 256)], "matches[0].value"),
    ("value-number", [m("resource_name", 5)], "matches[0].value"),
    ("value-bool", [m("resource_id", True)], "matches[0].value"),
    ("value-array", [m("resource_name", ["a"])], "matches[0].value"),
    ("value-object", [m("resource_name", {"v": "a"})], "matches[0].value"),
]


@pytest.mark.parametrize("case,value,frag", MATCH_REJECT, ids=[c[0] for c in MATCH_REJECT])
def test_matches_invalid(pa, case, value, frag):
    for action in ("filter", "count"):
        assert_bad(pa.post({"action": action, "matches": value}), frag)


@pytest.mark.parametrize("value", [
    [m("resource_name", V255)], [m("resource_name", CJK * 255)], [m("resource_id", V255)],
    [m("resource_name", "")], [m("resource_id", "")], None,
    [m("resource_name", "x"), m("resource_id", "y")],
], ids=["name-255", "name-255-cjk", "id-255", "name-empty", "id-empty", "null", "both"])
def test_matches_valid(pa, value):
    js = pa.ok({"action": "filter", "matches": value})
    assert js["total_count"] == (12 if value is None else 0), js


# ---- semantics ------------------------------------------------------------------------------

E = entry
SEMANTICS = [
    ("no-condition", {}, ALL),
    # tags: AND across entries, OR across values, [] = has the key
    ("tags-one", {"tags": [E("env", ["prod"])]}, {0, 1, 10}),
    ("tags-or-values", {"tags": [E("env", ["prod", "dev"])]}, {0, 1, 2, 3, 10}),
    ("tags-and-entries", {"tags": [E("env", ["prod"]), E("team", ["a"])]}, {0}),
    ("tags-and-or", {"tags": [E("env", ["prod", "dev"]), E("team", ["b"])]}, {1, 3}),
    ("tags-has-key", {"tags": [E("env")]}, {0, 1, 2, 3, 4, 8, 10}),
    ("tags-empty-value", {"tags": [E("env", [""])]}, {8}),
    ("tags-has-two-keys", {"tags": [E("env"), E("tier")]}, {0, 1, 3, 10}),
    ("tags-three", {"tags": [E("env", ["prod"]), E("tier", ["web"]), E("owner")]}, {10}),
    ("tags-no-value", {"tags": [E("env", ["staging"])]}, set()),
    ("tags-no-key", {"tags": [E("nokey")]}, set()),
    ("tags-value-case", {"tags": [E("env", ["PROD"])]}, set()),
    ("tags-key-case", {"tags": [E("ENV")]}, set()),
    ("tags-value-of-other-key", {"tags": [E("team", ["prod"])]}, set()),
    ("tags-cjk", {"tags": [E("\u90e8\u95e8", ["\u7814\u53d1"])]}, {9}),
    ("tags-uppercase-key", {"tags": [E("Z", ["up"])]}, {10}),
    # tags_any: at least one entry
    ("any-one", {"tags_any": [E("env", ["prod"])]}, {0, 1, 10}),
    ("any-two", {"tags_any": [E("env", ["prod"]), E("team", ["a"])]}, {0, 1, 2, 6, 10}),
    ("any-has-key", {"tags_any": [E("owner"), E("tier", ["db"])]}, {1, 3, 8, 10}),
    ("any-none", {"tags_any": [E("nokey"), E("env", ["nope"])]}, set()),
    # not_tags: NOT(e1 AND e2 ...)
    ("not-one", {"not_tags": [E("env", ["prod"])]}, ALL - {0, 1, 10}),
    ("not-all", {"not_tags": [E("env", ["prod"]), E("tier", ["web"])]}, ALL - {0, 10}),
    ("not-all-2", {"not_tags": [E("env", ["prod"]), E("team", ["a"])]}, ALL - {0}),
    ("not-has-key", {"not_tags": [E("env")]}, {5, 6, 7, 9, 11}),
    ("not-absent-key", {"not_tags": [E("nokey")]}, ALL),
    # not_tags_any: NOT(e1 OR e2 ...)
    ("notany-one", {"not_tags_any": [E("env", ["prod"])]}, ALL - {0, 1, 10}),
    ("notany-two", {"not_tags_any": [E("env", ["prod"]), E("tier", ["web"])]},
     ALL - {0, 1, 6, 10}),
    ("notany-two-2", {"not_tags_any": [E("env", ["prod"]), E("team", ["a"])]},
     ALL - {0, 1, 2, 6, 10}),
    ("notany-keys", {"not_tags_any": [E("env"), E("team")]}, {5, 7, 9}),
    ("notany-absent", {"not_tags_any": [E("nokey")]}, ALL),
    # without_any_tag
    ("without", {"without_any_tag": True}, {5, 7}),
    ("without-false", {"without_any_tag": False}, ALL),
    ("without-null", {"without_any_tag": None}, ALL),
    ("without-ignores-tags", {"without_any_tag": True, "tags": [E("env", ["prod"])]}, {5, 7}),
    ("without-ignores-all-four", {"without_any_tag": True, "tags": [E("env")],
                                  "tags_any": [E("team")], "not_tags": [E("owner")],
                                  "not_tags_any": [E("tier")]}, {5, 7}),
    ("without-and-name", {"without_any_tag": True,
                          "matches": [m("resource_name", "delta")]}, {7}),
    ("false-keeps-tags", {"without_any_tag": False, "tags": [E("env", ["prod"])]}, {0, 1, 10}),
    # matches: resource_id exact
    ("id", {"matches": [m("resource_id", "@3")]}, {3}),
    ("id-upper", {"matches": [m("resource_id", "@3^")]}, set()),
    ("id-prefix", {"matches": [m("resource_id", "@3[:8]")]}, set()),
    ("id-unknown", {"matches": [m("resource_id", "00000000-0000-4000-8000-000000000000")]}, set()),
    ("id-other-project", {"matches": [m("resource_id", "@B0")]}, set()),
    ("id-and-tags", {"matches": [m("resource_id", "@3")], "tags": [E("env", ["prod"])]}, set()),
    ("id-and-tags-hit", {"matches": [m("resource_id", "@3")], "tags": [E("tier", ["db"])]}, {3}),
    # matches: resource_name, case-insensitive substring; "" = exact
    ("name-web", {"matches": [m("resource_name", "web")]}, {0, 2}),
    ("name-WEB", {"matches": [m("resource_name", "WEB")]}, {0, 2}),
    ("name-alpha", {"matches": [m("resource_name", "ALPHA")]}, {0, 1}),
    ("name-mixed", {"matches": [m("resource_name", "zEtA-1")]}, {10, 11}),
    ("name-whole", {"matches": [m("resource_name", "delta-07")]}, {7}),
    ("name-space", {"matches": [m("resource_name", "a 0")]}, {6}),
    ("name-underscore-literal", {"matches": [m("resource_name", "a_d")]}, {3}),
    ("name-dot-literal", {"matches": [m("resource_name", "a.0")]}, {4}),
    ("name-percent", {"matches": [m("resource_name", "%")]}, set()),
    ("name-star", {"matches": [m("resource_name", "a*")]}, set()),
    ("name-cjk", {"matches": [m("resource_name", "\u90e8\u95e8")]}, {9}),
    ("name-longer", {"matches": [m("resource_name", "alpha-web-01x")]}, set()),
    ("name-empty-exact", {"matches": [m("resource_name", "")]}, set()),
    ("name-digit", {"matches": [m("resource_name", "0")]}, ALL - {11}),
    ("name-and-id", {"matches": [m("resource_name", "zeta"), m("resource_id", "@10")]}, {10}),
    ("name-and-id-miss", {"matches": [m("resource_name", "zeta-11"), m("resource_id", "@10")]},
     set()),
    # combinations are ANDed
    ("combo-has-minus-any", {"tags": [E("env")], "not_tags_any": [E("tier")]}, {2, 4, 8}),
    ("combo-four", {"tags_any": [E("team", ["a"]), E("owner")],
                    "not_tags": [E("env", ["prod"])],
                    "matches": [m("resource_name", "TA")]}, {2, 6}),
    ("combo-all-fields", {"tags": [E("team")], "tags_any": [E("env", ["dev"]), E("tier", ["web"])],
                          "not_tags": [E("env", ["dev"]), E("tier", ["db"])],
                          "not_tags_any": [E("owner")],
                          "matches": [m("resource_name", "e")]}, {0, 2, 6}),
    ("combo-empty", {"tags": [E("team", ["a"])], "not_tags_any": [E("team", ["a"])]}, set()),
]


def resolve(body, pa, pb):
    """Replaces "@N" (A's image N), "@BN" (B's), "@N^" (upper-cased),
    "@N[:8]" (prefix) in matches values."""
    body = json.loads(json.dumps(body))
    for mm in body.get("matches") or []:
        v = mm["value"]
        if isinstance(v, str) and v.startswith("@"):
            mo = re.fullmatch(r"@(B?)(\d+)(\^|\[:8\])?", v)
            iid = (pb.ids_ if mo.group(1) else pa.ids_)[int(mo.group(2))]
            if mo.group(3) == "^":
                iid = iid.upper()
            elif mo.group(3):
                iid = iid[:8]
            mm["value"] = iid
    return body


@pytest.mark.parametrize("case,body,expected", SEMANTICS, ids=[c[0] for c in SEMANTICS])
def test_semantics(pa, pb, case, body, expected):
    body = resolve(body, pa, pb)
    got = pa.ids(**body)
    names = {pa.ids_[i]: FIXTURE[i][0] for i in range(len(FIXTURE))}
    assert set(got) <= set(names), "ids outside project A: %r" % (set(got) - set(names))
    got_idx = {pa.ids_.index(i) for i in got}
    assert got_idx == expected, (case, sorted(got_idx), sorted(expected))
    # newest first
    assert got == [pa.ids_[i] for i in sorted(expected, reverse=True)]
    # count agrees with filter's total_count
    assert pa.count(**body) == len(expected)
    # the same query with a page of 1 still reports every match
    js = pa.ok(dict(body, action="filter", limit=1))
    assert js["total_count"] == len(expected)
    assert len(js["resources"]) == min(1, len(expected))


# ---- response shape ------------------------------------------------------------------------

def sorted_tags(tags):
    return sorted([tg(k, v) for k, v in tags], key=lambda t: t["key"].encode("utf-8"))


def test_filter_shape_every_resource(pa):
    js = pa.filter()
    assert set(js) == {"total_count", "resources"}, js
    assert js["total_count"] == 12
    want = []
    for i in reversed(range(len(FIXTURE))):
        name, tags = FIXTURE[i]
        want.append({"resource_id": pa.ids_[i], "resource_name": name,
                     "resource_detail": {"status": "active"}, "tags": sorted_tags(tags)})
    assert js["resources"] == want
    for r in js["resources"]:
        assert set(r) == {"resource_id", "resource_name", "resource_detail", "tags"}, r
        assert set(r["resource_detail"]) == {"status"}, r
        assert isinstance(r["tags"], list), r
        for t in r["tags"]:
            assert set(t) == {"key", "value"}, t


def test_filter_tags_sorted_by_key(pa):
    js = pa.filter(matches=[m("resource_id", pa.ids_[10])])
    assert js["resources"][0]["tags"] == [tg("Z", "up"), tg("env", "prod"), tg("owner", "y"),
                                          tg("tier", "web")]
    js = pa.filter(matches=[m("resource_id", pa.ids_[0])])
    assert js["resources"][0]["tags"] == [tg("env", "prod"), tg("team", "a"), tg("tier", "web")]


def test_filter_untagged_tags_is_array(pa):
    st, h, js, raw = pa.post({"action": "filter", "matches": [m("resource_id", pa.ids_[5])]})
    assert st == 200 and h["Content-Type"] == JSON_CT, raw
    assert js["resources"] == [{"resource_id": pa.ids_[5], "resource_name": "gammax05",
                                "resource_detail": {"status": "active"}, "tags": []}]
    assert re.search(rb'"tags"\s*:\s*\[\s*\]', raw), raw


def test_filter_empty_result_is_array(pa):
    st, h, js, raw = pa.post({"action": "filter", "tags": [E("nokey")]})
    assert st == 200 and h["Content-Type"] == JSON_CT, raw
    assert js == {"total_count": 0, "resources": []}
    assert isinstance(js["resources"], list)
    assert re.search(rb'"resources"\s*:\s*\[\s*\]', raw), raw


def test_count_shape(pa):
    st, h, js, raw = pa.post({"action": "count", "tags": [E("env", ["prod"])]})
    assert st == 200 and h["Content-Type"] == JSON_CT, raw
    assert js == {"total_count": 3}
    st, _, js, raw = pa.post({"action": "count", "tags": [E("nokey")]})
    assert st == 200 and js == {"total_count": 0}, raw


# ---- order and paging ----------------------------------------------------------------------

def page(p, offset, limit, **fields):
    js = p.ok(dict({"action": "filter", "offset": offset, "limit": limit}, **fields))
    return js["total_count"], [r["resource_id"] for r in js["resources"]]


def test_full_list_newest_first(pp):
    assert pp.ids() == pp.full
    js = pp.filter()
    assert [r["resource_name"] for r in js["resources"]] == \
        [PNAME % i for i in reversed(range(PAGED))]


def test_default_page_is_ten(pp):
    js = pp.ok({"action": "filter"})
    assert js["total_count"] == PAGED
    assert [r["resource_id"] for r in js["resources"]] == pp.full[:10]


@pytest.mark.parametrize("form", ["int", "str"])
def test_pages_of_seven(pp, form):
    conv = (lambda n: n) if form == "int" else str
    got, offset, sizes = [], 0, []
    while True:
        total, ids = page(pp, conv(offset), conv(7))
        assert total == PAGED
        if not ids:
            break
        sizes.append(len(ids))
        got.extend(ids)
        offset += 7
        assert offset < 100
    assert sizes == [7, 7, 7, 7, 5]
    assert got == pp.full


def test_pages_of_seven_filtered(pp):
    want = [pp.ids_[i] for i in reversed(range(PAGED)) if i % 3 == 0]
    assert len(want) == 11
    assert pp.ids(tags=[E("m3", ["yes"])]) == want
    got = []
    for offset in (0, 7, 14):
        total, ids = page(pp, offset, 7, tags=[E("m3", ["yes"])])
        assert total == 11
        got.extend(ids)
    assert got == want
    want_not = [i for i in pp.full if i not in want]
    got = []
    for offset in range(0, 28, 7):
        total, ids = page(pp, offset, 7, not_tags=[E("m3")])
        assert total == 22
        got.extend(ids)
    assert got == want_not


@pytest.mark.parametrize("offset,limit", [(5, 3), (0, 1), (32, 10), (30, 3), (1, 1000), (20, 13)])
def test_page_is_slice(pp, offset, limit):
    total, ids = page(pp, offset, limit)
    assert total == PAGED
    assert ids == pp.full[offset:offset + limit]


@pytest.mark.parametrize("offset", [33, "33", 34, 1000, "99999"])
def test_offset_past_end(pp, offset):
    js = pp.ok({"action": "filter", "offset": offset, "limit": 7})
    assert js == {"total_count": PAGED, "resources": []}
    js = pp.ok({"action": "filter", "offset": offset, "tags": [E("m3")]})
    assert js == {"total_count": 11, "resources": []}


def test_total_count_ignores_limit(pp):
    for limit in (1, 2, 7, 10, 33, 1000):
        total, ids = page(pp, 0, limit)
        assert total == PAGED and len(ids) == min(limit, PAGED)
    assert pp.count() == PAGED
    assert pp.count(tags=[E("m3")]) == 11


@pytest.mark.parametrize("name,hits", [("PAGE-04-paging", {4}), ("g-f", {4, 20}),
                                       (PNAME % 20, {20}), ("page-05", set()), ("", set()),
                                       ("page-04-paging-fixturex", set()), ("4_P", set())])
def test_name_match_on_small_candidate_set(pp, name, hits):
    """The same name rules when the candidates are few (a resource_id, a
    rare tag) as on a full scan: case-insensitive substring, "" exact."""
    rare = [pp.ids_[i] for i in sorted(hits, reverse=True)]
    assert pp.ids(tags=[E("rare")], matches=[m("resource_name", name)]) == rare
    assert pp.count(tags=[E("rare", ["1"])], matches=[m("resource_name", name)]) == len(hits)
    for i in (4, 20):
        want = [pp.ids_[i]] if i in hits else []
        assert pp.ids(matches=[m("resource_id", pp.ids_[i]), m("resource_name", name)]) == want
    # the full scan agrees
    full = pp.ids(matches=[m("resource_name", name)])
    assert [i for i in full if i in (pp.ids_[4], pp.ids_[20])] == rare


# ---- the index kept in step with writes ------------------------------------------------------

def test_tag_overwrite(pc):
    k = uniq()
    iid = pc.image(tags=[(k, "red"), ("size", "s")])
    assert pc.ids(tags=[E(k, ["red"])]) == [iid]
    st, _, _, raw = pc.batch(iid, "create", [tg(k, "blue")])
    assert st == 204, raw
    assert pc.ids(tags=[E(k, ["red"])]) == []
    assert pc.ids(tags=[E(k, ["blue"])]) == [iid]
    assert pc.ids(tags=[E(k)]) == [iid]
    assert pc.count(tags=[E(k, ["red"])]) == 0
    assert pc.count(tags=[E(k, ["blue"])]) == 1
    assert iid in pc.ids(not_tags_any=[E(k, ["red"])])
    assert iid not in pc.ids(not_tags_any=[E(k, ["blue"])])
    js = pc.filter(matches=[m("resource_id", iid)])
    assert js["resources"][0]["tags"] == sorted_tags([(k, "blue"), ("size", "s")])


def test_tag_delete_batch_and_single(pc):
    k1, k2 = uniq(), uniq()
    iid = pc.image(tags=[(k1, "v"), (k2, "w")])
    other = pc.image(tags=[(k1, "v")])
    assert set(pc.ids(tags=[E(k1, ["v"])])) == {iid, other}
    st, _, _, raw = pc.batch(iid, "delete", [{"key": k1}])
    assert st == 204, raw
    assert pc.ids(tags=[E(k1, ["v"])]) == [other]
    assert pc.ids(tags=[E(k1)]) == [other]
    assert pc.ids(tags_any=[E(k1), E(k2)]) == [other, iid]
    assert iid not in pc.ids(without_any_tag=True)
    # single delete of the last tag: the image now has no tags
    st, _, _, raw = pc.g.request("DELETE", "/v2/%s/images/%s/tags/%s" % (pc.id, iid, k2),
                                 token=pc.token)
    assert st == 204, raw
    assert pc.ids(tags=[E(k2)]) == []
    assert pc.ids(without_any_tag=True, matches=[m("resource_id", iid)]) == [iid]
    js = pc.filter(matches=[m("resource_id", iid)])
    assert js["resources"][0]["tags"] == []


def test_tag_add_single(pc):
    k = uniq()
    iid = pc.image()
    assert pc.ids(without_any_tag=True, matches=[m("resource_id", iid)]) == [iid]
    st, _, _, raw = pc.g.request("POST", "/v2/%s/images/%s/tags" % (pc.id, iid),
                                 {"tag": tg(k, "one")}, token=pc.token)
    assert st == 204, raw
    assert pc.ids(tags=[E(k, ["one"])]) == [iid]
    assert pc.ids(without_any_tag=True, matches=[m("resource_id", iid)]) == []


def test_image_create_visible_newest_first(pc):
    k = uniq()
    before = pc.count()
    iid = pc.image(name="Fresh-" + k, tags=[(k, "v")])
    assert pc.count() == before + 1
    js = pc.ok({"action": "filter", "limit": 1})
    assert js["total_count"] == before + 1
    assert js["resources"][0]["resource_id"] == iid
    assert js["resources"][0]["resource_name"] == "Fresh-" + k
    assert js["resources"][0]["tags"] == [tg(k, "v")]
    assert pc.ids(tags=[E(k, ["v"])]) == [iid]
    assert pc.ids(matches=[m("resource_name", "fresh-" + k.upper())]) == [iid]


def test_image_delete(pc):
    k = uniq()
    keep = pc.image(name="keep-" + k, tags=[(k, "v")])
    gone = pc.image(name="gone-" + k, tags=[(k, "v")])
    bare = pc.image(name="bare-" + k)
    before = pc.count()
    assert pc.ids(tags=[E(k)]) == [gone, keep]
    for iid in (gone, bare):
        st, _, _, raw = pc.g.request("DELETE", "/v2/images/" + iid, token=pc.token)
        assert st == 204, raw
    assert pc.count() == before - 2
    assert pc.ids(tags=[E(k)]) == [keep]
    assert pc.count(tags=[E(k, ["v"])]) == 1
    assert pc.ids(matches=[m("resource_id", gone)]) == []
    assert pc.ids(matches=[m("resource_name", k)]) == [keep]
    assert bare not in pc.ids(without_any_tag=True)
    all_ids = pc.ids()
    assert gone not in all_ids and bare not in all_ids and keep in all_ids


def put_object(g, name, size=4096):
    folder = os.path.join(g.obs, BUCKET)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(b"\x5a" * size)
    return "%s:%s" % (BUCKET, name)


def import_image(pc, name, url, **extra):
    body = {"name": name, "os_version": OS_VERSION, "image_url": url, "min_disk": 40}
    body.update(extra)
    st, _, js, raw = pc.g.request("POST", IMPORT, body, token=pc.token)
    assert st == 200, raw
    job = js["job_id"]
    st, _, js, raw = pc.g.request("GET", "/v1/%s/jobs/%s" % (pc.id, job), token=pc.token)
    assert st == 200, raw
    return job, js["entities"]["image_id"]


def wait_job(pc, job, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        st, _, js, raw = pc.g.request("GET", "/v1/%s/jobs/%s" % (pc.id, job), token=pc.token)
        assert st == 200, raw
        if js["status"] in ("SUCCESS", "FAIL"):
            return js
        assert time.monotonic() < deadline, js
        time.sleep(0.02)


def test_import_visible_at_once_and_status_follows(pc):
    k = uniq()
    url = put_object(pc.g, "ok-%s.zvhd2" % k)
    job, iid = import_image(pc, "imp-" + k, url, tags=["%s.v1" % k, "%sb" % k])
    # visible as soon as the import is accepted
    assert pc.ids(tags=[E(k, ["v1"]), E(k + "b", [""])]) == [iid]
    js = pc.filter(matches=[m("resource_name", "IMP-" + k)])
    assert [r["resource_id"] for r in js["resources"]] == [iid]
    assert js["resources"][0]["resource_detail"]["status"] in ("queued", "saving", "active"), js
    assert js["resources"][0]["tags"] == [tg(k, "v1"), tg(k + "b", "")]
    assert wait_job(pc, job)["status"] == "SUCCESS"
    js = pc.filter(matches=[m("resource_id", iid)])
    assert js["resources"][0]["resource_detail"] == {"status": "active"}
    assert pc.ids(tags=[E(k, ["v1"])]) == [iid]


def test_failed_import_image_is_killed(pc):
    k = uniq()
    job, iid = import_image(pc, "dead-" + k, "%s:missing-%s.zvhd2" % (BUCKET, k),
                            image_tags=[tg(k, "x")])
    assert wait_job(pc, job)["status"] == "FAIL"
    js = pc.filter(tags=[E(k)])
    assert [r["resource_id"] for r in js["resources"]] == [iid]
    assert js["resources"][0]["resource_detail"] == {"status": "killed"}


def test_failed_writes_change_nothing(pc):
    k = uniq()
    full = pc.image(name="full-" + k, tags=[("%s%d" % (k, i), "v%d" % i) for i in range(10)])
    one = pc.image(name="one-" + k, tags=[(k, "v1")])
    before = pc.snapshot()
    counts = {"all": pc.count(), "k": pc.count(tags=[E(k)])}

    # a batch with one bad tag: none of it applies
    st, _, js, raw = pc.batch(one, "create", [tg(k, "v2"), tg(k + "new", "x"), tg("bad key", "x")])
    assert st == 400, raw
    ims_error(js, "IMG.0115")
    # over the quota: 10 tags + 1 new
    st, _, js, raw = pc.batch(full, "create", [tg(k + "0", "changed"), tg(k + "extra", "x")])
    assert st == 400, raw
    ims_error(js, "IMG.0116")
    # a delete with one bad entry
    st, _, js, raw = pc.batch(one, "delete", [{"key": k}, {"key": "  "}])
    assert st == 400, raw
    # single add with a bad tag, and one over the quota
    st, _, _, raw = pc.g.request("POST", "/v2/%s/images/%s/tags" % (pc.id, one),
                                 {"tag": tg(k, "bad value!")}, token=pc.token)
    assert st == 400, raw
    st, _, js, raw = pc.g.request("POST", "/v2/%s/images/%s/tags" % (pc.id, full),
                                  {"tag": tg(k + "extra", "x")}, token=pc.token)
    assert st == 400, raw
    ims_error(js, "IMG.0116")
    # an image creation with a bad tag, an import with a bad tag
    st, _, _, raw = pc.g.request("POST", "/v2/images", {"name": "nope-" + k, "image_tags": [
        tg(k, "v1"), tg("bad key", "x")]}, token=pc.token)
    assert st == 400, raw
    st, _, _, raw = pc.g.request("POST", IMPORT, {
        "name": "nope-" + k, "os_version": OS_VERSION, "min_disk": 40,
        "image_url": put_object(pc.g, "nope-%s.zvhd2" % k), "tags": ["%s.v1" % k, "bad key.x"]},
        token=pc.token)
    assert st == 400, raw

    assert pc.snapshot() == before
    assert pc.count() == counts["all"]
    assert pc.count(tags=[E(k)]) == counts["k"] == 1
    assert pc.ids(tags=[E(k, ["v1"])]) == [one]
    assert pc.ids(tags=[E(k, ["v2"])]) == []
    assert pc.ids(tags_any=[E(k + "new"), E(k + "extra")]) == []
    assert pc.ids(tags=[E(k + "0", ["v0"])]) == [full]
    assert pc.ids(tags=[E(k + "0", ["changed"])]) == []
    assert pc.ids(matches=[m("resource_name", "nope-" + k)]) == []


# ---- project isolation -------------------------------------------------------------------------

def test_other_project_sees_only_its_own(pa, pb):
    assert set(pa.ids()) == set(pa.ids_)           # A: its 12, none of B's
    assert pb.ids() == list(reversed(pb.ids_))      # B: its 2, none of A's
    assert pb.count() == 2
    assert pb.ids(tags=[E("env", ["prod"])]) == [pb.ids_[0]]
    assert pb.ids(tags=[E("tier")]) == []
    assert pb.ids(matches=[m("resource_name", "alpha")]) == [pb.ids_[0]]
    assert pb.ids(matches=[m("resource_id", pa.ids_[0])]) == []
    assert pb.ids(not_tags_any=[E("bkey")]) == [pb.ids_[0]]
    assert pb.ids(without_any_tag=True) == []
    assert pa.ids(tags=[E("bkey")]) == []


def test_admin_project_does_not_see_others(gw, pa):
    st, _, js, raw = gw.request("POST", QUERY % gw.project, {
        "action": "filter", "limit": 1000,
        "tags_any": [E("\u90e8\u95e8"), E("Z", ["up"])]})
    assert st == 200, raw
    assert not {r["resource_id"] for r in js["resources"]} & set(pa.ids_)
    for iid in pa.ids_[:3]:
        st, _, js, raw = gw.request("POST", QUERY % gw.project, {
            "action": "count", "matches": [m("resource_id", iid)]})
        assert st == 200 and js == {"total_count": 0}, raw


@pytest.mark.parametrize("action", ["filter", "count"])
def test_foreign_project_path_403(pa, pb, action):
    for project in (pb.id, random_project()):
        st, h, js, raw = pa.post({"action": action}, project=project)
        assert st == 403, raw
        gateway_error(js, h, "APIGW.0302")
    # the project check comes before validation (§0.1 order)
    st, h, js, raw = pa.post({"action": "Filter", "limit": 0}, project=pb.id)
    assert st == 403, raw
    gateway_error(js, h, "APIGW.0302")


# ---- the start-up rebuild -----------------------------------------------------------

def test_start_up_rebuild_of_interleaved_projects(gateway, tmp_path):
    """The rebuild reads the images, then the tags, in seq order and feeds the
    index in runs of one project.  Projects interleaved image by image, more
    keys than the loader keeps at hand (32), images without tags, and tags
    left behind by images gone from their table all come back as SQLite has
    them after a restart."""
    import random
    g = gateway
    rng = random.Random(4242)
    projects = [g.project, random_project(), random_project()]
    g.stop()
    tokens = {g.project: g.token}
    for p in projects[1:]:
        tokens[p] = g.new_credential(project=p)["token"]
    keys = ["k%02d" % i for i in range(40)]
    lines = []
    for n in range(3000):
        tags = {k: "v%d" % int(rng.random() ** 2 * (3 + 40 * i))
                for i, k in sorted((keys.index(k), k) for k in rng.sample(keys, rng.choice([0, 1, 3, 10, 40])))}
        lines.append({"project_id": rng.choice(projects), "name": "img-%04d" % n,
                      "tags": [{"key": k, "value": v} for k, v in tags.items()]})
    path = tmp_path / "mix.jsonl"
    path.write_text("".join(json.dumps(l) + "\n" for l in lines))
    p = run_cli("load", "--db", g.db, str(path))
    assert p.returncode == 0, p.stderr
    con = sqlite3.connect(g.db)
    try:
        with con:   # images gone by hand, their tag rows left: not indexed
            con.execute("DELETE FROM images WHERE seq % 61 = 0")
        want = {}   # project -> key -> value -> set of image ids
        ids = {}
        for proj, iid in con.execute("SELECT project_id, id FROM images"):
            ids.setdefault(proj, set()).add(iid)
        for proj, iid, k, v in con.execute(
                "SELECT i.project_id, i.id, t.key, t.value FROM image_tags t JOIN images i ON i.seq = t.seq"):
            want.setdefault(proj, {}).setdefault(k, {}).setdefault(v, set()).add(iid)
        orphans = con.execute("SELECT count(*) FROM image_tags WHERE seq NOT IN (SELECT seq FROM images)").fetchone()[0]
    finally:
        con.close()
    assert orphans > 100
    g.start()
    built = [o for o in g.log_objects() if o.get("msg") == "index built"][-1]
    assert built["images"] == sum(len(s) for s in ids.values())
    assert built["tags"] == sum(len(s) for kv in want.values() for vs in kv.values() for s in vs.values())
    for proj in projects:
        tok = tokens[proj]
        st, _, js, raw = g.request("GET", "/v2/%s/images/tags" % proj, token=tok)
        assert st == 200, raw
        assert {e["key"]: sorted(e["values"]) for e in js["tags"]} == \
            {k: sorted(vs) for k, vs in want[proj].items()}
        for k in keys:
            for vals in ([], sorted(want[proj].get(k, {}))[:2]):
                exp = set().union(*[want[proj].get(k, {}).get(v, set()) for v in vals]) if vals else \
                    set().union(*want[proj].get(k, {}).values()) if k in want[proj] else set()
                got, offset = set(), 0
                while True:
                    st, _, js, raw = g.request("POST", QUERY % proj, {
                        "action": "filter", "limit": 1000, "offset": offset,
                        "tags": [{"key": k, "values": vals}]}, token=tok)
                    assert st == 200, raw
                    got |= {r["resource_id"] for r in js["resources"]}
                    offset += 1000
                    if offset >= js["total_count"]:
                        break
                assert js["total_count"] == len(exp) and got == exp, (proj, k, vals)
        st, _, js, raw = g.request("POST", QUERY % proj, {"action": "count", "without_any_tag": True},
                                   token=tok)
        tagged = set().union(*[s for kv in want[proj].values() for s in kv.values()])
        assert st == 200 and js["total_count"] == len(ids[proj] - tagged), raw


@pytest.mark.parametrize("table", ["images", "image_tags"])
def test_start_up_rebuild_names_a_damaged_table(tmp_path, table):
    """A scan that fails part way (here a damaged page) stops the start with
    SQLite's own reason, not a partial index and not "not an error"."""
    project = random_project()
    lines = [{"project_id": project, "name": "marker-image-name-%04d" % n,
              "tags": [{"key": "k%d" % i, "value": "marker-tag-value-%04d-%d" % (n, i)} for i in range(5)]}
             for n in range(3000)]
    path = tmp_path / "load.jsonl"
    path.write_text("".join(json.dumps(l) + "\n" for l in lines))
    db = str(tmp_path / "t.db")
    p = run_cli("load", "--db", db, str(path))
    assert p.returncode == 0, p.stderr
    raw = bytearray(open(db, "rb").read())
    page = int.from_bytes(raw[16:18], "big") or 65536
    marker = b"marker-image-name-0100" if table == "images" else b"marker-tag-value-0100-3"
    at = raw.find(marker)
    assert at > 0 and raw.find(marker, at + 1) < 0     # one copy: the table's own page
    raw[at - at % page] = 0x07                          # not a b-tree page type
    open(db, "wb").write(bytes(raw))
    p = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--db", db, "--auth", "off"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode != 0
    assert "cannot build the tag index: index build: database disk image is malformed" in p.stderr, p.stderr
    assert '"listening"' not in p.stderr
