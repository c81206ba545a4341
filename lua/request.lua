-- request: reading what the client sent: the JSON body (API.md §0: empty
-- -> IMG.0007, not UTF-8 or not JSON or not an object -> IMG.0001), JSON
-- null as absent, and typed field access that names the field on error.
local cjson = require "cjson"
local shape = require "shape"

local request = {}

cjson.decode_max_depth(32)
cjson.decode_invalid_numbers(false)
cjson.encode_sparse_array(true)

local NULL = cjson.null
local fail = shape.fail
-- lua-cjson 2.1 decodes {} and [] to the same empty table; the raw text of
-- each decoded body is kept (weakly) so an empty object can be told apart.
local raw_of = setmetatable({}, { __mode = "k" })

-- A JSON null counts as an absent field (API.md §9).
function request.value(v)
  if v == NULL then return nil end
  return v
end

-- The decoded body object; raises a failure for the §0 cases.
function request.json_object(req)
  local body = req.body
  if body == nil or body:find("^%s*$") then
    fail(400, "IMG.0007", "request body is empty")
  end
  if not utf8.len(body) then
    fail(400, "IMG.0001", "request body is not valid UTF-8")
  end
  if not body:find("^%s*{") then
    fail(400, "IMG.0001", "request body must be a JSON object")
  end
  local ok, obj = pcall(cjson.decode, body)
  if not ok or type(obj) ~= "table" then
    fail(400, "IMG.0001", "request body is not valid JSON")
  end
  raw_of[obj] = body
  return obj
end

-- Field accessors: nil when absent (or null), the value when of the right
-- type, otherwise a failure with the given code naming the field.
function request.string(obj, field, name, code)
  local v = request.value(obj[field])
  if v ~= nil and type(v) ~= "string" then
    fail(400, code or "IMG.0001", (name or field) .. ": must be a string")
  end
  if v ~= nil and not utf8.len(v) then
    fail(400, "IMG.0001", (name or field) .. ": is not valid UTF-8")
  end
  return v
end

-- True when `field` was written as an empty JSON object ({}) somewhere in
-- the body that root was decoded from (root: a request.json_object result).
function request.empty_object(root, field)
  local raw = raw_of[root]
  return raw ~= nil and raw:find('"' .. field .. '"%s*:%s*{%s*}') ~= nil
end

-- A JSON array: a table with [1], or an empty table that was not written {}.
function request.is_array(root, v, field)
  if type(v) ~= "table" then return false end
  if next(v) == nil then return not request.empty_object(root, field) end
  return v[1] ~= nil
end

function request.array(obj, field, name, code)
  local v = request.value(obj[field])
  if v == nil then return nil end
  if not request.is_array(obj, v, field) then
    fail(400, code or "IMG.0001", (name or field) .. ": must be an array")
  end
  return v
end

function request.object(v, name, code)
  if type(v) ~= "table" or v[1] ~= nil then
    fail(400, code or "IMG.0001", name .. ": must be an object")
  end
  return v
end

function request.boolean(obj, field, name, code)
  local v = request.value(obj[field])
  if v ~= nil and type(v) ~= "boolean" then
    fail(400, code or "IMG.0001", (name or field) .. ": must be a boolean")
  end
  return v
end

return request
