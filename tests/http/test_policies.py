"""Tag policies through the HTTP API (API.md §8, §1, §6 reload).

Every gateway here runs from its own temporary folder holding copies of
lua/, policies/ (ims, tms), examples/policies/aws.lua and a test policy
`tpol` written below that exercises the engine features no shipped policy
uses (immutable, deny, ignore_case = false, reserved keys, allowed values
without exact case, a hook, delete.match_value, separate delete limits).
Projects are bound by a configuration file (project_policies).

With --auth off every caller is an admin, so member-role rules run against
a second gateway with auth on and credentials made by `tagway credentials`.
The fixtures are local to this module (stdlib + pytest only).
"""
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("TAGWAY_BIN") or os.path.join(REPO, "build", "tagway")

P_IMS = "00000000000000000000000000000001"   # default policy (ims)
P_TMS = "00000000000000000000000000000002"
P_AWS = "00000000000000000000000000000003"
P_T = "00000000000000000000000000000004"     # tpol
P_OTHER = "00000000000000000000000000000005"  # unbound: ims

TPOL = r'''-- tpol: a test policy for the engine features the shipped ones do not use.
return {
  name = "tpol",
  version = 1,
  max_tags = 5,
  key = { min = 1, max = 20, chars = { "A-Z", "a-z", "0-9", "_", "-" },
          describe = "letters, digits, '_' or '-'", edge_space = "allow" },
  value = { min = 0, max = 20, chars = { "A-Z", "a-z", "0-9", "_", "-", "." },
            describe = "letters, digits, '_', '-' or '.'", edge_space = "allow" },
  delete = { key_max = 30, value_max = 5, match_value = true },
  reserved = { prefixes = { "sys-" }, keys = { "root" }, ignore_case = false,
               admin_may_write = true },
  overwrite = { ["*"] = "replace", owner = "immutable", ["billing*"] = "deny",
                ["billing-free"] = "replace" },
  allowed_values = { tier = { "gold", "silver", "bronze*" } },
  exact_case = { "Env" },
  hook = function(current, tags, caller, fields)
    for i, t in ipairs(tags) do
      if t.key == "expires" then
        local owner = current.owner ~= nil
        for _, u in ipairs(tags) do
          if u.key == "owner" then owner = true end
        end
        if not owner then
          return fields[i] .. ".key", "'expires' needs an 'owner' tag on the image"
        end
      end
    end
  end,
  examples = {
    accept = { { key = "tier", value = "gold" }, { key = "Env", value = "x" } },
    reject = { { key = "tier", value = "iron" }, { key = "env", value = "x" },
               { key = "expires", value = "2030" } },
  },
}
'''


def config_text(bindings=None, default="ims", variants=None):
    bindings = {P_TMS: "tms", P_AWS: "aws", P_T: "tpol"} if bindings is None else bindings
    lines = ["return {", '  default_policy = "%s",' % default, "  project_policies = {"]
    for project, name in bindings.items():
        lines.append('    ["%s"] = "%s",' % (project, name))
    lines.append("  },")
    if variants:
        lines.append("  variants = { %s }," % ", ".join('"%s"' % v for v in variants))
    lines.append("}")
    return "\n".join(lines) + "\n"


def make_root(config=None):
    """A fresh folder with lua/, policies/ (ims, tms, aws, tpol) and a config."""
    root = tempfile.mkdtemp(prefix="tagway-pol-")
    shutil.copytree(os.path.join(REPO, "lua"), os.path.join(root, "lua"))
    shutil.copytree(os.path.join(REPO, "policies"), os.path.join(root, "policies"))
    shutil.copy(os.path.join(REPO, "examples", "policies", "aws.lua"), os.path.join(root, "policies"))
    with open(os.path.join(root, "policies", "tpol.lua"), "w") as f:
        f.write(TPOL)
    with open(os.path.join(root, "tagway.conf.lua"), "w") as f:
        f.write(config if config is not None else config_text())
    return root


def cli(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=30)


class Server:
    """One `tagway serve` on 127.0.0.1:0 over a root made by make_root."""

    def __init__(self, root, auth="off", db_name="tagway.db"):
        self.root = root
        self.auth = auth
        self.db = os.path.join(root, db_name)
        self.config = os.path.join(root, "tagway.conf.lua")
        self.policies = os.path.join(root, "policies")
        self.log_path = os.path.join(root, db_name + ".log")
        self.proc = None
        self.port = None

    def start(self):
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--db", self.db, "--auth", self.auth,
             "--config", self.config, "--scripts", os.path.join(self.root, "lua"),
             "--policies", self.policies],
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
        self.stop()
        with open(self.log_path) as f:
            raise RuntimeError("tagway did not start:\n" + f.read())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def request(self, method, path, body=None, project=None, token=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body, ensure_ascii=False)
            if isinstance(body, str):
                body = body.encode("utf-8")
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

    # ---- API helpers -------------------------------------------------------
    def new_image(self, project, tags=(), token=None, expect=201):
        body = {"name": "img"}
        if tags:
            body["image_tags"] = [{"key": k, "value": v} for k, v in tags]
        status, data = self.request("POST", "/v2/images", body, project=project, token=token)
        assert status == expect, (status, data)
        return data["id"] if status == 201 else data

    def tags(self, project, image, token=None):
        status, data = self.request("GET", "/v2/%s/images/%s/tags" % (project, image), token=token)
        assert status == 200, (status, data)
        return {t["key"]: t["value"] for t in data["tags"]}

    def create(self, project, image, tags, token=None):
        body = {"action": "create", "tags": [{"key": k, "value": v} for k, v in tags]}
        return self.request("POST", "/v2/%s/images/%s/tags/action" % (project, image), body,
                            token=token)

    def delete(self, project, image, tags, token=None):
        body = {"action": "delete", "tags": [dict(key=t[0], **({"value": t[1]} if len(t) > 1 else {}))
                                            for t in tags]}
        return self.request("POST", "/v2/%s/images/%s/tags/action" % (project, image), body,
                            token=token)

    def delete_one(self, project, image, key, token=None):
        return self.request("DELETE", "/v2/%s/images/%s/tags/%s"
                            % (project, image, urllib.parse.quote(key, safe="")), token=token)

    def reload(self, token=None):
        return self.request("POST", "/admin/reload", token=token)

    def status(self, token=None):
        status, data = self.request("GET", "/admin/status", token=token)
        assert status == 200, (status, data)
        return data


def ok(result):
    status, data = result
    assert status == 204, (status, data)


def rejected(result, *parts, code="IMG.0115", status=400):
    """Asserts an IMS error whose message holds every part (field, rule, policy)."""
    got_status, data = result
    assert got_status == status, (got_status, data)
    assert data["error"]["code"] == code, data
    message = data["error"]["message"]
    for part in parts:
        assert part in message, (part, message)
    return message


# ---- fixtures ---------------------------------------------------------------

@pytest.fixture(scope="module")
def root():
    path = make_root()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def srv(root):
    server = Server(root, auth="off")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def members(root):
    """Auth-on gateway (own database) with member and admin tokens of P_TMS and P_T."""
    server = Server(root, auth="on", db_name="auth.db")
    creds = {}
    for project in (P_TMS, P_T, P_AWS):
        for role in ("member", "admin"):
            r = cli("credentials", "create", "--db", server.db, "--project", project, "--role", role)
            assert r.returncode == 0, r.stderr
            creds[(project, role)] = json.loads(r.stdout)["token"]
    server.creds = creds
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def fresh():
    """A gateway over its own folder, for tests that rewrite files and reload."""
    path = make_root()
    server = Server(path, auth="off")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(path, ignore_errors=True)


