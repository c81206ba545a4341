-- main: the entry points the host calls.  init(ctx) runs once per script
-- generation (policies, config, variants); handle(req) serves one request.
local policy = require "policy"
local router = require "router"

local main = {}

function main.init(ctx)
  policy.init(ctx)
  router.init(ctx)
end

function main.handle(req)
  return router.dispatch(req)
end

return main
