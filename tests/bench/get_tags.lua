-- wrk script: GET /v2/{project}/images/{id}/tags, rotating over the image ids
-- listed one per line in $BENCH_IDS.  The two wrk threads start half the
-- list apart, so over a list longer than the tags cache holds neither
-- reads what the other has just read.
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
  i = ((tid or 0) * math.floor(#ids / 2)) % #ids
end

function request()
  i = i % #ids + 1
  return wrk.format("GET", "/v2/" .. project .. "/images/" .. ids[i] .. "/tags")
end
