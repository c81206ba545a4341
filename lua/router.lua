-- router: maps method + path to a handler, then applies the gateway rules
-- in the order of API.md §0.1: 413, unknown route (404), credentials (401),
-- project or role (403), the project's rate limit (429); the handler does
-- validation (400) and not-found (404).  Handled failures raised with
-- shape.fail become IMS error bodies; anything else is a script error and
-- goes up to the host (500).
local policy = require "policy"
local shape = require "shape"
local text = require "text"

-- globals read per request, as locals: each global read is a lookup
-- through the locked _G
local type, ipairs, pairs, assert, error, xpcall, string, table, utf8, gw = type, ipairs, pairs, assert, error, xpcall, string, table, utf8, gw

local router = {}

local routes = {}           -- compiled, in match order
local by_method = {}        -- method -> routes of that method, in order
local auth_on = true

-- "/v2/{project_id}/images" -> "^/v2/([^/]+)/images$", {"project_id"}
local function compile_path(template)
  local names = {}
  local pattern = template:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
  pattern = pattern:gsub("{([%w_]+)}", function(name)
    names[#names + 1] = name
    return "([^/]+)"
  end)
  return "^" .. pattern .. "$", names
end

-- A route table's mistake, named by its file and entry: assert() would
-- prefix router.lua's own line, which says nothing of where the mistake is.
local function need(cond, message)
  if not cond then error(message, 0) end
end

local function resolve(name, where)
  local module, fn = name:match("^([%w_%.]+)%.([%w_]+)$")
  need(module, where .. ": handler '" .. name .. "' must be 'module.function'")
  local mod = require("handlers." .. module)
  need(type(mod[fn]) == "function", where .. ": handler " .. name .. " is not a function")
  return mod[fn]
end

local ROUTE_KEYS = { method = true, path = true, handler = true, auth = true, admin = true }

-- A route entry's mistakes that would load and quietly change who may
-- call it: `admin = "true"` or `admn = true` left an admin route open to
-- members, `method = "get"` never matched.
local function check_route(r, spot)
  for k in pairs(r) do
    need(ROUTE_KEYS[k], spot .. ": '" .. tostring(k) .. "' is not a route key (method, path, handler, auth, admin)")
  end
  need(r.method:find("^[A-Z]+$"), spot .. ": method '" .. r.method .. "' must be an upper-case HTTP method")
  need(r.path:sub(1, 1) == "/", spot .. ": path must start with '/'")
  for _, k in ipairs({ "auth", "admin" }) do
    need(r[k] == nil or type(r[k]) == "boolean", spot .. ": " .. k .. " must be true or false, not " .. type(r[k]))
  end
end

-- Adds routes from a list; later lists (variants) may add new paths or
-- replace a method + path of the core table.
local function add_routes(list, where, handler_of)
  for i, r in ipairs(list) do
    local spot = where .. ": routes[" .. i .. "]"
    need(type(r) == "table" and type(r.method) == "string" and type(r.path) == "string",
         spot .. ": method and path required")
    spot = spot .. " (" .. r.method .. " " .. r.path .. ")"
    check_route(r, spot)
    local pattern, names = compile_path(r.path)
    local route = {
      method = r.method, path = r.path, pattern = pattern, names = names,
      auth = r.auth ~= false, admin = r.admin == true,
      name = r.method .. " " .. r.path,
      handler = handler_of(r, spot),
    }
    local replaced = false
    for j, old in ipairs(routes) do
      if old.method == route.method and old.path == route.path then
        routes[j] = route
        replaced = true
      end
    end
    if not replaced then routes[#routes + 1] = route end
  end
end

-- Within a method, a route with fewer {names} is tried first, in table
-- order among equals: a literal path a variant adds (GET /v2/images/summary)
-- wins over a template that also matches it (GET /v2/images/{image_id}),
-- which would otherwise answer for it.
local function index_by_method()
  by_method = {}
  for i, r in ipairs(routes) do
    local list = by_method[r.method] or {}
    list[#list + 1] = { route = r, params = #r.names, order = i }
    by_method[r.method] = list
  end
  for method, list in pairs(by_method) do
    table.sort(list, function(a, b)
      if a.params ~= b.params then return a.params < b.params end
      return a.order < b.order
    end)
    for i, e in ipairs(list) do list[i] = e.route end
    by_method[method] = list
  end
end

function router.init(ctx)
  routes = {}
  auth_on = ctx.auth
  add_routes(require "routes", "lua/routes.lua", function(r, spot)
    return resolve(r.handler, spot)
  end)
  for _, variant in ipairs(ctx.variants or {}) do
    local names = {}
    for name in pairs(variant.modules) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local mod = variant.modules[name]
      local where = variant.path .. "/" .. name .. ".lua"
      need(type(mod) == "table" and type(mod.routes) == "table", where .. ": must return {routes = {...}}")
      add_routes(mod.routes, where, function(r, spot)
        need(type(r.handler) == "function", spot .. ": handler must be a function")
        return r.handler
      end)
    end
  end
  index_by_method()
end

function router.list()
  local out = {}
  for i, r in ipairs(routes) do out[i] = { method = r.method, path = r.path } end
  return out
end

-- Routes are grouped by method, so a request tries only its method's
-- patterns, each once: a template has at most a few {names}, and
-- string.match returns the whole match when a pattern captures nothing.
local function match(method, path)
  local list = by_method[method] or (method == "HEAD" and by_method.GET)
  if not list then return nil end
  for i = 1, #list do
    local r = list[i]
    local c1, c2, c3, c4 = path:match(r.pattern)
    if c1 then
      local names, params = r.names, {}
      if #names > 4 then
        local caps = { path:match(r.pattern) }
        for j, name in ipairs(names) do params[name] = text.unescape(caps[j]) end
      else
        local unescape = text.unescape
        if names[1] then params[names[1]] = unescape(c1) end
        if names[2] then params[names[2]] = unescape(c2) end
        if names[3] then params[names[3]] = unescape(c3) end
        if names[4] then params[names[4]] = unescape(c4) end
      end
      return r, params
    end
  end
  return nil
end

-- Whether Host names this machine: absent (HTTP/1.0), localhost or a name
-- under it (RFC 6761), ip6-localhost, 127.0.0.0/8, 0.0.0.0, [::1] or
-- [::ffff:127.x.y.z], with or without a port and a final dot.  None of
-- these can be a page's own name (a page cannot be served from them but
-- by this gateway).
local LOOPBACK_NAMES = { ["localhost"] = true, ["ip6-localhost"] = true, ["0.0.0.0"] = true,
                         ["::1"] = true, ["0:0:0:0:0:0:0:1"] = true }

local function loopback_host(host)
  if host == nil then return true end
  host = host:lower()
  local name = host:match("^%[([^%]]*)%]") or host:match("^[^:]*")
  name = name:gsub("%.$", "")
  return LOOPBACK_NAMES[name] or name:sub(-10) == ".localhost"
         or name:find("^127%.%d+%.%d+%.%d+$") ~= nil or name:find("^::ffff:127%.%d+%.%d+%.%d+$") ~= nil
end

-- With auth off, a browser must not be the way in: a page from anywhere
-- can send a simple cross-origin POST to 127.0.0.1 (a write, a reload),
-- and a page whose name is made to resolve to 127.0.0.1 is same-origin
-- with the gateway (DNS rebinding).  Browsers name the page in Origin on
-- every POST and keep the page's name in Host; curl, SDKs and scripts
-- send no Origin and say 127.0.0.1 or localhost.
local function browser_refused()
  local origin = gw.header("Origin")
  if origin then
    return "A browser page's request (Origin: " .. origin .. ") is refused while "
           .. "authentication is off (--auth off)"
  end
  local host = gw.header("Host")
  if not loopback_host(host) then
    return "Host: " .. host .. " is not a loopback name; with authentication off "
           .. "(--auth off) only 127.0.0.1, [::1] or localhost are answered"
  end
  return nil
end

-- The caller: from credentials, or with auth off an admin of the path's
-- project (or X-Project-Id).
local function authenticate(route, params)
  if not auth_on then
    local project = params.project_id or gw.header("X-Project-Id")
    if project and not project:find("%S") then
      project = nil               -- an empty header names no project
    end
    return { role = "admin", project = project, via = "none" }
  end
  return gw.auth()
end

-- A handler returns status, body, content type and, optionally, the
-- seconds of a Retry-After header.
local function run(route, ctx)
  local ok, status, body, ctype, retry_after = xpcall(route.handler, gw.traceback, ctx)
  if ok then return status, body, ctype, retry_after end
  if shape.is_failure(status) then
    return shape.ims(status.status, status.code, status.message)
  end
  error(status, 0)
end

-- status, body, content type, then route and project for the access log,
-- and the seconds of a Retry-After header (a 429's, a busy reload's) or nil.
local function answer(route, project, status, body, ctype, retry_after)
  return status, body, ctype, route and route.name, project, retry_after
end

function router.dispatch(req)
  if req.too_large then
    local why = req.body_limit and "Request body too large: more than " .. req.body_limit
                .. " bytes (the gateway's --body-limit)" or "Request body too large"
    return answer(nil, nil, shape.gateway(413, "APIGW.0201", why, req))
  end
  local route, params = match(req.method, req.path)
  if not route then
    return answer(nil, nil, shape.gateway(404, "APIGW.0101",
                                          "The API does not exist or has not been published", req))
  end
  if not auth_on then                          -- every route, /metrics too
    local refused = browser_refused()
    if refused then return answer(route, nil, shape.gateway(403, "APIGW.0302", refused, req)) end
  end
  local caller = { role = "anonymous" }
  if route.auth then
    local status, message
    caller, status, message = authenticate(route, params)
    if not caller then
      return answer(route, nil, shape.gateway(status, status == 403 and "APIGW.0302" or "APIGW.0301",
                                              message, req))
    end
    if params.project_id and params.project_id ~= caller.project then
      return answer(route, caller.project, shape.gateway(403, "APIGW.0302",
                    "The project in the path is not the caller's project", req))
    end
    if route.admin and caller.role ~= "admin" then
      return answer(route, caller.project, shape.gateway(403, "APIGW.0302",
                    "This API needs the admin role", req))
    end
    if not caller.project and not route.admin then
      return answer(route, nil, shape.ims(400, "IMG.0067",
                    "X-Project-Id is required when authentication is off"))
    end
    -- the project's policy may limit its rate (admin routes are exempt:
    -- a reload or status must get through a flood)
    local limit = not route.admin and policy.rate_limit_for(caller.project)
    if limit then
      local wait = gw.rate_take(caller.project, limit.per_second, limit.burst)
      if wait then
        local status, body, ctype = shape.gateway(429, "APIGW.0308", string.format(
          "Too many requests: project %s is limited to %g per second (burst %g); retry in %.3f s",
          caller.project, limit.per_second, limit.burst, wait), req)
        return answer(route, caller.project, status, body, ctype, wait)
      end
    end
  end
  -- §0: a string that is not UTF-8 is a 400, a path's (percent-decoded)
  -- as well as a body's; after the caller checks, as §0.1 orders them
  if req.path_escaped then                     -- else every byte is ASCII
    for name, v in pairs(params) do
      if not utf8.len(v) then
        return answer(route, caller.project, shape.ims(400, "IMG.0001",
                      name .. ": is not valid UTF-8 once percent-decoded from the path"))
      end
    end
  end
  local ctx = { req = req, params = params, caller = caller, project = caller.project, route = route }
  return answer(route, caller.project, run(route, ctx))
end

return router
