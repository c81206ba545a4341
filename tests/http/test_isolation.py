"""Tenant isolation (API.md §0.2, §6): project A's credentials, whatever
route they call with project B's ids, never read or change B's images,
tags or jobs; members cannot use admin routes or write reserved keys;
credentials are kept out of listings and logs; the database is private.

The walk covers every route of lua/routes.lua (the test fails if a route
is added without being walked), each with a member token, an admin token
and an AK/SK signature of project A."""
import json
import os
import re
import sqlite3
import stat
import time
import uuid

import pytest

from conftest import (SRC_LUA, SRC_POLICIES, Gateway, gateway_error, ims_error,
                      random_project, run_cli)
from test_aksk import sdk_request

BUCKET = "iso-bucket"
OS_VERSION = "CentOS 7.9 64bit"


def put_object(g, bucket, name, size=4096):
    folder = os.path.join(g.obs, bucket)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(b"\x5a" * size)
    return "%s:%s" % (bucket, name)


class Caller:
    """One of A's credentials, as a token or as an AK/SK signer."""

    def __init__(self, g, cred, via, name):
        self.g, self.cred, self.via, self.name = g, cred, via, name

    @property
    def project(self):
        return self.cred["project_id"]

    def __call__(self, method, path, body=None, headers=None):
        if self.via == "aksk":
            extra = dict(headers or {})
            project = extra.pop("X-Project-Id", None)
            return sdk_request(self.g, self.cred, method, path, body, project=project, extra=extra)
        return self.g.request(method, path, body, headers=headers, token=self.cred["token"])

    def __repr__(self):
        return "<%s %s>" % (self.name, self.via)


def wait_job(g, job_id, token, project, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        st, _, js, raw = g.request("GET", "/v1/%s/jobs/%s" % (project, job_id), token=token)
        assert st == 200, raw
        if js["status"] in ("SUCCESS", "FAIL"):
            return js
        assert time.monotonic() < deadline, js
        time.sleep(0.02)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("isolation"))
    pa, pb = random_project(), random_project()
    have_tms = os.path.exists(os.path.join(SRC_POLICIES, "tms.lua"))
    conf = os.path.join(root, "tagway.conf.lua")
    with open(conf, "w") as f:
        if have_tms:
            f.write('return { project_policies = { ["%s"] = "tms" } }\n' % pa)
        else:
            f.write("return {}\n")
    g = Gateway(os.path.join(root, "gw"), extra_args=["--config", conf])
    try:
        g.start()
        g.stop()
        w = {
            "g": g, "pa": pa, "pb": pb, "have_tms": have_tms,
            "a_member": g.new_credential(project=pa, role="member"),
            "a_admin": g.new_credential(project=pa, role="admin"),
            "b_member": g.new_credential(project=pb, role="member"),
            "b_admin": g.new_credential(project=pb, role="admin"),
        }
        g.start()
        url = put_object(g, BUCKET, "disk.zvhd2")
        bt = w["b_member"]["token"]
        secret = "bsecret" + uuid.uuid4().hex[:12]
        w["b_secret"] = secret
        # B's data: images with tags, one without, an imported image and its job
        w["ib"] = [
            g.create_image(token=bt, image_tags=[{"key": "owner", "value": secret},
                                                 {"key": "bonly", "value": "x"}]),
            g.create_image(token=bt),
        ]
        st, _, js, raw = g.request("POST", "/v2/cloudimages/quickimport/action",
                                   {"name": "b-import", "os_version": OS_VERSION, "image_url": url,
                                    "min_disk": 40, "image_tags": [{"key": "imported", "value": secret}]},
                                   token=bt)
        assert st == 200, raw
        w["jb"] = js["job_id"]
        job = wait_job(g, w["jb"], bt, pb)
        assert job["status"] == "SUCCESS", job
        w["ib"].append(job["entities"]["image_id"])
        # A's own image
        w["ia"] = g.create_image(token=w["a_member"]["token"], image_tags=[{"key": "mine", "value": "a"}])
        w["url"] = url
        yield w
    finally:
        g.kill9()


