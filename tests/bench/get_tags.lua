-- wrk script: GET /v2/{project}/images/{id}/tags, rotating over the image ids
-- listed one per line in $BENCH_IDS (each wrk thread starts at its own offset).
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

local i
function init(args)
  i = ((tid or 0) * 7919) % #ids
end

function request()
  i = i % #ids + 1
  return wrk.format("GET", "/v2/" .. project .. "/images/" .. ids[i] .. "/tags")
end