# ---- binding ------------------------------------------------------------------

def test_bindings_listed_in_status(srv):
    policies = srv.status()["policies"]
    assert policies["default"] == "ims"
    assert policies[P_TMS] == "tms" and policies[P_AWS] == "aws" and policies[P_T] == "tpol"
    assert P_OTHER not in policies


def test_per_project_binding_changes_the_rules(srv):
    # a key with a space: tms accepts it, ims (default and unbound) refuses it
    tms_img = srv.new_image(P_TMS)
    ok(srv.create(P_TMS, tms_img, [("cost center", "a b")]))
    for project in (P_IMS, P_OTHER):
        img = srv.new_image(project)
        rejected(srv.create(project, img, [("cost center", "a")]), "tags[0].key", "(policy ims)")
    # a 37-character key: ims refuses (1-36), tms accepts (1-128)
    ok(srv.create(P_TMS, tms_img, [("k" * 37, "v")]))
    img = srv.new_image(P_OTHER)
    rejected(srv.create(P_OTHER, img, [("k" * 37, "v")]), "tags[0].key", "1-36", "(policy ims)")


# ---- tms ----------------------------------------------------------------------

def test_tms_accepts_its_characters_and_lengths(srv):
    img = srv.new_image(P_TMS)
    tags = [("a.b:c=d+e-f@g_h", "x.y:z=1+2-3@4_5"), ("部门 名", "研发 一部"), ("k" * 128, "v" * 255),
            ("empty", "")]
    ok(srv.create(P_TMS, img, tags))
    assert srv.tags(P_TMS, img) == dict(tags)


@pytest.mark.parametrize("key,value,field,rule", [
    ("k" * 129, "v", "tags[0].key", "1-128"),
    ("k", "v" * 256, "tags[0].value", "0-255"),
    ("k/slash", "v", "tags[0].key", "1-128 characters of letters"),
    ("k", "a#b", "tags[0].value", "0-255 characters of letters"),
    (" lead", "v", "tags[0].key", "must not start or end with a space"),
    ("trail ", "v", "tags[0].key", "must not start or end with a space"),
    ("k", " lead", "tags[0].value", "must not start or end with a space"),
    ("k", "trail ", "tags[0].value", "must not start or end with a space"),
    ("   ", "v", "tags[0].key", "blank"),
])
def test_tms_rejections(srv, key, value, field, rule):
    img = srv.new_image(P_TMS)
    rejected(srv.create(P_TMS, img, [("ok", "1"), (key, value)]), field.replace("0", "1"), rule,
             "(policy tms)")
    assert srv.tags(P_TMS, img) == {}    # nothing of a rejected request is applied


def test_tms_quota_is_10(srv):
    img = srv.new_image(P_TMS)
    ok(srv.create(P_TMS, img, [("k%d" % i, "v") for i in range(10)]))
    rejected(srv.create(P_TMS, img, [("k10", "v")]), "10", "(policy tms)", code="IMG.0116")
    ok(srv.create(P_TMS, img, [("k0", "changed")]))     # overwrite does not count


def test_tms_sys_prefix_is_for_admins(srv, members):
    # auth off: the caller is an admin, who may write _sys_ keys
    img = srv.new_image(P_TMS)
    ok(srv.create(P_TMS, img, [("_sys_owner", "ops"), ("_SYS_Mixed", "x")]))
    member, admin = members.creds[(P_TMS, "member")], members.creds[(P_TMS, "admin")]
    img = members.new_image(P_TMS, token=member)
    for key in ("_sys_owner", "_SYS_owner", "_Sys_x"):
        rejected(members.create(P_TMS, img, [(key, "v")], token=member), "tags[0].key", "'_sys_'",
                 "reserved for the admin role", "(policy tms)")
    ok(members.create(P_TMS, img, [("sys_owner", "v"), ("x_sys_", "v")], token=member))
    ok(members.create(P_TMS, img, [("_SYS_owner", "ops")], token=admin))
    # nor may a member remove it, by batch or single delete; an admin may
    rejected(members.delete(P_TMS, img, [("_SYS_owner",)], token=member), "tags[0].key", "reserved",
             "(policy tms)")
    rejected(members.delete_one(P_TMS, img, "_SYS_owner", token=member), "key", "reserved",
             "(policy tms)")
    ok(members.delete_one(P_TMS, img, "_SYS_owner", token=admin))


def test_tms_delete_limit_follows_its_key_length(srv):
    img = srv.new_image(P_TMS)
    ok(srv.create(P_TMS, img, [("k" * 128, "v")]))
    ok(srv.delete(P_TMS, img, [("k" * 128,)]))
    assert srv.tags(P_TMS, img) == {}
    # ims keeps its 127 delete limit
    other = srv.new_image(P_OTHER)
    rejected(srv.delete(P_OTHER, other, [("k" * 128,)]), "tags[0].key", "at most 127", "(policy ims)")


# ---- aws ----------------------------------------------------------------------

def test_aws_accepts_its_characters_and_lengths(srv):
    img = srv.new_image(P_AWS, [("CostCenter", "100")])
    tags = [("team/owner", "a+b=c@d.e_f:g-h/i"), ("Project Name", "Blue Sky"), ("k" * 128, "v" * 256),
            ("awsome", "aws"), ("e", "")]
    ok(srv.create(P_AWS, img, tags))
    expected = dict(tags, CostCenter="100")
    assert srv.tags(P_AWS, img) == expected


@pytest.mark.parametrize("key,value,field,rule", [
    ("k" * 129, "v", "key", "1-128"),
    ("k", "v" * 257, "value", "0-256"),
    ("k#", "v", "key", "1-128 characters of letters"),
    ("k", "a|b", "value", "0-256 characters of letters"),
    (" k", "v", "key", "must not start or end with a space"),
    ("k", "v ", "value", "must not start or end with a space"),
])
def test_aws_charset_and_length_rejections(srv, key, value, field, rule):
    img = srv.new_image(P_AWS, [("CostCenter", "200")])
    rejected(srv.create(P_AWS, img, [(key, value)]), "tags[0]." + field, rule, "(policy aws)")


@pytest.mark.parametrize("key,value,field", [
    ("aws:createdBy", "me", "key"),
    ("AWS:createdBy", "me", "key"),
    ("Aws:x", "me", "key"),
    ("owner", "aws:me", "value"),
    ("owner", "AWS:me", "value"),
])
def test_aws_prefix_reserved_even_for_admins(srv, key, value, field):
    # auth off: the caller is an admin, and still refused
    img = srv.new_image(P_AWS, [("CostCenter", "100")])
    rejected(srv.create(P_AWS, img, [(key, value)]), "tags[0]." + field, "'aws:'", "reserved",
             "(policy aws)")


def test_aws_prefix_reserved_for_members_too(members):
    member = members.creds[(P_AWS, "member")]
    img = members.new_image(P_AWS, [("CostCenter", "100")], token=member)
    rejected(members.create(P_AWS, img, [("aws:x", "v")], token=member), "tags[0].key", "reserved",
             "(policy aws)")


