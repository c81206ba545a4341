"""API.md §0.2: authentication, projects, roles, auth off."""
import json
import os
import subprocess
import time

import pytest

from conftest import BIN, JSON_CT, REPO, gateway_error, ims_error, random_project, run_cli


def test_no_token_401(gw, image):
    for method, path, body in [
        ("GET", gw.tags_path(image), None),
        ("POST", "/v2/images", {"name": "x"}),
        ("GET", "/v2/images/" + image, None),
        ("GET", "/admin/status", None),
        ("GET", "/v2/%s/images/tags" % gw.project, None),
    ]:
        st, h, js, _ = gw.request(method, path, body, token=None)
        assert st == 401, (method, path)
        gateway_error(js, h, "APIGW.0301")
        assert h["Content-Type"] == JSON_CT


def test_empty_token_401(gw, image):
    st, h, js, _ = gw.request("GET", gw.tags_path(image), token="")
    assert st == 401
    gateway_error(js, h, "APIGW.0301")


def test_bad_token_401(gw, image):
    for tok in ["0" * 64, gw.token[:-1] + ("0" if gw.token[-1] != "0" else "1"), "garbage", gw.admin["ak"]]:
        st, h, js, _ = gw.request("GET", gw.tags_path(image), token=tok)
        assert st == 401, tok
        gateway_error(js, h, "APIGW.0301")


def test_other_projects_path_403(gw, image):
    other = gw.take_credential()
    for method, path, body in [
        ("GET", "/v2/%s/images/tags" % other["project_id"], None),
        ("GET", "/v2/%s/images/%s/tags" % (other["project_id"], image), None),
        ("POST", "/v2/%s/images/%s/tags/action" % (other["project_id"], image),
         {"action": "create", "tags": [{"key": "k", "value": "v"}]}),
        ("DELETE", "/v2/%s/images/%s/tags/k" % (other["project_id"], image), None),
    ]:
        st, h, js, _ = gw.request(method, path, body)
        assert st == 403, (method, path)
        gateway_error(js, h, "APIGW.0302")
    assert gw.image_tags(image) == []


def test_other_projects_image_is_404_not_403(gw, image):
    other = gw.take_credential()
    theirs = gw.create_image(token=other["token"], image_tags=[{"key": "owner", "value": "b"}])
    mine = gw.project
    for method, path, body in [
        ("GET", "/v2/%s/images/%s/tags" % (mine, theirs), None),
        ("POST", "/v2/%s/images/%s/tags/action" % (mine, theirs),
         {"action": "create", "tags": [{"key": "k", "value": "v"}]}),
        ("POST", "/v2/%s/images/%s/tags/action" % (mine, theirs),
         {"action": "delete", "tags": [{"key": "owner"}]}),
        ("POST", "/v2/%s/images/%s/tags" % (mine, theirs), {"tag": {"key": "k", "value": "v"}}),
        ("DELETE", "/v2/%s/images/%s/tags/owner" % (mine, theirs), None),
        ("GET", "/v2/images/" + theirs, None),
        ("DELETE", "/v2/images/" + theirs, None),
    ]:
        st, _, js, _ = gw.request(method, path, body)
        assert st == 404, (method, path, st)
        ims_error(js, "IMG.0027")
    # nothing changed for the owner
    st, _, js, _ = gw.request("GET", "/v2/images/" + theirs, token=other["token"])
    assert st == 200
    assert js["tags"] == [{"key": "owner", "value": "b"}]
    # and my image is not visible to them
    st, _, js, _ = gw.request("GET", "/v2/%s/images/%s/tags" % (other["project_id"], image), token=other["token"])
    assert st == 404
    ims_error(js, "IMG.0027")


def test_member_token_works_on_api(gw, member):
    iid = gw.create_image(token=member["token"])
    st, _, _, raw = gw.batch(iid, "create", [{"key": "m", "value": "1"}], token=member["token"])
    assert st == 204, raw
    # same project: the admin sees the member's image
    assert gw.image_tags(iid) == [{"key": "m", "value": "1"}]


