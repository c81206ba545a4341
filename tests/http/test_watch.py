"""--watch on: a change in the script or policy folders reloads (inotify
through the event loop); a broken change keeps the old generation serving
and says why in the log."""
import re
import time

from conftest import _json_or_none


def wait_generation(g, want, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if g.status()["generation"] == want:
            return True
        time.sleep(0.05)
    return False


def test_watch_reloads_on_change_and_survives_a_broken_file(gateway_factory):
    g = gateway_factory(extra_args=["--watch", "on"])
    image = g.create_image()
    gen = g.status()["generation"]

    # lower the tag limit in the policy file: reloaded without a signal
    path = g.policies + "/ims.lua"
    with open(path, encoding="utf-8") as f:
        src = f.read()
    src, n = re.subn(r"max_tags = 10,", "max_tags = 1,", src)
    assert n == 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(src)
    assert wait_generation(g, gen + 1), "no reload after a policy change"
    st, _, js, _ = g.batch(image, "create", [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
    assert st == 400 and js["error"]["code"] == "IMG.0116", js

    # a syntax error in a handler: logged, the previous generation serves on
    with open(g.script("handlers/ops.lua"), "a", encoding="utf-8") as f:
        f.write("\nnot lua at all\n")
    deadline = time.monotonic() + 5
    failed = None
    while time.monotonic() < deadline and not failed:
        for line in g.stderr_lines():
            obj = _json_or_none(line)
            if isinstance(obj, dict) and obj.get("msg") == "reload (watch) failed":
                failed = obj
        time.sleep(0.05)
    assert failed and re.search(r"ops\.lua:\d+:", failed["error"]), failed
    st, _, js, _ = g.request("GET", "/healthz", token=None)
    assert st == 200 and js == {"status": "ok"}
    assert g.status()["generation"] == gen + 1