def test_aws_quota_is_50(srv):
    img = srv.new_image(P_AWS, [("CostCenter", "100")])
    ok(srv.create(P_AWS, img, [("k%d" % i, "v") for i in range(49)]))
    rejected(srv.create(P_AWS, img, [("k49", "v")]), "50", "(policy aws)", code="IMG.0116")


def test_aws_costcenter_required_on_image_creation(srv):
    msg = rejected(srv.request("POST", "/v2/images", {"name": "x"}, project=P_AWS),
                   "image_tags", "CostCenter", "required", "(policy aws)")
    assert "tags[" not in msg
    rejected(srv.request("POST", "/v2/images", {"name": "x", "image_tags": [{"key": "env", "value": "p"}]},
                         project=P_AWS), "image_tags", "CostCenter", "required", "(policy aws)")
    # a misspelt key is refused for its spelling, not silently counted
    rejected(srv.request("POST", "/v2/images", {"name": "x", "image_tags": [
        {"key": "costcenter", "value": "100"}]}, project=P_AWS),
        "image_tags[0].key", "spelled exactly 'CostCenter'", "(policy aws)")
    img = srv.new_image(P_AWS, [("CostCenter", "300-9"), ("env", "p")])
    assert srv.tags(P_AWS, img) == {"CostCenter": "300-9", "env": "p"}
    # not required for other projects
    srv.new_image(P_TMS)


def test_aws_costcenter_required_on_import(srv):
    base = {"name": "imp", "os_version": "CentOS 7.9 64bit", "image_url": "bucket:disk.raw",
            "min_disk": 40}
    path = "/v2/cloudimages/quickimport/action"
    rejected(srv.request("POST", path, base, project=P_AWS), "CostCenter", "required", "(policy aws)")
    rejected(srv.request("POST", path, dict(base, tags=["env.prod"]), project=P_AWS),
             "tags", "CostCenter", "required", "(policy aws)")
    rejected(srv.request("POST", path, dict(base, tags=["CostCenter.999"]), project=P_AWS),
             "tags[0].value", "not an allowed value", "(policy aws)")
    status, data = srv.request("POST", path, dict(base, tags=["CostCenter.100"]), project=P_AWS)
    assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", data["job_id"]), (status, data)
    status, data = srv.request("POST", path, dict(base, image_tags=[{"key": "CostCenter", "value": "3001"}]),
                               project=P_AWS)
    assert status == 200, (status, data)
    # the default policy does not require it
    status, data = srv.request("POST", path, base, project=P_OTHER)
    assert status == 200, (status, data)


@pytest.mark.parametrize("value", ["100", "200", "300", "300-17", "3000"])
def test_aws_costcenter_allowed_values(srv, value):
    img = srv.new_image(P_AWS, [("CostCenter", "100")])
    ok(srv.create(P_AWS, img, [("CostCenter", value)]))
    assert srv.tags(P_AWS, img)["CostCenter"] == value


@pytest.mark.parametrize("value", ["400", "30", "", "1000", "x300", "10"])
def test_aws_costcenter_other_values_rejected(srv, value):
    img = srv.new_image(P_AWS, [("CostCenter", "100")])
    rejected(srv.create(P_AWS, img, [("CostCenter", value)]), "tags[0].value", "not an allowed value",
             "'CostCenter'", "(policy aws)")
    assert srv.tags(P_AWS, img)["CostCenter"] == "100"


@pytest.mark.parametrize("key", ["costcenter", "COSTCENTER", "Costcenter", "costCenter"])
def test_aws_costcenter_exact_spelling_on_every_write(srv, key):
    img = srv.new_image(P_AWS, [("CostCenter", "100")])
    rejected(srv.create(P_AWS, img, [(key, "100")]), "tags[0].key", "spelled exactly 'CostCenter'",
             "(policy aws)")
    rejected(srv.request("POST", "/v2/%s/images/%s/tags" % (P_AWS, img),
                         {"tag": {"key": key, "value": "200"}}), "tag.key", "spelled exactly",
             "(policy aws)")


# ---- tpol: engine features -----------------------------------------------------

def test_immutable_once_set(srv):
    img = srv.new_image(P_T)
    ok(srv.create(P_T, img, [("owner", "alice")]))
    ok(srv.create(P_T, img, [("owner", "alice")]))            # same value: a no-op
    rejected(srv.create(P_T, img, [("x", "1"), ("owner", "bob")]), "tags[1].key", "'owner'",
             "immutable once set", "(policy tpol)")
    rejected(srv.delete(P_T, img, [("owner",)]), "tags[0].key", "immutable", "(policy tpol)")
    rejected(srv.delete_one(P_T, img, "owner"), "key", "immutable", "(policy tpol)")
    assert srv.tags(P_T, img) == {"owner": "alice"}           # even an admin cannot


def test_deny_change_by_members(members):
    member, admin = members.creds[(P_T, "member")], members.creds[(P_T, "admin")]
    img = members.new_image(P_T, token=member)
    ok(members.create(P_T, img, [("billing-code", "a1"), ("billing-free", "x")], token=member))
    rejected(members.create(P_T, img, [("billing-code", "b2")], token=member), "tags[0].key",
             "'billing-code'", "only by an admin", "(policy tpol)")
    rejected(members.delete_one(P_T, img, "billing-code", token=member), "key", "only by an admin",
             "(policy tpol)")
    # the more specific pattern wins: billing-free is "replace"
    ok(members.create(P_T, img, [("billing-free", "y")], token=member))
    ok(members.create(P_T, img, [("billing-code", "b2")], token=admin))
    assert members.tags(P_T, img, token=member) == {"billing-code": "b2", "billing-free": "y"}


def test_reserved_prefix_and_key_admin_only_case_sensitive(srv, members):
    member, admin = members.creds[(P_T, "member")], members.creds[(P_T, "admin")]
    img = members.new_image(P_T, token=member)
    rejected(members.create(P_T, img, [("sys-x", "v")], token=member), "tags[0].key", "'sys-'",
             "reserved for the admin role", "(policy tpol)")
    rejected(members.create(P_T, img, [("root", "v")], token=member), "tags[0].key", "'root'",
             "reserved", "(policy tpol)")
    # ignore_case = false: other spellings are ordinary keys
    ok(members.create(P_T, img, [("SYS-x", "v"), ("Root", "v")], token=member))
    ok(members.create(P_T, img, [("sys-x", "v"), ("root", "v")], token=admin))
    simg = srv.new_image(P_T)
    ok(srv.create(P_T, simg, [("sys-y", "v")]))                # auth off: admin


def test_allowed_values_with_wildcard(srv):
    img = srv.new_image(P_T)
    for value in ("gold", "silver", "bronze", "bronze-2"):
        ok(srv.create(P_T, img, [("tier", value)]))
    for value in ("iron", "Gold", "silver2", "", "xbronze"):
        rejected(srv.create(P_T, img, [("tier", value)]), "tags[0].value", "not an allowed value",
                 "gold, silver, bronze*", "(policy tpol)")
    ok(srv.create(P_T, img, [("Tier", "iron")]))               # other keys are free


def test_exact_case(srv):
    img = srv.new_image(P_T)
    ok(srv.create(P_T, img, [("Env", "prod")]))
    for key in ("env", "ENV", "eNv"):
        rejected(srv.create(P_T, img, [(key, "prod")]), "tags[0].key", "spelled exactly 'Env'",
                 "(policy tpol)")


