"""API.md §5: image registration, read, delete."""
import json
import os
import re
import sqlite3
import time

import pytest

from conftest import JSON_CT, Gateway, ims_error, random_project, run_cli

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MISSING = "00000000-0000-4000-8000-0000000000aa"


def create(gw, body, **kw):
    return gw.request("POST", "/v2/images", body, **kw)


def test_create_defaults(gw):
    st, h, js, raw = create(gw, {"name": "web server-1.0_x"})
    assert st == 201, raw
    assert h["Content-Type"] == JSON_CT
    assert UUID_RE.match(js["id"]), js["id"]
    assert len(js["id"]) == 36
    assert js["name"] == "web server-1.0_x"
    assert js["status"] == "active"
    assert js["type"] == "ECS"
    assert js["architecture"] == "x86"
    assert js["min_disk"] == 40 and isinstance(js["min_disk"], int)
    assert js["hw_firmware_type"] == "bios"
    assert js["os_type"] == "Linux"
    assert TIME_RE.match(js["created_at"]), js["created_at"]
    assert TIME_RE.match(js["updated_at"]), js["updated_at"]
    assert js["tags"] == []
    for field in ("id", "name", "status", "type", "os_version", "os_type", "min_disk", "architecture",
                  "hw_firmware_type", "created_at", "updated_at", "tags"):
        assert field in js, field


def test_created_at_is_now_utc(gw):
    st, _, js, _ = create(gw, {"name": "clock"})
    t = time.strptime(js["created_at"][:19], "%Y-%m-%dT%H:%M:%S")
    assert abs(time.mktime(t) - time.mktime(time.gmtime())) < 120


def test_ids_unique(gw):
    ids = {create(gw, {"name": "u"})[2]["id"] for _ in range(10)}
    assert len(ids) == 10


def test_create_with_all_fields_and_tags(gw):
    body = {"name": "full", "type": "BMS", "os_version": "CentOS 7.9 64bit", "min_disk": 100,
            "architecture": "x86", "hw_firmware_type": "uefi",
            "image_tags": [{"key": "z", "value": "1"}, {"key": "a", "value": ""}, {"key": "M", "value": "x.y"}]}
    st, _, js, raw = create(gw, body)
    assert st == 201, raw
    assert js["type"] == "BMS"
    assert js["os_version"] == "CentOS 7.9 64bit"
    assert js["os_type"] == "Linux"
    assert js["min_disk"] == 100
    assert js["hw_firmware_type"] == "uefi"
    assert js["tags"] == [{"key": "M", "value": "x.y"}, {"key": "a", "value": ""}, {"key": "z", "value": "1"}]
    assert gw.image_tags(js["id"]) == js["tags"]
    st, _, got, _ = gw.request("GET", "/v2/images/" + js["id"])
    assert st == 200
    assert got == js


def test_get_image(gw):
    st, _, created, _ = create(gw, {"name": "getme", "os_version": "Ubuntu 22.04 server 64bit"})
    st, h, js, raw = gw.request("GET", "/v2/images/" + created["id"])
    assert st == 200, raw
    assert h["Content-Type"] == JSON_CT
    assert js == created


def test_get_image_other_project_404(gw):
    other = gw.take_credential()
    iid = gw.create_image(token=other["token"])
    st, _, js, _ = gw.request("GET", "/v2/images/" + iid)
    assert st == 404
    ims_error(js, "IMG.0027")
    st, _, js, _ = gw.request("GET", "/v2/images/" + iid, token=other["token"])
    assert st == 200 and js["id"] == iid


def test_get_unknown_image_404(gw):
    st, _, js, _ = gw.request("GET", "/v2/images/" + MISSING)
    assert st == 404
    ims_error(js, "IMG.0027")


