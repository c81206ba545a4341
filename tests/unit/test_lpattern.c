/* test_lpattern: differential test of lpattern's find/match/gmatch/gsub
 * against the stock Lua 5.4 string library.
 *   (a) a hand-written corpus covering every pattern feature and error,
 *   (b) random patterns and subjects from a fixed seed, all four functions,
 *   (c) the budget tick stops catastrophic patterns quickly and leaves the
 *       state usable.
 * "./test_lpattern bench" also times 1e6 find calls, stock against ours.
 */
#include "lpattern.h"
#include "unit.h"

#include <lauxlib.h>
#include <lualib.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- tick callbacks ---------------------------------------------------- */

typedef struct TickCount {
    long calls;
    long limit;          /* raise after this many calls; 0: never */
} TickCount;

static void count_tick(lua_State *L, void *ud)
{
    TickCount *t = ud;
    if (++t->calls == t->limit || (t->limit && t->calls > t->limit))
        luaL_error(L, "budget exceeded");
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- Lua side of the comparison ---------------------------------------- */

/* compare(name, ...) calls string[name](...) and our[name](...) under
 * pcall and returns true, or false and a description.  gmatch results are
 * the list of everything the iterator returns.  The callee is the local
 * 'f' in both cases so argument errors name the same function. */
static const char harness_lua[] =
    "local our = ...\n"
    "local function pack(...) return {n = select('#', ...), ...} end\n"
    "local function call(name, f, ...)\n"
    "  if name == 'gmatch' then\n"
    "    local it = f(...)\n"
    "    local out = {n = 0}\n"
    "    for _ = 1, 500 do\n"
    "      local r = pack(it())\n"
    "      out.n = out.n + 1; out[out.n] = r\n"
    "      if r[1] == nil then break end\n"
    "    end\n"
    "    return out\n"
    "  end\n"
    "  return pack(f(...))\n"
    "end\n"
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then return math.type(a) == math.type(b) and a == b end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if a.n ~= b.n then return false end\n"
    "  for i = 1, a.n do if not same(a[i], b[i]) then return false end end\n"
    "  return true\n"
    "end\n"
    "local function show(v)\n"
    "  if type(v) == 'string' then return (string.format('%q', v):gsub('\\n', 'n')) end\n"
    "  if type(v) ~= 'table' then return tostring(v) end\n"
    "  local t = {}\n"
    "  for i = 1, (v.n or #v) do t[#t + 1] = show(v[i]) end\n"
    "  return '{' .. table.concat(t, ', ') .. '}'\n"
    "end\n"
    "local function strip(e)\n"
    "  if type(e) == 'string' then return (e:gsub('^[^:]*:%d+: ', '')) end\n"
    "  return 'error object of type ' .. type(e)\n"
    "end\n"
    "stats = {matched = 0, failed = 0, errors = 0}\n"
    "function compare(name, ...)\n"
    "  local args = pack(...)\n"
    "  local ok1, r1 = pcall(call, name, string[name], ...)\n"
    "  local kind = not ok1 and 'errors' or ((r1[1] == nil or (name == 'gsub' and r1[2] == 0)) and 'failed' or 'matched')\n"
    "  stats[kind] = stats[kind] + 1\n"
    "  local ok2, r2 = pcall(call, name, our[name], ...)\n"
    "  if not ok1 then r1 = strip(r1) end\n"
    "  if not ok2 then r2 = strip(r2) end\n"
    "  if ok1 == ok2 and same(r1, r2) then return true end\n"
    "  return false, name .. show(args) .. '\\n    stock: ' .. tostring(ok1) .. ' ' .. show(r1)\n"
    "    .. '\\n    ours:  ' .. tostring(ok2) .. ' ' .. show(r2)\n"
    "end\n";

/* ---- (a) the corpus ---------------------------------------------------- */

/* C(name, args...) records one case.  Written as Lua source, so "\\0" in
 * the C text is a NUL byte in the Lua string. */
static const char corpus_lua[] =
    "local cases = {}\n"
    "local function C(...) cases[#cases + 1] = table.pack(...) end\n"
    "local rec = function(...)\n"   /* gsub function that shows its arguments */
    "  local t = {}\n"
    "  for i = 1, select('#', ...) do local v = select(i, ...); t[#t + 1] = math.type(v) or type(v); t[#t + 1] = tostring(v) end\n"
    "  return '<' .. table.concat(t, ',') .. '>'\n"
    "end\n"
    "local all = {}\n"
    "for i = 0, 255 do all[#all + 1] = string.char(i) end\n"
    "all = table.concat(all)\n"
    /* classes and their complements over every byte */
    "for _, c in ipairs{'a','c','d','g','l','p','s','u','w','x','A','C','D','G','L','P','S','U','W','X'} do\n"
    "  C('gsub', all, '%' .. c, '')\n"
    "  C('gsub', all, '[%' .. c .. ']+', '<%0>')\n"
    "  C('gsub', all, '[^%' .. c .. 'a]', '')\n"
    "end\n"
    /* escapes of non-alphanumerics and other single items */
    "for _, c in ipairs{'.','%','[',']','(',')','-','+','*','?','^','$',' ','_','z','\\0'} do\n"
    "  C('find', 'a.%[]()-+*?^$ _z\\0b', '%' .. c)\n"
    "end\n"
    "C('find', 'hello world', 'o w')\n"
    "C('find', 'hello world', 'l+')\n"
    "C('find', 'hello world', '.')\n"
    "C('find', '', '.')\n"
    "C('find', '', '')\n"
    "C('find', 'abc', '')\n"
    "C('find', 'abc', '', 10)\n"
    "C('find', 'abc', '', 4)\n"
    "C('find', 'abc', '', 5)\n"
    "C('find', 'abc', 'c', -1)\n"
    "C('find', 'abc', 'a', -1)\n"
    "C('find', 'abc', 'a', -100)\n"
    "C('find', 'abc', 'a', 0)\n"
    "C('find', 'abc', 'b', 2.0)\n"
    "C('find', 'abc', 'b', 1.5)\n"
    "C('find', 'abc', 'b', '2')\n"
    "C('find', 'abc', 'b', 'x')\n"
    "C('find', 'abc', 'b', math.maxinteger)\n"
    "C('find', 'abc', 'b', math.mininteger)\n"
    "C('find', 'a.b.c', '.', 1, true)\n"
    "C('find', 'a.b.c', '.', 3, true)\n"
    "C('find', 'a.b.c', '.b', 1, true)\n"
    "C('find', 'a+b', 'a+b', 1, true)\n"
    "C('find', 'a+b', 'a+b')\n"
    "C('find', 'a+b', 'a%+b')\n"
    "C('find', 'abc', '', 2, true)\n"
    "C('find', 'abc', 'abcd', 1, true)\n"
    "C('find', 'abc', 'b', nil, 1)\n"
    "C('find', 'abc', '[b', nil, true)\n"
    "C('find', 'aXb', 'X', 1, false)\n"
    "C('find', 'a\\0b\\0c', '\\0')\n"
    "C('find', 'a\\0b\\0c', '\\0', 3)\n"
    "C('find', 'a\\0b\\0c', 'b\\0', 1, true)\n"
    "C('find', 'a\\0b\\0c', '[\\0]c')\n"
    "C('find', 'a\\0b\\0c', '%z')\n"
    "C('find', 'a\\0b\\0c', '%c+')\n"
    "C('find', 'a\\0b\\0c', '.\\0.')\n"
    "C('find', 'a\\0b\\0c', '(.)\\0(.-)$')\n"
    "C('match', 'a\\0b\\0c', '([^\\0]*)\\0')\n"
    "C('find', '\\0\\0\\0', '\\0*')\n"
    "C('find', 'x\\0', 'x%\\0')\n"
    "C('find', 'abc\\0', '[\\0-\\31]')\n"
    "C('find', 12345, 34)\n"
    "C('find', 12345, 3.0)\n"
    "C('find', nil, 'a')\n"
    "C('find', 'a', nil)\n"
    "C('find', {}, 'a')\n"
    "C('find', 'a')\n"
    "C('find', 'hello', 'l(l)(o)')\n"
    "C('find', 'hello', '()ll()')\n"
    "C('find', 'hello', '(h)(e)(l)(l)(o)')\n"
    "C('find', 'hello', '^hel')\n"
    "C('find', 'hello', '^el')\n"
    "C('find', 'hello', 'lo$')\n"
    "C('find', 'hello', 'l$')\n"
    "C('find', 'hello', '$')\n"
    "C('find', 'hello', '^')\n"
    "C('find', 'hello', '^$')\n"
    "C('find', '', '^$')\n"
    "C('find', 'a$b', 'a$b')\n"
    "C('find', 'a$', '$$')\n"
    "C('find', '^a', '^^a')\n"
    "C('find', 'a^b', 'a^b')\n"
    "C('find', 'hello', 'l', -2)\n"
    "C('find', 'hello', '^l', 3)\n"
    "C('find', 'hello', '^l', -2)\n"
    /* quantifiers */
    "C('match', 'aaab', 'a*')\n"
    "C('match', 'aaab', 'a+')\n"
    "C('match', 'aaab', 'a-')\n"
    "C('match', 'aaab', 'a-b')\n"
    "C('match', 'aaab', 'a?a?b')\n"
    "C('match', 'b', 'a+')\n"
    "C('match', 'b', 'a*b')\n"
    "C('match', 'b', 'a?b')\n"
    "C('match', '<a><b>', '<(.-)>')\n"
    "C('match', '<a><b>', '<(.*)>')\n"
    "C('match', '  trim  me  ', '^%s*(.-)%s*$')\n"
    "C('match', 'key = value', '(%w+)%s*=%s*(%w+)')\n"
    "C('match', 'a--b', 'a--b')\n"
    "C('match', 'a-b', 'a-%-b')\n"
    "C('match', '-', '-')\n"
    "C('match', '--', '--')\n"
    "C('match', '+', '+')\n"
    "C('match', '*x', '*x')\n"
    "C('match', '?x', '?x')\n"
    "C('match', 'aa*', '(a)*')\n"
    "C('match', 'aab', '(a)+b')\n"
    "C('match', 'ab', 'a**')\n"
    "C('match', 'ab', '.-$')\n"
    "C('match', 'ab', '.-')\n"
    "C('match', 'abc', '[a-c]+')\n"
    "C('match', 'abc', '[^a-b]+')\n"
    /* sets */
    "C('match', 'a]b', '[]]')\n"
    "C('match', 'a]b', '[^]]+')\n"
    "C('match', 'a]b', '[%]]')\n"
    "C('match', 'a-b', '[a-]+')\n"
    "C('match', 'b-a', '[-a]+')\n"
    "C('match', 'x^y', '[x^]+')\n"
    "C('match', 'Hi 42!', '[%a%d]+')\n"
    "C('match', 'Hi 42!', '[%A]+')\n"
    "C('match', 'Hi 42!', '[%s%p]+')\n"
    "C('match', 'zyx-a', '[%a-z]+')\n"
    "C('match', 'a%b', '[%%]')\n"
    "C('match', '\\200\\255abc', '[\\128-\\255]+')\n"
    "C('match', '\\255', '[\\0-\\255]')\n"
    "C('match', 'az', '[z-a]')\n"
    "C('match', '.x', '[.]')\n"
    "C('match', '[x', '[[]')\n"
    "C('match', 'abc', '[]')\n"
    "C('match', 'abc', '[^]')\n"
    "C('match', 'abc', '[')\n"
    "C('match', 'abc', '[^')\n"
    "C('match', 'abc', '[a')\n"
    "C('match', 'abc', '[a%')\n"
    "C('match', 'abc', '[a%]')\n"
    "C('match', 'abc', 'x[')\n"
    /* malformed patterns and capture errors */
    "C('match', 'abc', '%')\n"
    "C('match', 'abc', 'a%')\n"
    "C('find', 'abc', '%')\n"
    "C('match', 'abc', '(')\n"
    "C('match', 'abc', 'a(')\n"
    "C('find', 'abc', 'a(')\n"
    "C('match', 'abc', '(()')\n"
    "C('match', 'abc', ')')\n"
    "C('match', 'abc', 'a)')\n"
    "C('match', 'abc', '(a))')\n"
    "C('match', 'abc', 'x)')\n"
    "C('match', 'abc', '%1')\n"
    "C('match', 'abc', '%0')\n"
    "C('match', 'abc', '(a)%2')\n"
    "C('match', 'abc', '(a%1)')\n"
    "C('match', 'abc', '%f')\n"
    "C('match', 'abc', '%fa')\n"
    "C('match', 'abc', '%f[a')\n"
    "C('match', 'abc', '%b')\n"
    "C('match', 'abc', '%ba')\n"
    "C('match', 'xyz', 'x%f')\n"
    "C('match', string.rep('a', 40), string.rep('(a)', 32))\n"
    "C('match', string.rep('a', 40), string.rep('(a)', 33))\n"
    "C('match', '', string.rep('()', 33))\n"
    "C('match', string.rep('a', 300), string.rep('a?', 300))\n"
    "C('match', string.rep('a', 199), string.rep('a?', 199))\n"
    "C('match', string.rep('a', 200), string.rep('a?', 200))\n"
    "C('match', string.rep('a', 201), string.rep('a?', 201))\n"
    "C('match', 'b', string.rep('a?', 300) .. 'b')\n"
    "C('match', 'aaa', string.rep('a*', 250))\n"
    "C('match', 'x', string.rep('(', 40) .. 'x')\n"
    /* captures */
    "C('match', 'hello world', '(h)(e)')\n"
    "C('match', 'hello world', '((l)(l))')\n"
    "C('match', 'hello world', '()(o)()')\n"
    "C('match', 'hello', '()')\n"
    "C('match', 'hello', '()', 6)\n"
    "C('match', 'hello', '()', 7)\n"
    "C('match', 'hello', 'l', -2)\n"
    "C('match', 'hello', '(l)(l)', 0)\n"
    "C('match', 'hello', '')\n"
    "C('match', 'date: 2024-01-31', '(%d+)-(%d+)-(%d+)')\n"
    "C('match', 12.5, '%d+')\n"
    /* back-references */
    "C('match', [[say \"hi\" and 'bye']], [[([\"'])(.-)%1]])\n"
    "C('match', 'abcabc', '(abc)%1')\n"
    "C('match', 'abcab', '(abc)%1')\n"
    "C('match', 'aXXa', '(.)(.)%2%1')\n"
    "C('match', 'hello', '()%1')\n"
    "C('match', 'abab', '(a)(b)%1%2$')\n"
    "C('match', 'a\\0a\\0', '(a\\0)%1')\n"
    "C('match', 'x = x', '(%w+) = %1')\n"
    /* balanced and frontier */
    "C('match', 'f(a(b)c) d', '%b()')\n"
    "C('match', 'f(a(b)c d', '%b()')\n"
    "C('match', 'f(a(b)c d', '%b()', 3)\n"
    "C('match', 'aXbYaa', '%baa')\n"
    "C('match', '[[x]]', '%b[]')\n"
    "C('match', '\\0a\\1b', '%b\\0\\1')\n"
    "C('match', '((x)', '%b()$')\n"
    "C('match', '', '%b()')\n"
    "C('match', 'x()', 'x%b()y?')\n"
    "C('gsub', 'THE (quick) fox', '%f[%a]%a+', 'W')\n"
    "C('gsub', 'THE (quick) fox', '%f[%a]', '|')\n"
    "C('gsub', 'THE (quick) fox', '%f[%A]', '|')\n"
    "C('find', 'abc', '%f[\\0]')\n"
    "C('find', 'abc', '%f[%z]')\n"
    "C('find', '', '%f[\\0]')\n"
    "C('find', 'a\\0b', '%f[%w]%w')\n"
    "C('find', 'a b', '%f[^%w]')\n"
    "C('find', 'foo bar', '%f[%w]%w+', 2)\n"
    "C('find', 'aXb', '%f[]X]')\n"
    /* gmatch */
    "C('gmatch', 'one two  three', '%a+')\n"
    "C('gmatch', 'k1=v1, k2=v2', '(%w+)=(%w+)')\n"
    "C('gmatch', 'abc', '')\n"
    "C('gmatch', 'abc', 'x*')\n"
    "C('gmatch', 'abc', '%w*')\n"
    "C('gmatch', 'ab cd', '%w*')\n"
    "C('gmatch', 'abc', '()')\n"
    "C('gmatch', 'abc', '.', 2)\n"
    "C('gmatch', 'abc', '.', -1)\n"
    "C('gmatch', 'abc', '.', -10)\n"
    "C('gmatch', 'abc', '.', 0)\n"
    "C('gmatch', 'abc', '', 4)\n"
    "C('gmatch', 'abc', '', 5)\n"
    "C('gmatch', 'abc', '', 100)\n"
    "C('gmatch', 'aaa', '^a')\n"
    "C('gmatch', '^a^a', '^a')\n"
    "C('gmatch', 'aaa', 'a$')\n"
    "C('gmatch', 'a\\0b\\0', '[^\\0]+')\n"
    "C('gmatch', 'abc', '(')\n"
    "C('gmatch', 'abc', '[a')\n"
    "C('gmatch', 'abc', 'b(')\n"
    "C('gmatch', nil, 'a')\n"
    "C('gmatch', 'abc', 'a', 1.5)\n"
    "C('gmatch', '', '')\n"
    "C('gmatch', 'a,b,,c,', '([^,]*)')\n"
    /* gsub: string replacements */
    "C('gsub', 'hello world', 'o', '0')\n"
    "C('gsub', 'hello world', 'o', '0', 1)\n"
    "C('gsub', 'hello world', 'o', '0', 0)\n"
    "C('gsub', 'hello world', 'o', '0', -1)\n"
    "C('gsub', 'hello world', 'o', '0', 1.5)\n"
    "C('gsub', 'hello world', 'o', '0', '1')\n"
    "C('gsub', 'hello world', '(o)', '[%1%1]')\n"
    "C('gsub', 'hello world', 'o', '[%0]')\n"
    "C('gsub', 'hello world', 'o', '[%1]')\n"
    "C('gsub', 'hello world', 'o', '[%2]')\n"
    "C('gsub', 'hello world', '(o)', '[%2]')\n"
    "C('gsub', 'hello world', '(o)', '%9')\n"
    "C('gsub', 'hello world', 'o', '100%%')\n"
    "C('gsub', 'hello world', 'o', '%')\n"
    "C('gsub', 'hello world', 'o', 'x%')\n"
    "C('gsub', 'hello world', 'o', '%x')\n"
    "C('gsub', 'hello world', 'o', '%\\0')\n"
    "C('gsub', 'hello world', 'z', '%x')\n"
    "C('gsub', 'hello world', '()o', '%1')\n"
    "C('gsub', 'hello world', '()o()', '%2-%1')\n"
    "C('gsub', 'hello', 'l', 7)\n"
    "C('gsub', 'hello', 'l', 7.5)\n"
    "C('gsub', 123, 2, 9)\n"
    "C('gsub', 'hello', '', '-')\n"
    "C('gsub', '', '', '-')\n"
    "C('gsub', '', 'x*', '-')\n"
    "C('gsub', 'abc', 'x*', '-')\n"
    "C('gsub', 'abc', '%w*', '-')\n"
    "C('gsub', 'hello world', '%w*', '<%0>')\n"
    "C('gsub', 'hello world', '%w+', '%0 %0', 1)\n"
    "C('gsub', 'abc', '^', '>')\n"
    "C('gsub', 'abc', '$', '<')\n"
    "C('gsub', 'aaa', '^a', 'b')\n"
    "C('gsub', 'aaa', '^a*', 'b')\n"
    "C('gsub', 'aaa', '^b', 'c')\n"
    "C('gsub', 'aaa', 'a$', 'c')\n"
    "C('gsub', 'a\\0b\\0', '\\0', '\\0\\0')\n"
    "C('gsub', 'a\\0b\\0', '%z', '%%')\n"
    "C('gsub', 'a.b.c', '%.', '%%.')\n"
    "C('gsub', 'abc', '(', 'x')\n"
    "C('gsub', 'abc', 'b', nil)\n"
    "C('gsub', 'abc', 'b')\n"
    "C('gsub', 'abc', 'b', true)\n"
    "C('gsub', 'abc', 'b', 'x', {})\n"
    "C('gsub', 'abc', 'b', nil, 'x')\n"
    "C('gsub', 'abc', nil, 'x')\n"
    /* gsub: tables */
    "local T = {hello = 'HI', world = false, x = 1.5, y = {}, [2] = 'two', z = 7}\n"
    "C('gsub', 'hello world x', '%w+', T)\n"
    "C('gsub', 'hello world z', '%w+', T)\n"
    "C('gsub', 'hello y', '%w+', T)\n"
    "C('gsub', 'hello', '()ll', T)\n"
    "C('gsub', 'hello world', '(h)(e)', T)\n"
    "C('gsub', 'abc', '', T)\n"
    "C('gsub', 'abc', '(', T)\n"
    "C('gsub', 'hello', 'l', setmetatable({}, {__index = function(_, k) return k:upper() end}))\n"
    /* gsub: functions */
    "C('gsub', 'hello world', '%w+', rec)\n"
    "C('gsub', 'hello world', '(%w)(%w*)', rec)\n"
    "C('gsub', 'hello world', '()(%w+)()', rec)\n"
    "C('gsub', 'hello world', '', rec)\n"
    "C('gsub', 'hello world', 'o', rec, 1)\n"
    "C('gsub', 'hello world', 'x*', rec)\n"
    "C('gsub', 'hello world', '%w+', function(w) return #w end)\n"
    "C('gsub', 'hello world', '%w+', function(w) return #w + 0.5 end)\n"
    "C('gsub', 'hello world', '%w+', function(w) return w == 'world' end)\n"
    "C('gsub', 'hello world', '%w+', function(w) return w == 'hello' end)\n"
    "C('gsub', 'hello world', '%w+', function(w) return nil end)\n"
    "C('gsub', 'hello world', '%w+', function(w) end)\n"
    "C('gsub', 'hello world', '%w+', function(w) return {} end)\n"
    "C('gsub', 'hello world', '%w+', function(w) return print end)\n"
    "C('gsub', 'hello world', '%w+', function(w) error('oops') end)\n"
    "C('gsub', 'hello world', '%w+', function(w) error({}) end)\n"
    "C('gsub', 'hello world', '%w+', function(w, x) return x end)\n"
    "C('gsub', 'hello world', '%w+', function(w) return w:rep(2), 'ignored' end)\n"
    "C('gsub', 'a(b)c', '(%b())', function(b) return b:sub(2, -2) end)\n"
    "C('gsub', 'a\\0b', '.', function(c) return c:byte() end)\n"
    "C('gsub', 'hello', '(l)(', rec)\n"
    /* the catastrophic ones on short inputs, where stock finishes */
    "C('find', string.rep('.', 9) .. '1', '^(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.%a$')\n"
    "C('find', string.rep('a', 10) .. 'b', string.rep('a*', 6) .. 'c')\n"
    "C('find', string.rep('a', 10), string.rep('a*', 6) .. '$')\n"
    /* longer subjects */
    "local long = string.rep('ab', 2000) .. 'c'\n"
    "C('find', long, 'c')\n"
    "C('find', long, '(ab)%1c')\n"
    "C('find', long, '(.-)c$')\n"
    "C('gsub', long, 'ab', '%0x')\n"
    "C('gsub', long, '(a)(b)', '%2%1', 1000)\n"
    "C('find', long, 'abc', 1, true)\n"
    "C('find', long, 'abab', -6, true)\n"
    "C('match', long, '^(.*)(.*)c$')\n"
    "return cases\n";

static void test_corpus(lua_State *L)
{
    int top = lua_gettop(L);
    if (luaL_loadstring(L, corpus_lua) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "corpus: %s\n", lua_tostring(L, -1));
        CHECK(0);
        lua_settop(L, top);
        return;
    }
    int ncases = (int)luaL_len(L, -1);
    CHECK(ncases >= 150);
    for (int i = 1; i <= ncases; i++) {
        lua_getglobal(L, "compare");
        lua_geti(L, -2, i);
        int n = (int)(lua_getfield(L, -1, "n"), lua_tointeger(L, -1));
        lua_pop(L, 1);
        for (int a = 1; a <= n; a++)
            lua_geti(L, -a, a);
        lua_remove(L, -n - 1);                 /* the case table */
        if (lua_pcall(L, n, 2, 0) != LUA_OK) {
            fprintf(stderr, "corpus case %d: %s\n", i, lua_tostring(L, -1));
            CHECK(0);
            lua_pop(L, 1);
            continue;
        }
        int ok = lua_toboolean(L, -2);
        if (!ok)
            fprintf(stderr, "corpus case %d differs: %s\n", i, lua_tostring(L, -1));
        CHECK(ok);
        lua_pop(L, 2);
    }
    lua_settop(L, top);
    printf("corpus: %d cases\n", ncases);
}

