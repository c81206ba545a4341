"""API variants (API.md §8): examples/variants/v1-tags and
examples/variants/glance-tags, enabled by the configuration key `variants`.

Each gateway runs from its own temporary folder (copies of lua/ and
policies/, plus examples/policies/aws.lua) with a configuration file that
lists the variant folders by absolute path.  The fixtures are local to this
module (stdlib + pytest only).
"""
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("TAGWAY_BIN") or os.path.join(REPO, "build", "tagway")
V1 = os.path.join(REPO, "examples", "variants", "v1-tags")
GLANCE = os.path.join(REPO, "examples", "variants", "glance-tags")

P = "0000000000000000000000000000000a"
P2 = "0000000000000000000000000000000b"
P_TMS = "0000000000000000000000000000000c"
P_AWS = "0000000000000000000000000000000d"
P_V = "0000000000000000000000000000000e"

# A policy whose `owner` key is immutable: removal rules apply to variants too.
VPOL = """return {
  name = "vpol", max_tags = 10,
  key = { min = 1, max = 36, chars = { "A-Z", "a-z", "0-9", "_", "-" } },
  value = { min = 0, max = 43, chars = { "A-Z", "a-z", "0-9", "_", "-", "." } },
  overwrite = { ["*"] = "replace", owner = "immutable" },
}
"""


def config_text(variants):
    lines = ["return {", "  project_policies = {",
             '    ["%s"] = "tms",' % P_TMS, '    ["%s"] = "aws",' % P_AWS,
             '    ["%s"] = "vpol",' % P_V, "  },"]
    if variants is not None:
        lines.append("  variants = { %s }," % ", ".join('"%s"' % v for v in variants))
    lines.append("}")
    return "\n".join(lines) + "\n"


class Server:
    """One `tagway serve` on 127.0.0.1:0 over its own copy of the scripts."""

    def __init__(self, variants, auth="off"):
        self.root = tempfile.mkdtemp(prefix="tagway-var-")
        shutil.copytree(os.path.join(REPO, "lua"), os.path.join(self.root, "lua"))
        shutil.copytree(os.path.join(REPO, "policies"), os.path.join(self.root, "policies"))
        shutil.copy(os.path.join(REPO, "examples", "policies", "aws.lua"),
                    os.path.join(self.root, "policies"))
        with open(os.path.join(self.root, "policies", "vpol.lua"), "w") as f:
            f.write(VPOL)
        self.config = os.path.join(self.root, "tagway.conf.lua")
        self.write_config(variants)
        self.db = os.path.join(self.root, "tagway.db")
        self.log_path = os.path.join(self.root, "stderr.log")
        self.auth = auth
        self.proc = None
        self.port = None

    def write_config(self, variants):
        with open(self.config, "w") as f:
            f.write(config_text(variants))

    def start(self):
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--db", self.db, "--auth", self.auth,
             "--config", self.config, "--scripts", os.path.join(self.root, "lua"),
             "--policies", os.path.join(self.root, "policies")],
            stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with open(self.log_path) as f:
                for line in f:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(obj, dict) and obj.get("msg") == "listening":
                        self.port = obj["port"]
                        return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.close()
        raise RuntimeError("tagway did not start")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def request(self, method, path, body=None, project=P, token=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {}
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body, ensure_ascii=False)
            if isinstance(body, str):
                body = body.encode("utf-8")
            headers["Content-Type"] = "application/json"
        if project:
            headers["X-Project-Id"] = project
        if token:
            headers["X-Auth-Token"] = token
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return resp.status, data

    def new_image(self, project=P, tags=()):
        body = {"name": "img"}
        if tags:
            body["image_tags"] = [{"key": k, "value": v} for k, v in tags]
        status, data = self.request("POST", "/v2/images", body, project=project)
        assert status == 201, (status, data)
        return data["id"]

    def tags(self, image, project=P):
        status, data = self.request("GET", "/v2/%s/images/%s/tags" % (project, image), project=None)
        assert status == 200, (status, data)
        return {t["key"]: t["value"] for t in data["tags"]}

    def v1_put(self, body, project=P):
        return self.request("PUT", "/v1/cloudimages/tags", body, project=project)

    def v1_list(self, project=P):
        status, data = self.request("GET", "/v1/cloudimages/tags", project=project)
        assert status == 200, (status, data)
        return data["tags"]

    def glance(self, method, image, tag, project=P):
        return self.request(method, "/v2/images/%s/tags/%s" % (image, urllib.parse.quote(tag, safe="")),
                            project=project)


