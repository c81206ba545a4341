-- handlers/ops: health, reload and status (API.md §6).
local policy = require "policy"
local shape = require "shape"

local ops = {}

function ops.health()
  return shape.ok(200, { status = "ok" })
end

-- POST /admin/reload: 200 with the new generation, or 422 naming file:line.
function ops.reload()
  local result, err = gw.reload()
  if not result then
    return shape.ok(422, { error = { code = "TGW.0001", message = err } })
  end
  result.files = shape.array(result.files)
  return shape.ok(200, result)
end

-- GET /admin/status
function ops.status()
  local s = gw.status()
  s.files = shape.array(s.files)
  s.policies = policy.bindings()
  return shape.ok(200, s)
end

return ops