/* ---- (b) random cases -------------------------------------------------- */

typedef struct Rng {
    uint64_t s;
} Rng;

static uint32_t rnd(Rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (uint32_t)(r->s >> 16);
}

static int pick(Rng *r, int n)
{
    return (int)(rnd(r) % (uint32_t)n);
}

typedef struct Buf {
    char b[256];
    size_t n;
} Buf;

static void put(Buf *b, const char *s)
{
    size_t l = strlen(s);
    if (b->n + l < sizeof b->b) {
        memcpy(b->b + b->n, s, l);
        b->n += l;
    }
}

static void put_byte(Buf *b, char c)
{
    if (b->n + 1 < sizeof b->b)
        b->b[b->n++] = c;
}

/* A sequence of pattern items; depth bounds nested captures. */
static void gen_seq(Rng *r, Buf *b, int depth)
{
    static const char *const atoms[] = {
        "a", "b", "a", "b", ".", "%a", "%d", "[ab]", "[^a]", "[a-c]", "[%d]",
        "[]a]", "1", " ", "%.", "%A", "[%a1]", "\\0"};
    int items = pick(r, depth ? 3 : 5) + (depth ? 0 : 1);
    for (int i = 0; i < items; i++) {
        int k = pick(r, 100);
        if (k < 62) {
            const char *a = atoms[pick(r, (int)(sizeof atoms / sizeof *atoms))];
            if (strcmp(a, "\\0") == 0)
                put_byte(b, '\0');
            else
                put(b, a);
            if (pick(r, 2))
                put_byte(b, "*+-?"[pick(r, 4)]);
        } else if (k < 74) {
            if (depth < 2) {
                put_byte(b, '(');
                gen_seq(r, b, depth + 1);
                put_byte(b, ')');
            } else {
                put(b, "()");
            }
        } else if (k < 78) {
            put(b, "()");
        } else if (k < 83) {
            put(b, "%b()");
        } else if (k < 88) {
            put(b, pick(r, 2) ? "%f[%w]" : "%f[%W]");
        } else if (k < 94) {
            put(b, pick(r, 3) ? "%1" : "%2");
        } else if (k < 96) {
            put_byte(b, "$^"[pick(r, 2)]);
        } else {
            static const char *const bad[] = {
                "%", "[a", "(", ")", "%f", "%fa", "%b", "%b(", "%0", "%9", "[^", "[%"};
            put(b, bad[pick(r, (int)(sizeof bad / sizeof *bad))]);
        }
    }
}

