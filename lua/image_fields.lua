-- image_fields: the image attribute rules of API.md §3, shared by image
-- registration (§5) and quick import (§3).  Each field has its IMS error
-- code; the values an operator tunes (OS versions, formats) come from the
-- policy's `import` table.
local request = require "request"
local shape = require "shape"
local text = require "text"

local fields = {}
local fail = shape.fail
local value = request.value

local NAME_CHARS = text.charset({ "A-Z", "a-z", "0-9", "-", ".", "_", " ", "\u{4E00}-\u{9FFF}" })
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

-- What registration (§5) takes for an attribute not given.
fields.DEFAULTS = { type = "ECS", architecture = "x86", min_disk = 40 }

local function one_of(v, allowed)
  for _, a in ipairs(allowed) do if v == a then return true end end
  return false
end

function fields.name(body)
  local v = value(body.name)
  if v == nil or v == "" then fail(400, "IMG.0013", "name: is required") end
  if type(v) ~= "string" or not utf8.len(v) then fail(400, "IMG.0003", "name: must be a string") end
  if utf8.len(v) > 128 then fail(400, "IMG.0002", "name: must be at most 128 characters") end
  if text.has_edge_space(v) or not text.all_in(v, NAME_CHARS) then
    fail(400, "IMG.0003", "name: must be letters, digits, spaces, '-', '.' or '_', without leading or trailing spaces")
  end
  return v
end

function fields.description(body)
  local v = value(body.description)
  if v == nil then return "" end
  if type(v) ~= "string" or not utf8.len(v) then fail(400, "IMG.0054", "description: must be a string") end
  if utf8.len(v) > 1024 then fail(400, "IMG.0004", "description: must be at most 1024 characters") end
  if v:find("[\r\n<>]") then
    fail(400, "IMG.0054", "description: must not contain carriage returns, line feeds, '<' or '>'")
  end
  return v
end

function fields.type(body)
  local v = value(body.type)
  if v == nil then return fields.DEFAULTS.type end
  if not one_of(v, { "ECS", "BMS", "DataImage" }) then
    fail(400, "IMG.0024", "type: must be ECS, BMS or DataImage")
  end
  return v
end

function fields.os_version(body, rules, required)
  local v = value(body.os_version)
  if v == nil then
    if required then fail(400, "IMG.0056", "os_version: is required for ECS and BMS images") end
    return nil
  end
  if type(v) ~= "string" or not one_of(v, rules.os_versions) then
    fail(400, "IMG.0056", "os_version: is not a supported OS version")
  end
  return v
end

-- An ECS or BMS image's os_type follows its os_version (§9).
local function os_type_of(os_version)
  if type(os_version) == "string" and os_version:sub(1, 7) == "Windows" then return "Windows" end
  return "Linux"
end

-- arm forces uefi (API.md §3, §9); x86 defaults to bios.
local function firmware_of(arch, asked)
  if arch == "arm" then return "uefi" end
  return asked or "bios"
end

function fields.os_type(body, image_type, os_version)
  local v = value(body.os_type)
  if image_type == "DataImage" then
    if v == nil then return "Linux" end
    if not one_of(v, { "Linux", "Windows" }) then
      fail(400, "IMG.0122", "os_type: must be Linux or Windows")
    end
    return v
  end
  if v ~= nil and not one_of(v, { "Linux", "Windows" }) then
    fail(400, "IMG.0122", "os_type: must be Linux or Windows")
  end
  return os_type_of(os_version)
end

function fields.min_disk(body, default)
  local v = value(body.min_disk)
  if v == nil then
    if default then return default end
    fail(400, "IMG.0055", "min_disk: is required")
  end
  if math.type(v) == "float" and v == math.floor(v) then v = math.tointeger(v) end
  if math.type(v) ~= "integer" or v < 1 or v > 1024 then
    fail(400, "IMG.0055", "min_disk: must be an integer from 1 to 1024")
  end
  return v
end

function fields.architecture(body)
  local v = value(body.architecture)
  if v == nil then return fields.DEFAULTS.architecture end
  if v ~= "x86" and v ~= "arm" then fail(400, "IMG.0212", "architecture: must be x86 or arm") end
  return v
end

function fields.hw_firmware_type(body, arch)
  local v = value(body.hw_firmware_type)
  if v ~= nil and v ~= "bios" and v ~= "uefi" then
    fail(400, "IMG.0141", "hw_firmware_type: must be bios or uefi")
  end
  return firmware_of(arch, v)
end

function fields.enterprise_project_id(body)
  local v = value(body.enterprise_project_id)
  if v == nil then return nil end
  if type(v) ~= "string" or (v ~= "0" and not v:lower():find(UUID)) then
    fail(400, "IMG.0155", "enterprise_project_id: must be \"0\" or a UUID")
  end
  return v
end

-- image_tags: [{key, value}] -> list, field names.
function fields.image_tags(body)
  local list = value(body.image_tags)
  if list == nil then return nil end
  if not request.is_array(list) then
    fail(400, "IMG.0001", "image_tags: must be an array")
  end
  local out, names = {}, {}
  for i, t in ipairs(list) do
    names[i] = "image_tags[" .. (i - 1) .. "]"
    request.object(t, names[i], "IMG.0115")
    out[i] = { key = value(t.key), value = value(t.value) }
  end
  return out, names
end

-- The common attributes of a new image; os_version required when asked.
function fields.attributes(body, rules, opts)
  local a = {}
  a.name = fields.name(body)
  -- description and enterprise_project_id are quick import's (§3); a
  -- registration ignores them as unknown fields (§0, §5)
  a.description = opts.import and fields.description(body) or nil
  a.type = fields.type(body)
  a.os_version = fields.os_version(body, rules, opts.os_version_required and a.type ~= "DataImage")
  a.os_type = fields.os_type(body, a.type, a.os_version)
  a.min_disk = fields.min_disk(body, opts.min_disk_default)
  a.architecture = fields.architecture(body)
  a.hw_firmware_type = fields.hw_firmware_type(body, a.architecture)
  a.enterprise_project_id = opts.import and fields.enterprise_project_id(body) or nil
  return a
end

-- The attributes of a stored image, those it lacks filled in as a
-- registration without them would have: `tagway load` stores none (§7 is
-- structure only), and its images must read like registered ones.
-- A stored null is an absent attribute, as in a request (§9).
function fields.stored(a)
  local image_type = value(a.type) or fields.DEFAULTS.type
  local arch = value(a.architecture) or fields.DEFAULTS.architecture
  local os_version = value(a.os_version)
  local os_type = value(a.os_type)
  if os_type == nil then
    os_type = image_type == "DataImage" and "Linux" or os_type_of(os_version)
  end
  return {
    type = image_type, os_version = os_version, os_type = os_type,
    min_disk = value(a.min_disk) or fields.DEFAULTS.min_disk, architecture = arch,
    hw_firmware_type = value(a.hw_firmware_type) or firmware_of(arch, nil),
  }
end

return fields
