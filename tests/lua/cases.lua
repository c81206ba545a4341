-- Table-driven cases for the in-process host test (tests/unit/test_lhost.c):
-- each row is a request run through the real scripts (lua/, policies/) on a
-- temporary database with authentication off, and the status and error code
-- expected.  `image = true` substitutes the id of an image the test made.
local P = "0123456789abcdef0123456789abcdef"
local T = "/v2/" .. P .. "/images/{image}/tags"
local function tags(n, prefix)
  local t = {}
  for i = 1, n do t[#t + 1] = string.format('{"key":"%s%d","value":"v"}', prefix or "k", i) end
  return "[" .. table.concat(t, ",") .. "]"
end

return {
  { "GET", "/healthz", nil, 200 },
  { "GET", "/nope", nil, 404, "APIGW.0101" },
  { "PATCH", "/healthz", nil, 404, "APIGW.0101" },
  { "POST", T .. "/action", "", 400, "IMG.0007" },
  { "POST", T .. "/action", "{not json", 400, "IMG.0001" },
  { "POST", T .. "/action", "[]", 400, "IMG.0001" },
  { "POST", T .. "/action", '{"action":"Create","tags":[{"key":"a","value":"b"}]}', 400, "IMG.0001" },
  { "POST", T .. "/action", '{"action":"create","tags":[]}', 400, "IMG.0001" },
  { "POST", T .. "/action", '{"action":"create","tags":[{"key":"a b","value":"x"}]}', 400, "IMG.0115" },
  { "POST", T .. "/action", '{"action":"create","tags":[{"key":"a","value":"x"},{"key":"a","value":"y"}]}', 400, "IMG.0115" },
  { "POST", T .. "/action", '{"action":"create","tags":[{"key":"a\\u0000b","value":"x"}]}', 400, "IMG.0115" },
  { "POST", T .. "/action", '{"action":"create","tags":' .. tags(10) .. '}', 204 },
  { "POST", T .. "/action", '{"action":"create","tags":' .. tags(1, "extra") .. '}', 400, "IMG.0116" },
  { "POST", T .. "/action", '{"action":"delete","tags":[{"key":"k1"},{"key":"absent"}]}', 204 },
  { "DELETE", T .. "/k1", nil, 404, "IMG.0115" },
  { "DELETE", T .. "/k2", nil, 204 },
  { "GET", T, nil, 200 },
  { "POST", "/v2/" .. P .. "/images/00000000-0000-4000-8000-000000000000/tags/action",
    '{"action":"create","tags":[{"key":"a","value":"b"}]}', 404, "IMG.0027" },
  { "POST", "/v2/" .. P .. "/images/resource_instances/action", '{"action":"count"}', 200 },
  { "POST", "/v2/" .. P .. "/images/resource_instances/action", '{"action":"filter","limit":1001}', 400, "IMG.0001" },
  { "POST", "/v2/images", '{"name":""}', 400, "IMG.0013" },
  { "POST", "/v2/images", '{"name":"ok","min_disk":"40"}', 400, "IMG.0055" },
  { "GET", "/v1/" .. P .. "/jobs/0123456789abcdef0123456789abcdef", nil, 404, "IMG.0023" },
}