static void gen_pattern(Rng *r, Buf *b)
{
    b->n = 0;
    if (pick(r, 5) == 0)
        put_byte(b, '^');
    gen_seq(r, b, 0);
    if (pick(r, 5) == 0)
        put_byte(b, '$');
}

static void gen_subject(Rng *r, Buf *b)
{
    static const char alpha[] = "aaabbb1 ().A";
    b->n = 0;
    int len = pick(r, 21);
    for (int i = 0; i < len; i++)
        put_byte(b, pick(r, 40) == 0 ? '\0' : alpha[pick(r, (int)sizeof alpha - 1)]);
}

/* Runs compare(name, s, p, extra...) with nextra values already pushed. */
static int run_compare(lua_State *L, const char *name, const Buf *s, const Buf *p,
                       int nextra, const char **why)
{
    lua_getglobal(L, "compare");
    lua_pushstring(L, name);
    lua_pushlstring(L, s->b, s->n);
    lua_pushlstring(L, p->b, p->n);
    lua_rotate(L, -4 - nextra, 4);               /* before the extras */
    if (lua_pcall(L, 3 + nextra, 2, 0) != LUA_OK) {
        *why = lua_tostring(L, -1);
        return 0;
    }
    int ok = lua_toboolean(L, -2);
    *why = lua_tostring(L, -1);
    return ok;
}

