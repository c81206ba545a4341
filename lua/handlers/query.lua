-- handlers/query: POST /v2/{project_id}/images/resource_instances/action
-- (API.md §2).  Validates every rule (400 IMG.0001 naming the field), then
-- asks the C tag index through gw.query and shapes the answer.
local request = require "request"
local shape = require "shape"
local text = require "text"

local query = {}
local fail = shape.fail
local value = request.value

local MAX_ENTRIES, MAX_VALUES, KEY_MAX, VALUE_MAX, LIMIT_MAX = 10, 10, 127, 255, 1000
local TAG_FIELDS = { "tags", "tags_any", "not_tags", "not_tags_any" }

local function bad(message) fail(400, "IMG.0001", message) end

local is_array = request.is_array

local function check_string(v, field, max)
  if type(v) ~= "string" then bad(field .. ": must be a string") end
  if v:find("\0", 1, true) then bad(field .. ": must not contain NUL characters") end
  local n = text.length(v)
  if not n then bad(field .. ": is not valid UTF-8") end
  if n > max then bad(field .. ": must be at most " .. max .. " characters") end
  return v
end

-- One of tags/tags_any/not_tags/not_tags_any -> {{key, values}} or nil.
local function tag_entries(body, field)
  local list = value(body[field])
  if list == nil then return nil end
  if not is_array(list) or list[1] == nil then bad(field .. ": must be a non-empty array") end
  if #list > MAX_ENTRIES then bad(field .. ": must have at most " .. MAX_ENTRIES .. " entries") end
  local out, keys = {}, {}
  for i, e in ipairs(list) do
    local name = field .. "[" .. (i - 1) .. "]"
    if type(e) ~= "table" or e[1] ~= nil then bad(name .. ": must be an object") end
    local key = check_string(value(e.key), name .. ".key", KEY_MAX)
    if text.is_blank(key) then bad(name .. ".key: must not be blank") end
    if keys[key] then bad(name .. ".key: duplicate key '" .. key .. "'") end
    keys[key] = true
    local values = value(e.values)
    if values == nil then bad(name .. ".values: is required") end
    if not is_array(values) then bad(name .. ".values: must be an array") end
    if #values > MAX_VALUES then bad(name .. ".values: must have at most " .. MAX_VALUES .. " values") end
    local seen, vals = {}, {}
    for j, v in ipairs(values) do
      local vname = name .. ".values[" .. (j - 1) .. "]"
      check_string(v, vname, VALUE_MAX)
      if seen[v] then bad(vname .. ": duplicate value '" .. v .. "'") end
      seen[v] = true
      vals[j] = v
    end
    out[i] = { key = key, values = vals }
  end
  return out
end

local function matches(body, q)
  local list = value(body.matches)
  if list == nil then return end
  if not is_array(list) or list[1] == nil then bad("matches: must be a non-empty array") end
  local seen = {}
  for i, m in ipairs(list) do
    local name = "matches[" .. (i - 1) .. "]"
    if type(m) ~= "table" or m[1] ~= nil then bad(name .. ": must be an object") end
    local key = value(m.key)
    if key ~= "resource_name" and key ~= "resource_id" then
      bad(name .. ".key: must be 'resource_name' or 'resource_id'")
    end
    if seen[key] then bad(name .. ".key: duplicate key '" .. key .. "'") end
    seen[key] = true
    q[key] = check_string(value(m.value), name .. ".value", VALUE_MAX)
  end
end

-- limit/offset: an integer or a string of decimal digits (API.md §9).
local function integer_field(body, field, default, min, max)
  local v = value(body[field])
  if v == nil then return default end
  local n
  if type(v) == "string" then
    if not v:find("^%d+$") or #v > 15 then bad(field .. ": must be an integer") end
    n = tonumber(v)
  elseif math.type(v) == "integer" then
    n = v
  elseif math.type(v) == "float" and v == math.floor(v) and v >= -1e15 and v <= 1e15 then
    n = math.tointeger(v)
  else
    bad(field .. ": must be an integer")
  end
  if n < min or (max and n > max) then
    bad(field .. ": must be " .. (max and ("from " .. min .. " to " .. max) or ("at least " .. min)))
  end
  return n
end

-- The decoded, validated query for gw.query.
function query.parse(body)
  local action = value(body.action)
  if action ~= "filter" and action ~= "count" then bad("action: is required and must be 'filter' or 'count'") end
  local q = { count = action == "count" }
  for _, field in ipairs(TAG_FIELDS) do q[field] = tag_entries(body, field) end
  q.without_any_tag = request.boolean(body, "without_any_tag") == true
  if q.without_any_tag then
    for _, field in ipairs(TAG_FIELDS) do q[field] = nil end
  end
  matches(body, q)
  if not q.count then
    q.limit = integer_field(body, "limit", 10, 1, LIMIT_MAX)
    q.offset = integer_field(body, "offset", 0, 0, nil)
  end
  return q
end

function query.action(ctx)
  local body = request.json_object(ctx.req)
  local q = query.parse(body)
  if q.count then
    return shape.ok(200, { total_count = gw.query(ctx.project, q) })
  end
  local total, images = gw.query(ctx.project, q)
  local resources = {}
  for i, im in ipairs(images) do
    resources[i] = {
      resource_id = im.id, resource_name = im.name,
      resource_detail = { status = im.status },
      tags = shape.array(im.tags),
    }
  end
  return shape.ok(200, { total_count = total, resources = shape.array(resources) })
end

return query
