-- text: UTF-8 aware string rules shared by handlers and policies: lengths
-- in code points, blank and edge-space tests, character sets given as data.
-- globals read per request, as locals: each global read is a lookup
-- through the locked _G
local ipairs, tonumber, error, type, string, table, utf8, math = ipairs, tonumber, error, type, string, table, utf8, math

local text = {}

-- Code points of s, or nil when s is not valid UTF-8.
function text.length(s)
  return utf8.len(s)
end

-- API.md §1.1: blank is empty or only spaces (U+0020); a tab is a
-- character like any other (a character set may refuse it)
function text.is_blank(s)
  return s:find("^ *$") ~= nil
end

function text.has_edge_space(s)
  return s:find("^%s") ~= nil or s:find("%s$") ~= nil
end

-- Compiles a character set given as data: a list of single characters and
-- "X-Y" ranges of code points, e.g. {"A-Z", "a-z", "0-9", "_", "-",
-- "\u{4E00}-\u{9FFF}"}.  The result is used with text.all_in: pure-ASCII
-- strings (the common case) are checked with one Lua pattern, others code
-- point by code point.
local function ascii_run(lo, hi, first, last) return lo >= first and hi <= last end

function text.charset(spec)
  local ascii, ranges, class = {}, {}, {}
  for i, item in ipairs(spec) do
    local lo, hi
    if type(item) == "table" then
      -- { "X", "Y" }: a range said to be one, of any span ({ " ", "~" }:
      -- printable ASCII)
      local a, b = item[1], item[2]
      if type(a) ~= "string" or type(b) ~= "string" or utf8.len(a) ~= 1 or utf8.len(b) ~= 1
         or #item ~= 2 then
        error("item " .. i .. ": a range written as a table is { X, Y }, two single characters", 2)
      end
      lo, hi = utf8.codepoint(a), utf8.codepoint(b)
      item = a .. "-" .. b
    elseif type(item) ~= "string" then
      error("item " .. i .. " is a " .. type(item) .. ", not a string", 2)
    else
      local cps = {}
      for _, c in utf8.codes(item) do cps[#cps + 1] = c end
      if #cps == 1 then lo, hi = cps[1], cps[1]
      elseif #cps == 3 and cps[2] == 45 then lo, hi = cps[1], cps[3]
      else error("item '" .. item .. "' is neither one character nor a range X-Y", 2) end
      -- ":-_", meant as three characters, is the range ':' to '_' (38 of
      -- them, '@' and '[' among them): a range written X-Y within ASCII is
      -- digits, upper-case or lower-case letters; any other is a table
      if lo < hi and lo < 128 and not (ascii_run(lo, hi, 48, 57) or ascii_run(lo, hi, 65, 90) or
                                       ascii_run(lo, hi, 97, 122)) then
        error(string.format("range '%s' spans U+%04X to U+%04X; a range written X-Y that starts in "
                            .. "ASCII must be digits, upper-case or lower-case letters only: list the "
                            .. "characters one by one, or write a range meant as one as a table, { '%s', '%s' }",
                            item, lo, hi, utf8.char(lo), utf8.char(hi)), 2)
      end
    end
    -- "Z-A" would be an empty set: every key it was meant for refused
    if lo > hi then error("range '" .. item .. "' runs backwards (X must come no later than Y)", 2) end
    for c = lo, math.min(hi, 127) do ascii[c] = true end
    if hi >= 128 then ranges[#ranges + 1] = { math.max(lo, 128), hi } end
  end
  -- Runs of 3 or more letters or digits become one range (A-Z): Lua
  -- tries a class's items one by one for every character, so 62 single
  -- items made the check of a 10-character key cost ~600 comparisons.
  -- Range ends are alphanumerics, which need no escape; other characters
  -- go alone, escaped ("%" before a letter or digit would make a class
  -- such as %a, so those stay literal).
  local function word(c) return c and string.char(c):find("^%w$") ~= nil end
  local c = 0
  while c <= 127 do
    if ascii[c] then
      local last = c
      while word(c) and ascii[last + 1] and word(last + 1) do last = last + 1 end
      if last - c >= 2 then
        class[#class + 1] = string.char(c) .. "-" .. string.char(last)
        c = last
      elseif word(c) then
        class[#class + 1] = string.char(c)
      else
        class[#class + 1] = "%" .. string.char(c)
      end
    end
    c = c + 1
  end
  local set = { ranges = ranges, ascii = ascii }
  set.ascii_pattern = #class > 0 and ("^[" .. table.concat(class) .. "]*$") or "^$"
  return set
end

local function in_set(set, c)
  if c < 128 then return set.ascii[c] == true end
  local ranges = set.ranges
  for i = 1, #ranges do
    local r = ranges[i]
    if c >= r[1] and c <= r[2] then return true end
  end
  return false
end

-- True when every code point of s is in the set (s must be valid UTF-8).
-- n (optional): the code points of s, when the caller has counted them;
-- as many as bytes means ASCII, without looking for other bytes.
function text.all_in(s, set, n)
  if n == #s or not s:find("[\128-\255]") then
    return s:find(set.ascii_pattern) ~= nil
  end
  for _, c in utf8.codes(s) do
    if not in_set(set, c) then return false end
  end
  return true
end

-- Percent-decodes a path segment (%XX only; '+' stays '+').
function text.unescape(s)
  if not s:find("%", 1, true) then return s end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

return text
