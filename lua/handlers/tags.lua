-- handlers/tags: the image tag calls of API.md §1: batch create/delete,
-- add one, delete one, tags of an image, tags of a project.  Validation and
-- policy first (400), then the image (404), then merge rules and quota.
local policy = require "policy"
local request = require "request"
local shape = require "shape"

-- globals read per request, as locals: each global read is a lookup
-- through the locked _G
local ipairs, pairs, assert, string, math, table, gw = ipairs, pairs, assert, string, math, table, gw

local tags = {}
local fail = shape.fail

local function fail_tag(message) fail(400, "IMG.0115", message) end

-- The image's tags (key -> value, their count, and the image's seq) for a
-- read-check-write.  locked: gw.write_begin first, so what is read is what
-- the write will change (no other request writes in between, and writes of
-- requests not yet committed are seen).
local function current_tags(ctx, locked)
  if locked then gw.write_begin() end
  local map, n, seq = gw.image_tag_map(ctx.project, ctx.params.image_id)
  if not map then
    fail(404, "IMG.0027", "image " .. ctx.params.image_id .. " not found")
  end
  return map, n, seq
end

-- Validates the tags of a create and writes them (shared by batch create,
-- add one, and the variants).  fields[i] names tag i in messages.
-- The merge rules are judged on the tags read without holding the writer
-- (others write meanwhile); the write goes through only if the image still
-- holds exactly those tags, else the whole decision is made again holding
-- the writer (locked), on the latest tags.
function tags.create(ctx, list, fields, locked)
  local pol = policy.for_project(ctx.project)
  -- the body's field the quota messages name: "tag" for add one
  local list_field = (fields[1] or "tags"):match("^[^%[%.]+") or "tags"
  local seen = {}
  for i, tag in ipairs(list) do
    local err = policy.check_tag(pol, tag, fields[i], ctx.caller)
    if err then fail_tag(err) end
    if seen[tag.key] then
      fail_tag(fields[i] .. ".key: duplicate key '" .. tag.key .. "' in the request (policy " .. pol.name .. ")")
    end
    seen[tag.key] = true
  end
  local current, count, seq = current_tags(ctx, locked)
  local err = policy.check_merge(pol, current, list, fields, ctx.caller)
  if err then fail_tag(err) end
  for _, tag in ipairs(list) do
    if current[tag.key] == nil then count = count + 1 end
  end
  if count > pol.max_tags then
    fail(400, "IMG.0116", string.format("%s: the image would hold %d tags, more than the %d allowed (policy %s)",
                                        list_field, count, pol.max_tags, pol.name))
  end
  -- list holds {key, value} tables (checked above); the hook saw copies.
  -- seq spares the store looking the image up by id again (it checks it)
  local ok, why = gw.tags_apply(ctx.project, ctx.params.image_id, list, {}, pol.max_tags, current, seq)
  if not ok and why == "conflict" then
    assert(not locked, "tags changed while the writer was held")
    return tags.create(ctx, list, fields, true)
  elseif not ok and why == "quota" then
    fail(400, "IMG.0116", list_field .. ": the image would hold more than " .. pol.max_tags .. " tags (policy "
                          .. pol.name .. ")")
  elseif not ok then
    fail(404, "IMG.0027", "image " .. ctx.params.image_id .. " not found")
  end
  return shape.no_content()
end