def test_delete_image(gw):
    cred = gw.take_credential()
    tok, proj = cred["token"], cred["project_id"]
    keep = gw.create_image(token=tok, image_tags=[{"key": "shared", "value": "keep"}])
    iid = gw.create_image(token=tok, image_tags=[{"key": "gone", "value": "1"}, {"key": "shared", "value": "del"}])
    st, _, js, _ = gw.request("GET", "/v2/%s/images/tags" % proj, token=tok)
    assert js == {"tags": [{"key": "gone", "values": ["1"]}, {"key": "shared", "values": ["del", "keep"]}]}
    st, _, _, raw = gw.request("DELETE", "/v2/images/" + iid, token=tok)
    assert st == 204 and raw == b""
    st, _, js, _ = gw.request("GET", "/v2/images/" + iid, token=tok)
    assert st == 404
    ims_error(js, "IMG.0027")
    st, _, js, _ = gw.request("GET", "/v2/%s/images/%s/tags" % (proj, iid), token=tok)
    assert st == 404
    ims_error(js, "IMG.0027")
    st, _, js, _ = gw.request("GET", "/v2/%s/images/tags" % proj, token=tok)
    assert js == {"tags": [{"key": "shared", "values": ["keep"]}]}
    st, _, js, _ = gw.batch(iid, "create", [{"key": "k", "value": "v"}], project=proj, token=tok)
    assert st == 404
    ims_error(js, "IMG.0027")
    st, _, js, _ = gw.request("DELETE", "/v2/images/" + iid, token=tok)
    assert st == 404
    ims_error(js, "IMG.0027")
    st, _, js, _ = gw.request("GET", "/v2/images/" + keep, token=tok)
    assert st == 200


