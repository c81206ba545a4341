-- import_backend: the default quick-import backend, one step per call.
-- It reads the object from the local object store (<obs_root>/<bucket>/
-- <object>, through gw.obs_size) and "copies" it, the policy's
-- import.bytes_per_step per step (one step per runner tick).  To plug
-- in another source, write a module with the same step(job) function and
-- name it in the configuration: import_backend = "my_backend".
--   step(job) -> {status = "running", progress = 0..99}
--              | {status = "success"}
--              | {status = "fail", code = "IMG.xxxx", reason = "..."}
-- job: id, project_id, kind, image_id, image_name, params (JSON: image_url,
-- min_disk, type), progress (0 on the first step, also after a restart).
local cjson = require "cjson"
local policy = require "policy"

local backend = {}
local GiB = 1024 * 1024 * 1024
-- A job keeps 255 bytes of reason: a longer URL is shortened in it, so
-- that what went wrong with the object still shows.
local URL_BYTES = 200

-- text cut to at most `bytes` bytes, between UTF-8 characters, "..." marking the cut.
local function shortened(text, bytes)
  if #text <= bytes then return text end
  local cut = bytes - 3
  while cut > 0 and (text:byte(cut + 1) & 0xC0) == 0x80 do cut = cut - 1 end
  return text:sub(1, cut) .. "..."
end

local function check_object(params)
  local bucket, object = params.image_url:match("^([^:]*):(.*)$")
  local size, why = gw.obs_size(bucket, object)
  if not size or size == 0 then
    -- the reason is stored as C text: a NUL is spelled out
    local url = shortened((params.image_url:gsub("%z", "\\0")), URL_BYTES)
    return { status = "fail", code = "IMG.0057",
             reason = "object " .. url .. (why == "object cannot be read" and " cannot be read"
                                           or " does not exist or is empty") }
  end
  if object:lower():sub(-4) == ".raw" and math.ceil(size / GiB) > params.min_disk then
    return { status = "fail", code = "IMG.0055",
             reason = string.format("raw image of %d GiB exceeds min_disk %d GiB",
                                    math.ceil(size / GiB), params.min_disk) }
  end
  return nil, size
end

function backend.step(job)
  local params = cjson.decode(job.params)
  local failed, size = check_object(params)
  if failed then return failed end
  local rules = policy.import_rules(policy.for_project(job.project_id))
  local per_step = rules.bytes_per_step or (256 * 1024 * 1024)
  local steps = math.max(2, math.ceil(size / per_step))
  local progress = job.progress + math.max(1, 100 // steps)
  if progress >= 100 then return { status = "success" } end
  return { status = "running", progress = progress }
end

return backend
