-- handlers/images: image registration, read and delete (API.md §5).  The
-- gateway stores metadata only; attributes other than id, name and status
-- are kept as one JSON document the scripts own.
local cjson = require "cjson"
local fields = require "image_fields"
local policy = require "policy"
local request = require "request"
local shape = require "shape"

-- globals read per request, as locals: each global read is a lookup
-- through the locked _G
local type, ipairs, pcall, string, math, gw = type, ipairs, pcall, string, math, gw

local images = {}
local fail = shape.fail

local ATTRS = { "type", "os_version", "os_type", "min_disk", "architecture", "hw_firmware_type",
                "description", "enterprise_project_id" }

-- A list far longer than any quota is refused before any per-tag work (a
-- huge array must not hold the loop); up to that, the tags are checked
-- first and the count after, as §1.1 create does (a duplicate key is named
-- before the quota).
function images.check_count(pol, body, field)
  local list = request.value(body[field])
  if type(list) == "table" and #list > math.max(pol.max_tags, request.MAX_TAGS) then
    fail(400, "IMG.0116", string.format("%s: %d tags, more than the %d allowed (policy %s)",
                                        field, #list, pol.max_tags, pol.name))
  end
end

-- Validates tags of a new image against the write policy.
function images.check_new_tags(ctx, pol, list, names, field)
  local seen = {}
  list = list or {}
  for i, tag in ipairs(list) do
    local err = policy.check_tag(pol, tag, names[i], ctx.caller)
    if err then fail(400, "IMG.0115", err) end
    if seen[tag.key] then
      fail(400, "IMG.0115", names[i] .. ".key: duplicate key '" .. tag.key .. "' (policy " .. pol.name .. ")")
    end
    seen[tag.key] = true
  end
  -- a new image starts empty: the quota is the list's length
  if #list > pol.max_tags then
    fail(400, "IMG.0116", string.format("%s: %d tags, more than the %d allowed (policy %s)",
                                        field, #list, pol.max_tags, pol.name))
  end
  local err = policy.check_merge(pol, {}, list, names, ctx.caller)
                or policy.check_required(pol, list, field)
  if err then fail(400, "IMG.0115", err) end
  return list
end

function images.encode_attrs(a)
  local out = {}
  for _, k in ipairs(ATTRS) do out[k] = a[k] end
  return cjson.encode(out)
end

-- The image object of API.md §5.
function images.view(im)
  local ok, a = pcall(cjson.decode, im.attrs)
  if not ok or type(a) ~= "table" then a = {} end
  a = fields.stored(a)
  return {
    id = im.id, name = im.name, status = im.status,
    type = a.type, os_version = a.os_version == nil and cjson.null or a.os_version,
    os_type = a.os_type, min_disk = a.min_disk, architecture = a.architecture,
    hw_firmware_type = a.hw_firmware_type,
    created_at = im.created_at, updated_at = im.updated_at,
    tags = shape.array(im.tags),
  }
end

-- POST /v2/images
function images.create(ctx)
  local body = request.json_object(ctx.req)
  local pol = policy.for_project(ctx.project)
  local a = fields.attributes(body, policy.import_rules(pol), { min_disk_default = fields.DEFAULTS.min_disk })
  images.check_count(pol, body, "image_tags")
  local list, names = fields.image_tags(body)
  list = images.check_new_tags(ctx, pol, list, names, "image_tags")
  local id = gw.image_create(ctx.project, { name = a.name, status = "active", attrs = images.encode_attrs(a) }, list)
  local im = gw.image_get(ctx.project, id)
  return shape.ok(201, images.view(im))
end

-- GET /v2/images/{image_id}
function images.get(ctx)
  local im = gw.image_get(ctx.project, ctx.params.image_id)
  if not im then fail(404, "IMG.0027", "image " .. ctx.params.image_id .. " not found") end
  return shape.ok(200, images.view(im))
end

-- DELETE /v2/images/{image_id}
function images.delete(ctx)
  if not gw.image_delete(ctx.project, ctx.params.image_id) then
    fail(404, "IMG.0027", "image " .. ctx.params.image_id .. " not found")
  end
  return shape.no_content()
end

return images
