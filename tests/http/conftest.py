"""Black-box HTTP test harness for tagway.

Fixtures:
  gateway_factory  function scope: start(**opts) -> Gateway; every gateway
                   started through it is killed at teardown.
  gw               session scope: one shared gateway (auth on).  Tests that
                   use it create their own images so they do not interfere.

A Gateway copies /work/main/lua and /work/main/policies into a temporary
folder (tests may edit the copies), runs `tagway serve --listen 127.0.0.1:0`
with a temporary database and reads the port from the "listening" log line.
"""
import http.client
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("TAGWAY_BIN") or os.path.join(REPO, "build", "tagway")
# Upper time bounds stretch under valgrind (`make valgrind` runs the binary
# through tests/valgrind-tagway.sh, some 20x slower); lower bounds do not.
SLOWDOWN = 3.0 if "valgrind" in os.path.basename(BIN) else 1.0
# The scripts and policies every gateway starts from (copied per gateway).
SRC_LUA = os.environ.get("TAGWAY_SCRIPTS_SRC") or os.path.join(REPO, "lua")
SRC_POLICIES = os.environ.get("TAGWAY_POLICIES_SRC") or os.path.join(REPO, "policies")

JSON_CT = "application/json;charset=UTF-8"
_DEFAULT = object()


def run_cli(*args, timeout=20):
    """Runs `tagway ARGS...`; returns CompletedProcess (text mode)."""
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def random_project():
    return secrets.token_hex(16)


# Every gateway the suite starts runs this many event loops unless a test
# asks otherwise (a later --workers wins): the multi-worker paths (shared
# index, one SQLite writer, reload reaching every loop) are exercised by
# every test, whatever the machine's core count.
WORKERS = os.environ.get("TAGWAY_TEST_WORKERS", "2")


