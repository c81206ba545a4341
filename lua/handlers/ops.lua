-- handlers/ops: health, reload and status (API.md §6).
local policy = require "policy"
local shape = require "shape"

local ops = {}
local metrics_auth, auth_on = false, true

function ops.init(ctx)
  local v = (ctx.config or {}).metrics_auth
  -- "yes", 1 or "true" meant as on would leave /metrics open: refused
  if v ~= nil and type(v) ~= "boolean" then
    error((ctx.config_path or "configuration") .. ": metrics_auth must be true or false, not "
          .. (type(v) == "string" and "the string '" .. v .. "'" or "a " .. type(v)), 0)
  end
  metrics_auth = v == true
  auth_on = ctx.auth
end

function ops.health()
  return shape.ok(200, { status = "ok" })
end

-- POST /admin/reload: 200 with the new generation, or 422 naming file:line.
function ops.reload()
  local result, err, busy = gw.reload()
  if not result then
    -- busy: another reload was building; Retry-After tells automation so
    -- without parsing the message (the contract's 422 TGW.0001 stands)
    local status, body, ctype = shape.ok(422, { error = { code = "TGW.0001", message = err } })
    return status, body, ctype, busy and 1 or nil
  end
  result.files = shape.array(result.files)
  return shape.ok(200, result)
end

-- GET /metrics: the exposition is written by C straight into the body.
function ops.metrics(ctx)
  if metrics_auth and auth_on then
    local caller, status, message = gw.auth()
    if not caller then
      return shape.gateway(status, status == 403 and "APIGW.0302" or "APIGW.0301", message, ctx.req)
    end
    if caller.role ~= "admin" then
      return shape.gateway(403, "APIGW.0302", "metrics need the admin role (metrics_auth = true)", ctx.req)
    end
  end
  gw.metrics_write()
  return 200, nil, "text/plain; version=0.0.4; charset=utf-8"
end

-- GET /admin/status
function ops.status()
  local s = gw.status()
  s.files = shape.array(s.files)
  s.policies = policy.bindings()
  s.jobs = gw.job_counts()
  for _, status in ipairs({ "INIT", "RUNNING", "SUCCESS", "FAIL" }) do
    s.jobs[status] = s.jobs[status] or 0
  end
  return shape.ok(200, s)
end

return ops