def b_snapshot(w):
    """Everything B can see, through B's credential, plus B's rows in SQLite."""
    g, bt, pb = w["g"], w["b_member"]["token"], w["pb"]
    snap = {}
    for iid in w["ib"]:
        st, _, js, raw = g.request("GET", "/v2/images/" + iid, token=bt)
        assert st == 200, raw
        snap["image " + iid] = js
        st, _, js, raw = g.request("GET", "/v2/%s/images/%s/tags" % (pb, iid), token=bt)
        assert st == 200, raw
        snap["tags " + iid] = js
    st, _, js, _ = g.request("GET", "/v2/%s/images/tags" % pb, token=bt)
    snap["project tags"] = js
    st, _, js, _ = g.request("POST", "/v2/%s/images/resource_instances/action" % pb,
                             {"action": "filter", "limit": 1000}, token=bt)
    snap["filter"] = js
    for path in ["/v1/%s/jobs/%s" % (pb, w["jb"]), "/v1/cloudimages/job/%s" % w["jb"]]:
        st, _, js, raw = g.request("GET", path, token=bt)
        assert st == 200, raw
        snap[path] = js
    with sqlite3.connect("file:%s?mode=ro" % g.db, uri=True) as con:
        snap["sql images"] = con.execute(
            "SELECT seq, id, name, status, attrs, created_ms, updated_ms FROM images "
            "WHERE project_id = ? ORDER BY seq", (pb,)).fetchall()
        snap["sql tags"] = con.execute(
            "SELECT t.seq, t.key, t.value FROM image_tags t JOIN images i ON i.seq = t.seq "
            "WHERE i.project_id = ? ORDER BY t.seq, t.key", (pb,)).fetchall()
        snap["sql jobs"] = con.execute(
            "SELECT * FROM jobs WHERE project_id = ? ORDER BY id", (pb,)).fetchall()
    return snap


def route_table():
    """(method, path) of every route in lua/routes.lua."""
    src = open(os.path.join(SRC_LUA, "routes.lua"), encoding="utf-8").read()
    routes = re.findall(r'method\s*=\s*"([A-Z]+)"\s*,\s*path\s*=\s*"([^"]+)"', src)
    assert len(routes) >= 16, routes
    return set(routes)


def expect_gateway(resp, status, code):
    st, h, js, raw = resp
    assert st == status, (st, raw)
    gateway_error(js, h, code)


def expect_ims(resp, status, code):
    st, _, js, raw = resp
    assert st == status, (st, raw)
    ims_error(js, code)