def test_hook(srv):
    img = srv.new_image(P_T)
    rejected(srv.create(P_T, img, [("a", "1"), ("expires", "2030")]), "tags[1].key",
             "'expires' needs an 'owner' tag", "(policy tpol)")
    rejected(srv.request("POST", "/v2/%s/images/%s/tags" % (P_T, img),
                         {"tag": {"key": "expires", "value": "2030"}}), "tag.key", "needs an 'owner'")
    rejected(srv.request("POST", "/v2/images", {"name": "n", "image_tags": [
        {"key": "expires", "value": "1"}]}, project=P_T), "image_tags[0].key", "needs an 'owner'",
        "(policy tpol)")
    ok(srv.create(P_T, img, [("owner", "me"), ("expires", "2030")]))    # in the same request
    img2 = srv.new_image(P_T, [("owner", "me")])
    ok(srv.create(P_T, img2, [("expires", "2031")]))                    # already on the image


def test_quota_of_the_bound_policy(srv):
    img = srv.new_image(P_T)
    ok(srv.create(P_T, img, [("k%d" % i, "v") for i in range(5)]))
    rejected(srv.create(P_T, img, [("k5", "v")]), "5", "(policy tpol)", code="IMG.0116")


def test_delete_match_value(srv):
    img = srv.new_image(P_T)
    ok(srv.create(P_T, img, [("color", "blue"), ("size", "big"), ("w", "1")]))
    ok(srv.delete(P_T, img, [("color", "red")]))                # value differs: kept
    assert srv.tags(P_T, img)["color"] == "blue"
    ok(srv.delete(P_T, img, [("color", "blue"), ("size",)]))    # matching value; no value: by key
    assert srv.tags(P_T, img) == {"w": "1"}
    # ims deletes by key: the value is not compared
    other = srv.new_image(P_OTHER)
    ok(srv.create(P_OTHER, other, [("color", "blue")]))
    ok(srv.delete(P_OTHER, other, [("color", "red")]))
    assert srv.tags(P_OTHER, other) == {}


def test_separate_delete_limits(srv):
    img = srv.new_image(P_T)
    ok(srv.create(P_T, img, [("k", "v")]))
    # no character set and its own lengths on delete: 30 for keys, 5 for values
    ok(srv.delete(P_T, img, [("a/b c#" + "x" * 24,)]))          # 30, characters create refuses
    rejected(srv.delete(P_T, img, [("x" * 31,)]), "tags[0].key", "at most 30", "(policy tpol)")
    rejected(srv.delete(P_T, img, [("k", "123456")]), "tags[0].value", "at most 5", "(policy tpol)")
    ok(srv.delete(P_T, img, [("k", "v")]))
    assert srv.tags(P_T, img) == {}
    # while create keeps its own: keys 1-20
    rejected(srv.create(P_T, img, [("x" * 21, "v")]), "tags[0].key", "1-20", "(policy tpol)")


def test_rejections_name_field_rule_and_policy(srv):
    img = srv.new_image(P_TMS)
    msg = rejected(srv.create(P_TMS, img, [("a", "1"), ("b", "2"), ("bad/key", "3")]))
    assert re.match(r"^tags\[2\]\.key: must be 1-128 characters of .* \(policy tms\)$", msg), msg


# ---- reload -------------------------------------------------------------------

def rewrite(server, name, edit):
    path = os.path.join(server.policies, name + ".lua")
    with open(path) as f:
        text = f.read()
    new = edit(text)
    assert new != text
    with open(path, "w") as f:
        f.write(new)
    return path


def test_reload_lowers_max_tags(fresh):
    img = fresh.new_image(P_TMS)
    ok(fresh.create(P_TMS, img, [("k%d" % i, "v") for i in range(10)]))
    rejected(fresh.create(P_TMS, img, [("k10", "v")]), "10", code="IMG.0116")
    gen = fresh.status()["generation"]
    rewrite(fresh, "tms", lambda t: t.replace("max_tags = 10,", "max_tags = 3,"))
    status, data = fresh.reload()
    assert status == 200 and data["generation"] == gen + 1, (status, data)
    assert any(f["path"].endswith("/tms.lua") for f in data["files"])
    img2 = fresh.new_image(P_TMS)
    ok(fresh.create(P_TMS, img2, [("a", "1"), ("b", "2"), ("c", "3")]))
    rejected(fresh.create(P_TMS, img2, [("d", "4")]), "3", "(policy tms)", code="IMG.0116")


def test_a_range_written_as_a_table_spans_any_characters(fresh):
    """A range meant as one across ASCII classes is written { X, Y }
    (':-_' as a string is refused as a likely mistake); without describe,
    a rejection lists the chars.  Keys longer than 127 with no delete
    block get a delete limit to match, not a refusal."""
    rewrite(fresh, "tpol", lambda t: t.replace(
        'value = { min = 0, max = 20, chars = { "A-Z", "a-z", "0-9", "_", "-", "." },\n'
        "            describe = \"letters, digits, '_', '-' or '.'\", edge_space = \"allow\" },",
        'value = { min = 0, max = 20, chars = { { " ", "~" } } },'))
    status, data = fresh.reload()
    assert status == 200, (status, data)
    img = fresh.new_image(P_T)
    ok(fresh.create(P_T, img, [("k1", "a:b@c[d]~ {x}")]))
    rejected(fresh.create(P_T, img, [("k2", "caf\u00e9")]), "tags[0].value",
             "must be 0-20 characters of ' '-'~'", "(policy tpol)")
    rewrite(fresh, "tpol", lambda t: t.replace("  delete = { key_max = 30, value_max = 5, match_value = true },\n", "")
            .replace("key = { min = 1, max = 20,", "key = { min = 1, max = 200,"))
    status, data = fresh.reload()
    assert status == 200, (status, data)
    long_key = "k" * 150
    ok(fresh.create(P_T, img, [(long_key, "v")]))
    ok(fresh.delete(P_T, img, [(long_key,)]))


def test_max_tags_beyond_32_bits_is_no_limit(fresh):
    """A quota larger than C's int (2^32 would wrap to 0) allows any count,
    on every write path alike."""
    rewrite(fresh, "tms", lambda t: t.replace("max_tags = 10,", "max_tags = 4294967296,"))
    assert fresh.reload()[0] == 200
    img = fresh.new_image(P_TMS)
    ok(fresh.create(P_TMS, img, [("k%d" % i, "v") for i in range(12)]))
    status, data = fresh.request("POST", "/v2/%s/images/%s/tags" % (P_TMS, img),
                                 {"tag": {"key": "one", "value": "more"}})
    assert status == 204, (status, data)


def test_reload_changes_binding(fresh):
    img = fresh.new_image(P_OTHER)
    rejected(fresh.create(P_OTHER, img, [("with space", "v")]), "(policy ims)")
    with open(fresh.config, "w") as f:
        f.write(config_text({P_TMS: "tms", P_AWS: "aws", P_T: "tpol", P_OTHER: "tms"}))
    status, data = fresh.reload()
    assert status == 200, (status, data)
    ok(fresh.create(P_OTHER, img, [("with space", "v")]))
    assert fresh.status()["policies"][P_OTHER] == "tms"


