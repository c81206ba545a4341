#!/usr/bin/python3
"""Writes the seed corpus of the fuzz harnesses (tests/fuzz/corpus/<harness>/):
real requests of every route of lua/routes.lua for fuzz_request, and real
signed SDK requests (the spec's test vector among them) for fuzz_aksk.
The input formats are described in tests/fuzz/README.md.  Rerun after
changing a format:  /usr/bin/python3 tests/fuzz/make_seeds.py"""
import hashlib
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "http"))
from test_aksk import SIGNED, VEC, canonical_request, signature  # noqa: E402

METHODS = {"GET": 0, "POST": 1, "DELETE": 2, "PUT": 3, "HEAD": 4, "PATCH": 5, "OPTIONS": 6}
PROJECT_HDR, TOO_LARGE, ADMIN, MEMBER = 8, 16, 32, 64


def req(method, target, body=b"", flags=0):
    if isinstance(body, (dict, list)):
        body = json.dumps(body, ensure_ascii=False).encode("utf-8")
    elif isinstance(body, str):
        body = body.encode("utf-8")
    return bytes([METHODS[method] | flags]) + target.encode("utf-8") + b"\n" + body


TAGS = "/v2/@P/images/@I/tags"
QUERY = "/v2/@P/images/resource_instances/action"
IMPORT = "/v2/cloudimages/quickimport/action"
IMP = {"name": "seed-import", "os_version": "CentOS 7.9 64bit", "image_url": "bkt:disk.zvhd2", "min_disk": 40}

REQUEST_SEEDS = {
    # operations
    "healthz": req("GET", "/healthz"),
    "metrics": req("GET", "/metrics"),
    "status-admin": req("GET", "/admin/status", flags=ADMIN),
    "status-member": req("GET", "/admin/status", flags=MEMBER),
    "status-off": req("GET", "/admin/status"),
    # §1 tags
    "batch-create": req("POST", TAGS + "/action", {"action": "create", "tags": [
        {"key": "k1", "value": "v1"}, {"key": "部门", "value": "研发"}, {"key": "empty", "value": ""}]}),
    "batch-create-admin": req("POST", TAGS + "/action", {"action": "create", "tags": [{"key": "a", "value": "b"}]},
                              flags=ADMIN),
    "batch-create-member": req("POST", TAGS + "/action", {"action": "create", "tags": [{"key": "m", "value": "n"}]},
                               flags=MEMBER),
    "batch-create-escapes": req("POST", TAGS + "/action",
                                '{"action": "create", "tags": [{"key": "\\u90e8\\u95e8", "value": "\\u7814"}]}'),
    "batch-delete": req("POST", TAGS + "/action", {"action": "delete", "tags": [{"key": "k1"}, {"key": "env", "value": "x"}]}),
    "batch-create-other-project": req("POST", "/v2/@Q/images/@I/tags/action",
                                      {"action": "create", "tags": [{"key": "a", "value": "b"}]}, flags=MEMBER),
    "batch-too-large": req("POST", TAGS + "/action", {"action": "create", "tags": []}, flags=TOO_LARGE),
    "batch-bad-action": req("POST", TAGS + "/action", {"action": "Create", "tags": [{"key": "a", "value": "b"}]}),
    "batch-empty": req("POST", TAGS + "/action", ""),
    "batch-nul": req("POST", TAGS + "/action", '{"action": "create", "tags": [{"key": "a\\u0000", "value": "b"}]}'),
    "batch-nested": req("POST", TAGS + "/action", '{"action": "create", "tags": [[[[[[[[{"key": 1}]]]]]]]]}'),
    "batch-types": req("POST", TAGS + "/action", '{"action": "create", "tags": [{"key": 1, "value": null}, 2, "s"]}'),
    "add-one": req("POST", TAGS, {"tag": {"key": "one", "value": "1"}}),
    "add-one-null": req("POST", TAGS, '{"tag": null}'),
    "delete-one": req("DELETE", TAGS + "/env"),
    "delete-one-cjk": req("DELETE", TAGS + "/%E9%83%A8%E9%97%A8"),
    "delete-one-slash": req("DELETE", TAGS + "/x%2Fy"),
    "image-tags": req("GET", TAGS),
    "image-tags-head": req("HEAD", TAGS),
    "project-tags": req("GET", "/v2/@P/images/tags"),
    "project-tags-query": req("GET", "/v2/@P/images/tags?limit=10&marker=a%20b"),
    # §2 query
    "query-filter": req("POST", QUERY, {
        "action": "filter", "tags": [{"key": "env", "values": ["prod", "dev"]}],
        "tags_any": [{"key": "部门", "values": []}], "not_tags": [{"key": "x", "values": ["y"]}],
        "not_tags_any": [{"key": "z", "values": []}],
        "matches": [{"key": "resource_name", "value": "seed"}, {"key": "resource_id", "value": "@I"}],
        "limit": "10", "offset": "0"}),
    "query-count": req("POST", QUERY, {"action": "count", "without_any_tag": True}),
    "query-limits": req("POST", QUERY, {"action": "filter", "limit": 1000, "offset": 5}),
    "query-bad": req("POST", QUERY, {"action": "filter", "limit": "+5", "tags": [{"key": " ", "values": [1]}]}),
    # §3 import, §4 jobs
    "import": req("POST", IMPORT, dict(IMP, tags=["k.v", "plain"]), flags=PROJECT_HDR),
    "import-full": req("POST", IMPORT, dict(IMP, type="BMS", architecture="arm", hw_firmware_type="uefi",
                                            description="d", enterprise_project_id="0",
                                            image_tags=[{"key": "k", "value": "v"}]), flags=PROJECT_HDR),
    "import-data": req("POST", IMPORT, {"name": "data", "type": "DataImage", "os_type": "Windows",
                                        "image_url": "bkt:x.raw", "min_disk": 1}, flags=PROJECT_HDR),
    "import-bad": req("POST", IMPORT, {"name": " x", "image_url": "BK:x.qcow2", "min_disk": "40",
                                       "tags": ["a"], "image_tags": []}, flags=PROJECT_HDR),
    "import-no-project": req("POST", IMPORT, IMP),
    "job": req("GET", "/v1/@P/jobs/@J"),
    "job-short": req("GET", "/v1/cloudimages/job/@J", flags=PROJECT_HDR),
    "job-other": req("GET", "/v1/@Q/jobs/@J", flags=MEMBER),
    # §5 images
    "image-create": req("POST", "/v2/images", {"name": "seed", "type": "ECS", "os_version": "Ubuntu 22.04 server 64bit",
                                               "min_disk": 40, "architecture": "x86",
                                               "image_tags": [{"key": "k", "value": "v"}]}, flags=PROJECT_HDR),
    "image-create-admin": req("POST", "/v2/images", {"name": "seed"}, flags=PROJECT_HDR | ADMIN),
    "image-get": req("GET", "/v2/images/@I", flags=PROJECT_HDR),
    "image-delete": req("DELETE", "/v2/images/@I", flags=PROJECT_HDR),
    # unknown routes and methods
    "unknown": req("GET", "/v3/nothing"),
    "wrong-method": req("PUT", TAGS),
    "options": req("OPTIONS", "/v2/images"),
}