local function delete_tags(ctx, list, fields)
  local pol = policy.for_project(ctx.project)
  local seen = {}
  for i, tag in ipairs(list) do
    local err = policy.check_delete_tag(pol, tag, fields[i])
    if err then fail_tag(err) end
    if seen[tag.key] then
      fail_tag(fields[i] .. ".key: duplicate key '" .. tag.key .. "' in the request (policy " .. pol.name .. ")")
    end
    seen[tag.key] = i
  end
  local current = current_tags(ctx, true)
  -- Holding the writer, which every worker's writes wait for: the image's
  -- own tags (about its quota) are looked up in the request, not each of
  -- up to ~50,000 entries in the image; in request order, as before.
  local hits, del = {}, {}
  for key in pairs(current) do
    hits[#hits + 1] = seen[key]
  end
  table.sort(hits)
  for _, i in ipairs(hits) do
    local tag = list[i]
    if not pol.delete.match_value or tag.value == nil or tag.value == current[tag.key] then
      local err = policy.check_removal(pol, tag.key, fields[i] .. ".key", ctx.caller)
      if err then fail_tag(err) end
      del[#del + 1] = tag.key
    end
  end
  if del[1] and not gw.tags_apply(ctx.project, ctx.params.image_id, {}, del) then
    fail(404, "IMG.0027", "image " .. ctx.params.image_id .. " not found")
  end
  return shape.no_content()
end

-- The request's tags, each checked to be an object, with field names.
-- A create longer than any image may hold (the policy's quota, and at
-- least request.MAX_TAGS) is refused before any per-entry work: it cannot
-- succeed, and the quota answer stands for the whole list (an unknown
-- image is still 404 first, as the quota comes after the image, API.md
-- §9; the lookup is cheap).  A delete has no such bound (API.md sets none:
-- deleting absent keys succeeds), so a 1 MiB body of ~50,000 keys is
-- checked entry by entry, ~150 ms of its worker.
local function tag_list(ctx, body, action)
  local list = request.array(body, "tags")
  if list == nil or list[1] == nil then
    fail(400, "IMG.0001", "tags: is required and must be a non-empty array")
  end
  local pol = policy.for_project(ctx.project)
  if action == "create" and #list > math.max(pol.max_tags, request.MAX_TAGS) then
    current_tags(ctx)
    fail(400, "IMG.0116", string.format("tags: %d tags, more than the %d allowed (policy %s)",
                                        #list, pol.max_tags, pol.name))
  end
  local out, fields = {}, {}
  for i, t in ipairs(list) do
    local field = "tags[" .. (i - 1) .. "]"
    request.object(t, field)
    out[i] = { key = request.value(t.key), value = request.value(t.value) }
    fields[i] = field
  end
  return out, fields
end

-- POST /v2/{project_id}/images/{image_id}/tags/action
function tags.batch(ctx)
  local body = request.json_object(ctx.req)
  local action = request.value(body.action)
  if action ~= "create" and action ~= "delete" then
    fail(400, "IMG.0001", "action: is required and must be 'create' or 'delete'")
  end
  local list, fields = tag_list(ctx, body, action)
  if action == "create" then return tags.create(ctx, list, fields) end
  return delete_tags(ctx, list, fields)
end

-- POST /v2/{project_id}/images/{image_id}/tags
function tags.add_one(ctx)
  local body = request.json_object(ctx.req)
  local tag = request.value(body.tag)
  if tag == nil then fail(400, "IMG.0001", "tag: is required") end
  request.object(tag, "tag")
  return tags.create(ctx, { { key = request.value(tag.key), value = request.value(tag.value) } }, { "tag" })
end

-- DELETE /v2/{project_id}/images/{image_id}/tags/{key}: not idempotent.
function tags.delete_one(ctx)
  local key = ctx.params.key
  local pol = policy.for_project(ctx.project)
  local current = current_tags(ctx, true)
  if current[key] == nil then
    fail(404, "IMG.0115", "tag key '" .. key .. "' not found on image " .. ctx.params.image_id)
  end
  local err = policy.check_removal(pol, key, "key", ctx.caller)
  if err then fail_tag(err) end
  if not gw.tags_apply(ctx.project, ctx.params.image_id, {}, { key }) then
    fail(404, "IMG.0027", "image " .. ctx.params.image_id .. " not found")
  end
  return shape.no_content()
end

-- GET /v2/{project_id}/images/{image_id}/tags
-- The hottest read: the tags come as JSON text from C (no Lua table per
-- tag); a variant that reshapes them can use gw.image_tags instead.
function tags.of_image(ctx)
  local list = gw.image_tags_json(ctx.project, ctx.params.image_id)
  if not list then fail(404, "IMG.0027", "image " .. ctx.params.image_id .. " not found") end
  return shape.json(200, '{"tags":' .. list .. '}')
end

-- GET /v2/{project_id}/images/tags
-- As JSON text from C: a project can hold a million values, and a Lua
-- string each would not fit the script's memory cap (a variant that
-- reshapes them can use gw.project_tags, within that cap).
function tags.of_project(ctx)
  return shape.json(200, '{"tags":' .. gw.project_tags_json(ctx.project) .. '}')
end

return tags