def test_reload_refuses_a_config_key_start_would_refuse(fresh):
    """A misspelt key (helper-20's audit: defualt_policy) was dropped by the
    scripts and the reload went live, quietly moving every unbound project
    to the default policy, while start and `tagway check` refuse the file."""
    good = open(fresh.config).read()
    with open(fresh.config, "w") as f:
        f.write(good.replace("default_policy", "defualt_policy"))
    assert cli("check", "--config", fresh.config, "--scripts", os.path.join(fresh.root, "lua"),
               "--policies", fresh.policies).returncode == 1
    assert_reload_fails(fresh, "tagway.conf.lua", "unknown option 'defualt_policy'")
    with open(fresh.config, "w") as f:
        f.write(good.replace("project_policies", "project_policy"))
    assert_reload_fails(fresh, "unknown option 'project_policy'")
    with open(fresh.config, "w") as f:
        f.write(good)
    assert fresh.reload()[0] == 200


def test_a_reload_builds_from_the_configuration_bytes_it_checked(fresh):
    """The reload's check of the configuration read the file apart from the
    build, which read it again after loading the scripts: an edit landing
    between the two went live unchecked (here a binding, together with a
    misspelt key the check refuses).  Now both read one snapshot: the
    reload runs the bytes it checked, and the next one sees the edit."""
    main = os.path.join(fresh.root, "lua", "main.lua")
    with open(main, encoding="utf-8") as f:
        text = f.read()
    with open(main, "w", encoding="utf-8") as f:    # a window before the build reads the config
        f.write("local t0 = os.clock() while os.clock() - t0 < 0.8 do end\n" + text)
    before = fresh.status()["policies"]
    assert before.get(P_OTHER) != "tms"
    edited = config_text({P_TMS: "tms", P_AWS: "aws", P_T: "tpol", P_OTHER: "tms"})
    edited = edited.replace("return {", "return {\n  defualt_policy = \"ims\",", 1)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=fresh.reload()))
    t.start()
    time.sleep(0.3)
    with open(fresh.config, "w") as f:
        f.write(edited)
    t.join(30)
    assert result["r"][0] == 200, result
    assert fresh.status()["policies"] == before
    assert_reload_fails(fresh, "unknown option 'defualt_policy'")
    assert fresh.status()["policies"] == before


def test_start_builds_from_the_configuration_bytes_it_read():
    """The same at start: the options were read from the file, then the
    index was built (seconds at 10^6 images), then the scripts read the file
    again; an edit between ran scripts on a configuration start refuses."""
    path = make_root()
    main = os.path.join(path, "lua", "main.lua")
    with open(main, encoding="utf-8") as f:
        text = f.read()
    with open(main, "w", encoding="utf-8") as f:
        f.write("local t0 = os.clock() while os.clock() - t0 < 0.8 do end\n" + text)
    server = Server(path, auth="off")
    edited = config_text({P_TMS: "tms", P_AWS: "aws", P_T: "tpol", P_OTHER: "tms"})
    edited = edited.replace("return {", "return {\n  defualt_policy = \"ims\",", 1)

    def edit():
        time.sleep(0.3)
        with open(server.config, "w") as f:
            f.write(edited)
    t = threading.Thread(target=edit)
    try:
        t.start()
        server.start()
        t.join()
        assert server.status()["policies"].get(P_OTHER) is None
        assert_reload_fails(server, "unknown option 'defualt_policy'")
    finally:
        t.join()
        server.stop()
        shutil.rmtree(path, ignore_errors=True)


def test_a_policy_error_names_the_line_of_the_bytes_loaded(fresh):
    """gw.source, which finds the line of a policy error, read the file as
    it was on disk when the error was reported, not as loaded: an edit
    meanwhile shifted the line named.  During a build it now answers from
    the build's snapshot."""
    from test_workers import slow_policy
    with open(os.path.join(fresh.policies, "ims.lua"), encoding="utf-8") as f:
        ims = f.read()
    bad = ims.replace('name = "ims"', 'name = "aa_bad"', 1).replace("max_tags = 10", 'max_tags = "ten"', 1)
    line = bad.split("\n").index('  max_tags = "ten",') + 1
    bad_path = os.path.join(fresh.policies, "aa_bad.lua")
    with open(bad_path, "w", encoding="utf-8") as f:
        f.write(bad)
    slow_policy(fresh, "zz_slow", 0.8)        # loaded after aa_bad, before the error is found
    result = {}
    t = threading.Thread(target=lambda: result.update(r=fresh.reload()))
    t.start()
    time.sleep(0.3)
    with open(bad_path, "w", encoding="utf-8") as f:
        f.write("\n" * 5 + bad)
    t.join(30)
    status, data = result["r"]
    assert status == 422, result
    assert "aa_bad.lua:%d: max_tags" % line in data["error"]["message"], data


def test_a_runaway_configuration_fails_the_reload_in_bounded_time(fresh):
    """A reload runs the configuration file on a worker's loop, in a Lua
    state of its own: one that never returns held that loop for good (a
    robustness audit), and one that allocates, the process.  It now has 2 s
    and 32 MiB: the reload fails naming file:line, the old rules serve."""
    good = open(fresh.config).read()
    for bad, parts in [("while true do end\n", ("tagway.conf.lua:1:", "ran longer than 2000 ms")),
                       ("local s = 'x' while true do s = s .. s end\n", ("not enough memory", "32 MiB")),
                       ("local t = {} for i = 1, 1e9 do t[i] = i end\n", ("not enough memory",))]:
        with open(fresh.config, "w") as f:
            f.write(bad + good)
        t0 = time.monotonic()
        message = assert_reload_fails(fresh, *parts)
        assert time.monotonic() - t0 < 3.5, (bad, message)
        assert "tagway.conf.lua" in message
    with open(fresh.config, "w") as f:
        f.write(good)
    assert fresh.reload()[0] == 200


def test_workers_from_the_config_file(tmp_path):
    """§7: every option has a key in the configuration file; `workers` was
    skipped as if the scripts read it."""
    root = make_root()
    try:
        with open(os.path.join(root, "tagway.conf.lua"), "w") as f:
            f.write(config_text().replace("return {", "return {\n  workers = 1,"))
        server = Server(root, auth="off").start()
        try:
            assert server.status()["workers"] == 1
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def assert_reload_fails(server, *parts):
    gen = server.status()["generation"]
    status, data = server.reload()
    assert status == 422, (status, data)
    assert data["error"]["code"] == "TGW.0001", data
    for part in parts:
        assert part in data["error"]["message"], (part, data)
    assert "stack traceback" not in data["error"]["message"]
    assert server.status()["generation"] == gen
    return data["error"]["message"]


def test_reload_syntax_error_keeps_old_rules(fresh):
    path = rewrite(fresh, "tms", lambda t: t.replace("max_tags = 10,", "max_tags = 3,\n  oops oops,"))
    lines = open(path).read().split("\n")
    bad_line = next(i + 1 for i, l in enumerate(lines) if "oops oops" in l)
    assert_reload_fails(fresh, "%s:%d:" % (path, bad_line))
    # the old generation still serves: 10 tags, not 3
    img = fresh.new_image(P_TMS)
    ok(fresh.create(P_TMS, img, [("k%d" % i, "v") for i in range(10)]))


def test_reload_runtime_error_in_policy_file(fresh):
    path = rewrite(fresh, "tpol", lambda t: t.replace("max_tags = 5,", "max_tags = nil + 1,"))
    assert_reload_fails(fresh, path + ":")


