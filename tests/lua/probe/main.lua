-- A probe script generation for the sandbox tests: handle(req) runs the
-- request body as a chunk inside the sandbox and answers with what it
-- returned (or let the error go up to the host, like any script fault).
local probe = {}

function probe.handle(req)
  local chunk, err = load(req.body, "=probe")
  if not chunk then return 400, "compile: " .. err end
  local result = chunk()
  return 200, tostring(result), "text/plain", "probe"
end

return probe
