/* lpattern.c: Lua 5.4 pattern matching (string.find, string.match,
 * string.gmatch, string.gsub) with an interruptible work budget.
 *
 * Public API (also in lpattern.h):
 *
 *   #include <lua.h>
 *   #define LPATTERN_TICK 1024
 *   // Called every LPATTERN_TICK steps of matching work; may raise a Lua
 *   // error (lua_error/luaL_error) to stop it.
 *   typedef void (*lpattern_tick)(lua_State *L, void *ud);
 *   // Sets find, match, gmatch and gsub in the table at index idx to
 *   // budgeted versions.
 *   void lpattern_install(lua_State *L, int idx, lpattern_tick tick, void *ud);
 *
 * Why: a count hook never fires while a C function runs, so a pattern that
 * backtracks exponentially wedges the thread that runs it.  This matcher
 * follows the semantics of the Lua 5.4 reference manual (section 6.4.1)
 * and of the stock library (same results, same error messages, same
 * "pattern too complex" depth), and counts a step for every item attempt,
 * every turn of the expansion and start-position loops and every
 * back-reference compare.  Every LPATTERN_TICK steps it calls the tick,
 * which may longjmp out through lua_error: so the matcher holds no memory
 * of its own, only a struct on the C stack and Lua-managed buffers.
 */
#include "lpattern.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

#include <lauxlib.h>

#define MAX_CAPTURES 32   /* LUA_MAXCAPTURES of the stock library */
#define MAX_DEPTH 200     /* nested match() calls allowed (stock MAXCCALLS) */
#define CAP_OPEN (-1)     /* capture length while it is still open */
#define CAP_POS (-2)      /* capture length of a position capture "()" */
#define ESC '%'
#define SPECIALS "^$*+?.([%-"

typedef struct Budget {
    lpattern_tick tick;
    void *ud;
} Budget;

typedef struct Capture {
    const char *init;
    ptrdiff_t len;        /* length, CAP_OPEN or CAP_POS */
} Capture;

/* All state of one call; lives on the C stack so a longjmp leaks nothing. */
typedef struct Matcher {
    lua_State *L;
    const char *s_init, *s_end;   /* subject */
    const char *p_end;            /* end of the pattern */
    const Budget *budget;
    unsigned steps;               /* work done since the last tick */
    int depth;                    /* nested match() calls still allowed */
    int level;                    /* captures opened so far */
    Capture cap[MAX_CAPTURES];
} Matcher;

static unsigned char uc(char c)
{
    return (unsigned char)c;
}

/* ---- budget ------------------------------------------------------------ */

static void spend(Matcher *m)
{
    m->steps = 0;
    if (m->budget->tick)
        m->budget->tick(m->L, m->budget->ud);
}

/* The fast path is one increment and one compare. */
static inline void step(Matcher *m)
{
    if (++m->steps >= LPATTERN_TICK)
        spend(m);
}

/* Work proportional to n bytes (memcmp of a back-reference, say) counts
 * as n/256 steps on top of the one for the attempt. */
static inline void step_bytes(Matcher *m, size_t n)
{
    m->steps += (unsigned)(n >> 8 > LPATTERN_TICK ? LPATTERN_TICK : n >> 8);
    step(m);
}

static void prepare(Matcher *m, lua_State *L, const Budget *b,
                    const char *s, size_t ls, const char *p, size_t lp)
{
    m->L = L;
    m->budget = b;
    m->s_init = s;
    m->s_end = s + ls;
    m->p_end = p + lp;
    m->steps = 0;
    m->depth = MAX_DEPTH;
    m->level = 0;
}

/* Before each attempt at a new subject position. */
static void restart(Matcher *m)
{
    m->level = 0;
    m->depth = MAX_DEPTH;
}

/* ---- single items ------------------------------------------------------ */

/* Pattern byte at p, or 0 past the end: the stock library reads the NUL
 * that terminates every Lua string there, so an embedded NUL and the end
 * look alike wherever it peeks ahead. */
static int pat_at(const Matcher *m, const char *p)
{
    return p < m->p_end ? uc(*p) : 0;
}