static void test_random(lua_State *L, int ncases)
{
    static const char *const repls[] = {"%0", "<%1>", "%1%0", "x", "%2"};
    Rng r = {0x9E3779B97F4A7C15ull};
    Buf s, p;
    int bad = 0;
    for (int i = 0; i < ncases; i++) {
        gen_pattern(&r, &p);
        gen_subject(&r, &s);
        for (int f = 0; f < 4; f++) {
            int top = lua_gettop(L), nextra = 0;
            const char *name = "find";
            switch (f) {
            case 0:
                if (pick(&r, 3) == 0) {
                    lua_pushinteger(L, pick(&r, 47) - 23);
                    nextra = 1;
                    if (pick(&r, 8) == 0) {
                        lua_pushboolean(L, 1);
                        nextra = 2;
                    }
                }
                break;
            case 1:
                name = "match";
                if (pick(&r, 4) == 0) {
                    lua_pushinteger(L, pick(&r, 47) - 23);
                    nextra = 1;
                }
                break;
            case 2:
                name = "gmatch";
                if (pick(&r, 5) == 0) {
                    lua_pushinteger(L, pick(&r, 47) - 23);
                    nextra = 1;
                }
                break;
            default:
                name = "gsub";
                lua_pushstring(L, repls[pick(&r, pick(&r, 10) ? 4 : 5)]);
                nextra = 1;
                if (pick(&r, 5) == 0) {
                    lua_pushinteger(L, pick(&r, 5) - 1);
                    nextra = 2;
                }
                break;
            }
            const char *why = NULL;
            int ok = run_compare(L, name, &s, &p, nextra, &why);
            if (!ok && bad++ < 20)
                fprintf(stderr, "random case %d differs: %s\n", i, why ? why : "?");
            CHECK(ok);
            lua_settop(L, top);
        }
    }
    lua_getglobal(L, "stats");
    lua_getfield(L, -1, "matched");
    lua_getfield(L, -2, "failed");
    lua_getfield(L, -3, "errors");
    printf("random: %d cases x 4 functions; stock matched %lld, found nothing %lld, raised %lld\n",
           ncases, (long long)lua_tointeger(L, -3), (long long)lua_tointeger(L, -2),
           (long long)lua_tointeger(L, -1));
    lua_pop(L, 4);
}