class Gateway:
    def __init__(self, root, auth="on", listen="127.0.0.1:0", extra_args=(), file_size_limit=None,
                 open_files=None):
        self.root = root
        self.scripts = os.path.join(root, "lua")
        self.policies = os.path.join(root, "policies")
        self.db = os.path.join(root, "data", "tagway.db")
        self.obs = os.path.join(root, "obs")
        self.auth = auth
        self.listen = listen
        self.extra_args = list(extra_args)
        self.file_size_limit = file_size_limit    # bytes a file of the gateway may reach
        self.open_files = open_files              # (soft, hard) RLIMIT_NOFILE to start under
        shutil.copytree(SRC_LUA, self.scripts)
        shutil.copytree(SRC_POLICIES, self.policies)
        os.makedirs(self.obs, exist_ok=True)
        self.proc = None
        self.port = None
        self.url = None
        self.admin = None
        self._stderr = []
        self._stdout = []
        self._lock = threading.Lock()
        self._threads = []
        self.pool = {"member": [], "admin": [], "own_member": []}

    # ---- process control -------------------------------------------------
    def _reader(self, stream, sink):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                sink.append(line)
        stream.close()

    def command(self):
        return [BIN, "serve", "--listen", self.listen, "--db", self.db,
                "--scripts", self.scripts, "--policies", self.policies,
                "--obs-root", self.obs, "--auth", self.auth, "--workers", WORKERS,
                *self.extra_args]

    def start(self, timeout=15):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with self._lock:
            self._stderr_base = len(self._stderr)
            self._stdout_base = len(self._stdout)
        first_start = not os.path.exists(self.db)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     preexec_fn=self._limits if self.file_size_limit or self.open_files
                                     else None)
        self._threads = [
            threading.Thread(target=self._reader, args=(self.proc.stderr, self._stderr), daemon=True),
            threading.Thread(target=self._reader, args=(self.proc.stdout, self._stdout), daemon=True),
        ]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + timeout
        port = None
        while time.monotonic() < deadline:
            for line in self.stderr_lines()[self._stderr_base:]:
                obj = _json_or_none(line)
                if isinstance(obj, dict) and obj.get("msg") == "listening":
                    port = obj["port"]
            if port is not None:
                break
            if self.proc.poll() is not None:
                time.sleep(0.1)
                raise RuntimeError("tagway exited with %s:\n%s" % (
                    self.proc.returncode, "\n".join(self.stderr_lines())))
            time.sleep(0.01)
        if port is None:
            self.kill9()
            raise RuntimeError("tagway did not report its port:\n" + "\n".join(self.stderr_lines()))
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        # First start with auth on: the admin credential is printed on stdout
        # (flushed before the listening line is written, but read by another
        # thread: wait for it rather than race it).
        if self.admin is None and self.auth == "on" and first_start:
            while self.admin is None and time.monotonic() < deadline:
                for line in self.stdout_lines():
                    obj = _json_or_none(line)
                    if isinstance(obj, dict) and "token" in obj:
                        self.admin = obj
                if self.admin is None:
                    time.sleep(0.01)
        return self

    def _limits(self):
        # a write past RLIMIT_FSIZE fails with EFBIG, as one on a full disk
        # fails with ENOSPC; SIGXFSZ, which would kill the process instead,
        # stays ignored across exec
        if self.file_size_limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size_limit, self.file_size_limit))
        if self.open_files:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.open_files)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM; asserts exit 0 within `timeout` seconds."""
        assert self.running(), "not running"
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("tagway did not exit within %ss of SIGTERM" % timeout)
        elapsed = time.monotonic() - t0
        self._join()
        assert rc == 0, "exit status %s after SIGTERM; stderr:\n%s" % (rc, "\n".join(self.stderr_lines()[-20:]))
        return elapsed

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._join()

    def _join(self):
        for t in self._threads:
            t.join(timeout=2)

    def restart(self):
        if self.running():
            self.stop()
        return self.start()

    # ---- logs --------------------------------------------------------------
    def stderr_lines(self):
        with self._lock:
            return list(self._stderr)

    def stdout_lines(self):
        with self._lock:
            return list(self._stdout)

    def wait_logged(self, done, timeout=3.0):
        """Polls the log objects until done(objects) is true or the time is
        up (stderr is read by another thread, so a line written before an
        answer may arrive after it); returns the objects seen last."""
        deadline = time.monotonic() + timeout
        objs = self.log_objects()
        while not done(objs) and time.monotonic() < deadline:
            time.sleep(0.02)
            objs = self.log_objects()
        return objs

    def log_objects(self):
        out = []
        for line in self.stderr_lines():
            obj = _json_or_none(line)
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def access_log(self, request_id, timeout=2.0):
        """Access-log entries (JSON lines with this request_id and a status)."""
        mine = lambda objs: [o for o in objs if o.get("request_id") == request_id and "status" in o]
        return mine(self.wait_logged(mine, timeout))

    # ---- HTTP --------------------------------------------------------------
    @property
    def project(self):
        return self.admin["project_id"] if self.admin else None

    @property
    def token(self):
        return self.admin["token"] if self.admin else None

    def request(self, method, path, body=None, headers=None, token=_DEFAULT, timeout=30):
        """-> (status, headers, parsed JSON or None, raw bytes)."""
        if token is _DEFAULT:
            token = self.token
        hdrs = {}
        if isinstance(body, (dict, list)):
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            data = body.encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        else:
            data = body
        if token is not None:
            hdrs["X-Auth-Token"] = token
        if headers:
            hdrs.update(headers)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            status, rh = resp.status, resp.headers
        finally:
            conn.close()
        parsed = None
        if raw:
            try:
                parsed = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                parsed = None
        return status, rh, parsed, raw

    # ---- helpers -----------------------------------------------------------
    def take_credential(self, role="member", own_project=False):
        """A credential made before this gateway started (see `gw`): another
        project's member or admin, or a member of the admin's project."""
        kind = "own_member" if own_project else role
        assert self.pool[kind], "credential pool %r exhausted" % kind
        return self.pool[kind].pop()

    def new_credential(self, project=None, role="member"):
        project = project or random_project()
        p = run_cli("credentials", "create", "--db", self.db, "--project", project, "--role", role)
        assert p.returncode == 0, p.stderr
        cred = json.loads(p.stdout)
        assert cred["project_id"] == project
        return cred

    def create_image(self, token=_DEFAULT, headers=None, **fields):
        body = {"name": "img-" + uuid.uuid4().hex[:8]}
        body.update(fields)
        st, _, js, raw = self.request("POST", "/v2/images", body, token=token, headers=headers)
        assert st == 201, (st, raw)
        return js["id"]

    def tags_path(self, image_id, project=None):
        return "/v2/%s/images/%s/tags" % (project or self.project, image_id)

    def batch(self, image_id, action, tags, project=None, token=_DEFAULT):
        body = {"action": action, "tags": tags}
        return self.request("POST", self.tags_path(image_id, project) + "/action", body, token=token)

    def image_tags(self, image_id, project=None, token=_DEFAULT):
        st, _, js, raw = self.request("GET", self.tags_path(image_id, project), token=token)
        assert st == 200, (st, raw)
        return js["tags"]

    def count(self, query=None, project=None):
        """total_count of a §2 count query (a dict of its conditions)."""
        body = {"action": "count"}
        body.update(query or {})
        st, _, js, raw = self.request("POST", "/v2/%s/images/resource_instances/action"
                                      % (project or self.project), body)
        assert st == 200, (body, raw)
        return js["total_count"]

    def metric(self, name):
        """A counter or gauge of /metrics without labels, as an int."""
        st, _, _, raw = self.request("GET", "/metrics")
        assert st == 200, raw
        m = re.search(r"^%s (\d+)$" % re.escape(name), raw.decode(), re.M)
        assert m, name + " missing from /metrics"
        return int(m.group(1))

    def status(self):
        st, _, js, raw = self.request("GET", "/admin/status")
        assert st == 200, (st, raw)
        return js

    def reload(self):
        return self.request("POST", "/admin/reload")

    def script(self, rel):
        return os.path.join(self.scripts, rel)


def ims_error(js, code):
    assert isinstance(js, dict) and "error" in js, js
    assert js["error"]["code"] == code, js
    assert isinstance(js["error"]["message"], str) and js["error"]["message"]
    return js["error"]["message"]


def gateway_error(js, headers, code):
    assert isinstance(js, dict), js
    assert js.get("error_code") == code, js
    assert isinstance(js.get("error_msg"), str) and js["error_msg"]
    assert js.get("request_id") == headers["X-Request-Id"], (js, headers["X-Request-Id"])


def send_until_closed(port, data, timeout=5):
    """Sends raw bytes and reads until the gateway closes the connection:
    every byte it answered (socket.timeout: it kept the connection)."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk
    finally:
        s.close()


