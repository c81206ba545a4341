"""Replays the fuzzers' kept inputs through the HTTP server, as part of
`make test`: every file of tests/fuzz/regressions/<harness>/ (inputs that
once crashed or misbehaved) and of the seed corpus tests/fuzz/corpus/
<harness>/.  The input formats are those of the harnesses (see
tests/fuzz/README.md), mapped onto real HTTP requests: the server must
answer below 500 and stay healthy.  When the harness binaries are built
(tests/fuzz/run.sh build), the same files also go through them
in-process (tests/fuzz/regress.sh does that on its own too)."""
import glob
import http.client
import json
import os
import subprocess

import pytest

from conftest import REPO, Gateway

FUZZ = os.path.join(REPO, "tests", "fuzz")
METHODS = ["GET", "POST", "DELETE", "PUT", "HEAD", "PATCH", "OPTIONS", "GET"]
OTHER = "fedcba9876543210fedcba9876543210"
OFF_PROJECT = "0123456789abcdef0123456789abcdef"
BODY_LIMIT = 1024 * 1024          # the default, as the harness runs


def inputs(harness):
    files = []
    for kind in ("regressions", "corpus"):
        files += sorted(glob.glob(os.path.join(FUZZ, kind, harness, "*")))
    return [f for f in files if os.path.isfile(f) and not os.path.basename(f).startswith(".")]


def _id(path):
    return "%s/%s" % (os.path.basename(os.path.dirname(os.path.dirname(path))), os.path.basename(path))


def http_target(raw):
    """Bytes of a request target as a string HTTP can carry: cut at NUL,
    percent-encode what a request line cannot hold."""
    raw = raw.split(b"\x00", 1)[0]
    out = "".join(chr(b) if 0x21 <= b <= 0x7E and b != 0x23 else "%%%02X" % b for b in raw)
    return out if out.startswith("/") else "/" + out


def header_value(raw):
    return "".join(chr(b) for b in raw if b >= 0x20 and b != 0x7F and b < 0x80)


def send(port, method, target, headers, body, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        if not any(k.lower() == "host" for k in headers):
            conn.putheader("Host", "127.0.0.1:%d" % port)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, raw
    finally:
        conn.close()


class Target:
    """A gateway prepared like the harness's host: an image with two tags
    (@I), a job (@J), a project (@P)."""

    def __init__(self, g, project, token=None):
        self.g, self.project, self.token = g, project, token
        folder = os.path.join(g.obs, "bkt")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "disk.zvhd2"), "wb") as f:
            f.write(b"\x5a" * 4096)
        self.seed_image()
        st, _, js, raw = self.call("POST", "/v2/cloudimages/quickimport/action",
                                   {"name": "fuzz-job", "os_version": "CentOS 7.9 64bit",
                                    "image_url": "bkt:disk.zvhd2", "min_disk": 40})
        assert st == 200, raw
        self.job = js["job_id"]

    def call(self, method, path, body):
        hdrs = {"X-Project-Id": self.project}
        return self.g.request(method, path, body, headers=hdrs, token=self.token)

    def seed_image(self):
        st, _, js, raw = self.call("POST", "/v2/images", {"name": "fuzz-seed", "image_tags": [
            {"key": "env", "value": "prod"}, {"key": "部门", "value": "研发"}]})
        assert st == 201, raw
        self.image = js["id"]

    def expand(self, data):
        for marker, value in ((b"@P", self.project), (b"@I", self.image), (b"@J", self.job), (b"@Q", OTHER)):
            data = data.replace(marker, value.encode())
        return data


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fuzzreg"))
    # the harness's budget: 10M VM instructions, counted not timed
    budget = ["--script-instructions", "10000000", "--script-time-ms", "30000"]
    off = Gateway(os.path.join(root, "off"), auth="off", extra_args=budget)
    on = Gateway(os.path.join(root, "on"), extra_args=budget)
    try:
        off.start()
        on.start()
        on.stop()
        member = on.new_credential(project=on.project, role="member")
        on.start()
        yield {
            "off": Target(off, OFF_PROJECT),
            "admin": Target(on, on.project, on.token),
            "member": Target(on, on.project, member["token"]),
        }
    finally:
        off.kill9()
        on.kill9()