/* %a, %d, ...: cl is the letter after '%'; an upper-case letter is the
 * complement; any other character stands for itself (escapes like %.). */
static int class_match(int c, int cl)
{
    int r;
    switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    case 'z': r = c == 0; break;    /* deprecated, still in 5.4.4 */
    default: return cl == c;
    }
    if (isupper(cl))
        r = !r;
    return r != 0;
}

/* [set]: p points at '[', end at the closing ']' (class_end checked it). */
static int set_match(int c, const char *p, const char *end)
{
    int found = 1;
    p++;
    if (*p == '^') {
        found = 0;
        p++;
    }
    for (; p < end; p++) {
        if (*p == ESC) {
            p++;
            if (class_match(c, uc(*p)))
                return found;
        } else if (p[1] == '-' && p + 2 < end) {
            if (uc(p[0]) <= c && c <= uc(p[2]))
                return found;
            p += 2;
        } else if (uc(*p) == c) {
            return found;
        }
    }
    return !found;
}

/* End of the single item at p ('.', a char, %x or [set]). */
static const char *class_end(Matcher *m, const char *p)
{
    const char *end = m->p_end;
    if (*p == ESC) {
        if (p + 1 >= end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 2;
    }
    if (*p == '[') {
        p++;
        if (p < end && *p == '^')
            p++;
        /* the first member is taken as is, so "[]]" and "[^]]" work */
        do {
            if (p >= end)
                luaL_error(m->L, "malformed pattern (missing ']')");
            if (*p++ == ESC && p < end)
                p++;                      /* "%]" does not close the set */
        } while (p >= end || *p != ']');
        return p + 1;
    }
    return p + 1;
}

/* Does the subject byte at s match the item p..ep?  No byte: no match. */
static int single(Matcher *m, const char *s, const char *p, const char *ep)
{
    step(m);
    if (s >= m->s_end)
        return 0;
    int c = uc(*s);
    switch (*p) {
    case '.': return 1;
    case ESC: return class_match(c, uc(p[1]));
    case '[': return set_match(c, p, ep - 1);
    default: return uc(*p) == c;
    }
}

/* ---- special items ----------------------------------------------------- */

/* %bxy at s; p points at x.  Returns the end of the balanced run. */
static const char *balance(Matcher *m, const char *s, const char *p)
{
    if (p + 1 >= m->p_end)
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->s_end || *s != p[0])
        return NULL;
    char open = p[0], close = p[1];
    int nest = 1;
    while (++s < m->s_end) {
        step(m);
        if (*s == close) {          /* close first: %baa pairs a with a */
            if (--nest == 0)
                return s + 1;
        } else if (*s == open) {
            nest++;
        }
    }
    return NULL;
}

/* %1-%9 in a pattern: the text of a closed capture again. */
static const char *backref(Matcher *m, const char *s, int digit)
{
    int i = digit - '1';
    if (i < 0 || i >= m->level || m->cap[i].len == CAP_OPEN)
        /* stock 5.4.4 wording; later releases may append " in pattern" */
        luaL_error(m->L, "invalid capture index %%%d", i + 1);
    ptrdiff_t len = m->cap[i].len;
    if (len == CAP_POS)             /* a position never matches text */
        return NULL;
    step_bytes(m, (size_t)len);
    if (m->s_end - s >= len && memcmp(m->cap[i].init, s, (size_t)len) == 0)
        return s + len;
    return NULL;
}

/* ---- the matcher ------------------------------------------------------- */

static const char *match(Matcher *m, const char *s, const char *p);

static const char *open_capture(Matcher *m, const char *s, const char *p,
                                ptrdiff_t what)
{
    if (m->level >= MAX_CAPTURES)
        luaL_error(m->L, "too many captures");
    m->cap[m->level].init = s;
    m->cap[m->level].len = what;
    m->level++;
    const char *r = match(m, s, p);
    if (!r)
        m->level--;                 /* undo on failure */
    return r;
}