def raw_http(port, head, body=b"", timeout=5):
    """Sends raw bytes (head, then as much of body as the server takes) on
    a socket and reads the answer until the server closes or answers in
    full.  -> (status, {lower-case header: value}, body bytes)."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head)
        try:
            s.sendall(body)
        except OSError:
            pass
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                hdr, _, rest = data.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", hdr)
                if m and len(rest) >= int(m.group(1)):
                    break
    finally:
        s.close()
    hdr, _, rest = data.partition(b"\r\n\r\n")
    lines = hdr.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else None
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


def rewrite_health(g, body_lua):
    """Replaces ops.health's body in the gateway's script copy (not reloaded)."""
    path = g.script("handlers/ops.lua")
    with open(path, encoding="utf-8") as f:
        src = f.read()
    new, n = re.subn(r"function ops\.health\(\)\n.*?\nend\n",
                     "function ops.health()\n" + body_lua + "\nend\n", src, flags=re.S)
    assert n == 1, "ops.health not found in the script copy"
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def busy_health(g, seconds):
    """GET /healthz holds its worker `seconds` of CPU, reloaded.  Start the
    gateway with a --script-time-ms above it."""
    rewrite_health(g, "  local t = os.clock()\n  while os.clock() - t < %s do end\n"
                      "  return shape.ok(200, { status = \"ok\" })" % seconds)
    st, _, js, _ = g.reload()
    assert st == 200, js


def worker_connections(g, per_worker, tries=64):
    """Keep-alive connections grouped by the worker (event loop) that serves
    them, told by their answers' X-Request-Id prefix: {prefix: [conn, ...]},
    each list `per_worker` long, every worker present.  The kernel spreads
    connections over the workers' sockets, so some are opened to spare."""
    groups, spare = {}, []
    for _ in range(tries):
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=30)
        conn.request("GET", "/nowhere")
        resp = conn.getresponse()
        resp.read()
        prefix = resp.headers["X-Request-Id"][:16]
        group = groups.setdefault(prefix, [])
        (group if len(group) < per_worker else spare).append(conn)
        if len(groups) == int(WORKERS) and all(len(c) == per_worker for c in groups.values()):
            break
    for conn in spare:
        conn.close()
    assert len(groups) == int(WORKERS) and all(len(c) == per_worker for c in groups.values()), \
        {p: len(c) for p, c in groups.items()}
    return groups


def _json_or_none(line):
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        return json.loads(line)
    except ValueError:
        return None


@pytest.fixture
def gateway_factory(tmp_path):
    started = []

    def start(**opts):
        root = tempfile.mkdtemp(dir=str(tmp_path))
        g = Gateway(root, **opts)
        started.append(g)
        g.start()
        return g

    yield start
    for g in started:
        g.kill9()


@pytest.fixture
def gateway(gateway_factory):
    """A fresh gateway of its own (auth on) for tests that edit scripts,
    kill or restart the server."""
    return gateway_factory()


@pytest.fixture(scope="session")
def gw(tmp_path_factory):
    """The shared gateway (auth on)."""
    root = str(tmp_path_factory.mktemp("shared"))
    g = Gateway(os.path.join(root, "gw"))
    try:
        g.start()
        assert g.admin is not None, "no first-start credential on stdout"
        # Credentials for the tests of the shared gateway are made while it
        # is stopped: credential changes made by the CLI while the server
        # runs are tested on gateways of their own (test_auth.py), so that a
        # failure there does not spread to every other test.
        g.stop()
        for _ in range(24):
            g.pool["member"].append(g.new_credential(role="member"))
        for _ in range(3):
            g.pool["admin"].append(g.new_credential(role="admin"))
        for _ in range(3):
            g.pool["own_member"].append(g.new_credential(project=g.project, role="member"))
        g.start()
        yield g
    finally:
        g.kill9()


@pytest.fixture
def image(gw):
    """A fresh image in the admin project of the shared gateway."""
    return gw.create_image()


@pytest.fixture(scope="session")
def member(gw):
    """A member credential of the shared gateway's admin project."""
    return gw.take_credential(own_project=True)