def healthy(g):
    st, _, js, _ = g.request("GET", "/healthz", token=None, timeout=10)
    assert st == 200 and js == {"status": "ok"}, "server unhealthy after the input"
    assert g.running()


@pytest.mark.parametrize("path", inputs("fuzz_request"), ids=_id)
def test_request_input_over_http(targets, path):
    data = open(path, "rb").read()
    if not data:
        return
    flags, rest = data[0], data[1:]
    raw_target, _, body = rest.partition(b"\n")
    t = targets["admin" if flags & 0x20 else "member" if flags & 0x40 else "off"]
    target = http_target(t.expand(raw_target))
    if target.startswith("/admin/reload"):
        return          # not replayed by the harness either
    body = t.expand(body)
    if flags & 16:
        body = body + b" " * (BODY_LIMIT + 1 - len(body)) if len(body) <= BODY_LIMIT else body
    headers = {"Content-Type": "application/json"}
    if flags & 8:
        headers["X-Project-Id"] = t.project
    if t.token:
        headers["X-Auth-Token"] = t.token
    method = METHODS[flags & 7]
    st, raw = send(t.g.port, method, target, headers, body)
    assert st < 500, (method, target, st, raw[:300])
    if st >= 400 and raw[:1] == b"{":
        js = json.loads(raw)
        assert "error" in js or "error_code" in js, js
    healthy(t.g)
    if method == "DELETE" and st == 204 and t.image in target and "/tags/" not in target:
        t.seed_image()


AKSK_HEADERS = ["Content-Type", "Host", "User-Agent", "X-Project-Id", "X-Sdk-Date", "X-Security-Token"]


@pytest.mark.parametrize("path", inputs("fuzz_aksk"), ids=_id)
def test_aksk_input_over_http(targets, path):
    data = open(path, "rb").read()
    parts = data.split(b"\x00", 11)
    parts += [b""] * (12 - len(parts))
    method = parts[0].decode("latin-1")
    if not method or not all(c.isalnum() or c in "-_" for c in method):
        method = "GET"
    target = http_target(parts[1])
    if parts[2]:
        target += "?" + http_target(parts[2]).lstrip("/")
    t = targets["admin"]
    headers = {"Authorization": header_value(parts[3])}
    for name, value in zip(AKSK_HEADERS, parts[5:11]):
        if value:
            headers[name] = header_value(value)
    st, raw = send(t.g.port, method, target, headers, parts[11])
    assert st < 500, (method, target, st, raw[:300])
    healthy(t.g)


def _harness(name):
    path = os.path.join(REPO, "build", "fuzz", name)
    return path if os.access(path, os.X_OK) else None


@pytest.mark.parametrize("harness", ["fuzz_request", "fuzz_aksk"])
def test_inputs_through_replay(harness, tmp_path):
    """In process through the harness code, built by `make` next to the
    binary under test (tests/fuzz/replay.c, no libFuzzer needed)."""
    binary = os.path.join(os.path.dirname(os.environ.get("TAGWAY_BIN", "")), "replay_" + harness)
    if not os.access(binary, os.X_OK):
        pytest.skip("%s not built next to TAGWAY_BIN" % binary)
    files = inputs(harness)
    assert len(files) >= 10, files
    env = dict(os.environ, TAGWAY_FUZZ_TMP=str(tmp_path))
    p = subprocess.run([binary] + files, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, (p.returncode, p.stderr[-3000:])
    assert "replay: %d inputs\n" % len(files) in p.stdout, p.stdout


@pytest.mark.parametrize("harness", ["fuzz_request", "fuzz_aksk"])
def test_inputs_through_built_harness(harness, tmp_path):
    """In process, under ASan/UBSan, when tests/fuzz/run.sh build has run."""
    binary = _harness(harness)
    if not binary:
        pytest.skip("build/fuzz/%s not built (tests/fuzz/run.sh build)" % harness)
    srcs = glob.glob(os.path.join(REPO, "src", "*.[ch]")) + [os.path.join(FUZZ, harness + ".c")]
    if max(os.path.getmtime(s) for s in srcs) > os.path.getmtime(binary):
        pytest.skip("build/fuzz/%s is older than the sources (tests/fuzz/run.sh build)" % harness)
    files = inputs(harness)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", TAGWAY_FUZZ_TMP=str(tmp_path))
    p = subprocess.run([binary, "-runs=1"] + files, cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
