-- text: UTF-8 aware string rules shared by handlers and policies: lengths
-- in code points, blank and edge-space tests, character sets given as data.
local text = {}

-- Code points of s, or nil when s is not valid UTF-8.
function text.length(s)
  return utf8.len(s)
end

function text.is_blank(s)
  return s:find("^%s*$") ~= nil
end

function text.has_edge_space(s)
  return s:find("^%s") ~= nil or s:find("%s$") ~= nil
end

-- Compiles a character set given as data: a list of single characters and
-- "X-Y" ranges of code points, e.g. {"A-Z", "a-z", "0-9", "_", "-",
-- "\u{4E00}-\u{9FFF}"}.  Returns a predicate on code points.
function text.charset(spec)
  local ascii, ranges = {}, {}
  for _, item in ipairs(spec) do
    local cps = {}
    for _, c in utf8.codes(item) do cps[#cps + 1] = c end
    local lo, hi
    if #cps == 1 then lo, hi = cps[1], cps[1]
    elseif #cps == 3 and cps[2] == 45 then lo, hi = cps[1], cps[3]
    else error("character set item '" .. item .. "' must be one character or a range X-Y", 2) end
    if hi < 128 then
      for c = lo, hi do ascii[c] = true end
    else
      ranges[#ranges + 1] = { lo, hi }
    end
  end
  return function(c)
    if c < 128 then return ascii[c] == true end
    for i = 1, #ranges do
      local r = ranges[i]
      if c >= r[1] and c <= r[2] then return true end
    end
    return false
  end
end

-- True when every code point of s is allowed by the predicate.
function text.all_in(s, allowed)
  for _, c in utf8.codes(s) do
    if not allowed(c) then return false end
  end
  return true
end

-- Percent-decodes a path segment (%XX only; '+' stays '+').
function text.unescape(s)
  if not s:find("%", 1, true) then return s end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

return text
