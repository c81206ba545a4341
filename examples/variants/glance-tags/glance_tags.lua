-- glance_tags: OpenStack Glance-style string tags (API.md §8), as an API
-- variant in Lua alone.  Enable with
-- `variants = { "examples/variants/glance-tags" }` in the configuration.
--   PUT    /v2/images/{image_id}/tags/{tag}  -> 204  (adds or overwrites)
--   DELETE /v2/images/{image_id}/tags/{tag}  -> 204  (404 IMG.0115 if absent)
-- A tag "k=v" is key k with value v (split at the first '='); a tag
-- without '=' is key "k" with value "".  The {tag} segment is
-- percent-decoded by the router ("env%3Dprod" is "env=prod").  The project
-- is the caller's.
local policy = require "policy"
local shape = require "shape"
local tags = require "handlers.tags"

local fail = shape.fail

local function split_tag(s)
  local eq = s:find("=", 1, true)
  if eq then return s:sub(1, eq - 1), s:sub(eq + 1) end
  return s, ""
end

-- PUT: the core create path (policy, overwrite rules, quota) with one tag.
local function put_tag(ctx)
  local key, value = split_tag(ctx.params.tag)
  return tags.create(ctx, { { key = key, value = value } }, { "tag" })
end

-- DELETE: the tag must be there with exactly that value (a Glance tag is
-- the whole string), then the policy decides whether the caller may
-- remove the key (reserved, immutable, deny).
local function delete_tag(ctx)
  local image_id = ctx.params.image_id
  local key, value = split_tag(ctx.params.tag)
  gw.write_begin()          -- what is read below is what the delete changes
  local list = gw.image_tags(ctx.project, image_id)
  if not list then fail(404, "IMG.0027", "image " .. image_id .. " not found") end
  local found = false
  for _, t in ipairs(list) do
    if t.key == key and t.value == value then found = true break end
  end
  if not found then
    fail(404, "IMG.0115", "tag '" .. ctx.params.tag .. "' not found on image " .. image_id)
  end
  local err = policy.check_removal(policy.for_project(ctx.project), key, "tag", ctx.caller)
  if err then fail(400, "IMG.0115", err) end
  if not gw.tags_apply(ctx.project, image_id, {}, { key }) then
    fail(404, "IMG.0027", "image " .. image_id .. " not found")
  end
  return shape.no_content()
end

return {
  routes = {
    { method = "PUT",    path = "/v2/images/{image_id}/tags/{tag}", handler = put_tag },
    { method = "DELETE", path = "/v2/images/{image_id}/tags/{tag}", handler = delete_tag },
  },
}
