-- handlers/query: POST /v2/{project_id}/images/resource_instances/action
-- (API.md §2).  Validates every rule (400 IMG.0001 naming the field), then
-- asks the C tag index through gw.query and shapes the answer.
local request = require "request"
local shape = require "shape"
local text = require "text"

-- globals read per request, as locals: each global read is a lookup
-- through the locked _G
local type, ipairs, tonumber, math, gw = type, ipairs, tonumber, math, gw

local query = {}
local fail = shape.fail
local value = request.value

local MAX_ENTRIES, MAX_VALUES, KEY_MAX, VALUE_MAX, LIMIT_MAX = 10, 10, 127, 255, 1000
local TAG_FIELDS = { "tags", "tags_any", "not_tags", "not_tags_any" }

local function bad(message) fail(400, "IMG.0001", message) end

local is_array = request.is_array

local function check_string(v, field, max)
  if type(v) ~= "string" then bad(field .. ": must be a string") end
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
    request.object(e, name)
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
    request.object(m, name)
    local key = value(m.key)
    if key ~= "resource_name" and key ~= "resource_id" then
      bad(name .. ".key: must be 'resource_name' or 'resource_id'")
    end
    if seen[key] then bad(name .. ".key: duplicate key '" .. key .. "'") end
    seen[key] = true
    q[key] = check_string(value(m.value), name .. ".value", VALUE_MAX)
  end
end

-- limit/offset: an integer or a string of decimal digits (API.md §9), of
-- any length: leading zeros do not count, and a number past what Lua holds
-- is clamped (an offset that large pages past every image; a limit that
-- large is out of range either way).  cjson gives JSON numbers as floats.
local function integer_field(body, field, default, min, max)
  local v = value(body[field])
  if v == nil then return default end
  local n
  if type(v) == "string" then
    if not v:find("^%d+$") then bad(field .. ": must be an integer") end
    local digits = v:gsub("^0+", "")
    if digits == "" then n = 0
    elseif #digits > 18 then n = math.maxinteger
    else n = tonumber(digits) end
  elseif math.type(v) == "integer" then
    n = v
  elseif math.type(v) == "float" and v == math.floor(v) then
    n = v >= 2^63 and math.maxinteger or v < -2^63 and math.mininteger or math.tointeger(v)
  else
    bad(field .. ": must be an integer")
  end
  if n < min or (max and n > max) then
    bad(field .. ": must be " .. (max and ("from " .. min .. " to " .. max) or ("at least " .. min)))
  end
  return n
end

-- A NUL in a key, value, id or name is no error (API.md §2 checks no
-- character set), but nothing stored holds one (the write rules refuse
-- them), so such a term matches no image.  It is folded away here: the C
-- index takes C strings, where a NUL would cut the term short.
local function has_nul(s) return s:find("\0", 1, true) ~= nil end

-- The entry with the values that can match, or false when it matches none.
local function matchable(e)
  if has_nul(e.key) then return false end
  if #e.values == 0 then return e end
  local vals = {}
  for _, v in ipairs(e.values) do
    if not has_nul(v) then vals[#vals + 1] = v end
  end
  return #vals > 0 and { key = e.key, values = vals }
end

-- Sets q.none when the query can match nothing.
local function fold_nul(q)
  for i, e in ipairs(q.tags or {}) do
    local m = matchable(e)
    if m then q.tags[i] = m else q.none = true end  -- AND with a term never true
  end
  for _, field in ipairs({ "tags_any", "not_tags_any" }) do
    if q[field] then
      local kept = {}
      for _, e in ipairs(q[field]) do
        local m = matchable(e)
        if m then kept[#kept + 1] = m end
      end
      if #kept > 0 then q[field] = kept
      elseif field == "tags_any" then q.none = true  -- OR of nothing
      else q[field] = nil end                         -- NOT(OR of nothing) excludes nothing
    end
  end
  if q.not_tags then                                  -- NOT(AND with a term never true)
    local all = {}                                    -- excludes nothing
    for i, e in ipairs(q.not_tags) do
      local m = matchable(e)
      if not m then all = nil break end
      all[i] = m
    end
    q.not_tags = all
  end
  if (q.resource_id and has_nul(q.resource_id)) or (q.resource_name and has_nul(q.resource_name)) then
    q.none = true
  end
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
  fold_nul(q)
  return q
end

function query.action(ctx)
  local body = request.json_object(ctx.req)
  local q = query.parse(body)
  if q.none then
    return shape.ok(200, q.count and { total_count = 0 } or { total_count = 0, resources = shape.array({}) })
  end
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
