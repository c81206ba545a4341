#!/usr/bin/env python3
"""Hot reload under load (make bench): wrk at 64 connections on GET of an
image's tags while /admin/reload runs 100 times.  Prints the non-2xx count
(must be 0) and the reload time (server side: building and validating a
complete new generation), as Markdown table rows."""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time

PROJECT = "0123456789abcdef0123456789abcdef"


def start(binary, root):
    err = open(os.path.join(root, "stderr.log"), "w")
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--db",
                             os.path.join(root, "t.db"), "--auth", "off"],
                            stdout=subprocess.DEVNULL, stderr=err)
    for _ in range(200):
        time.sleep(0.02)
        with open(err.name) as f:
            m = re.search(r'"msg":"listening".*?"port":(\d+)', f.read())
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise RuntimeError("gateway did not start")


def call(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"X-Project-Id": PROJECT, "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, json.loads(data) if data else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--reloads", type=int, default=100)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="tagway-reload-")
    proc, port = start(args.bin, root)
    try:
        st, im = call(port, "POST", "/v2/images", {"name": "r", "image_tags": [{"key": "k", "value": "v"}]})
        assert st == 201, im
        url = "http://127.0.0.1:%d/v2/%s/images/%s/tags" % (port, PROJECT, im["id"])
        wrk = subprocess.Popen(["wrk", "-t2", "-c64", "-d12s", url], stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        times, failed = [], 0
        t0 = time.monotonic()
        for _ in range(args.reloads):
            st, js = call(port, "POST", "/admin/reload")
            if st != 200:
                failed += 1
            else:
                times.append(js["ms"])
            time.sleep(0.05)
        span = time.monotonic() - t0
        out = wrk.communicate()[0]
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        non2xx = int(m.group(1)) if m else 0
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print("\n| Hot reload (tests/bench/reload_bench.py) | Value | | Target | Met |\n"
              "| --- | --- | --- | --- | --- |")
        print("| Hot reload under load: %d reloads in %.1f s during wrk -t2 -c64 GET tags | "
              "%s req/s; non-2xx %d; failed reloads %d | | non-2xx = 0 | %s |"
              % (args.reloads, span, rps, non2xx, failed, "yes" if non2xx == 0 and failed == 0 else "**NO**"))
        print("| Reload time (build + validate a new generation, server side) | "
              "p50 %.1f ms, p99 %.1f ms, max %.1f ms | | ≤ 50 ms | %s |"
              % (statistics.median(times), p99, times[-1], "yes" if p99 <= 50 else "**NO**"))
    finally:
        proc.terminate()
        proc.wait(timeout=15)


if __name__ == "__main__":
    main()
