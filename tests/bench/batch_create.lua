-- wrk script: POST /v2/{project}/images/{id}/tags/action {"action": "create"}
-- with 10 tags, rotating over the image ids in $BENCH_IDS.  The benchmark
-- images already hold key0..key9 (the quota is 10 per image), so each request
-- overwrites those ten keys with values unique to the request: every request
-- is a real, durable write of 10 tags.
local project = os.getenv("BENCH_PROJECT")
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS")) do
  if #line > 0 then ids[#ids + 1] = line end
end

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local i, n, t
local headers = { ["Content-Type"] = "application/json" }
function init(args)
  t = tid or 0
  i = (t * 7919) % #ids
  n = 0
end

function request()
  i = i % #ids + 1
  n = n + 1
  local tags = {}
  for k = 0, 9 do
    tags[#tags + 1] = string.format('{"key":"key%d","value":"w%d-%d-%d"}', k, t, n, k)
  end
  local body = '{"action":"create","tags":[' .. table.concat(tags, ",") .. ']}'
  return wrk.format("POST", "/v2/" .. project .. "/images/" .. ids[i] .. "/tags/action",
                    headers, body)
end