def test_walk_every_route_with_foreign_ids(world):
    w = world
    g, pa, pb = w["g"], w["pa"], w["pb"]
    ib, jb, ia = w["ib"], w["jb"], w["ia"]
    secret = w["b_secret"]
    before = b_snapshot(w)
    callers = [Caller(g, w["a_member"], "token", "a_member"), Caller(g, w["a_admin"], "token", "a_admin"),
               Caller(g, w["a_member"], "aksk", "a_member")]
    covered = set()
    bodies = []       # every answer A got: none may reveal B's data

    def call(caller, route, method, path, body=None, headers=None):
        covered.add(route)
        resp = caller(method, path, body, headers=headers)
        bodies.append((caller, method, path, resp[3]))
        return resp

    B_KEYS = ["owner", "bonly", "imported"]
    for c in callers:
        member = c.name == "a_member"
        # ---- operations
        r = ("GET", "/healthz")
        assert call(c, r, "GET", "/healthz")[0] == 200
        r = ("GET", "/metrics")
        st, _, _, raw = call(c, r, "GET", "/metrics")
        assert st == 200
        for ident in [pb, jb, secret] + ib:
            assert ident.encode() not in raw, ident
        for method, path in [("POST", "/admin/reload"), ("GET", "/admin/status")]:
            if member:
                expect_gateway(call(c, (method, path), method, path), 403, "APIGW.0302")
            else:
                covered.add((method, path))   # an admin may; checked elsewhere
        # ---- tags of one image: B's image under A's path -> 404, B's path -> 403
        for iid in ib:
            r = ("POST", "/v2/{project_id}/images/{image_id}/tags/action")
            for body in [{"action": "create", "tags": [{"key": "owner", "value": "stolen"}]},
                         {"action": "delete", "tags": [{"key": k} for k in B_KEYS]}]:
                expect_ims(call(c, r, "POST", "/v2/%s/images/%s/tags/action" % (pa, iid), body), 404, "IMG.0027")
                expect_gateway(call(c, r, "POST", "/v2/%s/images/%s/tags/action" % (pb, iid), body),
                               403, "APIGW.0302")
            r = ("POST", "/v2/{project_id}/images/{image_id}/tags")
            body = {"tag": {"key": "owner", "value": "stolen"}}
            expect_ims(call(c, r, "POST", "/v2/%s/images/%s/tags" % (pa, iid), body), 404, "IMG.0027")
            expect_gateway(call(c, r, "POST", "/v2/%s/images/%s/tags" % (pb, iid), body), 403, "APIGW.0302")
            r = ("DELETE", "/v2/{project_id}/images/{image_id}/tags/{key}")
            for key in B_KEYS:
                expect_ims(call(c, r, "DELETE", "/v2/%s/images/%s/tags/%s" % (pa, iid, key)), 404, "IMG.0027")
                expect_gateway(call(c, r, "DELETE", "/v2/%s/images/%s/tags/%s" % (pb, iid, key)),
                               403, "APIGW.0302")
            r = ("GET", "/v2/{project_id}/images/{image_id}/tags")
            expect_ims(call(c, r, "GET", "/v2/%s/images/%s/tags" % (pa, iid)), 404, "IMG.0027")
            expect_gateway(call(c, r, "GET", "/v2/%s/images/%s/tags" % (pb, iid)), 403, "APIGW.0302")
            # B's project percent-encoded in the path is still B's project
            enc = "".join("%%%02X" % ord(ch) for ch in pb)
            expect_gateway(call(c, r, "GET", "/v2/%s/images/%s/tags" % (enc, iid)), 403, "APIGW.0302")
            # ---- images without a project in the path
            r = ("GET", "/v2/images/{image_id}")
            expect_ims(call(c, r, "GET", "/v2/images/" + iid), 404, "IMG.0027")
            r = ("DELETE", "/v2/images/{image_id}")
            expect_ims(call(c, r, "DELETE", "/v2/images/" + iid), 404, "IMG.0027")
            if c.via == "token":
                # a token's project is the token's: X-Project-Id cannot move it
                resp = call(c, ("GET", "/v2/images/{image_id}"), "GET", "/v2/images/" + iid,
                            headers={"X-Project-Id": pb})
                assert resp[0] in (403, 404), resp
                resp = call(c, ("DELETE", "/v2/images/{image_id}"), "DELETE", "/v2/images/" + iid,
                            headers={"X-Project-Id": pb})
                assert resp[0] in (403, 404), resp
        # ---- tags of a project
        r = ("GET", "/v2/{project_id}/images/tags")
        st, _, js, raw = call(c, r, "GET", "/v2/%s/images/tags" % pa)
        assert st == 200, raw
        assert not {t["key"] for t in js["tags"]} & set(B_KEYS), js
        expect_gateway(call(c, r, "GET", "/v2/%s/images/tags" % pb), 403, "APIGW.0302")
        # ---- query
        r = ("POST", "/v2/{project_id}/images/resource_instances/action")
        qpath = "/v2/%s/images/resource_instances/action" % pa
        for body in [
            {"action": "filter", "limit": 1000},
            {"action": "filter", "matches": [{"key": "resource_id", "value": ib[0]}]},
            {"action": "filter", "matches": [{"key": "resource_name", "value": "b-import"}]},
            {"action": "filter", "tags": [{"key": "owner", "values": [secret]}]},
            {"action": "filter", "tags_any": [{"key": k, "values": []} for k in B_KEYS]},
            {"action": "filter", "without_any_tag": True, "limit": 1000},
            {"action": "filter", "not_tags": [{"key": "nothing-has-this", "values": []}], "limit": 1000},
        ]:
            st, _, js, raw = call(c, r, "POST", qpath, body)
            assert st == 200, (body, raw)
            got = {res["resource_id"] for res in js["resources"]}
            assert not got & set(ib), (body, js)
        st, _, js, raw = call(c, r, "POST", qpath, {"action": "count", "tags_any": [
            {"key": k, "values": []} for k in ["bonly", "imported"]]})
        assert st == 200 and js == {"total_count": 0}, raw
        expect_gateway(call(c, r, "POST", "/v2/%s/images/resource_instances/action" % pb,
                            {"action": "filter"}), 403, "APIGW.0302")
        # ---- jobs
        r = ("GET", "/v1/{project_id}/jobs/{job_id}")
        expect_ims(call(c, r, "GET", "/v1/%s/jobs/%s" % (pa, jb)), 404, "IMG.0023")
        expect_gateway(call(c, r, "GET", "/v1/%s/jobs/%s" % (pb, jb)), 403, "APIGW.0302")
        r = ("GET", "/v1/cloudimages/job/{job_id}")
        expect_ims(call(c, r, "GET", "/v1/cloudimages/job/" + jb), 404, "IMG.0023")
        if c.via == "token":
            resp = call(c, r, "GET", "/v1/cloudimages/job/" + jb, headers={"X-Project-Id": pb})
            assert resp[0] in (403, 404), resp
        # ---- writes with no project in the path land in A (or are refused)
        r = ("POST", "/v2/images")
        name = "from-a-" + uuid.uuid4().hex[:8]
        resp = call(c, r, "POST", "/v2/images", {"name": name}, headers={"X-Project-Id": pb})
        assert resp[0] in (201, 403), resp
        if resp[0] == 201:
            assert c.via == "token"
            own = g.request("GET", "/v2/images/" + resp[2]["id"], token=w["a_member"]["token"])
            assert own[0] == 200, own
        r = ("POST", "/v2/cloudimages/quickimport/action")
        body = {"name": "a-import", "os_version": OS_VERSION, "image_url": w["url"], "min_disk": 40}
        resp = call(c, r, "POST", "/v2/cloudimages/quickimport/action", body, headers={"X-Project-Id": pb})
        assert resp[0] in (200, 403), resp
        if resp[0] == 200:
            assert c.via == "token"
            job = resp[2]["job_id"]
            st, _, _, _ = g.request("GET", "/v1/%s/jobs/%s" % (pa, job), token=w["a_member"]["token"])
            assert st == 200
            st, _, _, _ = g.request("GET", "/v1/%s/jobs/%s" % (pb, job), token=w["b_member"]["token"])
            assert st == 404
            wait_job(g, job, w["a_member"]["token"], pa)

    assert covered == route_table(), route_table() - covered
    for caller, method, path, raw in bodies:
        assert secret.encode() not in raw, (caller, method, path, raw)
    after = b_snapshot(w)
    assert after == before
    # A's own image is untouched by all this
    assert w["g"].image_tags(ia, project=pa, token=w["a_member"]["token"]) == [{"key": "mine", "value": "a"}]