/* ---- (c) the tick stops catastrophic patterns -------------------------- */

static const char *const catastrophic[] = {
    "return boom.find(string.rep('.', 42) .. '1', '^(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.%a$')",
    "return boom.find(string.rep('a', 30) .. 'b', string.rep('a*', 30) .. 'c')",
    "return boom.match(string.rep('.', 42) .. '1', '^(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.%a$')",
    "return boom.match(string.rep('a', 30) .. 'b', string.rep('a*', 30) .. 'c')",
    "for x in boom.gmatch(string.rep('a', 30) .. 'b', string.rep('a*', 30) .. 'c') do end",
    "return boom.gsub(string.rep('a', 30) .. 'b', string.rep('a*', 30) .. 'c', 'x')",
    "return boom.gsub(string.rep('x', 100) .. string.rep('a', 30) .. 'b', string.rep('a*', 30) .. 'c', '%0%0')",
    "return boom.find(string.rep('x', 30) .. string.rep('a', 40), '(a*)(a*)(a*)(a*)(a*)%5%4%3%2%1b')",
    "return boom.gsub(string.rep('a', 5000), '.-.-.-x', '')",
    "return boom.find(string.rep('(', 20000), '%b()')",
    "return boom.find(string.rep('a', 1e6), string.rep('a', 1000) .. 'b', 1, true)",
    NULL};