def test_reload_budget_failures_name_the_file(fresh):
    """A policy file that loops or eats memory at load fails the reload
    with the budget named and the file (and the loop's line) in the answer;
    the old generation keeps serving."""
    path = rewrite(fresh, "tpol", lambda t: t.replace("max_tags = 5,", "max_tags = (function()\n"
                                                      "  while true do end end)(),"))
    lines = open(path).read().split("\n")
    line = next(i + 1 for i, l in enumerate(lines) if "while true" in l)
    assert_reload_fails(fresh, "%s:%d: script budget exceeded" % (os.path.basename(path), line))
    path = rewrite(fresh, "tpol", lambda t: t.replace("(function()\n  while true do end end)()",
                                                      "#(function() local t = {} for i = 1, 1e9 do "
                                                      "t[i] = ('x'):rep(1 << 16) .. i end end)() + 5"))
    msg = assert_reload_fails(fresh, path + ": script exceeded its memory budget")
    assert msg.index(path) == 0, msg
    rewrite(fresh, "tpol", lambda t: t.replace(
        "#(function() local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1 << 16) .. i end end)() + 5", "5"))
    assert fresh.reload()[0] == 200


@pytest.mark.parametrize("trap", ["while true do end", "error('trap')"], ids=["loop", "error"])
def test_a_returned_table_with_an_index_trap_fails_the_reload(fresh, trap):
    """The gateway reads `name` of each policy's table and `handle`, `init`
    of main's after the file's budgeted run: an __index there ran with no
    budget (a loop held the reloading worker for good) or no protection (an
    error would abort the process).  Raw reads see the table only: the
    reload fails naming the file, the old generation keeps serving, and a
    reload after the mistake is mended succeeds."""
    img = fresh.new_image(P_TMS)
    evil = os.path.join(fresh.policies, "evil.lua")
    with open(evil, "w") as f:
        f.write("return setmetatable({}, {__index = function() %s end})\n" % trap)
    t0 = time.monotonic()
    assert_reload_fails(fresh, evil, 'must return a table whose name is "evil"')
    assert time.monotonic() - t0 < 5
    os.remove(evil)
    main = os.path.join(fresh.root, "lua", "main.lua")
    with open(main) as f:
        text = f.read()
    assert text.rstrip().endswith("return main"), text[-200:]
    with open(main, "w") as f:
        f.write(text.rstrip()[:-len("return main")] +
                "return setmetatable({}, {__index = function() %s end})\n" % trap)
    t0 = time.monotonic()
    assert_reload_fails(fresh, "main.lua: must return a table with a handle function")
    assert time.monotonic() - t0 < 5
    ok(fresh.create(P_TMS, img, [("k", "v")]))      # the old generation serves
    with open(main, "w") as f:
        f.write(text)
    assert fresh.reload()[0] == 200
    assert fresh.tags(P_TMS, img) == {"k": "v"}


def test_reload_malformed_policy_names_field_and_line(fresh):
    path = rewrite(fresh, "tpol", lambda t: t.replace("max_tags = 5,", "max_tags = 5, overwite = {},"))
    lines = open(path).read().split("\n")
    line = next(i + 1 for i, l in enumerate(lines) if "overwite" in l)
    assert_reload_fails(fresh, "%s:%d: overwite" % (path, line), "not a policy key")
    path = rewrite(fresh, "tpol", lambda t: t.replace(" overwite = {},", "").replace(
        '["billing*"] = "deny"', '["billing*"] = "forbid"'))
    assert_reload_fails(fresh, path, "overwrite['billing*']", "'replace', 'immutable' or 'deny'")


# Mistakes that loaded and silently weakened a rule: each is now refused,
# naming the field (found by an operator's audit).
QUIET_MISTAKES = [
    ("prefix-with-star", lambda t: t.replace('prefixes = { "sys-" }', 'prefixes = { "sys-*" }'),
     ["reserved.prefixes[1]", "write 'sys-'", "taken literally"]),
    ("range-backwards", lambda t: t.replace('chars = { "A-Z", "a-z", "0-9", "_", "-" },',
                                            'chars = { "Z-A", "a-z", "0-9", "_", "-" },', 1),
     ["key.chars", "range 'Z-A' runs backwards (X must come no later than Y)"]),
    ("range-not-a-string", lambda t: t.replace('chars = { "A-Z", "a-z", "0-9", "_", "-" },',
                                               'chars = { "A-Z", "a-z", 9, "_", "-" },', 1),
     ["key.chars", "must be a list of single characters and X-Y ranges: item 3 is a number, not a string"]),
    ("range-two-letters", lambda t: t.replace('chars = { "A-Z", "a-z", "0-9", "_", "-" },',
                                              'chars = { "A-Z", "az", "0-9", "_", "-" },', 1),
     ["key.chars", "item 'az' is neither one character nor a range X-Y"]),
    ("boolean-as-string", lambda t: t.replace("match_value = true", 'match_value = "true"'),
     ["delete.match_value", "must be true or false"]),
    ("boolean-as-yes", lambda t: t.replace("admin_may_write = true", 'admin_may_write = "yes"'),
     ["reserved.admin_may_write", "must be true or false"]),
    ("import-misspelt", lambda t: t.replace("max_tags = 5,", 'max_tags = 5, import = { os_versions = {"X"}, '
                                            'formats = {".raw"}, max_running_jobs = 1, bytes_per_stepp = 5 },'),
     ["import.bytes_per_stepp", "not a policy key"]),
    ("import-step-zero", lambda t: t.replace("max_tags = 5,", 'max_tags = 5, import = { os_versions = {"X"}, '
                                             'formats = {".raw"}, max_running_jobs = 1, bytes_per_step = 0 },'),
     ["import.bytes_per_step", "whole number >= 1"]),
    # a value's quotes forgotten read as nil: the rule went without a word
    ("bare-name-rule", lambda t: t.replace('owner = "immutable"', "owner = immutable"),
     ["tpol.lua:", "'immutable' is not defined (a text value needs quotes: \"immutable\")"]),
    ("bare-name-in-a-list", lambda t: t.replace('prefixes = { "sys-" }', "prefixes = { sys }"),
     ["'sys' is not defined"]),
    ("misspelt-boolean", lambda t: t.replace("admin_may_write = true", "admin_may_write = ture"),
     ["'ture' is not defined"]),
    ("global-assignment", lambda t: "limit = 5\n" + t,
     ["tpol.lua:1: assignment to global 'limit' (declare it local: local limit = ...)"]),
    # ':-_' meant as three characters is the range ':' to '_', '@' and '[' among them
    ("ascii-range-across-classes", lambda t: t.replace('chars = { "A-Z", "a-z", "0-9", "_", "-" },',
                                                       'chars = { "A-Z", "a-z", "0-9", ":-_" },', 1),
     ["key.chars", "range ':-_' spans U+003A to U+005F; a range written X-Y that starts in ASCII must be "
                   "digits, upper-case or lower-case letters only", "{ ':', '_' }"]),
    ("describe-not-text", lambda t: t.replace("describe = \"letters, digits, '_' or '-'\"",
                                              'describe = { "letters" }', 1),
     ["key.describe", "must be a string"]),
    ("delete-key-shorter", lambda t: t.replace("key_max = 30,", "key_max = 10,"),
     ["delete.key_max", "must be at least key.max (20)"]),
    ("required-unwritable", lambda t: t.replace('exact_case = { "Env" },', 'exact_case = { "Env" }, required = { "Cost Center" },'),
     ["required[1]", "'Cost Center' could never be written", "must be 1-20 characters of letters"]),
    ("example-misspelt", lambda t: t.replace('{ key = "env", value = "x" }', '{ key = "env", vaule = "x" }'),
     ["examples.reject[2].vaule", "not a policy key"]),
]