def test_member_cannot_use_admin_routes(gw, member):
    gen = gw.status()["generation"]
    for method, path in [("POST", "/admin/reload"), ("GET", "/admin/status")]:
        st, h, js, _ = gw.request(method, path, token=member["token"])
        assert st == 403, (method, path)
        gateway_error(js, h, "APIGW.0302")
    assert gw.status()["generation"] == gen


def test_admin_can_use_admin_routes(gw):
    st, _, js, raw = gw.request("GET", "/admin/status")
    assert st == 200, raw
    gen = js["generation"]
    st, _, js, raw = gw.request("POST", "/admin/reload")
    assert st == 200, raw
    assert js["generation"] == gen + 1


def test_admin_of_other_project_is_403_on_my_path(gw, image):
    other_admin = gw.take_credential(role="admin")
    st, h, js, _ = gw.request("GET", gw.tags_path(image), token=other_admin["token"])
    assert st == 403
    gateway_error(js, h, "APIGW.0302")


# Credentials managed with the CLI while the server runs (§0.2, §7).  Each
# test has a gateway of its own that has already served writes, as a
# production server would have.

def busy_gateway(gateway_factory):
    g = gateway_factory()
    iid = g.create_image(image_tags=[{"key": "warm", "value": "1"}])
    st, _, _, _ = g.request("GET", "/v2/images/" + iid)
    assert st == 200
    assert g.batch(iid, "create", [{"key": "more", "value": "2"}])[0] == 204
    return g, iid


def test_revoked_token_refused_within_1s(gateway_factory):
    g, _ = busy_gateway(gateway_factory)
    path = "/v2/%s/images/tags" % g.project
    p = run_cli("credentials", "revoke", "--db", g.db, "--token", g.token)
    assert p.returncode == 0, p.stderr
    t0 = time.monotonic()
    while True:
        st, h, js, _ = g.request("GET", path)
        elapsed = time.monotonic() - t0
        if st == 401 or elapsed > 3:
            break
        time.sleep(0.05)
    assert st == 401, "revoked token still accepted after %.2fs" % elapsed
    gateway_error(js, h, "APIGW.0301")
    assert elapsed <= 1.1, "revoked token refused only after %.2fs" % elapsed


def test_revoke_by_ak_revokes_token(gateway_factory):
    g, _ = busy_gateway(gateway_factory)
    path = "/v2/%s/images/tags" % g.project
    p = run_cli("credentials", "revoke", "--db", g.db, "--ak", g.admin["ak"])
    assert p.returncode == 0, p.stderr
    time.sleep(1.0)
    st, h, js, _ = g.request("GET", path)
    assert st == 401
    gateway_error(js, h, "APIGW.0301")


