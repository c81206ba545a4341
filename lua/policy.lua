-- policy: compiles the policy tables of policies/*.lua (data first) and
-- applies them to tag writes: per-tag checks, merge checks against the
-- image's current tags, deletes, required keys.  Every rejection names the
-- field, the rule and the policy.  Which policy a project uses comes from
-- the configuration (default_policy, project_policies).
local text = require "text"

local policy = {}

local compiled = {}        -- name -> compiled policy
local bindings = {}        -- project id -> name
local default_name = "ims"

local function lower(s) return s:lower() end

-- "300*" matches anything starting with "300"; anything else matches exactly.
local function wildcard_match(pattern, s, ignore_case)
  if ignore_case then pattern, s = lower(pattern), lower(s) end
  if pattern:sub(-1) == "*" then
    local prefix = pattern:sub(1, -2)
    return s:sub(1, #prefix) == prefix
  end
  return pattern == s
end

local function compile_text_rule(rule, what, pname)
  assert(type(rule) == "table", pname .. ": " .. what .. " must be a table")
  local r = {
    min = rule.min or 0, max = rule.max, describe = rule.describe,
    edge_space = rule.edge_space or "allow",
    allowed = rule.chars and text.charset(rule.chars) or nil,
  }
  assert(type(r.max) == "number", pname .. ": " .. what .. ".max must be a number")
  assert(r.edge_space == "allow" or r.edge_space == "reject",
         pname .. ": " .. what .. ".edge_space must be 'allow' or 'reject'")
  return r
end

local function compile_list(list)
  local out = {}
  for i, v in ipairs(list or {}) do out[i] = v end
  return out
end

-- Validates a policy table and returns its compiled form; raises with a
-- message naming the policy on a malformed table.
function policy.compile(p)
  local name = p.name
  assert(type(name) == "string", "policy must have a string name")
  assert(type(p.max_tags) == "number", name .. ": max_tags must be a number")
  local reserved = p.reserved or {}
  local c = {
    name = name, version = p.version, description = p.description,
    max_tags = p.max_tags,
    key = compile_text_rule(p.key, "key", name),
    value = compile_text_rule(p.value, "value", name),
    delete = {
      key_max = (p.delete or {}).key_max or 127,
      value_max = (p.delete or {}).value_max or 255,
      match_value = (p.delete or {}).match_value == true,
    },
    reserved = {
      prefixes = compile_list(reserved.prefixes), keys = compile_list(reserved.keys),
      ignore_case = reserved.ignore_case ~= false,
      admin_may_write = reserved.admin_may_write == true,
      in_values = reserved.in_values == true,
    },
    overwrite = p.overwrite or {},           -- key pattern -> replace|immutable|deny
    allowed_values = p.allowed_values or {}, -- key -> list of patterns
    exact_case = compile_list(p.exact_case), -- keys whose spelling is enforced
    required = compile_list(p.required),     -- keys required at image creation
    hook = p.hook,
    examples = p.examples,
    import = p.import,                       -- quick-import rules (optional)
  }
  for pattern, mode in pairs(c.overwrite) do
    assert(mode == "replace" or mode == "immutable" or mode == "deny",
           name .. ": overwrite['" .. tostring(pattern) .. "'] must be replace, immutable or deny")
  end
  assert(c.hook == nil or type(c.hook) == "function", name .. ": hook must be a function")
  return c
end

local function reject(pol, field, rule)
  return field .. ": " .. rule .. " (policy " .. pol.name .. ")"
end

local function is_reserved(pol, s, for_value)
  local r = pol.reserved
  if for_value and not r.in_values then return false end
  for _, prefix in ipairs(r.prefixes) do
    if wildcard_match(prefix .. "*", s, r.ignore_case) then return true, prefix end
  end
  if not for_value then
    for _, k in ipairs(r.keys) do
      if wildcard_match(k, s, r.ignore_case) then return true, k end
    end
  end
  return false
end

local function check_text(pol, rule, s, field, what)
  if rule.edge_space == "reject" and text.has_edge_space(s) then
    return reject(pol, field, "must not start or end with a space")
  end
  local n = text.length(s)
  if not n then return reject(pol, field, "is not valid UTF-8") end
  if n < rule.min or n > rule.max or (rule.allowed and not text.all_in(s, rule.allowed)) then
    return reject(pol, field, string.format("must be %d-%d characters of %s", rule.min, rule.max,
                                            rule.describe or "any kind"))
  end
  return nil
end

local function overwrite_mode(pol, key)
  local mode = pol.overwrite[key]
  if mode then return mode end
  for pattern, m in pairs(pol.overwrite) do
    if wildcard_match(pattern, key, false) then return m end
  end
  return "replace"
end

-- Checks one tag of a create.  Returns nil or the rejection message.
function policy.check_tag(pol, tag, field, caller)
  local key, value = tag.key, tag.value
  if type(key) ~= "string" then return reject(pol, field .. ".key", "is required and must be a string") end
  if type(value) ~= "string" then return reject(pol, field .. ".value", "is required and must be a string") end
  if text.is_blank(key) then return reject(pol, field .. ".key", "must not be blank") end
  local err = check_text(pol, pol.key, key, field .. ".key")
           or check_text(pol, pol.value, value, field .. ".value")
  if err then return err end
  local reserved, which = is_reserved(pol, key, false)
  if reserved and not (caller.role == "admin" and pol.reserved.admin_may_write) then
    return reject(pol, field .. ".key", "'" .. which .. "' is reserved")
  end
  if is_reserved(pol, value, true) then
    return reject(pol, field .. ".value", "reserved prefix not allowed in values")
  end
  for _, spelled in ipairs(pol.exact_case) do
    if lower(key) == lower(spelled) and key ~= spelled then
      return reject(pol, field .. ".key", "must be spelled exactly '" .. spelled .. "'")
    end
  end
  local allowed = pol.allowed_values[key]
  if allowed then
    local ok = false
    for _, pattern in ipairs(allowed) do
      if wildcard_match(pattern, value, false) then ok = true break end
    end
    if not ok then
      return reject(pol, field .. ".value", "not an allowed value for '" .. key .. "' ("
                    .. table.concat(allowed, ", ") .. ")")
    end
  end
  return nil
end

-- Checks a create against the image's current tags (key -> value) once the
-- image is known: overwrite rules and the hook.  Quota is counted by the
-- caller.  Returns nil or field, message.
function policy.check_merge(pol, current, tags, fields, caller)
  for i, tag in ipairs(tags) do
    local old = current[tag.key]
    if old ~= nil and old ~= tag.value then
      local mode = overwrite_mode(pol, tag.key)
      if mode == "immutable" then
        return reject(pol, fields[i] .. ".key", "'" .. tag.key .. "' is immutable once set")
      elseif mode == "deny" and caller.role ~= "admin" then
        return reject(pol, fields[i] .. ".key", "'" .. tag.key .. "' may be changed only by an admin")
      end
    end
  end
  if pol.hook then
    local field, message = pol.hook(current, tags, caller)
    if field then return reject(pol, field, message or "rejected by the policy hook") end
  end
  return nil
end

-- Checks one tag of a delete (no character set, longer limits).
function policy.check_delete_tag(pol, tag, field)
  local key, value = tag.key, tag.value
  if type(key) ~= "string" then return reject(pol, field .. ".key", "is required and must be a string") end
  if value ~= nil and type(value) ~= "string" then
    return reject(pol, field .. ".value", "must be a string")
  end
  if text.is_blank(key) then return reject(pol, field .. ".key", "must not be blank") end
  local n = text.length(key)
  if not n then return reject(pol, field .. ".key", "is not valid UTF-8") end
  if n > pol.delete.key_max then
    return reject(pol, field .. ".key", "must be at most " .. pol.delete.key_max .. " characters")
  end
  if value ~= nil then
    local nv = text.length(value)
    if not nv then return reject(pol, field .. ".value", "is not valid UTF-8") end
    if nv > pol.delete.value_max then
      return reject(pol, field .. ".value", "must be at most " .. pol.delete.value_max .. " characters")
    end
  end
  return nil
end

-- May the caller remove key (currently holding value) from an image?
function policy.check_removal(pol, key, field, caller)
  local reserved, which = is_reserved(pol, key, false)
  if reserved and not (caller.role == "admin" and pol.reserved.admin_may_write) then
    return reject(pol, field, "'" .. which .. "' is reserved")
  end
  local mode = overwrite_mode(pol, key)
  if mode == "immutable" then
    return reject(pol, field, "'" .. key .. "' is immutable once set")
  elseif mode == "deny" and caller.role ~= "admin" then
    return reject(pol, field, "'" .. key .. "' may be changed only by an admin")
  end
  return nil
end

-- Keys the policy requires when an image is created or imported.
function policy.check_required(pol, tags, field)
  for _, need in ipairs(pol.required) do
    local found = false
    for _, tag in ipairs(tags) do
      if tag.key == need then found = true break end
    end
    if not found then return reject(pol, field, "tag '" .. need .. "' is required") end
  end
  return nil
end

-- Runs a policy's own examples: each a tag created by a member on an
-- image without tags.  Returns nil or a message naming the example.
local function run_examples(pol)
  local ex = pol.examples
  if ex == nil then return nil end
  local member = { role = "member", project = "" }
  for kind, expect_ok in pairs({ accept = true, reject = false }) do
    for i, tag in ipairs(ex[kind] or {}) do
      local err = policy.check_tag(pol, tag, "tag", member)
                  or policy.check_merge(pol, {}, { tag }, { "tag" }, member)
      if (err == nil) ~= expect_ok then
        return string.format("examples.%s[%d] {key=%q, value=%q}: expected %s, got %s",
                             kind, i, tostring(tag.key), tostring(tag.value),
                             expect_ok and "accept" or "reject", err or "accept")
      end
    end
  end
  return nil
end

-- Loads every policy table and the configuration's bindings.  Raises with
-- the file (and example) at fault.
function policy.init(ctx)
  local files = {}
  compiled, bindings = {}, {}
  for name, tbl in pairs(ctx.policies) do
    local ok, c = pcall(policy.compile, tbl)
    if not ok then error(ctx.policies_dir .. "/" .. name .. ".lua: " .. tostring(c), 0) end
    local bad = run_examples(c)
    if bad then error(ctx.policies_dir .. "/" .. name .. ".lua: " .. bad, 0) end
    compiled[name] = c
    files[#files + 1] = name
  end
  local cfg = ctx.config or {}
  default_name = cfg.default_policy or "ims"
  if not compiled[default_name] then
    error(ctx.config_path .. ": default_policy '" .. default_name .. "' does not exist", 0)
  end
  for project, name in pairs(cfg.project_policies or {}) do
    if not compiled[name] then
      error(ctx.config_path .. ": project_policies['" .. tostring(project) .. "'] = '"
            .. tostring(name) .. "' does not exist", 0)
    end
    bindings[project] = name
  end
end

-- Quick-import rules (OS versions, formats, job limit): the project's
-- policy's `import` table, else the default policy's.
function policy.import_rules(pol)
  return pol.import or compiled[default_name].import or compiled.ims.import
end

function policy.for_project(project)
  return compiled[bindings[project] or default_name]
end

-- {default = name, <project> = name, ...} for /admin/status.
function policy.bindings()
  local out = { default = default_name }
  for project, name in pairs(bindings) do out[project] = name end
  return out
end

return policy