@pytest.mark.parametrize("case,edit,parts", QUIET_MISTAKES, ids=[c[0] for c in QUIET_MISTAKES])
def test_reload_refuses_a_mistake_that_would_weaken_a_rule(fresh, case, edit, parts):
    path = rewrite(fresh, "tpol", edit)
    assert_reload_fails(fresh, path, *parts)
    # and `tagway check` says the same
    r = subprocess.run([BIN, "check", "--config", fresh.config, "--policies", fresh.policies,
                        "--scripts", os.path.join(fresh.root, "lua")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, (r.stdout, r.stderr)
    for part in parts:
        assert part in r.stderr, (part, r.stderr)


def test_a_bare_name_in_the_configuration_is_refused(fresh):
    """`default_policy = tms` (quotes forgotten) read nil: the default fell
    back to ims, and a project binding written so vanished, without a word."""
    with open(fresh.config) as f:
        good = f.read()
    for bad, says in [(good.replace('default_policy = "ims"', "default_policy = tms"),
                       "tagway.conf.lua:2: 'tms' is not defined (a text value needs quotes: \"tms\")"),
                      (good.replace('] = "tms",', "] = tms,"), "tagway.conf.lua:4: 'tms' is not defined"),
                      # the configuration's own state has no library at all
                      ('local home = os and os.getenv("HOME") or "/"\n' + good,
                       "tagway.conf.lua:1: 'os' is not available in this file")]:
        assert bad != good
        with open(fresh.config, "w") as f:
            f.write(bad)
        assert_reload_fails(fresh, says)
        r = subprocess.run([BIN, "check", "--config", fresh.config, "--policies", fresh.policies,
                            "--scripts", os.path.join(fresh.root, "lua")], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and says in r.stderr, r.stderr
    with open(fresh.config, "w") as f:
        f.write(good)
    assert fresh.reload()[0] == 200


def test_a_hook_answering_other_than_strings_is_a_script_error(fresh):
    """A hook returns nil, or a field and a message: a table there was
    sent to the client as "table: 0x...: table: 0x..." with nothing logged;
    it is the policy's mistake, a 500 with the reason in the log."""
    path = rewrite(fresh, "tpol", lambda t: t.replace(
        "    for i, t in ipairs(tags) do\n      if t.key == \"expires\" then",
        "    for i, t in ipairs(tags) do\n      if t.key == \"weird\" then return {}, {} end\n"
        "      if t.key == \"expires\" then"))
    assert fresh.reload()[0] == 200
    img = fresh.new_image(P_T)
    status, data = fresh.create(P_T, img, [("weird", "1")])
    assert status == 500, (status, data)
    assert data["error"]["code"] == "IMG.0061" and "table:" not in json.dumps(data), data
    deadline = time.monotonic() + 3
    while "hook returned table, table" not in open(fresh.log_path).read():
        assert time.monotonic() < deadline, open(fresh.log_path).read()[-2000:]
        time.sleep(0.02)
    assert "policy tpol: hook returned table, table" in open(fresh.log_path).read()
    ok(fresh.create(P_T, img, [("owner", "me")]))       # the write was undone, the hook still judges
    assert path


def test_a_reload_names_the_configuration_options_that_wait_for_a_restart(fresh):
    """A reload applies what the scripts read of the configuration file; its
    C options (budgets, workers, paths) apply at the next start.  A reload
    that finds them changed says so in the log, where "ok" alone read as
    applied; one that finds them as at start says nothing of them."""
    def warnings():
        out = []
        for line in open(fresh.log_path):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("level") == "warn" and "next start" in obj.get("msg", ""):
                out.append(obj)
        return out
    assert fresh.reload()[0] == 200
    time.sleep(0.1)
    assert warnings() == []
    with open(fresh.config) as f:
        text = f.read()
    with open(fresh.config, "w") as f:
        f.write(text.replace("return {", "return {\n  script_time_ms = 1234,\n  tags_cache = 77,", 1))
    assert fresh.reload()[0] == 200
    deadline = time.monotonic() + 3
    while not warnings():
        assert time.monotonic() < deadline, open(fresh.log_path).read()[-2000:]
        time.sleep(0.02)
    assert warnings()[-1]["options"] == "script_time_ms, tags_cache", warnings()
    # the file as at start again: nothing to say
    with open(fresh.config, "w") as f:
        f.write(text)
    assert fresh.reload()[0] == 200
    time.sleep(0.1)
    assert len(warnings()) == 1


def test_reload_binding_to_missing_policy(fresh):
    with open(fresh.config, "w") as f:
        f.write(config_text({P_TMS: "tms", P_OTHER: "nosuch"}))
    msg = assert_reload_fails(fresh, fresh.config, "'nosuch'", P_OTHER)
    assert "does not exist" in msg
    assert fresh.status()["policies"][P_T] == "tpol"      # old bindings still apply
    with open(fresh.config, "w") as f:
        f.write(config_text(default="nosuch"))
    assert_reload_fails(fresh, fresh.config, "default_policy", "'nosuch'")
    # an id that can never match a project binds nothing: refused, not ignored
    with open(fresh.config, "w") as f:
        f.write(config_text({P_TMS.upper().replace("0", "A"): "tms"}))
    assert_reload_fails(fresh, fresh.config, "32 lowercase hex")


@pytest.mark.parametrize("value,says", [('"yes"', "not the string 'yes'"), ("1", "not a number"),
                                         ('"true"', "not the string 'true'")])
def test_reload_refuses_metrics_auth_not_boolean(fresh, value, says):
    # meant as "on", anything but true would have left /metrics open
    with open(fresh.config, "w") as f:
        f.write(config_text().replace("return {", "return {\n  metrics_auth = %s," % value, 1))
    assert_reload_fails(fresh, fresh.config, "metrics_auth must be true or false", says)
    r = subprocess.run([BIN, "check", "--config", fresh.config, "--policies", fresh.policies,
                        "--scripts", os.path.join(fresh.root, "lua")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "metrics_auth must be true or false" in r.stderr, (r.returncode, r.stderr)


def test_reload_refuses_import_backend_not_a_name(fresh):
    with open(fresh.config, "w") as f:
        f.write(config_text().replace("return {", "return {\n  import_backend = 7,", 1))
    assert_reload_fails(fresh, fresh.config, "import_backend must be a module name")


def test_reload_failing_example_names_file_and_line(fresh):
    # an accept example that the rules refuse
    path = rewrite(fresh, "tpol", lambda t: t.replace('{ key = "Env", value = "x" } },',
                                                      '{ key = "Env", value = "x" },\n'
                                                      '               { key = "tier", value = "iron" } },'))
    lines = open(path).read().split("\n")
    line = next(i + 1 for i, l in enumerate(lines) if '"tier", value = "iron" } }' in l)
    assert_reload_fails(fresh, "%s:%d: examples.accept[3]" % (path, line), "expected accept",
                        "(policy tpol)")
    # a reject example that the rules accept (the second of tms's reject list)
    tms = rewrite(fresh, "tms", lambda t: t.replace('{ key = "   ", value = "v" },',
                                                    '{ key = "fine", value = "v" },'))
    with open(path, "w") as f:
        f.write(TPOL)
    lines = open(tms).read().split("\n")
    line = next(i + 1 for i, l in enumerate(lines) if '{ key = "fine", value = "v" },' in l)
    assert_reload_fails(fresh, "%s:%d: examples.reject[2]" % (tms, line), "expected reject, got accept")


def test_reload_name_mismatch(fresh):
    """file:line (§6): the line of the name, or of the return when the file
    returns no table."""
    path = rewrite(fresh, "tpol", lambda t: t.replace('name = "tpol"', 'name = "other"'))
    lines = open(path).read().split("\n")
    line = next(i + 1 for i, l in enumerate(lines) if 'name = "other"' in l)
    assert_reload_fails(fresh, '%s:%d: must return a table whose name is "tpol"' % (path, line))
    with open(path, "w") as f:
        f.write("-- not a policy\nlocal x = 1\nreturn x\n")
    assert_reload_fails(fresh, '%s:3: must return a table whose name is "tpol"' % path)


def test_reload_recovers(fresh):
    path = rewrite(fresh, "tms", lambda t: t.replace("max_tags = 10,", "max_tags = ,"))
    assert_reload_fails(fresh, path)
    with open(path, "w") as f:
        f.write(open(os.path.join(REPO, "policies", "tms.lua")).read().replace("max_tags = 10,",
                                                                                 "max_tags = 2,"))
    status, data = fresh.reload()
    assert status == 200, (status, data)
    img = fresh.new_image(P_TMS)
    rejected(fresh.create(P_TMS, img, [("a", "1"), ("b", "2"), ("c", "3")]), code="IMG.0116")


# ---- start and `tagway check` ----------------------------------------------------------

def check(root, *extra):
    return cli("check", "--config", os.path.join(root, "tagway.conf.lua"),
               "--scripts", os.path.join(root, "lua"), "--policies", os.path.join(root, "policies"),
               *extra)


def test_check_passes_on_the_shipped_policies(root):
    r = check(root)
    assert r.returncode == 0, r.stderr
    for name in ("ims", "tms", "aws", "tpol"):
        assert "%s.lua" % name in r.stdout


def test_check_passes_on_the_example_configs():
    for conf in ("tagway.conf.lua", "policies-demo.conf.lua"):
        r = subprocess.run([BIN, "check", "--config", os.path.join("examples", conf)], cwd=REPO,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (conf, r.stderr)
    r = subprocess.run([BIN, "check", "--config", os.path.join("examples", "policies-demo.conf.lua")],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    assert "aws.lua" in r.stdout and "tms.lua" in r.stdout


@pytest.fixture
def scratch():
    path = make_root()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_check_fails_on_syntax_error_with_file_and_line(scratch):
    path = os.path.join(scratch, "policies", "tms.lua")
    text = open(path).read().replace("max_tags = 10,", "max_tags = 10\n  max_tags = 11,")
    open(path, "w").write(text)
    line = text.split("\n").index("  max_tags = 11,") + 1
    r = check(scratch)
    assert r.returncode != 0
    assert "%s:%d:" % (path, line) in r.stderr, r.stderr


def test_check_fails_on_failing_example_with_file_and_line(scratch):
    # aws's 8th reject example, CostCenter = "30", turned into one the rules accept
    policy = os.path.join(scratch, "policies", "aws.lua")
    lines = open(policy).read().split("\n")
    start = lines.index("    reject = {")
    line = next(i for i in range(start, len(lines)) if '{ key = "CostCenter", value = "30" },' in lines[i])
    lines[line] = lines[line].replace('"30"', '"300"')
    open(policy, "w").write("\n".join(lines))
    r = check(scratch)
    assert r.returncode != 0
    assert "%s:%d: examples.reject[8]" % (policy, line + 1) in r.stderr, r.stderr
    assert "expected reject, got accept" in r.stderr


def test_check_fails_on_binding_to_missing_policy(scratch):
    with open(os.path.join(scratch, "tagway.conf.lua"), "w") as f:
        f.write(config_text({P_TMS: "nosuch"}))
    r = check(scratch)
    assert r.returncode != 0
    assert "tagway.conf.lua" in r.stderr and "nosuch" in r.stderr, r.stderr


def test_start_fails_on_binding_to_missing_policy(scratch):
    with open(os.path.join(scratch, "tagway.conf.lua"), "w") as f:
        f.write(config_text({P_TMS: "nosuch"}))
    server = Server(scratch)
    try:
        with pytest.raises(RuntimeError) as info:
            server.start()
    finally:
        server.stop()
    assert "nosuch" in str(info.value) and "tagway.conf.lua" in str(info.value)
    assert server.proc.returncode not in (None, 0)


# ---- any character: what storage and the JSON answers must carry --------------

ANYCHAR = r'''-- anychar: no character set, so values reach storage and the answers as sent.
return {
  name = "anychar", version = 1, max_tags = 20,
  key = { min = 1, max = 36, edge_space = "allow" },
  value = { min = 0, max = 43, edge_space = "allow" },
  delete = { key_max = 127, value_max = 255, match_value = false },
  reserved = { prefixes = {}, keys = {} },
  overwrite = { ["*"] = "replace" },
}
'''


def test_tags_answer_escapes_every_character(fresh):
    """GET tags is built as JSON text in C (gw.image_tags_json), image GET by
    cjson from Lua tables: both must carry quotes, backslashes, control
    characters, DEL, slashes and 4-byte characters back exactly."""
    with open(os.path.join(fresh.policies, "anychar.lua"), "w") as f:
        f.write(ANYCHAR)
    with open(fresh.config, "w") as f:
        f.write(config_text(bindings={P_OTHER: "anychar"}))
    status, data = fresh.reload()
    assert status == 200, data
    values = {
        "quote": 'say "hi"', "backslash": "a\\b\\", "slash": "a/b", "tab": "a\tb",
        "newline": "a\nb", "ctl": "\x01\x1f", "del": "x\x7fy", "cjk": "研发.v1",
        "emoji": "😀 ok", "empty": "", "mixed": '"\\\n\x02/😀',
    }
    img = fresh.new_image(P_OTHER)
    ok(fresh.create(P_OTHER, img, sorted(values.items())))
    conn = http.client.HTTPConnection("127.0.0.1", fresh.port, timeout=30)
    conn.request("GET", "/v2/%s/images/%s/tags" % (P_OTHER, img))
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("application/json")
    assert not any(b < 0x20 for b in raw), raw           # control characters escaped
    body = json.loads(raw)
    assert body == {"tags": [{"key": k, "value": values[k]} for k in sorted(values)]}
    status, image = fresh.request("GET", "/v2/images/%s" % img, project=P_OTHER)
    assert status == 200, image
    got = image.get("tags") or image.get("image_tags")
    assert got is not None, image
    assert {t["key"]: t["value"] for t in got} == values
    # an image without tags answers an empty array, not an object
    bare = fresh.new_image(P_OTHER)
    assert fresh.request("GET", "/v2/%s/images/%s/tags" % (P_OTHER, bare)) == (200, {"tags": []})
