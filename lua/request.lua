-- request: reading what the client sent: the JSON body (API.md §0: empty
-- -> IMG.0007, not UTF-8 or not JSON or not an object -> IMG.0001), JSON
-- null as absent, and typed field access that names the field on error.
local cjson = require "cjson"
local shape = require "shape"

-- globals read per request, as locals: each global read is a lookup
-- through the locked _G
local type, next, tostring, pcall, error, table, utf8, gw = type, next, tostring, pcall, error, table, utf8, gw

local request = {}

-- deep enough for any body a client means (lua-cjson's own default);
-- deeper is refused by name, not called invalid
request.MAX_DEPTH = 1000
cjson.decode_max_depth(request.MAX_DEPTH)
cjson.decode_invalid_numbers(false)
cjson.encode_sparse_array(true)

local NULL = cjson.null
-- A tag list to create (a batch create, a new image's tags) longer than
-- this and than the policy's quota is refused before any per-tag work: it
-- cannot succeed, and a huge array would hold the loop for nothing.
request.MAX_TAGS = 1000
local fail = shape.fail
-- lua-cjson 2.1 decodes {} and [] to the same empty table.  Before
-- decoding, every empty object outside a string is rewritten to hold one
-- member named "\0" (a name no field has), so it decodes to a non-empty,
-- non-array table and an empty table always means [].
local EMPTY_OBJECT = '{"\\u0000":0}'

local function mark_empty_objects(body)
  if not body:find("{[ \t\r\n]*}") then return body end
  local out, from, pos = {}, 1, 1
  while true do
    local at = body:find('["{]', pos)
    if not at then break end
    if body:byte(at) == 34 then                 -- a string: skip it whole
      local j = at + 1
      while true do
        local q = body:find('["\\]', j)
        if not q then return body end           -- unterminated: decode fails
        if body:byte(q) == 92 then j = q + 2 else pos = q + 1 break end
      end
    else
      local after = body:match("^{[ \t\r\n]*}()", at)
      if after then
        out[#out + 1] = body:sub(from, at - 1)
        out[#out + 1] = EMPTY_OBJECT
        from = after
      end
      pos = at + 1
    end
  end
  out[#out + 1] = body:sub(from)
  return table.concat(out)
end

-- A JSON null counts as an absent field (API.md §9).
function request.value(v)
  if v == NULL then return nil end
  return v
end

-- The decoded body object; raises a failure for the §0 cases.  The body
-- passes gw.json_check first: lua-cjson decodes raw control characters in
-- strings and numbers such as 40., which are not JSON.  Whitespace is
-- JSON's four characters, not Lua's %s (which takes \f and \v too).
function request.json_object(req)
  local body = req.body
  if body == nil or body:find("^[ \t\r\n]*$") then
    fail(400, "IMG.0007", "request body is empty")
  end
  if not utf8.len(body) then
    fail(400, "IMG.0001", "request body is not valid UTF-8")
  end
  -- syntax first: text that is not JSON at all ("hello", "[") is named as
  -- such, not as a JSON value of the wrong kind
  local valid, why, at, deep = gw.json_check(body, request.MAX_DEPTH)
  if deep then
    fail(400, "IMG.0001", "request body nests JSON deeper than " .. request.MAX_DEPTH .. " levels")
  elseif not valid then
    fail(400, "IMG.0001", "request body is not valid JSON: " .. why .. " at byte " .. at)
  end
  if not body:find("^[ \t\r\n]*{") then
    fail(400, "IMG.0001", "request body must be a JSON object")
  end
  local ok, obj = pcall(cjson.decode, mark_empty_objects(body))
  if not ok or type(obj) ~= "table" then
    fail(400, "IMG.0001", "request body is not valid JSON")
  end
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

-- A JSON array (an empty table is [], see mark_empty_objects).
function request.is_array(v)
  return type(v) == "table" and (next(v) == nil or v[1] ~= nil)
end

function request.array(obj, field, name, code)
  local v = request.value(obj[field])
  if v == nil then return nil end
  if not request.is_array(v) then
    fail(400, code or "IMG.0001", (name or field) .. ": must be an array")
  end
  return v
end

function request.object(v, name, code)
  if type(v) ~= "table" or v[1] ~= nil or next(v) == nil then  -- empty: [] (mark_empty_objects)
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
