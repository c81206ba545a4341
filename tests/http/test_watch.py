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


def test_a_change_during_another_workers_reload_is_loaded_after_it(gateway_factory):
    """--watch reloads on worker 0.  When a change arrives while another
    worker's /admin/reload is building (which may have read the files
    before it), the watch's reload is refused as busy; it was dropped, and
    the change stayed unloaded until some other change.  It is now tried
    again until it runs.  Each worker in turn takes the /admin/reload, so
    one round has it on the other worker than the watch's."""
    import os
    import threading
    from test_workers import conns_per_worker, slow_policy
    g = gateway_factory(extra_args=["--watch", "on", "--workers", "2", "--script-time-ms", "3000"])
    slow_policy(g, "zz_slow", 0.5)
    path = os.path.join(g.policies, "ims.lua")
    gen = g.status()["generation"]
    assert wait_generation(g, gen + 1, timeout=10)      # the watch took zz_slow.lua
    for (old, limit), c in zip([(10, 3), (3, 4)], conns_per_worker(g, 2).values()):
        gen = c.request("GET", "/admin/status")[1]["generation"]
        done = {}
        t = threading.Thread(target=lambda: done.update(r=c.request("POST", "/admin/reload")))
        t.start()
        time.sleep(0.2)                 # the admin reload builds
        with open(path, encoding="utf-8") as f:
            src = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(src.replace("max_tags = %d," % old, "max_tags = %d," % limit, 1))
        t.join()
        assert done["r"][0] == 200, done
        # the admin reload (gen + 1), then the watch's with the change (gen + 2)
        assert wait_generation(g, gen + 2, timeout=10), [l for l in g.stderr_lines() if "reload" in l]
        for w, cc in conns_per_worker(g, 2).items():
            st, js = cc.request("POST", "/v2/images", {"name": "x", "image_tags": [
                {"key": "k%d" % i, "value": "1"} for i in range(limit + 1)]})
            assert st == 400 and js["error"]["code"] == "IMG.0116", (w, limit, js)
            cc.close()
        c.close()


def start_while(tmp_path, change):
    """A --watch gateway of 2 workers whose start runs `change()` after the
    first build has read the policy folder, while the second builds (a slow
    policy sorted last takes 0.8 s in each).  Returns the started gateway."""
    import threading
    from conftest import Gateway
    from test_workers import slow_policy
    g = Gateway(str(tmp_path / "gw"), extra_args=["--watch", "on", "--workers", "2"])
    slow_policy(g, "zz_slow", 0.8)

    def later():
        time.sleep(0.9)
        change(g)
    t = threading.Thread(target=later)
    t.start()
    try:
        g.start()
    finally:
        t.join()
    return g


def test_an_edit_made_while_start_builds_is_loaded(tmp_path):
    """The watch begins once every worker's state is built: an edit landing
    after the first build read the file (the others build from its
    snapshot) raised no event, and the gateway ran the old rules until
    some other change.  When it begins, the watch now compares the files
    the generation loaded with the disk, and reloads if one differs."""
    def edit(g):
        path = g.policies + "/ims.lua"
        with open(path, encoding="utf-8") as f:
            edited, n = re.subn(r"max_tags = 10,", "max_tags = 1,", f.read())
        assert n == 1
        with open(path, "w", encoding="utf-8") as f:
            f.write(edited)
    g = start_while(tmp_path, edit)
    try:
        assert wait_generation(g, 2), "the edit made during start was never loaded"
        image = g.create_image()
        st, _, js, _ = g.batch(image, "create", [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
        assert st == 400 and js["error"]["code"] == "IMG.0116", js
    finally:
        g.kill9()


def test_a_policy_added_while_start_builds_is_loaded(tmp_path):
    """The same for a file added to the policy folder (every *.lua there is
    loaded): it is not among the files the generation loaded, so the watch
    also compares the folder's listing with them when it begins."""
    import shutil

    def add(g):
        with open(g.policies + "/tms.lua", encoding="utf-8") as f:
            added = f.read().replace('name = "tms"', 'name = "added"', 1)
        with open(g.policies + "/.added.tmp", "w", encoding="utf-8") as f:
            f.write(added)
        shutil.move(g.policies + "/.added.tmp", g.policies + "/added.lua")
    g = start_while(tmp_path, add)
    try:
        assert wait_generation(g, 2), "the policy added during start was never loaded"
        assert any(f["path"].endswith("/added.lua") for f in g.status()["files"]), g.status()["files"]
    finally:
        g.kill9()
