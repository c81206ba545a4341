-- handlers/import: POST /v2/cloudimages/quickimport/action (API.md §3).
-- Validates every field with its IMS code, applies the project's tag
-- policy to the tags, enforces the per-project running-job limit, and
-- writes the queued image and the INIT job in one transaction.
local cjson = require "cjson"
local fields = require "image_fields"
local images = require "handlers.images"
local policy = require "policy"
local request = require "request"
local shape = require "shape"

local import = {}
local fail = shape.fail
local value = request.value

local BUCKET = "^[a-z0-9.%-]+$"

local function image_url(body, rules)
  local v = value(body.image_url)
  if type(v) ~= "string" or not v:find(":", 1, true) then
    fail(400, "IMG.0017", "image_url: is required as 'bucket:object'")
  end
  local bucket, object = v:match("^([^:]*):(.*)$")
  if #bucket < 3 or #bucket > 63 or not bucket:find(BUCKET) then
    fail(400, "IMG.0109", "image_url: bucket must be 3-63 characters of a-z, 0-9, '-' or '.'")
  end
  local lowered, ok = object:lower(), false
  for _, ending in ipairs(rules.formats) do
    if lowered:sub(-#ending) == ending:lower() then ok = true end
  end
  if not ok then
    fail(400, "IMG.0057", "image_url: object must end in " .. table.concat(rules.formats, " or "))
  end
  return v, bucket, object
end

-- tags: ["key.value", ...] split at the first '.'; no '.' means value "".
local function dotted_tags(body)
  local list = value(body.tags)
  if list == nil then return nil end
  if not request.is_array(list) then
    fail(400, "IMG.0001", "tags: must be an array of \"key.value\" strings")
  end
  local out, names = {}, {}
  for i, s in ipairs(list) do
    names[i] = "tags[" .. (i - 1) .. "]"
    if type(s) ~= "string" then fail(400, "IMG.0115", names[i] .. ": must be a \"key.value\" string") end
    local dot = s:find(".", 1, true)
    if dot then out[i] = { key = s:sub(1, dot - 1), value = s:sub(dot + 1) }
    else out[i] = { key = s, value = "" } end
  end
  return out, names
end

function import.action(ctx)
  local body = request.json_object(ctx.req)
  local pol = policy.for_project(ctx.project)
  local rules = policy.import_rules(pol)
  local a = fields.attributes(body, rules, { os_version_required = true, import = true })
  local url = image_url(body, rules)
  if value(body.tags) ~= nil and value(body.image_tags) ~= nil then
    fail(400, "IMG.0001", "tags and image_tags: give one or the other, not both")
  end
  images.check_count(pol, body, "tags")
  images.check_count(pol, body, "image_tags")
  local list, names, field = dotted_tags(body)
  field = "tags"
  if list == nil then list, names = fields.image_tags(body); field = "image_tags" end
  list = images.check_new_tags(ctx, pol, list, names or {}, field)
  local too_many = string.format("too many import jobs running in this project (at most %d)",
                                 rules.max_running_jobs)
  local params = cjson.encode({ image_url = url, min_disk = a.min_disk, type = a.type })
  local kind = a.type == "DataImage" and "imsImportDataImageJob" or "imsImportImageJob"
  -- the limit is checked again inside the write transaction, where two
  -- workers submitting at once cannot both take the last place
  local job_id, why = gw.import_submit(ctx.project, { name = a.name, attrs = images.encode_attrs(a),
                                                      kind = kind, params = params }, list,
                                       rules.max_running_jobs)
  if not job_id and why == "quota" then fail(400, "IMG.0194", too_many) end
  return shape.ok(200, { job_id = job_id })
end

return import
