-- handlers/jobs: the two job-status calls of API.md §4.
local cjson = require "cjson"
local shape = require "shape"

local jobs = {}

function jobs.view(j)
  local entities = { image_id = j.image_id, image_name = j.image_name }
  if j.status == "FAIL" then
    entities.error_code = j.error_code
    entities.error = j.fail_reason
  elseif j.status == "RUNNING" then
    entities.process_percent = (j.progress or 0) / 100
  end
  return {
    job_id = j.id, job_type = j.kind, status = j.status,
    begin_time = j.begin_time, end_time = j.end_time or "",
    error_code = j.error_code or cjson.null, fail_reason = j.fail_reason or cjson.null,
    entities = entities,
  }
end

-- GET /v1/{project_id}/jobs/{job_id} and GET /v1/cloudimages/job/{job_id}
function jobs.get(ctx)
  local j = gw.job_get(ctx.project, ctx.params.job_id)
  if not j then shape.fail(404, "IMG.0023", "job " .. ctx.params.job_id .. " not found") end
  return shape.ok(200, jobs.view(j))
end

return jobs
