"""A request is one transaction even when its script writes more than once:
a handler that writes and then fails leaves nothing behind, in storage or
in the index."""
import re

from conftest import ims_error


def add_route(g, lua_route):
    path = g.script("routes.lua")
    with open(path, encoding="utf-8") as f:
        src = f.read()
    src = src.rstrip().rstrip("}") + lua_route + "\n}\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(src)


def test_write_then_error_leaves_nothing(gateway):
    g = gateway
    image = g.create_image(image_tags=[{"key": "keep", "value": "1"}])
    # a handler that writes a tag, then fails: first with a script error
    # (500), then with a handled 4xx after the write
    with open(g.script("handlers/twice.lua"), "w", encoding="utf-8") as f:
        f.write('''local shape = require "shape"
local twice = {}
function twice.boom(ctx)
  assert(gw.tags_apply(ctx.project, ctx.params.image_id, {{key = "half", value = "x"}}, {}, 10))
  error("fails after writing")
end
function twice.reject(ctx)
  assert(gw.tags_apply(ctx.project, ctx.params.image_id, {{key = "half", value = "y"}}, {}, 10))
  shape.fail(400, "IMG.0115", "rejected after writing")
end
function twice.ok(ctx)
  assert(gw.tags_apply(ctx.project, ctx.params.image_id, {{key = "one", value = "1"}}, {}, 10))
  assert(gw.tags_apply(ctx.project, ctx.params.image_id, {{key = "two", value = "2"}}, {}, 10))
  return shape.no_content()
end
return twice
''')
    add_route(g, '  { method = "POST", path = "/test/{project_id}/{image_id}/boom", handler = "twice.boom" },\n'
                 '  { method = "POST", path = "/test/{project_id}/{image_id}/reject", handler = "twice.reject" },\n'
                 '  { method = "POST", path = "/test/{project_id}/{image_id}/ok", handler = "twice.ok" },')
    st, _, js, _ = g.reload()
    assert st == 200, js
    base = "/test/%s/%s" % (g.project, image)

    st, _, js, _ = g.request("POST", base + "/boom")
    assert st == 500
    ims_error(js, "IMG.0061")
    st, _, js, _ = g.request("POST", base + "/reject")
    assert st == 400
    ims_error(js, "IMG.0115")
    assert g.image_tags(image) == [{"key": "keep", "value": "1"}]
    q = {"action": "count", "tags": [{"key": "half", "values": []}]}
    st, _, js, _ = g.request("POST", "/v2/%s/images/resource_instances/action" % g.project, q)
    assert st == 200 and js == {"total_count": 0}

    st, _, _, _ = g.request("POST", base + "/ok")
    assert st == 204
    assert [t["key"] for t in g.image_tags(image)] == ["keep", "one", "two"]

    # and it survives a crash and restart as acknowledged
    g.kill9()
    g.start()
    assert [t["key"] for t in g.image_tags(image)] == ["keep", "one", "two"]