static const char *close_capture(Matcher *m, const char *s, const char *p)
{
    int i = m->level - 1;
    while (i >= 0 && m->cap[i].len != CAP_OPEN)
        i--;
    if (i < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->cap[i].len = s - m->cap[i].init;
    const char *r = match(m, s, p);
    if (!r)
        m->cap[i].len = CAP_OPEN;   /* undo on failure */
    return r;
}

/* item* (and item+ after its first byte): longest run first, then back off. */
static const char *greedy(Matcher *m, const char *s, const char *p,
                          const char *ep)
{
    ptrdiff_t n = 0;
    while (single(m, s + n, p, ep))
        n++;
    for (; n >= 0; n--) {
        const char *r = match(m, s + n, ep + 1);
        if (r)
            return r;
    }
    return NULL;
}

/* item-: shortest run first, then one more. */
static const char *lazy(Matcher *m, const char *s, const char *p,
                        const char *ep)
{
    for (;;) {
        const char *r = match(m, s, ep + 1);
        if (r)
            return r;
        if (!single(m, s, p, ep))
            return NULL;
        s++;
    }
}

/* Matches pattern p..p_end at s; returns the end of the match or NULL.
 * Recursion happens exactly where the stock matcher recurses (captures,
 * '?', '*', '+', '-'), so "pattern too complex" comes at the same depth;
 * everything else loops ('continue' is a tail call). */
static const char *match(Matcher *m, const char *s, const char *p)
{
    if (m->depth == 0)
        luaL_error(m->L, "pattern too complex");
    m->depth--;
    for (;;) {
        if (p == m->p_end)
            break;                                  /* whole pattern matched */
        /* Steps: ordinary items count in single(), %b and %1-%9 in their
         * helpers, the rest here; one step per iteration would cost ~5%. */
        switch (*p) {
        case '(':
            step(m);
            if (pat_at(m, p + 1) == ')')
                s = open_capture(m, s, p + 2, CAP_POS);
            else
                s = open_capture(m, s, p + 1, CAP_OPEN);
            goto out;
        case ')':
            step(m);
            s = close_capture(m, s, p + 1);
            goto out;
        case '$':
            if (p + 1 == m->p_end) {                /* anchor only at the end */
                if (s != m->s_end)
                    s = NULL;
                goto out;
            }
            break;
        case ESC: {
            int next = pat_at(m, p + 1);
            if (next == 'b') {
                if (!(s = balance(m, s, p + 2)))
                    goto out;
                p += 4;
                continue;
            }
            if (next == 'f') {
                step(m);
                p += 2;
                if (pat_at(m, p) != '[')
                    luaL_error(m->L, "missing '[' after '%%f' in pattern");
                const char *ep = class_end(m, p);
                int prev = s == m->s_init ? 0 : uc(s[-1]);
                int cur = s < m->s_end ? uc(*s) : 0; /* the end reads as NUL */
                if (!set_match(prev, p, ep - 1) && set_match(cur, p, ep - 1)) {
                    p = ep;
                    continue;
                }
                s = NULL;
                goto out;
            }
            if (next >= '0' && next <= '9') {
                if (!(s = backref(m, s, next)))
                    goto out;
                p += 2;
                continue;
            }
            break;                                  /* %x: a class item */
        }
        default:
            break;
        }
        /* a single item with an optional quantifier */
        const char *ep = class_end(m, p);
        int q = pat_at(m, ep);
        if (!single(m, s, p, ep)) {
            if (q == '*' || q == '?' || q == '-') { /* zero repetitions do */
                p = ep + 1;
                continue;
            }
            s = NULL;
            goto out;
        }
        switch (q) {
        case '?': {
            const char *r = match(m, s + 1, ep + 1);
            if (r) {
                s = r;
                goto out;
            }
            p = ep + 1;
            continue;
        }
        case '+':
            s = greedy(m, s + 1, p, ep);
            goto out;
        case '*':
            s = greedy(m, s, p, ep);
            goto out;
        case '-':
            s = lazy(m, s, p, ep);
            goto out;
        default:
            s++;
            p = ep;
            continue;
        }
    }
out:
    m->depth++;
    return s;
}

/* ---- results ----------------------------------------------------------- */

/* Capture i as text (returns its length, *cap its start) or, for a position
 * capture, pushes the position and returns CAP_POS.  With no captures at
 * all, capture 0 is the whole match s..e. */
static ptrdiff_t get_capture(Matcher *m, int i, const char *s, const char *e,
                             const char **cap)
{
    if (i >= m->level) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        *cap = s;
        return e - s;
    }
    ptrdiff_t len = m->cap[i].len;
    *cap = m->cap[i].init;
    if (len == CAP_OPEN)
        luaL_error(m->L, "unfinished capture");
    if (len == CAP_POS)
        lua_pushinteger(m->L, (m->cap[i].init - m->s_init) + 1);
    return len;
}