def variant_folder(tmp_path, name, text, file="one.lua"):
    """A variant folder under tmp_path holding one module of this text."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / file).write_text(text)
    return folder


def reload_with(server, *folders):
    """Points the running server's configuration at these variant folders
    and reloads it: (status, data)."""
    server.write_config([str(f) for f in folders])
    return server.request("POST", "/admin/reload", project=None)


def ok(result):
    status, data = result
    assert status == 204 and data is None, (status, data)


def error(result, status, code, *parts):
    got, data = result
    assert got == status, (got, data)
    assert data["error"]["code"] == code, data
    for part in parts:
        assert part in data["error"]["message"], (part, data)


def gateway_error(result, status, code):
    got, data = result
    assert got == status and data["error_code"] == code, (got, data)


@pytest.fixture(scope="module")
def srv():
    server = Server([V1, GLANCE])
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="module")
def plain():
    server = Server(None)
    try:
        yield server.start()
    finally:
        server.close()


# ---- not enabled ------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("PUT", "/v1/cloudimages/tags"),
    ("GET", "/v1/cloudimages/tags"),
    ("PUT", "/v2/images/00000000-0000-0000-0000-000000000000/tags/a=b"),
    ("DELETE", "/v2/images/00000000-0000-0000-0000-000000000000/tags/a=b"),
])
def test_routes_absent_without_variants(plain, method, path):
    body = {"image_id": "x", "tag": "a.b"} if method == "PUT" else None
    gateway_error(plain.request(method, path, body), 404, "APIGW.0101")


def test_variants_listed_in_loaded_files(srv, plain):
    status, data = srv.request("GET", "/admin/status", project=None)
    paths = [f["path"] for f in data["files"]]
    assert os.path.join(V1, "v1_tags.lua") in paths and os.path.join(GLANCE, "glance_tags.lua") in paths
    status, data = plain.request("GET", "/admin/status", project=None)
    assert not any("variants" in f["path"] for f in data["files"])


def test_enabled_by_reload():
    server = Server(None)
    try:
        server.start()
        image = server.new_image()
        gateway_error(server.v1_put({"image_id": image, "tag": "a.b"}), 404, "APIGW.0101")
        status, data = reload_with(server, V1)
        assert status == 200, (status, data)
        ok(server.v1_put({"image_id": image, "tag": "a.b"}))
        assert server.tags(image) == {"a": "b"}
        gateway_error(server.glance("PUT", image, "c=d"), 404, "APIGW.0101")   # only v1 listed
        # a variant folder that does not exist fails the reload; v1 keeps serving
        status, data = reload_with(server, V1, "/nonexistent/variant")
        assert status == 422 and "/nonexistent/variant" in data["error"]["message"], (status, data)
        ok(server.v1_put({"image_id": image, "tag": "e.f"}))
    finally:
        server.close()


def test_a_broken_variant_route_is_named_by_its_file_and_entry(tmp_path):
    """A route table's mistake names the variant file, the entry and its
    method and path, not the router line that checked it."""
    folder = variant_folder(tmp_path, "bad", 'return { routes = { { method = "GET", path = "/v9/ok", '
                            'handler = function() return 204 end }, '
                            '{ method = "GET", path = "/v9/x", handler = "nope" } } }\n')
    with Server(None) as server:
        status, data = reload_with(server, folder)
        assert status == 422, (status, data)
        assert data["error"]["message"] == (
            "%s/one.lua: routes[2] (GET /v9/x): handler must be a function" % folder), data


@pytest.mark.parametrize("entry,says", [
    ('method = "GET", path = "/admin/flat", admin = "true"', "admin must be true or false, not string"),
    ('method = "GET", path = "/admin/flat", admn = true', "'admn' is not a route key (method, path, handler, auth, admin)"),
    ('method = "GET", path = "/v9/x", auth = 0', "auth must be true or false, not number"),
    ('method = "get", path = "/v9/x"', "method 'get' must be an upper-case HTTP method"),
    ('method = "GET", path = "v9/x"', "path must start with '/'"),
], ids=["admin-as-string", "admin-misspelt", "auth-as-number", "method-lower-case", "path-relative"])
def test_a_route_entry_that_would_load_wrong_is_refused(tmp_path, entry, says):
    """`admin = "true"` or `admn = true` loaded as a route open to members;
    `method = "get"` loaded and never matched.  Each fails the reload with
    the file, the entry and what is wrong, and the old routes serve on."""
    folder = variant_folder(tmp_path, "bad", 'local shape = require "shape"\n'
                            "return { routes = { { %s, handler = function() "
                            "return shape.ok(200, { secret = 1 }) end } } }\n" % entry)
    with Server(None) as server:
        status, data = reload_with(server, folder)
        assert status == 422, (status, data)
        message = data["error"]["message"]
        assert message.startswith("%s/one.lua: routes[1] (" % folder) and message.endswith(says), message
        assert server.request("GET", "/admin/flat", project=None)[0] == 404


def test_a_variant_file_reads_no_undefined_name(tmp_path):
    """A variant file runs as a data file: `method = GET`, quotes
    forgotten, fails the reload at its line instead of loading a route
    with no method; a handler that reads an undefined name at request
    time fails that request (500) with its file and line in the log."""
    folder = variant_folder(tmp_path, "bare", 'return { routes = { { method = GET, path = "/v9/x",\n'
                            '  handler = function() return 204 end } } }\n')
    late = variant_folder(tmp_path, "late", 'local shape = require "shape"\n'
                          'local function h()\n'
                          '  return shape.ok(200, { v = nosuch })\n'
                          'end\n'
                          'return { routes = { { method = "GET", path = "/v9/late", handler = h } } }\n',
                          file="two.lua")
    with Server(None) as server:
        status, data = reload_with(server, folder)
        assert status == 422, (status, data)
        # (Lua shortens a long chunk name from the left: the folder may not show whole)
        assert data["error"]["message"].endswith(
            "bare/one.lua:1: 'GET' is not defined (a text value needs quotes: \"GET\")"), data
        status, data = reload_with(server, late)
        assert status == 200, (status, data)
        status, data = server.request("GET", "/v9/late")
        assert status == 500, (status, data)
        with open(server.log_path) as f:
            log = f.read()
        assert "late/two.lua:3: 'nosuch' is not defined" in log, log[-2000:]


def test_a_literal_variant_path_wins_over_a_core_template(tmp_path):
    """GET /v2/images/summary, added by a variant, was answered by the core
    GET /v2/images/{image_id} ("image summary not found"): within a
    method, fewer {names} are tried first."""
    folder = variant_folder(tmp_path, "summary",
                            'local shape = require "shape"\n'
                            'return { routes = { { method = "GET", path = "/v2/images/summary", '
                            'handler = function() return shape.ok(200, { summary = true }) end } } }\n',
                            file="summary.lua")
    with Server([str(folder)]) as server:
        assert server.request("GET", "/v2/images/summary") == (200, {"summary": True})
        image = server.new_image()
        status, data = server.request("GET", "/v2/images/" + image)
        assert status == 200 and data["id"] == image, (status, data)


# ---- v1-tags ------------------------------------------------------------------

def test_v1_put_dotted_tag(srv):
    image = srv.new_image()
    ok(srv.v1_put({"image_id": image, "tag": "env.prod"}))
    ok(srv.v1_put({"image_id": image, "tag": "ver.1.2.3"}))      # split at the first '.'
    ok(srv.v1_put({"image_id": image, "tag": "solo"}))           # no '.': value ""
    assert srv.tags(image) == {"env": "prod", "ver": "1.2.3", "solo": ""}


def test_v1_put_image_tag_object(srv):
    image = srv.new_image()
    ok(srv.v1_put({"image_id": image, "image_tag": {"key": "team", "value": "blue"}}))
    ok(srv.v1_put({"image_id": image, "image_tag": {"key": "empty", "value": ""}}))
    assert srv.tags(image) == {"team": "blue", "empty": ""}


def test_v1_put_overwrites(srv):
    image = srv.new_image(tags=[("env", "dev")])
    ok(srv.v1_put({"image_id": image, "tag": "env.prod"}))
    ok(srv.v1_put({"image_id": image, "tag": "env.prod"}))       # same value: no-op
    ok(srv.v1_put({"image_id": image, "image_tag": {"key": "env", "value": "qa"}}))
    assert srv.tags(image) == {"env": "qa"}


def test_v1_put_policy_errors(srv):
    image = srv.new_image()
    error(srv.v1_put({"image_id": image, "tag": "bad key.v"}), 400, "IMG.0115", "tag.key",
          "(policy ims)")
    error(srv.v1_put({"image_id": image, "tag": "k.bad/value"}), 400, "IMG.0115", "tag.value")
    error(srv.v1_put({"image_id": image, "tag": ".v"}), 400, "IMG.0115", "tag.key")
    error(srv.v1_put({"image_id": image, "image_tag": {"key": "k"}}), 400, "IMG.0115", "image_tag.value")
    error(srv.v1_put({"image_id": image, "image_tag": {"key": "k" * 37, "value": "v"}}), 400, "IMG.0115",
          "image_tag.key", "1-36")
    assert srv.tags(image) == {}


def test_v1_put_quota(srv):
    image = srv.new_image(tags=[("k%d" % i, "v") for i in range(10)])
    error(srv.v1_put({"image_id": image, "tag": "k10.v"}), 400, "IMG.0116", "(policy ims)")
    ok(srv.v1_put({"image_id": image, "tag": "k9.changed"}))


def test_v1_put_unknown_image(srv):
    error(srv.v1_put({"image_id": "00000000-0000-0000-0000-000000000000", "tag": "a.b"}), 404, "IMG.0027")
    other = srv.new_image(project=P2)
    error(srv.v1_put({"image_id": other, "tag": "a.b"}), 404, "IMG.0027")   # another project's
    assert srv.tags(other, project=P2) == {}


def test_v1_put_malformed(srv):
    image = srv.new_image()
    error(srv.v1_put("not json"), 400, "IMG.0001")
    error(srv.v1_put("[1]"), 400, "IMG.0001")
    error(srv.v1_put({"tag": "a.b"}), 400, "IMG.0001", "image_id")
    error(srv.v1_put({"image_id": 5, "tag": "a.b"}), 400, "IMG.0001", "image_id")
    error(srv.v1_put({"image_id": image}), 400, "IMG.0001", "tag")
    error(srv.v1_put({"image_id": image, "image_tag": "a.b"}), 400, "IMG.0001", "image_tag")
    error(srv.v1_put({"image_id": image, "tag": "a.b", "image_tag": {"key": "a", "value": "b"}}),
          400, "IMG.0001")
    error(srv.request("PUT", "/v1/cloudimages/tags", b""), 400, "IMG.0007")


def test_v1_uses_the_project_policy(srv):
    image = srv.new_image(project=P_TMS)
    ok(srv.v1_put({"image_id": image, "tag": "cost center.dept 4"}, project=P_TMS))   # tms allows spaces
    assert srv.tags(image, project=P_TMS) == {"cost center": "dept 4"}
    aws = srv.new_image(project=P_AWS, tags=[("CostCenter", "100")])
    error(srv.v1_put({"image_id": aws, "tag": "aws:x.y"}, project=P_AWS), 400, "IMG.0115", "reserved",
          "(policy aws)")


def test_v1_get_project_tags(srv):
    project = "0000000000000000000000000000001e"
    assert srv.v1_list(project) == []
    a = srv.new_image(project, [("env", "prod"), ("solo", ""), ("ver", "1.2")])
    srv.new_image(project, [("env", "dev"), ("env2", "prod")])
    srv.new_image(project, [("env", "prod")])                    # duplicates listed once
    srv.new_image("0000000000000000000000000000001f", [("secret", "x")])   # another project
    assert srv.v1_list(project) == ["env.dev", "env.prod", "env2.prod", "solo", "ver.1.2"]
    ok(srv.v1_put({"image_id": a, "tag": "Zeta.z"}, project=project))
    assert srv.v1_list(project)[0] == "Zeta.z"                   # byte order: upper case first


def test_v1_get_sorts_and_dedupes_the_strings(srv):
    # sorted as "key.value" strings, not by key: "a-b.y" < "a.x" ('-' < '.')
    project = "0000000000000000000000000000002e"
    srv.new_image(project, [("a", "x"), ("a-b", "y")])
    assert srv.v1_list(project) == ["a-b.y", "a.x"]
    # tms allows '.' in keys: ("a.b", "c") and ("a", "b.c") read the same, listed once
    image = srv.new_image(P_TMS)
    ok(srv.v1_put({"image_id": image, "image_tag": {"key": "q.r", "value": "s"}}, project=P_TMS))
    ok(srv.v1_put({"image_id": image, "tag": "q.r.s"}, project=P_TMS))   # key "q", value "r.s"
    assert srv.tags(image, project=P_TMS) == {"q.r": "s", "q": "r.s"}
    assert srv.v1_list(P_TMS).count("q.r.s") == 1


def test_v1_project_required_and_auth(srv):
    error(srv.request("GET", "/v1/cloudimages/tags", project=None), 400, "IMG.0067")


def test_variant_routes_need_credentials():
    server = Server([V1, GLANCE], auth="on")
    r = subprocess.run([BIN, "credentials", "create", "--db", server.db, "--project", P, "--role", "member"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        server.close()
    assert r.returncode == 0, r.stderr
    token = json.loads(r.stdout)["token"]
    try:
        server.start()
        gateway_error(server.request("GET", "/v1/cloudimages/tags", project=None), 401, "APIGW.0301")
        gateway_error(server.request("PUT", "/v2/images/x/tags/a=b", project=None), 401, "APIGW.0301")
        status, data = server.request("GET", "/v1/cloudimages/tags", project=None, token=token)
        assert status == 200 and data == {"tags": []}, (status, data)
        status, data = server.request("POST", "/v2/images", {"name": "n"}, project=None, token=token)
        image = data["id"]
        ok(server.request("PUT", "/v2/images/%s/tags/a=b" % image, project=None, token=token))
        ok(server.request("PUT", "/v1/cloudimages/tags", {"image_id": image, "tag": "c.d"}, project=None,
                          token=token))
        status, data = server.request("GET", "/v1/cloudimages/tags", project=None, token=token)
        assert data == {"tags": ["a.b", "c.d"]}
    finally:
        server.close()


# ---- glance-tags ---------------------------------------------------------------

def test_glance_put(srv):
    image = srv.new_image()
    ok(srv.glance("PUT", image, "env=prod"))
    ok(srv.glance("PUT", image, "plain"))                         # no '=': value ""
    ok(srv.glance("PUT", image, "dotted=1.2"))
    assert srv.tags(image) == {"env": "prod", "plain": "", "dotted": "1.2"}
    # split at the first '=' (tms allows '=' in values; ims does not)
    tms = srv.new_image(project=P_TMS)
    ok(srv.glance("PUT", tms, "expr=a=b", project=P_TMS))
    assert srv.tags(tms, project=P_TMS) == {"expr": "a=b"}
    error(srv.glance("PUT", image, "expr=a=b"), 400, "IMG.0115", "tag.value", "(policy ims)")


def test_glance_put_overwrites(srv):
    image = srv.new_image(tags=[("env", "dev")])
    ok(srv.glance("PUT", image, "env=prod"))
    ok(srv.glance("PUT", image, "env=prod"))
    assert srv.tags(image) == {"env": "prod"}


def test_glance_put_percent_decoded(srv):
    image = srv.new_image()
    status, data = srv.request("PUT", "/v2/images/%s/tags/team%%3Dblue" % image)
    assert status == 204, (status, data)
    assert srv.tags(image) == {"team": "blue"}


def test_glance_put_errors(srv):
    image = srv.new_image(tags=[("k%d" % i, "v") for i in range(10)])
    error(srv.glance("PUT", image, "k10=v"), 400, "IMG.0116", "(policy ims)")
    error(srv.glance("PUT", image, "bad key=v"), 400, "IMG.0115", "tag.key", "(policy ims)")
    error(srv.glance("PUT", image, "k=a/b"), 400, "IMG.0115", "tag.value")
    error(srv.glance("PUT", image, "=v"), 400, "IMG.0115", "tag.key")
    error(srv.glance("PUT", "00000000-0000-0000-0000-000000000000", "a=b"), 404, "IMG.0027")
    other = srv.new_image(project=P2)
    error(srv.glance("PUT", other, "a=b"), 404, "IMG.0027")
    tms = srv.new_image(project=P_TMS)
    ok(srv.glance("PUT", tms, "with space=a b", project=P_TMS))
    assert srv.tags(tms, project=P_TMS) == {"with space": "a b"}


def test_glance_delete(srv):
    image = srv.new_image(tags=[("env", "prod"), ("plain", ""), ("keep", "1")])
    error(srv.glance("DELETE", image, "env=dev"), 404, "IMG.0115")      # another value
    error(srv.glance("DELETE", image, "env"), 404, "IMG.0115")          # "env" is env=""
    error(srv.glance("DELETE", image, "absent=x"), 404, "IMG.0115")
    assert srv.tags(image) == {"env": "prod", "plain": "", "keep": "1"}
    ok(srv.glance("DELETE", image, "env=prod"))
    ok(srv.glance("DELETE", image, "plain"))
    assert srv.tags(image) == {"keep": "1"}
    error(srv.glance("DELETE", image, "env=prod"), 404, "IMG.0115")     # not idempotent
    error(srv.glance("DELETE", "00000000-0000-0000-0000-000000000000", "a=b"), 404, "IMG.0027")


def test_glance_delete_respects_policy(srv):
    image = srv.new_image(project=P_V, tags=[("owner", "alice"), ("env", "prod")])
    error(srv.glance("DELETE", image, "owner=alice", project=P_V), 400, "IMG.0115", "tag",
          "'owner' is immutable", "(policy vpol)")
    error(srv.glance("PUT", image, "owner=bob", project=P_V), 400, "IMG.0115", "tag.key",
          "immutable", "(policy vpol)")
    ok(srv.glance("DELETE", image, "env=prod", project=P_V))
    assert srv.tags(image, project=P_V) == {"owner": "alice"}
    aws = srv.new_image(project=P_AWS, tags=[("CostCenter", "100")])
    error(srv.glance("PUT", aws, "aws:k=v", project=P_AWS), 400, "IMG.0115", "reserved", "(policy aws)")
    error(srv.glance("PUT", aws, "CostCenter=400", project=P_AWS), 400, "IMG.0115", "not an allowed value")
    ok(srv.glance("PUT", aws, "CostCenter=300-1", project=P_AWS))


def test_core_routes_unchanged(srv):
    image = srv.new_image(tags=[("a", "b")])
    status, data = srv.request("GET", "/v2/images/%s" % image)
    assert status == 200 and data["id"] == image
    ok(srv.request("DELETE", "/v2/%s/images/%s/tags/a" % (P, image), project=None))
    ok(srv.request("DELETE", "/v2/images/%s" % image))