def test_revoke_reads_a_token_from_stdin(tmp_path):
    """`--token -`: the token comes from stdin, not argv (where every user
    of the machine sees it); an empty stdin is an error, not a revoke of
    nothing."""
    db = str(tmp_path / "c.db")
    cred = json.loads(run_cli("credentials", "create", "--db", db, "--project", random_project()).stdout)
    p = subprocess.run([BIN, "credentials", "revoke", "--db", db, "--token", "-"], input="",
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "no token on stdin" in p.stderr, p.stderr
    p = subprocess.run([BIN, "credentials", "revoke", "--db", db, "--token", "-"], input=cred["token"] + "\n",
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and json.loads(p.stdout) == {"revoked": True}, (p.stdout, p.stderr)
    listed = run_cli("credentials", "list", "--db", db).stdout
    assert json.loads(listed.splitlines()[0])["revoked"] is True, listed


def test_a_database_others_can_read_is_warned_of(tmp_path):
    """The database holds the secret keys in the clear: one the gateway
    did not create keeps its mode, and a mode open to others is logged
    at start (and by load); one the gateway created (0600) is not."""
    import sqlite3
    from conftest import Gateway
    for mode, warned in ((0o644, True), (0o600, False)):
        g = Gateway(str(tmp_path / ("gw%o" % mode)), auth="off")
        os.makedirs(os.path.dirname(g.db))
        sqlite3.connect(g.db).close()
        os.chmod(g.db, mode)
        g.start()
        try:
            lines = [l for l in g.stderr_lines() if "chmod 600" in l]
            assert bool(lines) == warned, g.stderr_lines()[:5]
            if warned:
                obj = json.loads(lines[0])
                assert obj["level"] == "warn" and obj["path"] == g.db and "(mode 0644)" in obj["msg"], obj
        finally:
            g.kill9()


def test_credential_created_while_running_is_usable(gateway_factory):
    g, _ = busy_gateway(gateway_factory)
    cred = g.new_credential()
    st, _, js, raw = g.request("GET", "/v2/%s/images/tags" % cred["project_id"], token=cred["token"])
    assert st == 200, raw
    assert js == {"tags": []}
    iid = g.create_image(token=cred["token"])
    assert g.image_tags(iid, project=cred["project_id"], token=cred["token"]) == []


def test_writes_keep_working_after_cli_credential_change(gateway_factory):
    g, iid = busy_gateway(gateway_factory)
    g.new_credential()
    st, _, js, raw = g.request("POST", "/v2/images", {"name": "after-cli"})
    assert st == 201, raw
    st, _, _, raw = g.batch(iid, "create", [{"key": "after", "value": "cli"}])
    assert st == 204, raw
    assert {t["key"] for t in g.image_tags(iid)} == {"warm", "more", "after"}


def test_revoke_member_while_running_keeps_others(gateway_factory):
    g, iid = busy_gateway(gateway_factory)
    g.stop()
    member = g.new_credential(project=g.project)
    g.start()
    assert g.batch(iid, "create", [{"key": "m", "value": "1"}], token=member["token"])[0] == 204
    p = run_cli("credentials", "revoke", "--db", g.db, "--token", member["token"])
    assert p.returncode == 0, p.stderr
    time.sleep(1.0)
    st, h, js, _ = g.request("GET", g.tags_path(iid), token=member["token"])
    assert st == 401
    gateway_error(js, h, "APIGW.0301")
    # the admin credential still reads and writes
    assert g.request("GET", g.tags_path(iid))[0] == 200
    st, _, _, raw = g.batch(iid, "create", [{"key": "a", "value": "1"}])
    assert st == 204, raw


# ---- auth off ------------------------------------------------------------------

def test_auth_off_on_loopback(gateway_factory):
    g = gateway_factory(auth="off")
    assert g.admin is None
    project = random_project()
    # path project is used, no credentials needed
    st, _, js, raw = g.request("GET", "/v2/%s/images/tags" % project, token=None)
    assert st == 200, raw
    assert js == {"tags": []}
    # /v2/images names no project: X-Project-Id required
    st, _, js, _ = g.request("POST", "/v2/images", {"name": "a"}, token=None)
    assert st == 400
    ims_error(js, "IMG.0067")
    st, _, js, raw = g.request("POST", "/v2/images", {"name": "a", "image_tags": [{"key": "k", "value": "v"}]},
                               token=None, headers={"X-Project-Id": project})
    assert st == 201, raw
    iid = js["id"]
    st, _, js, _ = g.request("GET", "/v2/%s/images/%s/tags" % (project, iid), token=None)
    assert st == 200 and js["tags"] == [{"key": "k", "value": "v"}]
    st, _, js, _ = g.request("GET", "/v2/%s/images/tags" % project, token=None)
    assert js == {"tags": [{"key": "k", "values": ["v"]}]}
    # another project does not see it
    other = random_project()
    st, _, js, _ = g.request("GET", "/v2/%s/images/%s/tags" % (other, iid), token=None)
    assert st == 404
    ims_error(js, "IMG.0027")
    st, _, js, _ = g.request("GET", "/v2/images/" + iid, token=None, headers={"X-Project-Id": project})
    assert st == 200 and js["id"] == iid
    st, _, js, _ = g.request("GET", "/v2/images/" + iid, token=None)
    assert st == 400
    ims_error(js, "IMG.0067")
    # an empty or blank X-Project-Id names no project: it is not project ""
    for blank in ["", "   ", "\t"]:
        st, _, js, raw = g.request("POST", "/v2/images", {"name": "b"}, token=None,
                                   headers={"X-Project-Id": blank})
        assert st == 400, (blank, raw)
        ims_error(js, "IMG.0067")
    # admin routes need no X-Project-Id
    st, _, js, raw = g.request("GET", "/admin/status", token=None)
    assert st == 200, raw
    assert js["images"] == 1
    st, _, js, raw = g.request("POST", "/admin/reload", token=None)
    assert st == 200, raw
    # no first-start credentials with auth off
    assert not any('"token"' in line for line in g.stdout_lines())


def test_auth_off_answers_no_browser_page(gateway_factory):
    """With auth off on loopback, a web page is the remaining way in: a
    cross-origin POST from any site (CSRF: a write, a reload), or a site
    whose name is made to resolve to 127.0.0.1 (DNS rebinding: then
    same-origin).  A request naming a page in Origin, or a Host that is
    not a loopback name, is refused with 403 APIGW.0302 and changes
    nothing; curl-like clients (no Origin, Host 127.0.0.1/localhost) are
    served as before."""
    g = gateway_factory(auth="off")
    project = random_project()
    hp = {"X-Project-Id": project}
    refused = [
        ({"Origin": "http://evil.example"}, "A browser page's request (Origin: http://evil.example) is refused "
                                            "while authentication is off (--auth off)"),
        ({"Origin": "null"}, "A browser page's request (Origin: null) is refused"),
        ({"Host": "evil.example:%d" % g.port}, "Host: evil.example:%d is not a loopback name" % g.port),
        ({"Host": "127.0.0.1.evil.example"}, "is not a loopback name"),
        ({"Host": "localhost.evil.example"}, "is not a loopback name"),
    ]
    for extra, says in refused:
        for method, path, body in (("POST", "/v2/images", {"name": "csrf"}), ("POST", "/admin/reload", None),
                                   ("GET", "/v2/%s/images/tags" % project, None), ("GET", "/metrics", None),
                                   ("GET", "/healthz", None)):
            st, h, js, raw = g.request(method, path, body, token=None, headers=dict(hp, **extra))
            assert st == 403, (extra, path, raw)
            gateway_error(js, h, "APIGW.0302")
            assert says in js["error_msg"], (extra, raw)
    st, _, js, _ = g.request("GET", "/admin/status", token=None)
    assert js["images"] == 0 and js["generation"] == 1, js
    for host in (None, "localhost:%d" % g.port, "LOCALHOST", "app.localhost", "127.3.4.5", "[::1]:8080",
                 "localhost.", "127.0.0.1.:%d" % g.port, "0.0.0.0:%d" % g.port, "[::ffff:127.0.0.1]:1",
                 "ip6-localhost"):
        st, _, js, raw = g.request("POST", "/v2/images", {"name": "ok"}, token=None,
                                   headers=dict(hp, **({"Host": host} if host else {})))
        assert st == 201, (host, raw)
    # with auth on, Origin and Host are the credentials' business, not these rules
    a = gateway_factory()
    st, _, _, raw = a.request("GET", "/v2/%s/images/tags" % a.project, headers={"Origin": "http://evil.example",
                                                                                 "Host": "evil.example"})
    assert st == 200, raw


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "127.0.0.1.example.com:0", "[::]:0", "128.0.0.1:0",
                                    "localhost.example.com:0", "[::1.example]:0"])
def test_auth_off_on_non_loopback_exits_2(tmp_path, listen):
    """Loopback is judged on the address: a name that merely starts like
    one would be resolved through DNS to anywhere."""
    db = str(tmp_path / "x.db")
    p = subprocess.Popen([BIN, "serve", "--auth", "off", "--listen", listen, "--db", db,
                          "--scripts", os.path.join(REPO, "lua"), "--policies", os.path.join(REPO, "policies")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        rc = p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError("serve --auth off on 0.0.0.0 kept running")
    err = p.stderr.read().decode()
    p.stdout.close()
    p.stderr.close()
    assert rc == 2, (rc, err)
    assert "usage" in err.lower() or "loopback" in err.lower()
