-- v1_tags: the legacy IMS v1 tag calls (API.md §8), as an API variant in
-- Lua alone.  Enable with `variants = { "examples/variants/v1-tags" }` in
-- the configuration file.
--   PUT /v1/cloudimages/tags  {"image_id", "tag": "key.value"}
--                          or {"image_id", "image_tag": {"key", "value"}}  -> 204
--   GET /v1/cloudimages/tags  -> 200 {"tags": ["key.value", ..., "key"]}
-- The project is the caller's (no {project_id} in these paths).  Writes go
-- through the core create path, so the project's policy, the overwrite
-- rules and the quota are exactly those of a §1.1 batch create.
local request = require "request"
local shape = require "shape"
local tags = require "handlers.tags"

local fail = shape.fail
local value = request.value

-- "key.value" split at the first '.'; no '.' means value "" (as the
-- dotted tags of a quick import).
local function split_dotted(s)
  local dot = s:find(".", 1, true)
  if dot then return s:sub(1, dot - 1), s:sub(dot + 1) end
  return s, ""
end

-- The one tag of the body and the name it goes by in messages.
local function body_tag(body)
  local dotted, object = value(body.tag), value(body.image_tag)
  if dotted ~= nil and object ~= nil then
    fail(400, "IMG.0001", "tag and image_tag: give one or the other, not both")
  end
  if dotted ~= nil then
    if type(dotted) ~= "string" then fail(400, "IMG.0115", "tag: must be a \"key.value\" string") end
    local key, val = split_dotted(dotted)
    return { key = key, value = val }, "tag"
  end
  if object ~= nil then
    request.object(object, "image_tag")
    return { key = value(object.key), value = value(object.value) }, "image_tag"
  end
  fail(400, "IMG.0001", "tag or image_tag: one of them is required")
end

local function put_tag(ctx)
  local body = request.json_object(ctx.req)
  local image_id = request.string(body, "image_id")
  if image_id == nil or image_id == "" then fail(400, "IMG.0001", "image_id: is required") end
  local tag, field = body_tag(body)
  -- the core create path reads the image from the path parameters
  ctx.params.image_id = image_id
  return tags.create(ctx, { tag }, { field })
end

local function list_tags(ctx)
  local seen, out = {}, {}
  for _, entry in ipairs(gw.project_tags(ctx.project)) do
    for _, v in ipairs(entry.values) do
      local s = v == "" and entry.key or (entry.key .. "." .. v)
      -- "a.b" + "c" and "a" + "b.c" read the same: list the string once
      if not seen[s] then seen[s] = true; out[#out + 1] = s end
    end
  end
  table.sort(out)
  return shape.ok(200, { tags = shape.array(out) })
end

return {
  routes = {
    { method = "PUT", path = "/v1/cloudimages/tags", handler = put_tag },
    { method = "GET", path = "/v1/cloudimages/tags", handler = list_tags },
  },
}