static void push_capture(Matcher *m, int i, const char *s, const char *e)
{
    const char *cap;
    ptrdiff_t len = get_capture(m, i, s, e, &cap);
    if (len != CAP_POS)
        lua_pushlstring(m->L, cap, (size_t)len);
}

/* Pushes all captures; when there are none and whole is set, the match. */
static int push_captures(Matcher *m, const char *s, const char *e, int whole)
{
    int n = (m->level == 0 && whole) ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* ---- find / match ------------------------------------------------------ */

/* 0-based start offset of init as find/match/gmatch read it (1-based,
 * negative from the end, 0 and far negatives clip to the start). */
static size_t start_offset(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos - 1;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 0;
    return len + (size_t)pos;
}

static int has_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (p[i] && strchr(SPECIALS, p[i]))
            return 1;
    return 0;
}

/* Plain substring search; each candidate position is a step. */
static const char *plain_find(Matcher *m, const char *s, size_t ls,
                              const char *p, size_t lp)
{
    if (lp == 0)
        return s;
    if (lp > ls)
        return NULL;
    const char *last = s + (ls - lp);
    while (s <= last) {
        const char *hit = memchr(s, p[0], (size_t)(last - s) + 1);
        if (!hit)
            return NULL;
        step_bytes(m, lp);
        if (memcmp(hit + 1, p + 1, lp - 1) == 0)
            return hit;
        s = hit + 1;
    }
    return NULL;
}

static int find_aux(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    const Budget *b = lua_touserdata(L, lua_upvalueindex(1));
    Matcher m;
    if (init > ls) {                  /* starts after the end: no match */
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        prepare(&m, L, b, s, ls, p, lp);
        const char *hit = plain_find(&m, s + init, ls - init, p, lp);
        if (hit) {
            lua_pushinteger(L, (hit - s) + 1);
            lua_pushinteger(L, (lua_Integer)((size_t)(hit - s) + lp));
            return 2;
        }
        luaL_pushfail(L);
        return 1;
    }
    int anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    prepare(&m, L, b, s, ls, p, lp);
    for (const char *s1 = s + init;; s1++) {
        restart(&m);
        step(&m);
        const char *e = match(&m, s1, p);
        if (e) {
            if (!find)
                return push_captures(&m, s1, e, 1);
            lua_pushinteger(L, (s1 - s) + 1);
            lua_pushinteger(L, e - s);
            return push_captures(&m, NULL, NULL, 0) + 2;
        }
        if (anchor || s1 >= m.s_end)
            break;
    }
    luaL_pushfail(L);
    return 1;
}

static int l_find(lua_State *L)
{
    return find_aux(L, 1);
}

static int l_match(lua_State *L)
{
    return find_aux(L, 0);
}

/* ---- gmatch ------------------------------------------------------------ */

/* Iterator upvalues: 1 subject, 2 pattern, 3 next offset, 4 end offset of
 * the previous match (-1: none), 5 budget.  A '^' is an ordinary character
 * here, as in the stock 5.4 gmatch. */
static int gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    size_t off = (size_t)lua_tointeger(L, lua_upvalueindex(3));
    lua_Integer last = lua_tointeger(L, lua_upvalueindex(4));
    Matcher m;
    prepare(&m, L, lua_touserdata(L, lua_upvalueindex(5)), s, ls, p, lp);
    for (; off <= ls; off++) {
        restart(&m);
        step(&m);
        const char *e = match(&m, s + off, p);
        /* an empty match right where the previous one ended is skipped */
        if (e && e - s != last) {
            lua_pushinteger(L, e - s);
            lua_copy(L, -1, lua_upvalueindex(3));
            lua_replace(L, lua_upvalueindex(4));
            return push_captures(&m, s + off, e, 1);
        }
    }
    return 0;
}