def test_member_cannot_use_admin_routes(world):
    g = world["g"]
    gen = g.request("GET", "/admin/status", token=world["a_admin"]["token"])[2]["generation"]
    for cred in (world["a_member"], world["b_member"]):
        for method, path in [("POST", "/admin/reload"), ("GET", "/admin/status")]:
            expect_gateway(g.request(method, path, token=cred["token"]), 403, "APIGW.0302")
            expect_gateway(sdk_request(g, cred, method, path), 403, "APIGW.0302")
    assert g.request("GET", "/admin/status", token=world["a_admin"]["token"])[2]["generation"] == gen


def test_member_cannot_write_reserved_key(world):
    if not world["have_tms"]:
        pytest.skip("policies/tms.lua is not shipped: no policy reserves keys by default")
    g, pa = world["g"], world["pa"]
    mt, at = world["a_member"]["token"], world["a_admin"]["token"]
    st, _, js, raw = g.request("GET", "/admin/status", token=at)
    assert st == 200, raw
    assert js["policies"].get(pa) == "tms", js["policies"]
    iid = g.create_image(token=mt, image_tags=[{"key": "plain", "value": "1"}])
    path = "/v2/%s/images/%s/tags" % (pa, iid)
    for key in ["_sys_owner", "_SYS_Owner"]:
        for method, p, body in [
            ("POST", path + "/action", {"action": "create", "tags": [{"key": key, "value": "m"}]}),
            ("POST", path, {"tag": {"key": key, "value": "m"}}),
        ]:
            st, _, js, raw = g.request(method, p, body, token=mt)
            assert st == 400, (key, raw)
            msg = ims_error(js, "IMG.0115")
            assert "key" in msg, msg
        # nor on a new image or an import
        st, _, js, raw = g.request("POST", "/v2/images", {"name": "r", "image_tags": [{"key": key, "value": "m"}]},
                                   token=mt)
        assert st == 400, raw
        ims_error(js, "IMG.0115")
        st, _, js, raw = g.request("POST", "/v2/cloudimages/quickimport/action",
                                   {"name": "r", "os_version": OS_VERSION, "image_url": world["url"],
                                    "min_disk": 40, "image_tags": [{"key": key, "value": "m"}]}, token=mt)
        assert st == 400, raw
        ims_error(js, "IMG.0115")
    assert g.image_tags(iid, project=pa, token=mt) == [{"key": "plain", "value": "1"}]
    # the admin may write it; the member may then not remove it
    st, _, _, raw = g.request("POST", path + "/action",
                              {"action": "create", "tags": [{"key": "_sys_owner", "value": "adm"}]}, token=at)
    assert st == 204, raw
    for method, p, body in [
        ("POST", path + "/action", {"action": "delete", "tags": [{"key": "_sys_owner"}]}),
        ("DELETE", path + "/_sys_owner", None),
        ("POST", path + "/action", {"action": "create", "tags": [{"key": "_sys_owner", "value": "mine"}]}),
    ]:
        st, _, js, raw = g.request(method, p, body, token=mt)
        assert st == 400, (method, p, raw)
        ims_error(js, "IMG.0115")
    assert g.image_tags(iid, project=pa, token=mt) == [{"key": "_sys_owner", "value": "adm"},
                                                       {"key": "plain", "value": "1"}]
    # B (default policy ims) is not affected by A's binding: "_" keys are plain there
    bt = world["b_member"]["token"]
    ib = g.create_image(token=bt)
    st, _, _, raw = g.batch(ib, "create", [{"key": "_sys_x", "value": "1"}], project=world["pb"], token=bt)
    assert st == 204, raw