def aksk_parts(method, path, query, headers, body, signed=SIGNED, sk=VEC["sk"], ak=VEC["ak"], auth=None):
    canon = canonical_request(method, path, query, headers, signed, body)
    sig = signature(sk, headers["x-sdk-date"], canon)
    authorization = auth or "SDK-HMAC-SHA256 Access=%s, SignedHeaders=%s, Signature=%s" % (ak, signed, sig)
    names = ["content-type", "host", "user-agent", "x-project-id", "x-sdk-date", "x-security-token"]
    parts = [method, path, query, authorization, signed] + [headers.get(n, "") for n in names]
    return b"\x00".join(p.encode("utf-8") for p in parts) + b"\x00" + body


H = dict(VEC["headers"])
P = "/v2/0605767b3a80d5762fa7c00b8e7ee5bd/images/6663f1dd-92a7-4fc3-9af7-faf8fa739834/tags"
AKSK_SEEDS = {
    "spec-vector": aksk_parts("POST", VEC["path"], "", H, VEC["body"]),
    "get-no-body": aksk_parts("GET", P, "", H, b""),
    "delete-cjk": aksk_parts("DELETE", P + "/%E9%83%A8%E9%97%A8", "", H, b""),
    "delete-slash": aksk_parts("DELETE", P + "/x%2Fy", "", H, b""),
    "query": aksk_parts("GET", "/v2/0605767b3a80d5762fa7c00b8e7ee5bd/images/tags",
                        "zeta=1&alpha=b&alpha=a&sp=a%20b&plus=a+b&flag", H, b""),
    "security-token": aksk_parts("GET", P, "", dict(H, **{"x-security-token": "tok"}), b"",
                                 signed=SIGNED + ";x-security-token"),
    "token-unsigned": aksk_parts("GET", P, "", dict(H, **{"x-security-token": "tok"}), b""),
    "date-unsigned": aksk_parts("GET", P, "", H, b"", signed="content-type;host;user-agent;x-project-id"),
    "bad-escape": aksk_parts("GET", "/a%zz/b%", "k=%", H, b""),
    "malformed-auth": aksk_parts("GET", P, "", H, b"", auth="SDK-HMAC-SHA256 Access=, Signature=xyz"),
    "binary-body": aksk_parts("POST", "/v2/images", "", H, bytes(range(256))),
}


def write(name, seeds):
    folder = os.path.join(HERE, "corpus", name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for label, data in seeds.items():
        with open(os.path.join(folder, "%s-%s" % (label, hashlib.sha1(data).hexdigest()[:8])), "wb") as f:
            f.write(data)
    print("%s: %d seeds" % (folder, len(seeds)))


if __name__ == "__main__":
    write("fuzz_request", REQUEST_SEEDS)
    write("fuzz_aksk", AKSK_SEEDS)
