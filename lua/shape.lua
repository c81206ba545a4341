-- shape: every response body the gateway sends (API.md §0.1).  Handlers
-- return shape.* results; nothing else encodes JSON for a client.
local cjson = require "cjson"

-- globals read per request, as locals: each global read is a lookup
-- through the locked _G
local type, rawget, error, table, utf8, gw = type, rawget, error, table, utf8, gw

local shape = {}

local JSON = "application/json;charset=UTF-8"
-- lua-cjson 2.1 encodes an empty table as {}; arrays that may be empty are
-- marked and rewritten to [] after encoding.
local EMPTY_MARK = "\1tagway-empty-array\1"
local EMPTY_ENCODED = '["\\u0001tagway-empty-array\\u0001"]'

-- An array for a response: an empty one still encodes as [].
function shape.array(t)
  if t[1] == nil then return { EMPTY_MARK } end
  return t
end

function shape.encode(value)
  local text = cjson.encode(value)
  if text:find(EMPTY_ENCODED, 1, true) then
    text = text:gsub('%["\\u0001tagway%-empty%-array\\u0001"%]', "[]")
  end
  -- lua-cjson 2.1.0 writes "/" as "\/": valid JSON, but a path in a message
  -- could not be copied from the body.  In its output every "\/" is that
  -- escape (after an escaped backslash comes the next escape, never a bare
  -- "/"), so it is undone as text.
  if text:find("\\/", 1, true) then
    text = text:gsub("\\/", "/")
  end
  return text
end

function shape.ok(status, value)
  return status, shape.encode(value), JSON
end

-- A body already encoded (JSON text built by a gw.*_json call).
function shape.json(status, text)
  return status, text, JSON
end

function shape.no_content()
  return 204, nil, nil
end

-- A message as valid UTF-8: request bytes it echoes that are not UTF-8 (a
-- %FF in a path) become U+FFFD, so the body stays JSON (API.md §0).
local function utf8_safe(s)
  if type(s) ~= "string" or utf8.len(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    local n, bad = utf8.len(s, i)
    if n then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = "\u{FFFD}"
    i = bad + 1
  end
  return table.concat(out)
end

-- IMS error shape: {"error": {"code", "message"}}
function shape.ims(status, code, message)
  return status, shape.encode({ error = { code = code, message = utf8_safe(message) } }), JSON
end

-- Gateway error shape: {"error_code", "error_msg", "request_id"}
function shape.gateway(status, code, message, req)
  return status, shape.encode({ error_code = code, error_msg = utf8_safe(message),
                                request_id = req and req.id or "" }), JSON
end

function shape.text(status, body, content_type)
  return status, body, content_type or "text/plain; charset=utf-8"
end

-- Errors a handler raises with fail(): { status, code, message }.  Lets deep
-- validation code stop a request without threading returns through.
-- The metatable is protected (getmetatable answers false), so no request
-- can reach it and change what every later failure is; identity is a key
-- only this module holds.
local FAILURE = {}
local Failure = { __metatable = false, __name = "tagway.failure" }  -- gw.traceback passes these

function shape.fail(status, code, message)
  error(setmetatable({ [FAILURE] = true, status = status, code = code, message = message }, Failure), 0)
end

function shape.is_failure(e)
  return type(e) == "table" and rawget(e, FAILURE) == true
end

return shape