static int l_gmatch(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checklstring(L, 2, NULL);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    if (init > ls)
        init = ls + 1;                /* past the end: the iterator ends */
    lua_settop(L, 2);
    lua_pushinteger(L, (lua_Integer)init);
    lua_pushinteger(L, -1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushcclosure(L, gmatch_next, 5);
    return 1;
}

/* ---- gsub -------------------------------------------------------------- */

/* Appends the replacement string (argument 3) with %0-%9 and %% expanded. */
static void add_string(Matcher *m, luaL_Buffer *b, const char *s,
                       const char *e)
{
    size_t l;
    const char *r = lua_tolstring(m->L, 3, &l);
    const char *pct;
    while ((pct = memchr(r, ESC, l)) != NULL) {
        step(m);    /* a replacement of a million "%0" expands to nothing, for ever */
        luaL_addlstring(b, r, (size_t)(pct - r));
        /* a '%' ending the string reads the terminating NUL: invalid */
        int c = pct + 1 < r + l ? uc(pct[1]) : 0;
        if (c == ESC) {
            luaL_addchar(b, ESC);
        } else if (c == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (c >= '1' && c <= '9') {
            const char *cap;
            ptrdiff_t len = get_capture(m, c - '1', s, e, &cap);
            if (len == CAP_POS)
                luaL_addvalue(b);     /* the position get_capture pushed */
            else
                luaL_addlstring(b, cap, (size_t)len);
        } else {
            luaL_error(m->L, "invalid use of '%c' in replacement string", ESC);
        }
        l -= (size_t)(pct + 2 - r);
        r = pct + 2;
    }
    luaL_addlstring(b, r, l);
}

/* Appends the replacement for match s..e; returns whether it changed it. */
static int add_value(Matcher *m, luaL_Buffer *b, const char *s, const char *e,
                     int tr)
{
    lua_State *L = m->L;
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e, 1);
        lua_call(L, n, 1);
    } else if (tr == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_string(m, b, s, e);
        return 1;
    }
    if (!lua_toboolean(L, -1)) {      /* nil or false keeps the original */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1))
        return luaL_error(L, "invalid replacement value (a %s)",
                          luaL_typename(L, -1));
    luaL_addvalue(b);
    return 1;
}

static int l_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int tr = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING ||
                     tr == LUA_TFUNCTION || tr == LUA_TTABLE,
                     3, "string/function/table");
    const Budget *bud = lua_touserdata(L, lua_upvalueindex(1));
    int anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    Matcher m;
    prepare(&m, L, bud, src, ls, p, lp);
    const char *s = src, *lastmatch = NULL;
    lua_Integer n = 0;
    int changed = 0;
    while (n < max_n) {
        restart(&m);
        step(&m);
        const char *e = match(&m, s, p);
        if (e && e != lastmatch) {    /* no empty match where one ended */
            n++;
            changed |= add_value(&m, &b, s, e, tr);
            s = lastmatch = e;
        } else if (s < m.s_end) {
            luaL_addchar(&b, *s++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    if (!changed) {
        lua_pushvalue(L, 1);          /* nothing replaced: the original */
    } else {
        luaL_addlstring(&b, s, (size_t)(m.s_end - s));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

/* ---- installation ------------------------------------------------------ */

void lpattern_install(lua_State *L, int idx, lpattern_tick tick, void *ud)
{
    static const luaL_Reg fns[] = {
        {"find", l_find}, {"match", l_match},
        {"gmatch", l_gmatch}, {"gsub", l_gsub}, {NULL, NULL}};
    idx = lua_absindex(L, idx);
    lua_pushvalue(L, idx);
    /* tick and ud live in a userdata shared as upvalue 1 by the four
     * functions (and passed on to gmatch iterators): no global state */
    Budget *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->tick = tick;
    b->ud = ud;
    luaL_setfuncs(L, fns, 1);
    lua_pop(L, 1);
}