def test_delete_updates_status_counts(gw):
    before = gw.status()
    iid = gw.create_image(image_tags=[{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
    mid = gw.status()
    assert mid["images"] == before["images"] + 1
    assert mid["tags"] == before["tags"] + 2
    assert gw.request("DELETE", "/v2/images/" + iid)[0] == 204
    after = gw.status()
    assert after["images"] == before["images"]
    assert after["tags"] == before["tags"]


@pytest.mark.parametrize("body,code", [
    ({}, "IMG.0013"),
    ({"name": None}, "IMG.0013"),
    ({"name": ""}, "IMG.0013"),
    ({"name": "n" * 129}, "IMG.0002"),
    ({"name": "a/b"}, "IMG.0003"),
    ({"name": " lead"}, "IMG.0003"),
    ({"name": "trail "}, "IMG.0003"),
    ({"name": "a<b"}, "IMG.0003"),
    ({"name": 123}, "IMG.0003"),
    ({"name": ["x"]}, "IMG.0003"),
    ({"name": "x", "type": "VM"}, "IMG.0024"),
    ({"name": "x", "type": "ecs"}, "IMG.0024"),
    ({"name": "x", "type": 1}, "IMG.0024"),
    ({"name": "x", "min_disk": "40"}, "IMG.0055"),
    ({"name": "x", "min_disk": 0}, "IMG.0055"),
    ({"name": "x", "min_disk": 1025}, "IMG.0055"),
    ({"name": "x", "min_disk": -1}, "IMG.0055"),
    ({"name": "x", "min_disk": 40.5}, "IMG.0055"),
    ({"name": "x", "min_disk": True}, "IMG.0055"),
    ({"name": "x", "architecture": "mips"}, "IMG.0212"),
    ({"name": "x", "architecture": "ARM"}, "IMG.0212"),
    ({"name": "x", "architecture": 64}, "IMG.0212"),
    ({"name": "x", "hw_firmware_type": "efi"}, "IMG.0141"),
    ({"name": "x", "os_version": "CentOS 6 64bit"}, "IMG.0056"),
    ({"name": "x", "os_version": "centos 7.9 64bit"}, "IMG.0056"),
    ({"name": "x", "os_version": 7}, "IMG.0056"),
    ({"name": "x", "image_tags": [{"key": "bad key", "value": "v"}]}, "IMG.0115"),
    ({"name": "x", "image_tags": [{"key": "k"}]}, "IMG.0115"),
    ({"name": "x", "image_tags": [{"key": "k", "value": "v"}, {"key": "k", "value": "w"}]}, "IMG.0115"),
    ({"name": "x", "image_tags": [{"key": "k%d" % i, "value": "v"} for i in range(11)]}, "IMG.0116"),
    ({"name": "x", "image_tags": "k=v"}, "IMG.0001"),
])
def test_create_field_errors(gw, body, code):
    before = gw.status()["images"]
    st, h, js, raw = create(gw, body)
    assert st == 400, raw
    ims_error(js, code)
    assert gw.status()["images"] == before


def test_create_error_names_field(gw):
    for body, field in [({"name": "a/b"}, "name"), ({"name": "x", "min_disk": "40"}, "min_disk"),
                        ({"name": "x", "type": "VM"}, "type"), ({"name": "x", "architecture": "mips"}, "architecture"),
                        ({"name": "x", "os_version": "nope"}, "os_version"),
                        ({"name": "x", "image_tags": [{"key": "ok", "value": "1"}, {"key": "a b", "value": "1"}]},
                         "image_tags[1].key")]:
        st, _, js, _ = create(gw, body)
        assert st == 400
        assert field in js["error"]["message"], (field, js)


@pytest.mark.parametrize("min_disk", [1, 1024, 40])
def test_min_disk_bounds_accepted(gw, min_disk):
    st, _, js, raw = create(gw, {"name": "md", "min_disk": min_disk})
    assert st == 201, raw
    assert js["min_disk"] == min_disk


def test_name_128_accepted(gw):
    st, _, js, raw = create(gw, {"name": "n" * 128})
    assert st == 201, raw
    assert js["name"] == "n" * 128


@pytest.mark.parametrize("typ", ["ECS", "BMS", "DataImage"])
def test_types_accepted(gw, typ):
    st, _, js, raw = create(gw, {"name": "t", "type": typ})
    assert st == 201, raw
    assert js["type"] == typ


def test_arm_forces_uefi(gw):
    st, _, js, raw = create(gw, {"name": "arm", "architecture": "arm"})
    assert st == 201, raw
    assert js["architecture"] == "arm" and js["hw_firmware_type"] == "uefi"
    st, _, js, raw = create(gw, {"name": "arm2", "architecture": "arm", "hw_firmware_type": "bios"})
    assert st == 201, raw
    assert js["hw_firmware_type"] == "uefi"
    st, _, js, _ = gw.request("GET", "/v2/images/" + js["id"])
    assert js["hw_firmware_type"] == "uefi"


def test_x86_uefi_kept(gw):
    st, _, js, raw = create(gw, {"name": "x", "architecture": "x86", "hw_firmware_type": "uefi"})
    assert st == 201, raw
    assert js["hw_firmware_type"] == "uefi"


@pytest.mark.parametrize("os_version,os_type", [
    ("Windows Server 2019 Standard 64bit", "Windows"),
    ("Windows Server 2022 Standard 64bit", "Windows"),
    ("CentOS 7.0 64bit", "Linux"),
    ("Debian GNU/Linux 12.0.0 64bit", "Linux"),
    ("openEuler 22.03 64bit", "Linux"),
    ("Huawei Cloud EulerOS 2.0 64bit", "Linux"),
    ("Other Linux(64 bit)", "Linux"),
])
def test_os_version_sets_os_type(gw, os_version, os_type):
    st, _, js, raw = create(gw, {"name": "os", "os_version": os_version})
    assert st == 201, raw
    assert js["os_version"] == os_version
    assert js["os_type"] == os_type


def test_image_tags_ten_accepted(gw):
    tags = [{"key": "k%d" % i, "value": "v"} for i in range(10)]
    st, _, js, raw = create(gw, {"name": "ten", "image_tags": tags})
    assert st == 201, raw
    assert js["tags"] == tags
    assert len(gw.image_tags(js["id"])) == 10


def test_updated_at_changes_on_tag_change(gw):
    st, _, js, _ = create(gw, {"name": "upd"})
    iid, t0 = js["id"], js["updated_at"]
    assert js["created_at"] == t0 or js["created_at"] <= t0
    stamps = [t0]
    for action in [lambda: gw.batch(iid, "create", [{"key": "a", "value": "1"}]),
                   lambda: gw.batch(iid, "create", [{"key": "a", "value": "2"}]),
                   lambda: gw.request("POST", gw.tags_path(iid), {"tag": {"key": "b", "value": "1"}}),
                   lambda: gw.request("DELETE", gw.tags_path(iid) + "/b"),
                   lambda: gw.batch(iid, "delete", [{"key": "a"}])]:
        time.sleep(0.005)
        assert action()[0] == 204
        st, _, js, _ = gw.request("GET", "/v2/images/" + iid)
        assert TIME_RE.match(js["updated_at"])
        assert js["updated_at"] > stamps[-1], (stamps, js["updated_at"])
        stamps.append(js["updated_at"])
    assert js["created_at"] == t0 or js["created_at"] < stamps[-1]


def test_register_names_a_duplicate_before_the_quota(gw):
    """§5: tags obey §1.1 create, where a duplicate key is named (IMG.0115)
    before the count is held against the quota."""
    st, _, js, raw = gw.request("POST", "/v2/images", {
        "name": "dups", "image_tags": [{"key": "a", "value": "1"}] * 11})
    assert st == 400, raw
    assert ims_error(js, "IMG.0115").startswith("image_tags[1].key: duplicate"), js
    st, _, js, raw = gw.request("POST", "/v2/images", {
        "name": "many", "image_tags": [{"key": "k%d" % i, "value": "1"} for i in range(11)]})
    assert st == 400, raw
    ims_error(js, "IMG.0116")


def test_register_ignores_the_import_only_fields(gw):
    """description and enterprise_project_id are §3's (quick import); §5
    does not list them, and unknown fields are ignored (§0)."""
    for extra in ({"description": "<b>"}, {"description": 5}, {"enterprise_project_id": "nope"}):
        st, _, js, raw = gw.request("POST", "/v2/images", dict({"name": "reg"}, **extra))
        assert st == 201, (extra, raw)


def test_a_loaded_image_reads_with_the_registration_defaults(gw, tmp_path):
    """`tagway load` stores no attributes (§7 checks structure only); a
    loaded image must read like one registered without them (§5, §9), not
    with nulls, and so must one whose stored attributes cannot be decoded."""
    project, iid, bad, nulls = random_project(), "11111111-1111-4111-8111-111111111111", \
        "22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333"
    lines = tmp_path / "load.jsonl"
    lines.write_text("".join(json.dumps({"id": i, "project_id": project, "name": n, "tags": []}) + "\n"
                             for i, n in ((iid, "loaded"), (bad, "broken"), (nulls, "nulls"))))
    g = Gateway(str(tmp_path / "gw"), auth="off")
    os.makedirs(os.path.dirname(g.db))
    p = run_cli("load", "--db", g.db, str(lines))
    assert p.returncode == 0, p.stderr
    con = sqlite3.connect(g.db)
    with con:
        con.execute("UPDATE images SET attrs = 'not json' WHERE id = ?", (bad,))
        # nulls stored by a variant or by hand are absent, as in a request (§9)
        con.execute("""UPDATE images SET attrs = '{"type": "BMS", "os_version": null, "min_disk": null,
                       "architecture": null, "os_type": null, "hw_firmware_type": null}' WHERE id = ?""",
                    (nulls,))
    con.close()
    g.start()
    try:
        st, _, registered, raw = g.request("POST", "/v2/images", {"name": "registered"},
                                           headers={"X-Project-Id": project})
        assert st == 201, raw
        attrs = ("type", "os_version", "os_type", "min_disk", "architecture", "hw_firmware_type")
        want = {a: registered[a] for a in attrs}
        assert want == {"type": "ECS", "os_version": None, "os_type": "Linux", "min_disk": 40,
                        "architecture": "x86", "hw_firmware_type": "bios"}, want
        for i, name in ((iid, "loaded"), (bad, "broken")):
            st, _, js, raw = g.request("GET", "/v2/images/" + i, headers={"X-Project-Id": project})
            assert st == 200, raw
            assert js["name"] == name and js["status"] == "active", js
            assert {a: js[a] for a in attrs} == want, js
        st, _, js, raw = g.request("GET", "/v2/images/" + nulls, headers={"X-Project-Id": project})
        assert st == 200, raw
        assert {a: js[a] for a in attrs} == dict(want, type="BMS"), js
    finally:
        g.kill9()
