"""The examples stay true: examples/demo.sh (a throw-away gateway with auth
off, the walkthrough against it, SIGTERM) passes against the current
gateway; the walkthrough also passes against a gateway with auth on, and
fails (exit 1) when the gateway does not answer as API.md says.
"""
import os
import subprocess

from conftest import BIN, REPO

DEMO = os.path.join(REPO, "examples", "demo.sh")
WALK = os.path.join(REPO, "examples", "walkthrough.sh")


def run(script, env, timeout=180):
    full = dict(os.environ)
    full.update(env)
    p = subprocess.run(["bash", script], env=full, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def tail(out, err, n=60):
    return "\n".join(out.splitlines()[-n:]) + "\n--- stderr ---\n" + err[-4000:]


def test_demo_passes():
    rc, out, err = run(DEMO, {"TAGWAY_BIN": BIN})
    assert rc == 0, tail(out, err)
    assert "walkthrough: OK" in out, tail(out, err)
    assert "demo: OK" in out, tail(out, err)
    # The walk covered every route family it promises.
    for needle in ("GET \"$GW/healthz\"", "POST \"$GW/v2/images\"", "/tags/action", "/tags/%E9%83%A8%E9%97%A8",
                   "/images/tags\"", "resource_instances/action", "quickimport/action", "/v1/$P/jobs/",
                   "/v1/cloudimages/job/", "DELETE \"$GW/v2/images/", "GET \"$GW/metrics\"",
                   "GET \"$GW/admin/status\"", "POST \"$GW/admin/reload\"", "< 404", "< 400"):
        assert needle in out, needle


def test_walkthrough_with_auth_on(gateway_factory):
    g = gateway_factory()            # auth on; the first-start admin credential
    assert g.token and g.project
    rc, out, err = run(WALK, {"GW": g.url, "TOKEN": g.token, "PROJECT": g.project, "OBS_ROOT": g.obs})
    assert rc == 0, tail(out, err)
    assert "walkthrough: OK" in out
    assert "< 401" in out and "< 403" in out, tail(out, err)
    # The token itself is never printed, only its variable.
    assert g.token not in out
    # The object dropped for the import is removed again.
    assert not os.path.exists(os.path.join(g.obs, "walkthrough"))


def test_walkthrough_fails_when_the_gateway_breaks_the_contract(gateway_factory):
    g = gateway_factory(auth="off")
    routes = g.script("routes.lua")
    with open(routes, encoding="utf-8") as f:
        text = f.read()
    line = next(l for l in text.splitlines(keepends=True) if '"/v2/{project_id}/images/tags"' in l)
    with open(routes, "w", encoding="utf-8") as f:
        f.write(text.replace(line, ""))
    st, _, js, raw = g.request("POST", "/admin/reload", token=None)
    assert st == 200, raw
    rc, out, err = run(WALK, {"GW": g.url, "AUTH": "off", "OBS_ROOT": g.obs})
    assert rc == 1, tail(out, err)
    assert "!! UNEXPECTED: wanted 200, got 404" in out, tail(out, err)
    assert "walkthrough: FAILED" in out


def test_walkthrough_without_a_gateway_or_credentials():
    rc, out, err = run(WALK, {"GW": "http://127.0.0.1:9", "AUTH": "off"}, timeout=60)
    assert rc == 1 and "no healthy gateway" in out, tail(out, err)
    env = {"GW": "http://127.0.0.1:9", "AUTH": "on", "TOKEN": "", "PROJECT": ""}
    rc, out, err = run(WALK, env, timeout=60)
    assert rc == 2 and "TOKEN and PROJECT" in err, tail(out, err)


def test_config_example_documents_every_serve_option(tmp_path):
    """examples/tagway.conf.lua has a key for every option of `serve --help`
    (except --config itself), and tagway accepts the file as it is."""
    import re
    helptext = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True).stdout
    options = re.findall(r"^\s+--([a-z-]+)", helptext, re.M)
    assert "workers" in options and "listen" in options, helptext
    conf_path = os.path.join(REPO, "examples", "tagway.conf.lua")
    with open(conf_path, encoding="utf-8") as f:
        conf = f.read()
    # top-level keys only (two-space indent): a key set twice keeps the
    # last value in Lua, so the one documented first would silently lose
    top = re.findall(r"^  ([a-z_]+)\s*=", conf, re.M)
    assert len(top) == len(set(top)), sorted(k for k in top if top.count(k) > 1)
    keys = set(re.findall(r"^\s*([a-z_]+)\s*=", conf, re.M))
    missing = [o for o in options if o != "config" and o.replace("-", "_") not in keys
               and o.replace("-", "_") + "_mb" not in keys]
    assert not missing, missing
    p = subprocess.run([BIN, "check", "--config", conf_path], capture_output=True, text=True,
                       cwd=os.path.join(REPO))
    assert p.returncode == 0, p.stdout + p.stderr


AKSK = os.path.join(REPO, "examples", "aksk_request.py")


def test_aksk_example_signs_the_sdk_test_vector():
    """examples/aksk_request.py's sign() reproduces the signature of a
    request an official SDK sent (the vector of test_aksk.py)."""
    import importlib.util
    import test_aksk
    spec = importlib.util.spec_from_file_location("aksk_request", AKSK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    v = test_aksk.VEC
    headers = {"Content-Type": v["headers"]["content-type"], "Host": v["headers"]["host"],
               "User-Agent": v["headers"]["user-agent"], "X-Project-Id": v["headers"]["x-project-id"]}
    mod.sign(v["ak"], v["sk"], "POST", v["path"], headers, v["body"], sdk_date=v["headers"]["x-sdk-date"])
    assert headers["Authorization"] == "SDK-HMAC-SHA256 Access=%s, SignedHeaders=%s, Signature=%s" % (
        v["ak"], "content-type;host;user-agent;x-project-id;x-sdk-date",
        "df63032c0281aa4e7132ed8de1f9153a9da502c2d7b0fbd745b8ee5b5c79fd8b"), headers
    assert mod.canonical_request("GET", "/p", "x=a+b&k=%e4%b8%ad&x=", {}, [], b"").split("\n")[2] == \
        "k=%E4%B8%AD&x=&x=a%2Bb"


def test_aksk_example_against_the_gateway(gateway_factory):
    g = gateway_factory()
    a = g.admin
    base = ["python3", AKSK, "--ak", a["ak"], "--project", a["project_id"], "--gw", g.url]

    def call(sk, *args):
        return subprocess.run(base[:2] + ["--sk", sk] + base[2:] + list(args), capture_output=True,
                              text=True, timeout=30)
    p = call(a["sk"], "POST", "/v2/images", '{"name": "signed", "image_tags": [{"key": "k", "value": "v"}]}')
    assert p.returncode == 0 and p.stdout.startswith("201 Created\n"), (p.stdout, p.stderr)
    p = call(a["sk"], "GET", "/v2/%s/images/tags?x=2&a=b%%20c" % a["project_id"])
    assert p.returncode == 0 and p.stdout == '200 OK\n{"tags":[{"key":"k","values":["v"]}]}\n', p.stdout
    p = call(a["sk"][:-1] + ("0" if a["sk"][-1] != "0" else "1"), "GET", "/v2/%s/images/tags" % a["project_id"])
    assert p.returncode == 1 and p.stdout.startswith("401 ") and "verify aksk signature fail" in p.stdout, p.stdout