static void test_tick(lua_State *L, TickCount *boom)
{
    for (int i = 0; catastrophic[i]; i++) {
        int top = lua_gettop(L);
        boom->calls = 0;
        boom->limit = 1000;
        double t0 = now();
        int rc = luaL_loadstring(L, catastrophic[i]);
        CHECK(rc == LUA_OK);
        if (rc == LUA_OK)
            rc = lua_pcall(L, 0, LUA_MULTRET, 0);
        double dt = now() - t0;
        CHECK(rc == LUA_ERRRUN);
        const char *msg = lua_tostring(L, -1);
        /* luaL_error in the tick prefixes the calling chunk's position */
        size_t ml = msg ? strlen(msg) : 0;
        CHECK(ml >= 15 && strcmp(msg + ml - 15, "budget exceeded") == 0);
        CHECK(boom->calls == 1000);
        CHECK(dt < 0.5);
        printf("catastrophic %d: %s after %ld ticks in %.1f ms\n", i,
               msg ? msg : "?", boom->calls, dt * 1e3);
        lua_settop(L, top);
        /* the state still works, with and without the budget */
        boom->calls = 0;
        boom->limit = 0;
        rc = luaL_loadstring(L, "local a, b, c = boom.find('hello world', '(o)%s(w)')\n"
                                "local d = string.find('hello world', 'o w')\n"
                                "return a == 5 and b == 7 and c == 'o' and d == 5");
        CHECK(rc == LUA_OK && lua_pcall(L, 0, 1, 0) == LUA_OK && lua_toboolean(L, -1));
        lua_settop(L, top);
    }
    /* no limit: a large but finite match ticks and completes correctly */
    boom->calls = 0;
    boom->limit = 0;
    int rc = luaL_loadstring(L, "return boom.find(string.rep('a', 22) .. 'b', string.rep('a*', 5) .. 'c') == nil");
    CHECK(rc == LUA_OK && lua_pcall(L, 0, 1, 0) == LUA_OK && lua_toboolean(L, -1));
    CHECK(boom->calls > 10);
    lua_settop(L, 0);
}

