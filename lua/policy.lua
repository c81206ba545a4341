-- policy: compiles the policy tables of policies/*.lua (data first) and
-- applies them to tag writes: per-tag checks, merge checks against the
-- image's current tags, deletes, required keys.  Every rejection names the
-- field, the rule and the policy.  Which policy a project uses comes from
-- the configuration (default_policy, project_policies).
local text = require "text"

-- globals read per request, as locals: each global read is a lookup
-- through the locked _G
local type, ipairs, pairs, tostring, error, pcall, math, table, string, gw = type, ipairs, pairs, tostring, error, pcall, math, table, string, gw

local policy = {}

local compiled = {}        -- name -> compiled policy
local bindings = {}        -- project id -> name
local default_name = "ims"
local any_rate_limit = false -- a policy has one: else the router asks nothing

local function lower(s) return s:lower() end

-- "300*" matches anything starting with "300" (so "300" too); anything
-- else matches exactly.  Only a trailing '*' is a wildcard (compile
-- refuses others), so a pattern never surprises with regex-like meaning.
local function wildcard_match(pattern, s, ignore_case)
  if ignore_case then pattern, s = lower(pattern), lower(s) end
  if pattern:sub(-1) == "*" then
    local prefix = pattern:sub(1, -2)
    return s:sub(1, #prefix) == prefix
  end
  return pattern == s
end

-- ---- compiling ------------------------------------------------------------

-- Compile errors are tables {field =, message =} so that init can point at
-- the line of the offending field in the policy file.
local function need(cond, field, message)
  if not cond then error({ field = field, message = message }, 0) end
end

local KNOWN = {
  "name", "version", "description", "max_tags", "key", "value", "delete", "reserved",
  "overwrite", "allowed_values", "exact_case", "required", "hook", "examples", "import",
  "rate_limit",
}

-- A misspelt key (overwite, edge_spaces) would silently drop a rule:
-- every table of a policy takes only the keys it knows.
local function only(t, field, keys)
  for k in pairs(t) do
    local known = false
    for _, name in ipairs(keys) do if k == name then known = true break end end
    need(known, field == "" and tostring(k) or (field .. "." .. tostring(k)), "is not a policy key")
  end
end

local function check_pattern(p, field)
  need(type(p) == "string", field, "must be a string")
  need(not p:sub(1, -2):find("*", 1, true), field, "only a trailing '*' is a wildcard")
end

local function compile_text_rule(rule, what)
  need(type(rule) == "table", what, "must be a table")
  only(rule, what, { "min", "max", "chars", "describe", "edge_space" })
  local r = {
    min = rule.min or 0, max = rule.max, describe = rule.describe,
    edge_space = rule.edge_space or "allow",
  }
  need(math.type(r.min) == "integer" and r.min >= 0, what .. ".min", "must be an integer >= 0")
  need(math.type(r.max) == "integer" and r.max >= r.min, what .. ".max", "must be an integer >= min")
  need(r.edge_space == "allow" or r.edge_space == "reject", what .. ".edge_space",
       "must be 'allow' or 'reject'")
  need(r.describe == nil or type(r.describe) == "string", what .. ".describe", "must be a string")
  if rule.chars ~= nil then
    need(type(rule.chars) == "table", what .. ".chars", "must be a list of characters and X-Y ranges")
    local ok, set = pcall(text.charset, rule.chars)
    need(ok, what .. ".chars", "must be a list of single characters and X-Y ranges: " .. tostring(set))
    r.allowed = set
    if not r.describe then        -- without one a rejection said "of any kind"
      local items = {}
      for i, item in ipairs(rule.chars) do
        items[i] = type(item) == "table" and ("'" .. item[1] .. "'-'" .. item[2] .. "'") or ("'" .. item .. "'")
      end
      r.describe = table.concat(items, ", ")
    end
  end
  return r
end

-- true or false (absent: the default); a string "true" is a mistake, not
-- a false.
local function boolean(v, field, default)
  need(v == nil or type(v) == "boolean", field, "must be true or false")
  if v == nil then return default end
  return v
end

local function string_list(list, field)
  need(list == nil or type(list) == "table", field, "must be a list of strings")
  local out = {}
  for i, v in ipairs(list or {}) do
    need(type(v) == "string", field .. "[" .. i .. "]", "must be a string")
    out[i] = v
  end
  return out
end

-- Overwrite rules as an ordered list: exact keys first, then patterns by
-- decreasing prefix length, so the most specific rule wins whatever order
-- pairs() visits the table in ("billing*" = "deny" beats "*" = "replace").
local function compile_overwrite(t)
  need(t == nil or type(t) == "table", "overwrite", "must be a table of key pattern -> mode")
  local rules = {}
  for pattern, mode in pairs(t or {}) do
    local field = "overwrite['" .. tostring(pattern) .. "']"
    check_pattern(pattern, field)
    need(mode == "replace" or mode == "immutable" or mode == "deny", field,
         "must be 'replace', 'immutable' or 'deny'")
    local wild = pattern:sub(-1) == "*"
    rules[#rules + 1] = { pattern = pattern, mode = mode, wild = wild,
                          len = wild and #pattern - 1 or #pattern }
  end
  table.sort(rules, function(a, b)
    if a.wild ~= b.wild then return not a.wild end
    if a.len ~= b.len then return a.len > b.len end
    return a.pattern < b.pattern
  end)
  return rules
end

local function compile_allowed(t)
  need(t == nil or type(t) == "table", "allowed_values", "must be a table of key -> list of values")
  local out = {}
  for key, list in pairs(t or {}) do
    local field = "allowed_values['" .. tostring(key) .. "']"
    need(type(key) == "string", field, "keys must be strings")
    out[key] = string_list(list, field)
    need(out[key][1] ~= nil, field, "must list at least one value")
    for i, p in ipairs(out[key]) do check_pattern(p, field .. "[" .. i .. "]") end
  end
  return out
end

local function compile_examples(ex)
  if ex == nil then return nil end
  need(type(ex) == "table", "examples", "must be {accept = {...}, reject = {...}}")
  only(ex, "examples", { "accept", "reject" })
  for _, kind in ipairs({ "accept", "reject" }) do
    local list = ex[kind]
    need(list == nil or type(list) == "table", "examples." .. kind, "must be a list of {key =, value =}")
    for i, tag in ipairs(list or {}) do
      need(type(tag) == "table", "examples." .. kind .. "[" .. i .. "]", "must be a table {key =, value =}")
      -- {key = "ok", vaule = "v"} would be rejected for its missing value
      only(tag, "examples." .. kind .. "[" .. i .. "]", { "key", "value" })
    end
  end
  return ex
end

local function compile_import(imp)
  if imp == nil then return nil end
  need(type(imp) == "table", "import", "must be a table")
  -- what the default backend reads; another backend keeps its own
  -- settings under `backend`, which is its to check
  only(imp, "import", { "os_versions", "formats", "max_running_jobs", "bytes_per_step", "backend" })
  need(imp.bytes_per_step == nil or (math.tointeger(imp.bytes_per_step) and imp.bytes_per_step >= 1),
       "import.bytes_per_step", "must be a whole number >= 1")
  need(imp.backend == nil or type(imp.backend) == "table", "import.backend", "must be a table")
  string_list(imp.os_versions, "import.os_versions")
  string_list(imp.formats, "import.formats")
  need(type(imp.os_versions) == "table", "import.os_versions", "is required")
  need(type(imp.formats) == "table", "import.formats", "is required")
  need(math.type(imp.max_running_jobs) == "integer" and imp.max_running_jobs >= 1,
       "import.max_running_jobs", "must be an integer >= 1")
  return imp
end

-- Requests a second per project, shared by every worker: beyond, 429
-- APIGW.0308.  burst (default: one second's worth) is what an idle project
-- may send at once.
local function compile_rate_limit(r)
  if r == nil then return nil end
  need(type(r) == "table", "rate_limit", "must be a table")
  only(r, "rate_limit", { "per_second", "burst" })
  need(type(r.per_second) == "number" and r.per_second >= 1 / 900 and r.per_second <= 1e9,
       "rate_limit.per_second", "must be a number from 1/900 (one a quarter hour) to 1e9")
  local burst = r.burst
  if burst == nil then burst = math.max(1, math.ceil(r.per_second)) end
  need(type(burst) == "number" and burst >= 1 and burst <= 1e9, "rate_limit.burst",
       "must be a number >= 1 (at most 1e9)")
  return { per_second = r.per_second, burst = burst }
end

local function compile_table(p)
  need(type(p) == "table", "name", "the file must return a table")
  local name = p.name
  need(type(name) == "string", "name", "must be a string")
  only(p, "", KNOWN)
  need(math.type(p.max_tags) == "integer" and p.max_tags >= 0, "max_tags", "must be an integer >= 0")
  local delete = p.delete or {}
  need(type(delete) == "table", "delete", "must be a table")
  only(delete, "delete", { "key_max", "value_max", "match_value" })
  local reserved = p.reserved or {}
  need(type(reserved) == "table", "reserved", "must be a table")
  only(reserved, "reserved", { "prefixes", "keys", "ignore_case", "admin_may_write", "in_values" })
  local c = {
    name = name, version = p.version, description = p.description,
    max_tags = p.max_tags,
    key = compile_text_rule(p.key, "key"),
    value = compile_text_rule(p.value, "value"),
    delete = {
      -- a policy that allows keys longer than the default never said 127
      key_max = delete.key_max or math.max(127, type(p.key) == "table" and math.tointeger(p.key.max) or 0),
      value_max = delete.value_max or 255,
      match_value = boolean(delete.match_value, "delete.match_value", false),
    },
    reserved = {
      prefixes = string_list(reserved.prefixes, "reserved.prefixes"),
      keys = string_list(reserved.keys, "reserved.keys"),
      ignore_case = boolean(reserved.ignore_case, "reserved.ignore_case", true),
      admin_may_write = boolean(reserved.admin_may_write, "reserved.admin_may_write", false),
      in_values = boolean(reserved.in_values, "reserved.in_values", false),
    },
    overwrite = compile_overwrite(p.overwrite),      -- ordered {pattern, mode}
    allowed_values = compile_allowed(p.allowed_values), -- key -> list of patterns
    exact_case = string_list(p.exact_case, "exact_case"), -- keys whose spelling is enforced
    required = string_list(p.required, "required"),  -- keys required at image creation
    hook = p.hook,
    examples = compile_examples(p.examples),
    import = compile_import(p.import),               -- quick-import rules (optional)
    rate_limit = compile_rate_limit(p.rate_limit),   -- {per_second, burst} or nil
  }
  need(math.type(c.delete.key_max) == "integer" and c.delete.key_max >= 1, "delete.key_max",
       "must be an integer >= 1")
  need(math.type(c.delete.value_max) == "integer" and c.delete.value_max >= 0, "delete.value_max",
       "must be an integer >= 0")
  for _, k in ipairs(c.reserved.keys) do check_pattern(k, "reserved.keys") end
  for i, prefix in ipairs(c.reserved.prefixes) do
    need(not prefix:find("*", 1, true), "reserved.prefixes[" .. i .. "]",
         "a prefix already matches every key that starts with it: write '" .. prefix:gsub("%*", "") ..
         "' (a '*' would be taken literally, and match no key)")
  end
  need(c.hook == nil or type(c.hook) == "function", "hook", "must be a function")
  return c
end

-- Validates a policy table and returns its compiled form; raises with a
-- message naming the policy and the field on a malformed table.
function policy.compile(p)
  local ok, c = pcall(compile_table, p)
  if ok then return c end
  if type(c) == "table" then
    local name = type(p) == "table" and tostring(p.name) or "?"
    error(name .. ": " .. c.field .. ": " .. c.message, 0)
  end
  error(c, 0)
end

-- ---- checking -------------------------------------------------------------

local function reject(pol, field, rule)
  return field .. ": " .. rule .. " (policy " .. pol.name .. ")"
end

-- true, "prefix"|"key", the matching entry when s is reserved.
local function is_reserved(pol, s, for_value)
  local r = pol.reserved
  if for_value and not r.in_values then return false end
  for _, prefix in ipairs(r.prefixes) do
    if wildcard_match(prefix .. "*", s, r.ignore_case) then return true, "prefix", prefix end
  end
  if not for_value then
    for _, k in ipairs(r.keys) do
      if wildcard_match(k, s, r.ignore_case) then return true, "key", k end
    end
  end
  return false
end

local function reserved_rule(pol, kind, which, what)
  local rule = kind == "prefix" and (what .. " starting with '" .. which .. "'") or ("key '" .. which .. "'")
  if kind == "prefix" and pol.reserved.ignore_case then rule = rule .. " in any case" end
  if pol.reserved.admin_may_write and what == "keys" then
    return rule .. (kind == "prefix" and " are" or " is") .. " reserved for the admin role"
  end
  return rule .. (kind == "prefix" and " are" or " is") .. " reserved"
end

-- May the caller write (or remove) key at all?  nil or the rejection.
local function check_reserved_key(pol, key, field, caller)
  local reserved, kind, which = is_reserved(pol, key, false)
  if reserved and not (caller.role == "admin" and pol.reserved.admin_may_write) then
    return reject(pol, field, reserved_rule(pol, kind, which, "keys"))
  end
  return nil
end

local function check_text(pol, rule, s, field)
  -- NUL would cut the string short once it reaches C and SQLite
  if s:find("\0", 1, true) then return reject(pol, field, "must not contain NUL characters") end
  local n = text.length(s)
  if not n then return reject(pol, field, "is not valid UTF-8") end
  if rule.edge_space == "reject" and text.has_edge_space(s) then
    return reject(pol, field, "must not start or end with a space")
  end
  if n < rule.min or n > rule.max or (rule.allowed and not text.all_in(s, rule.allowed, n)) then
    return reject(pol, field, string.format("must be %d-%d characters of %s", rule.min, rule.max,
                                            rule.describe or "any kind"))
  end
  return nil
end

local function overwrite_mode(pol, key)
  for _, r in ipairs(pol.overwrite) do
    if wildcard_match(r.pattern, key, false) then return r.mode end
  end
  return "replace"
end

-- Rules of one policy that contradict each other: each loaded, and then
-- refused what the policy means to allow (a key created but not deleted
-- in a batch; a required key no one could write).  Returns c.
local function cross_check(c)
  need(c.delete.key_max >= c.key.max, "delete.key_max", string.format(
       "must be at least key.max (%d): a key the policy lets be written could not be deleted in a batch",
       c.key.max))
  for _, list in ipairs({ "required", "exact_case" }) do
    for i, key in ipairs(c[list]) do
      local why = check_text(c, c.key, key, "key")
      need(not why, list .. "[" .. i .. "]", "'" .. key .. "' could never be written: " .. (why or ""))
    end
  end
  for key in pairs(c.allowed_values) do
    local why = check_text(c, c.key, key, "key")
    need(not why, "allowed_values['" .. key .. "']", "'" .. key .. "' could never be written: " .. (why or ""))
  end
  return c
end

-- Checks one tag of a create.  Returns nil or the rejection message.
function policy.check_tag(pol, tag, field, caller)
  local key, value = tag.key, tag.value
  if type(key) ~= "string" then return reject(pol, field .. ".key", "is required and must be a string") end
  if type(value) ~= "string" then return reject(pol, field .. ".value", "is required and must be a string") end
  if text.is_blank(key) then return reject(pol, field .. ".key", "must not be blank") end
  local err = check_text(pol, pol.key, key, field .. ".key")
           or check_text(pol, pol.value, value, field .. ".value")
           or check_reserved_key(pol, key, field .. ".key", caller)
  if err then return err end
  local reserved_value, _, which = is_reserved(pol, value, true)
  if reserved_value then
    return reject(pol, field .. ".value", reserved_rule(pol, "prefix", which, "values"))
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
      return reject(pol, field .. ".value", "'" .. value .. "' is not an allowed value for '" .. key
                    .. "' (allowed: " .. table.concat(allowed, ", ") .. ")")
    end
  end
  return nil
end

local function copy_tags(tags)
  local out = {}
  for i, t in ipairs(tags) do out[i] = { key = t.key, value = t.value } end
  return out
end

-- Checks a create against the image's current tags (key -> value) once the
-- image is known: overwrite rules and the hook.  Quota is counted by the
-- caller.  Returns nil or the rejection message.
-- The hook is called as hook(current, tags, caller, fields): current the
-- image's tags (key -> value, {} for a new image), tags the request's
-- {key, value} list, caller {role, project}, fields[i] the name of tag i in
-- messages ("tags[2]", "tag", "image_tags[0]").  It returns nothing to
-- accept, or field, message to reject (400 IMG.0115).
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
    -- copies: a hook judges the write, it must not be able to alter it
    local now = {}
    for k, v in pairs(current) do now[k] = v end
    local names = {}
    for i, f in ipairs(fields or {}) do names[i] = f end
    local field, message = pol.hook(now, copy_tags(tags),
                                    { role = caller.role, project = caller.project }, names)
    -- a hook answers nil (accept) or a field name and a message, both
    -- strings: anything else is a mistake in the policy, a 500 with the
    -- reason logged, never a client message made of table addresses
    if field ~= nil and field ~= false then
      if type(field) ~= "string" or (message ~= nil and type(message) ~= "string") then
        error(string.format("policy %s: hook returned %s, %s; it must return nil, or a field name and "
                            .. "a message (strings)", pol.name, type(field), type(message)), 0)
      end
      return reject(pol, field, message or "rejected by the policy hook")
    end
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
  -- no character set: a key with a NUL passes, and is absent (no write
  -- stores one), so it never reaches C
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

-- May the caller remove key from an image?  Reserved keys stay with those
-- who may write them; immutable keys stay; deny keys stay for members.
function policy.check_removal(pol, key, field, caller)
  local err = check_reserved_key(pol, key, field, caller)
  if err then return err end
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
  for _, need_key in ipairs(pol.required) do
    local found = false
    for _, tag in ipairs(tags) do
      if tag.key == need_key then found = true break end
    end
    if not found then return reject(pol, field, "tag '" .. need_key .. "' is required") end
  end
  return nil
end

-- ---- examples and where they are --------------------------------------------

-- The source with every comment and string blanked out (newlines kept), so
-- braces and names can be found by position without being fooled by a
-- "{" in a string or an "examples = {" in a comment.
local function code_only(src)
  local out, i, n = {}, 1, #src
  local function blank(s) return (s:gsub("[^\n]", " ")) end
  local function long_end(at)        -- at: index of a '[' opening a long bracket
    local eqs = src:match("^%[(=*)%[", at)
    if not eqs then return nil end
    local _, e = src:find("]" .. eqs .. "]", at + #eqs + 2, true)
    return e or n
  end
  while i <= n do
    local j = src:find("[\"'%-%[]", i)
    if not j then out[#out + 1] = src:sub(i) break end
    out[#out + 1] = src:sub(i, j - 1)
    local c, stop = src:sub(j, j), nil
    if c == "-" then
      if src:sub(j + 1, j + 1) == "-" then
        stop = long_end(j + 2) or ((src:find("\n", j, true) or n + 1) - 1)
      end
    elseif c == "[" then
      stop = long_end(j)
    else
      local k = j + 1
      while k <= n do
        local d = src:sub(k, k)
        if d == "\\" then k = k + 2
        elseif d == c or d == "\n" then break
        else k = k + 1 end
      end
      stop = math.min(k, n)
    end
    if stop then
      out[#out + 1] = blank(src:sub(j, stop))
      i = stop + 1
    else
      out[#out + 1] = c
      i = j + 1
    end
  end
  return table.concat(out)
end

local function line_at(src, pos)
  local _, newlines = src:sub(1, pos - 1):gsub("\n", "")
  return newlines + 1
end

-- Position of the "}" closing the "{" at open (in code), or #code.
local function closing(code, open)
  local depth, i = 0, open
  while true do
    local j = code:find("[{}]", i)
    if not j then return #code end
    depth = depth + (code:sub(j, j) == "{" and 1 or -1)
    if depth == 0 then return j end
    i = j + 1
  end
end

-- Position of `name = {` (its "{") in code between from and to, or nil.
local function table_field(code, name, from, to)
  local _, e = code:find("%f[%w_]" .. name .. "%s*=%s*{", from)
  if e and e <= to then return e end
  return nil
end

-- Line of examples[kind][index] in a policy's source: the index-th "{"
-- directly inside `kind = {` inside `examples = {`; else the first line
-- naming the example's key after that marker; else the marker's line.
local function example_line(src, kind, index, tag)
  local code = code_only(src)
  local ex = table_field(code, "examples", 1, #code)
  if not ex then return nil end
  local list = table_field(code, kind, ex, closing(code, ex))
  if not list then return line_at(src, ex) end
  local stop, depth, count, i = closing(code, list), 0, 0, list + 1
  while true do
    local j = code:find("[{}]", i)
    if not j or j >= stop then break end
    if code:sub(j, j) == "{" then
      if depth == 0 then
        count = count + 1
        if count == index then return line_at(src, j) end
      end
      depth = depth + 1
    else
      depth = depth - 1
    end
    i = j + 1
  end
  if type(tag.key) == "string" and tag.key ~= "" then
    local at = src:find('"' .. tag.key .. '"', list, true) or src:find("'" .. tag.key .. "'", list, true)
    if at and at < stop then return line_at(src, at) end
  end
  return line_at(src, list)
end

-- Line of a compile error's field: each part of "key.max" found in turn.
local function field_line(src, field)
  local code, pos = code_only(src), nil
  for part in tostring(field):match("^[^%[]*"):gmatch("[%a_][%w_]*") do
    local at = code:find("%f[%w_]" .. part .. "%f[^%w_]%s*=", pos or 1)
    if not at then break end
    pos = at
  end
  return pos and line_at(src, pos) or nil
end

-- Runs a policy's own examples: each a tag created by a member on an image
-- without tags (so tag checks, merge rules, the hook and the quota apply).
-- Returns nil, or kind, index, tag and the message of the first failure.
local function run_examples(pol)
  local ex = pol.examples
  if ex == nil then return nil end
  local member = { role = "member", project = "" }
  for _, kind in ipairs({ "accept", "reject" }) do
    local expect_ok = kind == "accept"
    for i, tag in ipairs(ex[kind] or {}) do
      local ok, err = pcall(function()
        return policy.check_tag(pol, tag, "tag", member)
            or policy.check_merge(pol, {}, { tag }, { "tag" }, member)
            or (pol.max_tags < 1 and reject(pol, "tags", "at most " .. pol.max_tags .. " tags") or nil)
      end)
      local what = string.format("examples.%s[%d] {key = %q, value = %q}", kind, i,
                                 tostring(tag.key), tostring(tag.value))
      if not ok then
        return kind, i, tag, what .. ": the check raised an error: " .. tostring(err)
      end
      if (err == nil) ~= expect_ok then
        return kind, i, tag, string.format("%s: expected %s, got %s", what,
                                           expect_ok and "accept" or "reject",
                                           err and ("reject: " .. err) or "accept")
      end
    end
  end
  return nil
end

-- "path:line: " when the line can be found in the loaded text, else "path: ".
local function located(path, line)
  if line then return path .. ":" .. line .. ": " end
  return path .. ": "
end

-- Loads every policy table and the configuration's bindings.  Raises with
-- the file and line at fault; nothing is installed unless all of it holds.
function policy.init(ctx)
  local next_compiled, next_bindings = {}, {}
  local names = {}
  for name in pairs(ctx.policies) do names[#names + 1] = name end
  table.sort(names)              -- the first error reported is always the same one
  for _, name in ipairs(names) do
    local path = ctx.policies_dir .. "/" .. name .. ".lua"
    local src = gw.source(path)
    local ok, c = pcall(compile_table, ctx.policies[name])
    if ok then ok, c = pcall(cross_check, c) end
    if not ok then
      if type(c) ~= "table" then error(path .. ": " .. tostring(c), 0) end
      error(located(path, src and field_line(src, c.field)) .. c.field .. ": " .. c.message, 0)
    end
    local kind, index, tag, bad = run_examples(c)
    if kind then
      error(located(path, src and example_line(src, kind, index, tag)) .. bad, 0)
    end
    next_compiled[name] = c
  end
  local cfg = ctx.config or {}
  local where = ctx.config_path
  local def = cfg.default_policy or "ims"
  if type(def) ~= "string" then error(where .. ": default_policy must be a policy name", 0) end
  if not next_compiled[def] then
    error(where .. ": default_policy '" .. def .. "' does not exist in " .. ctx.policies_dir, 0)
  end
  if cfg.project_policies ~= nil and type(cfg.project_policies) ~= "table" then
    error(where .. ": project_policies must be a table of project id -> policy name", 0)
  end
  for project, name in pairs(cfg.project_policies or {}) do
    -- a misspelt id (upper case, a dash) would bind nothing, silently
    if type(project) ~= "string" or not project:find("^%x+$") or #project ~= 32
       or project:find("%u") then
      error(where .. ": project_policies['" .. tostring(project)
            .. "']: a project id is 32 lowercase hex characters", 0)
    end
    if not next_compiled[name] then
      error(where .. ": project_policies['" .. tostring(project) .. "'] = '" .. tostring(name)
            .. "': policy '" .. tostring(name) .. "' does not exist in " .. ctx.policies_dir, 0)
    end
    next_bindings[project] = name
  end
  -- quick import and registration need OS versions and formats from somewhere
  if not (next_compiled[def].import or (next_compiled.ims and next_compiled.ims.import)) then
    error(where .. ": default_policy '" .. def .. "' has no import table and there is no ims policy", 0)
  end
  local any = false
  for _, c in pairs(next_compiled) do any = any or c.rate_limit ~= nil end
  compiled, bindings, default_name, any_rate_limit = next_compiled, next_bindings, def, any
end

-- Quick-import rules (OS versions, formats, job limit): the project's
-- policy's `import` table, else the default policy's, else ims's.
function policy.import_rules(pol)
  return pol.import or compiled[default_name].import or compiled.ims.import
end

function policy.for_project(project)
  return compiled[bindings[project] or default_name]
end

-- The project's {per_second, burst}, or nil; on every request, so it
-- answers nil at once when no policy limits anything.
function policy.rate_limit_for(project)
  if not any_rate_limit then return nil end
  return compiled[bindings[project] or default_name].rate_limit
end

-- {default = name, <project> = name, ...} for /admin/status.
function policy.bindings()
  local out = { default = default_name }
  for project, name in pairs(bindings) do out[project] = name end
  return out
end

return policy
