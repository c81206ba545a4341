-- main: the entry points the host calls.  init(ctx) runs once per script
-- generation (policies, config, variants); handle(req) serves one request.
local policy = require "policy"
local router = require "router"

local main = {}
local backend_name = "import_backend"

function main.init(ctx)
  policy.init(ctx)
  router.init(ctx)
  require("handlers.ops").init(ctx)
  backend_name = (ctx.config or {}).import_backend or "import_backend"
  if type(backend_name) ~= "string" then
    error((ctx.config_path or "configuration") .. ": import_backend must be a module name", 0)
  end
  assert(type(require(backend_name).step) == "function",
         backend_name .. ".lua: must return a table with a step(job) function")
end

-- One step of an import job (the host's job runner calls this).
function main.job_step(job)
  return require(backend_name).step(job)
end

function main.handle(req)
  return router.dispatch(req)
end

return main