/* ---- benchmark --------------------------------------------------------- */

static double bench_one(lua_State *L, const char *table)
{
    lua_getglobal(L, table);
    lua_getfield(L, -1, "find");
    lua_pushliteral(L, "abc_DEF-123");
    lua_pushliteral(L, "^[%w_%-]+$");
    int base = lua_gettop(L);
    double t0 = now();
    for (int i = 0; i < 1000000; i++) {
        lua_pushvalue(L, base - 2);
        lua_pushvalue(L, base - 1);
        lua_pushvalue(L, base);
        lua_call(L, 2, 2);
        lua_settop(L, base);
    }
    double dt = now() - t0;
    lua_settop(L, 0);
    return dt;
}

/* Seconds to run a chunk made from fmt with the table's name (twice). */
static double bench_chunk(lua_State *L, const char *fmt, const char *table)
{
    char code[256];
    snprintf(code, sizeof code, fmt, table, table);
    double t0 = now();
    if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 0, 0) != LUA_OK)
        fprintf(stderr, "bench: %s\n", lua_tostring(L, -1));
    double dt = now() - t0;
    lua_settop(L, 0);
    return dt;
}

static double bench_lua(lua_State *L, const char *table)
{
    return bench_chunk(L, "local f, s, p = %s.find, 'abc_DEF-123', '^[%%w_%%-]+$'\n"
                          "for i = 1, 1000000 do f(s, p) end -- %s", table);
}