def test_credentials_list_shows_no_secrets(world):
    g = world["g"]
    p = run_cli("credentials", "list", "--db", g.db)
    assert p.returncode == 0, p.stderr
    creds = [world[k] for k in ("a_member", "a_admin", "b_member", "b_admin")] + [g.admin]
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    assert len(rows) >= len(creds), p.stdout
    for cred in creds:
        assert cred["token"] not in p.stdout
        assert cred["sk"] not in p.stdout
        assert cred["ak"] in p.stdout      # the public half identifies the row
    for row in rows:
        assert not set(row) & {"token", "sk", "secret", "secret_key", "token_hash"}, row


def test_database_file_is_private(world):
    g = world["g"]
    files = [g.db] + [g.db + suffix for suffix in ("-wal", "-shm") if os.path.exists(g.db + suffix)]
    for path in files:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600, "%s has mode %o" % (path, mode)
    # a database the CLI creates is private too
    fresh = os.path.join(os.path.dirname(g.db), "fresh", "cli.db")
    p = run_cli("credentials", "create", "--db", fresh, "--project", random_project())
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o600


def test_tokens_and_secrets_not_logged(world):
    g = world["g"]
    bogus = "f" * 64
    st, h, js, _ = g.request("GET", "/v2/%s/images/tags" % world["pa"], token=bogus)
    assert st == 401
    for cred in (world["a_member"], world["a_admin"], world["b_member"]):
        st, h, _, _ = g.request("GET", "/v2/%s/images/tags" % cred["project_id"], token=cred["token"])
        assert st == 200
        assert g.access_log(h["X-Request-Id"]), "no access-log line for %s" % h["X-Request-Id"]
        st, h, _, _ = sdk_request(g, cred, "GET", "/v2/%s/images/tags" % cred["project_id"])
        assert st == 200
        assert g.access_log(h["X-Request-Id"])
    log = "\n".join(g.stderr_lines())
    for cred in (world["a_member"], world["a_admin"], world["b_member"], world["b_admin"], g.admin):
        assert cred["token"] not in log
        assert cred["sk"] not in log
    assert bogus not in log
    # stdout carries only the first-start credential, once
    out = "\n".join(g.stdout_lines())
    for cred in (world["a_member"], world["a_admin"], world["b_member"], world["b_admin"]):
        assert cred["token"] not in out and cred["sk"] not in out
    assert out.count(g.admin["token"]) >= 1