/* Matching work dominates: ~20k backtracking steps per call. */
static double bench_heavy(lua_State *L, const char *table)
{
    return bench_chunk(L, "local f, s = %s.find, string.rep('a', 200)\n"
                          "for i = 1, 2000 do f(s, 'a-b') f(s, '(%%w+)%%s*=') end -- %s", table);
}

static void bench(lua_State *L)
{
    for (int round = 0; round < 3; round++) {
        double cs = bench_one(L, "string"), co = bench_one(L, "our");
        double ls = bench_lua(L, "string"), lo = bench_lua(L, "our");
        double hs = bench_heavy(L, "string"), ho = bench_heavy(L, "our");
        printf("1e6 find, C loop:   stock %.3f s, ours %.3f s (%+.1f%%)\n", cs, co, (co / cs - 1) * 100);
        printf("1e6 find, Lua loop: stock %.3f s, ours %.3f s (%+.1f%%)\n", ls, lo, (lo / ls - 1) * 100);
        printf("4e3 backtracking finds: stock %.3f s, ours %.3f s (%+.1f%%)\n", hs, ho, (ho / hs - 1) * 100);
    }
}

/* ---- main -------------------------------------------------------------- */

int main(int argc, char **argv)
{
    TickCount ours = {0, 0}, boom = {0, 0};
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L);
    lpattern_install(L, -1, count_tick, &ours);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "our");
    lua_newtable(L);
    lpattern_install(L, lua_gettop(L), count_tick, &boom);
    lua_setglobal(L, "boom");
    if (luaL_loadstring(L, harness_lua) != LUA_OK) {
        fprintf(stderr, "harness: %s\n", lua_tostring(L, -1));
        return 1;
    }
    lua_rotate(L, -2, 1);                       /* our as the chunk's argument */
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "harness: %s\n", lua_tostring(L, -1));
        return 1;
    }
    CHECK(lua_gettop(L) == 0);
    if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        bench(L);
        lua_close(L);
        return 0;
    }
    test_corpus(L);
    lua_getglobal(L, "stats");                  /* count (b) only */
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "matched");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "failed");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "errors");
    lua_settop(L, 0);
    test_random(L, argc > 1 ? atoi(argv[1]) : 20000);
    CHECK(ours.calls > 0);                      /* the long cases ticked */
    printf("ticks during (a)+(b): %ld\n", ours.calls);
    test_tick(L, &boom);
    CHECK(lua_gettop(L) == 0);
    lua_close(L);
    return unit_done("test_lpattern");
}
