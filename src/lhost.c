/* lhost: builds one script generation in a fresh Lua 5.4 state (sandboxed
 * base library, text-only loading from disk, lua-cjson, the gw.* API) and
 * runs the request entry point through a single protected-call helper with
 * a traceback handler, an instruction/time budget and a memory cap.
 * Uses Lua, lua-cjson, lapi (gw.*), sha256 and libevent's evbuffer. */
#include "lhost.h"
#include "lstrict.h"
#include "config.h"
#include "lapi.h"
#include "lpattern.h"
#include "sha256.h"
#include "util.h"
#include "watchdog.h"

#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <event2/buffer.h>
#include <lauxlib.h>
#include <math.h>
#include <lua.h>
#include <lualib.h>
#include <lua-cjson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOOK_EVERY 1000          /* instructions between budget checks */
/* Loading a file (or main.init) may take this many requests' budgets: a
 * reload runs on a worker's loop, which serves nothing meanwhile, so a
 * script that loops at load must fail fast (loads take milliseconds). */
#define LOAD_BUDGET_SCALE 2

/* Lua allocates and frees many small blocks per request (tables, strings,
 * closures); keeping them on per-size free lists of the state spares
 * malloc's bookkeeping (~12% of a GET's CPU went to malloc/free).  Not
 * under AddressSanitizer, which must see every free to catch misuse. */
#if defined(__SANITIZE_ADDRESS__)
#define POOL_KEEP 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_KEEP 0
#endif
#endif
#ifndef POOL_KEEP
#define POOL_KEEP 2048           /* blocks kept per size class */
#endif
#define POOL_STEP 16
#define POOL_CLASSES 16          /* blocks of 16, 32, ... 256 bytes */
#define POOL_MAX (POOL_STEP * POOL_CLASSES)

typedef struct pool_block {
    struct pool_block *next;
} pool_block;
#define NO_INSTRUCTION_BUDGET INT64_MAX

struct lhost {
    lua_State *L;
    gw *g;
    lhost_snap *snap;            /* while lhost_new runs: the files as read */
    uint64_t generation;
    size_t mem_used, mem_limit;  /* bytes Lua asked for (pooled blocks not counted) */
    pool_block *pool[POOL_CLASSES];
    uint32_t pooled[POOL_CLASSES];
    int mem_exceeded;            /* the allocator refused during this call */
    int64_t deadline_us;         /* budget end of the running call */
    int64_t instr_left;
    int killed;                  /* budget spent: the hook raises on every count */
    char kill_msg[160];          /* what it raises: where the budget ran out */
    int armed;                   /* a budgeted call is running */
    int building;                /* lhost_new is running the scripts' init */
    volatile sig_atomic_t overrun_hook; /* the watchdog installed the hook */
    watchdog *wd;                /* enforces the time budget */
    int handle_ref;
    int job_step_ref;            /* main.job_step, LUA_NOREF if absent */
    const lhost_request *req;    /* set only while a request runs */
    lhost_response *resp;
    lhost_file *files;
    size_t nfiles;
    const char *last_file;       /* the record load_chunk made or found last */
    const char *running_file;    /* the file whose chunk runs (in files[]), for
                                  * a memory error, which has no position */
};

/* ---- memory cap --------------------------------------------------------- */

static size_t pool_class(size_t n) { return (n + POOL_STEP - 1) / POOL_STEP - 1; }

static void *pool_get(lhost *h, size_t n)
{
    size_t c;
    pool_block *b;
    if (n > POOL_MAX)
        return malloc(n);
    c = pool_class(n);
    if ((b = h->pool[c])) {
        h->pool[c] = b->next;
        h->pooled[c]--;
        return b;
    }
    return malloc((c + 1) * POOL_STEP);   /* any size of the class fits */
}

static void pool_put(lhost *h, void *p, size_t n)
{
    size_t c = pool_class(n);
    pool_block *b = p;
    if (n > POOL_MAX || h->pooled[c] >= POOL_KEEP) {
        free(p);
        return;
    }
    b->next = h->pool[c];
    h->pool[c] = b;
    h->pooled[c]++;
}

static void pool_drain(lhost *h)
{
    for (size_t c = 0; c < POOL_CLASSES; c++) {
        while (h->pool[c]) {
            pool_block *b = h->pool[c];
            h->pool[c] = b->next;
            free(b);
        }
        h->pooled[c] = 0;
    }
}

/* Blocks of up to POOL_MAX bytes always come from pool_get, so a block's
 * size class is known from the size Lua passes back. */
static void *pool_realloc(lhost *h, void *ptr, size_t old, size_t nsize)
{
    void *p;
    if (!ptr)
        return pool_get(h, nsize);
    if (old > POOL_MAX && nsize > POOL_MAX)
        return realloc(ptr, nsize);
    if (old <= POOL_MAX && nsize <= POOL_MAX && pool_class(old) == pool_class(nsize))
        return ptr;
    if (!(p = pool_get(h, nsize)))
        return NULL;
    memcpy(p, ptr, old < nsize ? old : nsize);
    pool_put(h, ptr, old);
    return p;
}

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lhost *h = ud;
    size_t old = ptr ? osize : 0;   /* osize is a type tag when ptr is NULL */
    void *p;
    if (nsize == 0) {
        if (ptr)
            pool_put(h, ptr, old);
        h->mem_used -= old;
        return NULL;
    }
    if (nsize > old && h->mem_used + (nsize - old) > h->mem_limit) {
        h->mem_exceeded = 1;
        return NULL;
    }
    p = pool_realloc(h, ptr, old, nsize);
    if (p)
        h->mem_used = h->mem_used - old + nsize;
    return p;
}

/* ---- instruction and time budget ---------------------------------------- */

static void budget_hook(lua_State *L, lua_Debug *ar);

static lhost *host_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

/* The hook once a call is over its budget: every instruction, and every
 * function call, C functions too: a loop inside a C function whose only
 * work is calling other C functions (table.concat over an __index that is
 * table.concat) runs no instruction the count could see. */
#define OVERRUN_MASK (LUA_MASKCOUNT | LUA_MASKCALL)

/* Marks the running call killed: from now on the hook raises on every
 * instruction and call, so a script's own pcall cannot swallow the kill, and each
 * raise repeats where the budget ran out (the function at `level`), not
 * where a pcall that caught the first raise sits. */
static void kill_call(lua_State *L, lhost *h, int level)
{
    h->killed = 1;
    lua_sethook(L, budget_hook, OVERRUN_MASK, 1);
    luaL_where(L, level);
    snprintf(h->kill_msg, sizeof h->kill_msg, "%sscript budget exceeded (time or instructions)",
             lua_tostring(L, -1));
    lua_pop(L, 1);
}

static void raise_kill(lua_State *L, const lhost *h)
{
    lua_pushstring(L, h->kill_msg);
    lua_error(L);
}

/* Charges HOOK_EVERY instructions when `count`; whether the running call
 * still has instructions and time left. */
static int budget_left(lhost *h, int count)
{
    if (count)
        h->instr_left -= HOOK_EVERY;
    return h->instr_left > 0 && util_mono_us() < h->deadline_us;
}

/* The count hook cannot see loops inside C functions (a pattern match
 * that backtracks for ever, a table shift over a huge length): those call
 * this every so many steps, and it raises the budget error once the
 * running call is past its deadline, or was killed. */
static void budget_tick(lua_State *L, void *ud)
{
    lhost *h = ud;
    if (!h->armed)
        return;
    if (!h->killed) {
        if (budget_left(h, h->g->opt.script_instructions > 0))
            return;
        kill_call(L, h, 1);     /* level 1: the script that called the C function */
    }
    raise_kill(L, h);
}

void lhost_budget_tick(lhost *h, lua_State *L)
{
    budget_tick(L, h);
}

/* Once the budget is spent the hook fires on every instruction. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    lhost *h = host_of(L);
    (void)ar;
    if (!h->killed) {
        if (budget_left(h, 1)) {
            if (h->overrun_hook) {
                /* the deadline moved after the watchdog fired (time spent
                 * waiting for a lock is not the script's): back to normal */
                h->overrun_hook = 0;
                if (h->g->opt.script_instructions > 0)
                    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
                else
                    lua_sethook(L, NULL, 0, 0);
            }
            return;
        }
        kill_call(L, h, 0);
    }
    raise_kill(L, h);
}

/* The watchdog saw the running call overrun its deadline: from here the
 * hook runs on every instruction and raises.  Runs in a signal handler. */
static void budget_overrun(void *ud)
{
    lhost *h = ud;
    h->overrun_hook = 1;
    lua_sethook(h->L, budget_hook, OVERRUN_MASK, 1);
}

void lhost_extend_budget(lhost *h, int64_t us)
{
    if (!h || !h->armed || us <= 0)
        return;
    h->deadline_us += us;
    watchdog_extend(h->wd, h->deadline_us);
}

int lhost_building(const lhost *h) { return h->building; }

/* Time is watched from outside, so a call costs two atomic stores.  A count
 * hook makes the VM stop at every instruction (Lua 5.4 sets its trap for
 * any hook): ~12% of GET throughput, paid only when an operator asks for
 * exact, deterministic instruction counting. */
static void budget_start(lhost *h, int64_t scale)
{
    gw_options *o = &h->g->opt;
    h->killed = 0;
    h->mem_exceeded = 0;
    h->overrun_hook = 0;
    h->armed = 1;
    h->deadline_us = util_mono_us() + o->script_time_ms * 1000 * scale;
    if (o->script_instructions > 0) {
        h->instr_left = o->script_instructions * scale;
        lua_sethook(h->L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    } else {
        h->instr_left = NO_INSTRUCTION_BUDGET;
    }
    watchdog_arm(h->wd, h->deadline_us);
}

static void budget_stop(lhost *h)
{
    h->armed = 0;
    watchdog_disarm(h->wd);
    lua_sethook(h->L, NULL, 0, 0);
}

/* ---- the one protected-call helper -------------------------------------- */

/* An error object that is not a string (error({}), an object with
 * __tostring) carries no position: the first Lua frame under the handler,
 * where it was raised, gives one, as error("...") would have. */
int lhost_traceback(lua_State *L)
{
    const char *msg = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
    if (!msg) {
        lua_Debug ar;
        const char *text = luaL_tolstring(L, 1, NULL);
        for (int level = 1; lua_getstack(L, level, &ar); level++)
            if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
                msg = lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, text);
                break;
            }
        if (!msg)
            msg = text;
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Whether an error message starts with a position ("chunk:line:"). */
static int has_position(const char *msg)
{
    const char *p = msg;
    while (*p && *p != ':' && *p != '\n')
        p++;
    if (*p != ':' || p == msg || !(p[1] >= '0' && p[1] <= '9'))
        return 0;
    for (p++; *p >= '0' && *p <= '9'; p++)
        ;
    return *p == ':';
}

/* Calls the function below nargs arguments.  On failure returns
 * LHOST_BUDGET or LHOST_ERROR with the message (and traceback when tb) in
 * err, and leaves nothing of the call on the stack. */
static lhost_rc pcall(lhost *h, int nargs, int nresults, int64_t scale,
                      char *err, size_t errlen)
{
    lua_State *L = h->L;
    int base = lua_gettop(L) - nargs, rc;
    const char *outer = h->running_file; /* a failed require leaves its own */
    lua_pushcfunction(L, lhost_traceback);
    lua_insert(L, base);
    budget_start(h, scale);
    rc = lua_pcall(L, nargs, nresults, base);
    budget_stop(h);
    lua_remove(L, base);
    if (rc == LUA_OK && !h->killed && !h->mem_exceeded) {
        h->running_file = outer;
        return LHOST_OK;
    }
    if (rc == LUA_ERRMEM || (rc == LUA_OK && !h->killed)) {
        /* out of memory has no position and no traceback: name the file
         * that was running, if a file was */
        lua_pop(L, rc == LUA_OK ? nresults : 1);
        snprintf(err, errlen, "%s%s%s", h->running_file ? h->running_file : "",
                 h->running_file ? ": " : "",
                 h->mem_exceeded ? "script exceeded its memory budget" : "out of memory");
    } else if (rc != LUA_OK) {
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!msg)
            msg = "(error object is not a string)";
        if (h->running_file && !has_position(msg))   /* error({...}), error(), C stack overflow */
            snprintf(err, errlen, "%s: %s", h->running_file, msg);
        else
            snprintf(err, errlen, "%s", msg);
        lua_pop(L, 1);
    } else {
        lua_pop(L, nresults);
        snprintf(err, errlen, "script budget exceeded (time or instructions)");
    }
    h->running_file = outer;
    if (h->killed || h->mem_exceeded || rc == LUA_ERRMEM)
        return LHOST_BUDGET;
    return LHOST_ERROR;
}

/* ---- sandbox ------------------------------------------------------------ */

/* The largest chunk a script may compile: the parser runs where no
 * budget can stop it, and its label lookup is quadratic (400 KB of labels
 * take 0.2 s). */
#define SCRIPT_MAX_CHUNK (256 * 1024)

/* load() that refuses bytecode (Lua does not verify it: crafted bytecode
 * reads and writes memory), reader functions and chunks over
 * SCRIPT_MAX_CHUNK, and never sees the host's registry.  Otherwise as
 * Lua's: a fourth argument, even nil, is the chunk's _ENV.  A mode without
 * "t" loads nothing at all: "b" would reach the bytecode loader. */
static int safe_load(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "=(load)");
    const char *mode = luaL_optstring(L, 3, "bt");
    int has_env = !lua_isnone(L, 4); /* before the chunk is pushed above it */
    if (len > SCRIPT_MAX_CHUNK) {
        lua_pushnil(L);
        lua_pushfstring(L, "load: a chunk of %I bytes is over the %d allowed in tagway scripts",
                        (lua_Integer)len, SCRIPT_MAX_CHUNK);
        return 2;
    }
    if (!strchr(mode, 't')) {
        lua_pushnil(L);
        lua_pushfstring(L, "load: mode '%s': tagway scripts load text chunks only", mode);
        return 2;
    }
    if (luaL_loadbufferx(L, s, len, name, "t") != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (has_env) {
        lua_pushvalue(L, 4);
        if (!lua_setupvalue(L, -2, 1))
            lua_pop(L, 1);
    }
    return 1;
}

/* collectgarbage() limited to what cannot disable the collector. */
static int safe_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") == 0) {
        lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
                              lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0);
        return 1;
    }
    if (strcmp(opt, "collect") == 0 || strcmp(opt, "step") == 0) {
        lua_gc(L, LUA_GCCOLLECT, 0);
        lua_pushinteger(L, 0);
        return 1;
    }
    return luaL_error(L, "collectgarbage('%s') is not allowed in tagway scripts", opt);
}

/* ---- guards on library functions whose loops run in C ------------------ */

/* Calls the library's own function (upvalue 1) with every argument. */
static int call_original(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

/* table.insert, remove, move and unpack as the stock library does them,
 * with the budget looked at every TABLE_TICK elements: each element may
 * cost a walk of up to 2,000 __index tables (no call the hook could see),
 * over a length a __len made up. */
#define TABLE_TICK 256

static void table_step(lua_State *L, lua_Integer i)
{
    if ((i & (TABLE_TICK - 1)) == 0)
        budget_tick(L, host_of(L));
}

static int budgeted_insert(lua_State *L)
{
    lua_Integer e, pos;
    luaL_checktype(L, 1, LUA_TTABLE);
    e = luaL_intop(+, luaL_len(L, 1), 1);   /* first empty element */
    switch (lua_gettop(L)) {
    case 2:
        pos = e;
        break;
    case 3:
        pos = luaL_checkinteger(L, 2);
        luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)e, 2, "position out of bounds");
        for (lua_Integer i = e; i > pos; i--) {
            table_step(L, i);
            lua_geti(L, 1, i - 1);
            lua_seti(L, 1, i);
        }
        break;
    default:
        return luaL_error(L, "wrong number of arguments to 'insert'");
    }
    lua_seti(L, 1, pos);
    return 0;
}

static int budgeted_remove(lua_State *L)
{
    lua_Integer size, pos;
    luaL_checktype(L, 1, LUA_TTABLE);
    size = luaL_len(L, 1);
    pos = luaL_optinteger(L, 2, size);
    if (pos != size)
        luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 2, "position out of bounds");
    lua_geti(L, 1, pos);
    for (; pos < size; pos++) {
        table_step(L, pos);
        lua_geti(L, 1, pos + 1);
        lua_seti(L, 1, pos);
    }
    lua_pushnil(L);
    lua_seti(L, 1, pos);
    return 1;
}

static int budgeted_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3), t = luaL_checkinteger(L, 4);
    int tt = !lua_isnoneornil(L, 5) ? 5 : 1;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, tt, LUA_TTABLE);
    if (e >= f) {
        lua_Integer n, i;
        luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
        n = e - f + 1;
        luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
        /* backwards when the ranges overlap with the destination above */
        int forward = t > e || t <= f || (tt != 1 && !lua_compare(L, 1, tt, LUA_OPEQ));
        for (lua_Integer k = 0; k < n; k++) {
            i = forward ? k : n - 1 - k;
            table_step(L, k);
            lua_geti(L, 1, f + i);
            lua_seti(L, tt, t + i);
        }
    }
    lua_pushvalue(L, tt);
    return 1;
}

static int budgeted_unpack(lua_State *L)
{
    lua_Unsigned n;
    lua_Integer i = luaL_optinteger(L, 2, 1);
    lua_Integer e = lua_isnoneornil(L, 3) ? luaL_len(L, 1) : luaL_checkinteger(L, 3);
    if (i > e)
        return 0;
    n = (lua_Unsigned)e - (lua_Unsigned)i;
    if (n >= (unsigned int)INT_MAX || !lua_checkstack(L, (int)(++n)))
        return luaL_error(L, "too many results to unpack");
    for (; i < e; i++) {
        table_step(L, i);
        lua_geti(L, 1, i);
    }
    lua_geti(L, 1, e);
    return (int)n;
}

static int budgeted_concat(lua_State *L)
{
    luaL_Buffer b;
    size_t lsep;
    const char *sep = luaL_optlstring(L, 2, "", &lsep);
    lua_Integer i, last;
    luaL_checktype(L, 1, LUA_TTABLE);
    i = luaL_optinteger(L, 3, 1);
    last = lua_isnoneornil(L, 4) ? luaL_len(L, 1) : luaL_checkinteger(L, 4);
    luaL_buffinit(L, &b);
    for (; i <= last; i++) {
        table_step(L, i);      /* leaves the stack (the buffer's) as it was */
        lua_geti(L, 1, i);
        if (!lua_isstring(L, -1))
            return luaL_error(L, "invalid value (at index %I) in table for 'concat'", (LUAI_UACINT)i);
        luaL_addvalue(&b);
        if (i != last)
            luaL_addlstring(&b, sep, lsep);
        if (i == LUA_MAXINTEGER)
            break;
    }
    luaL_pushresult(&b);
    return 1;
}

/* The default order of table.sort as a function: each comparison is then
 * a call, which the hook sees once the budget is spent (a comparison of
 * two 30 MB strings, strcoll piece by piece, takes a tenth of a second). */
static int sort_less(lua_State *L)
{
    lua_pushboolean(L, lua_compare(L, 1, 2, LUA_OPLT));
    return 1;
}

static int budgeted_sort(lua_State *L)
{
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_pushcfunction(L, sort_less);
    }
    return call_original(L);
}

/* xpcall's message handler, run where the error was raised: for the
 * budget's kill that is inside the hook, with hooks off, where a handler
 * that loops could never be stopped.  A killed call gets the kill's
 * message without the script's handler. */
static int xpcall_handler(lua_State *L)
{
    lhost *h = host_of(L);
    if (h->killed) {
        lua_pushstring(L, h->kill_msg);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int budgeted_xpcall(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    return call_original(L);
}

/* ("").rep(n) would copy nothing n times: a loop of up to 2^63 steps. */
static int guarded_rep(lua_State *L)
{
    size_t len, seplen;
    luaL_checklstring(L, 1, &len);
    luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &seplen);
    if (len + seplen == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    return call_original(L);
}

/* Weak tables: a full collection over a chain of weak keys (ephemerons)
 * is quadratic, and collections run outside any budget; weak values alone
 * are not, but a __mode set to 'v' could later become 'k'. */
#define WEAK_REFUSED "__mode (weak tables) is not allowed in tagway scripts (collections run " \
                     "outside any time budget)"

/* The registry key of the metatable every script metatable gets. */
static const char metatable_guard_key = 0;

/* Lua runs finalizers with hooks off: a __gc that loops could never be
 * stopped. */
#define GC_REFUSED "__gc is not allowed in tagway scripts (a finalizer runs where no time " \
                   "budget can stop it)"

static int metatable_guard_newindex(lua_State *L)
{
    const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
    if (strcmp(key, "__mode") == 0)
        return luaL_error(L, WEAK_REFUSED);
    if (strcmp(key, "__gc") == 0)
        return luaL_error(L, GC_REFUSED);
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

static int guarded_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_argerror(L, 2, GC_REFUSED);
        lua_pop(L, 1);
        lua_pushliteral(L, "__mode");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_argerror(L, 2, WEAK_REFUSED);
        lua_pop(L, 1);
        /* Lua reads __mode at every collection: the metatable itself gets
         * one that refuses it later (and, being protected, keeps it) */
        lua_rawgetp(L, LUA_REGISTRYINDEX, &metatable_guard_key);
        if (!lua_getmetatable(L, 2)) {
            lua_setmetatable(L, 2);
        } else if (!lua_rawequal(L, -1, -2)) {
            return luaL_argerror(L, 2, "a metatable with a metatable of its own is not allowed in "
                                       "tagway scripts");
        } else {
            lua_pop(L, 2);
        }
    }
    return call_original(L);
}

/* An upper bound of the bytes cjson.encode writes for the value at idx
 * (each shared reference counted again, as encode writes it again),
 * added to *total; it stops once *total passes limit.  Depth beyond
 * cjson's own limit is left to encode to refuse.  A first, rough pass
 * counts every string byte as the 6 of \u00XX and reads none of them;
 * only a text that might pass the limit is counted byte by byte. */
typedef struct {
    lhost *h;
    size_t total, limit;
    unsigned steps;
    int exact;
} encode_estimate;

static void estimate_string(encode_estimate *e, const char *s, size_t len)
{
    if (!e->exact) {
        e->total += 6 * len + 2;
        return;
    }
    e->total += len + 2;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            e->total += 5;      /* \u00XX */
        else if (c == '"' || c == '\\' || c == '/')
            e->total += 1;
    }
}

static void estimate_json(lua_State *L, int idx, int depth, encode_estimate *e)
{
    size_t len;
    const char *s;
    if (++e->steps % 1024 == 0)
        budget_tick(L, e->h);
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        estimate_string(e, s, len);
        return;
    case LUA_TTABLE:
        e->total += 2;
        if (depth >= 1000)
            return;
        luaL_checkstack(L, 3, "cjson.encode: table too deep");
        idx = lua_absindex(L, idx);
        for (lua_pushnil(L); e->total <= e->limit && lua_next(L, idx); lua_pop(L, 1)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                s = lua_tolstring(L, -2, &len);
                estimate_string(e, s, len);
            } else {
                e->total += 32;
            }
            e->total += 2;      /* : and , */
            estimate_json(L, -1, depth + 1, e);
        }
        if (e->total > e->limit)
            lua_pop(L, 1);      /* the key of the pair the loop stopped after */
        return;
    default:
        e->total += 32;         /* a number, true, false, null */
        return;
    }
}

static int guarded_encode(lua_State *L)
{
    encode_estimate e = {host_of(L), 0, 0, 0, 0};
    e.limit = e.h->mem_limit;
    luaL_checkany(L, 1);
    estimate_json(L, 1, 0, &e);
    if (e.total > e.limit) {
        lua_settop(L, 1);
        e.total = 0;
        e.exact = 1;
        estimate_json(L, 1, 0, &e);
    }
    if (e.total > e.limit)
        return luaL_error(L, "cjson.encode: the text would pass the scripts' memory budget (%I bytes)",
                          (lua_Integer)e.limit); /* lua_pushfstring knows no %zu */
    lua_settop(L, 1);
    return call_original(L);
}

/* os.date runs strftime once per conversion of its format, in C: a
 * format of millions of "%Z" takes seconds no hook sees. */
static int guarded_date(lua_State *L)
{
    size_t len;
    luaL_optlstring(L, 1, "%c", &len);
    luaL_argcheck(L, len <= 256, 1, "format longer than 256 bytes");
    return call_original(L);
}

static void guard(lua_State *L, const char *lib, const char *name, lua_CFunction f)
{
    lua_getglobal(L, lib);
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

static void remove_field(lua_State *L, const char *table, const char *field)
{
    lua_getglobal(L, table);
    lua_pushnil(L);
    lua_setfield(L, -2, field);
    lua_pop(L, 1);
}

static void open_sandbox(lua_State *L, lhost *h)
{
    static const luaL_Reg budgeted_table[] = {
        {"insert", budgeted_insert}, {"remove", budgeted_remove}, {"move", budgeted_move},
        {"unpack", budgeted_unpack}, {"concat", budgeted_concat}, {NULL, NULL}};
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base}, {LUA_TABLIBNAME, luaopen_table},
        {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8}, {LUA_OSLIBNAME, luaopen_os},
        {NULL, NULL}};
    static const char *const base_out[] = {"dofile", "loadfile", "require", "print", NULL};
    static const char *const os_keep[] = {"time", "clock", "date", NULL};
    for (const luaL_Reg *l = libs; l->func; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
    for (const char *const *n = base_out; *n; n++)
        remove_field(L, LUA_GNAME, *n);
    remove_field(L, LUA_STRLIBNAME, "dump");
    /* pattern matching that answers to the time budget (the stock one
     * can backtrack for hours where no hook fires) */
    lua_getglobal(L, LUA_STRLIBNAME);
    lpattern_install(L, -1, budget_tick, h);
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, metatable_guard_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &metatable_guard_key);
    guard(L, LUA_GNAME, "setmetatable", guarded_setmetatable);
    guard(L, LUA_STRLIBNAME, "rep", guarded_rep);
    remove_field(L, LUA_MATHLIBNAME, "randomseed");  /* a seed would outlive the request */
    guard(L, LUA_GNAME, "xpcall", budgeted_xpcall);
    guard(L, LUA_TABLIBNAME, "sort", budgeted_sort);
    lua_getglobal(L, LUA_TABLIBNAME);
    luaL_setfuncs(L, budgeted_table, 0);
    lua_pop(L, 1);
    lua_register(L, "load", safe_load);
    lua_register(L, "collectgarbage", safe_collectgarbage);
    lua_newtable(L);                           /* os: clock and time only */
    lua_getglobal(L, LUA_OSLIBNAME);
    for (const char *const *n = os_keep; *n; n++) {
        lua_getfield(L, -1, *n);
        lua_setfield(L, -3, *n);
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "date");
    lua_pushcclosure(L, guarded_date, 1);
    lua_setfield(L, -2, "date");
    /* require("os") must find the trimmed table, not the full library
     * luaL_requiref left in the loaded-modules table */
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 1);
    lua_setglobal(L, LUA_OSLIBNAME);
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    /* cjson.new() would hand out an instance whose settings (depth limits)
     * are not fixed at load; encode writes into a buffer of its own,
     * outside the memory cap and with no instruction to count */
    lua_pushnil(L);
    lua_setfield(L, -2, "new");
    lua_getfield(L, -1, "encode");
    lua_pushcclosure(L, guarded_encode, 1);
    lua_setfield(L, -2, "encode");
    lua_pop(L, 1);
}

/* After loading: new globals and reads of undefined ones raise, the
 * library tables (string, table, math, utf8, os, gw, cjson) are read-only
 * views, rawset refuses them and _G, the cjson settings are fixed, and the
 * string metatable cannot be reached: one request cannot leave state
 * behind for the next (on its worker only, so workers would drift apart)
 * in a global, a library or a module's own fields.  Tables nested inside
 * those are not locked (README: Architecture): the scripts must not write
 * them.  Its argument is the loaded-modules table, which require answers
 * from. */
static const char lock_globals_lua[] =
    "local loaded = ...\n"
    "local G, err, setmt, rawset0, rawget0 = _G, error, setmetatable, rawset, rawget\n"
    "local next0, type0, select0 = next, type, select\n"
    "local locked = {}\n"
    /* pairs over t that never hands t itself out (as next's state would) */
    "local function iterate(t)\n"
    "  return function() local k return function() local v k, v = next0(t, k) return k, v end end\n"
    "end\n"
    "local function view(name, t)\n"
    "  local v = setmt({}, {__metatable = false, __index = t, __pairs = iterate(t), __len = function() return #t end,\n"
    "    __newindex = function(_, k) err('assignment to ' .. name .. '.' .. tostring(k) .. ': library tables are read-only', 2) end})\n"
    "  locked[v] = true\n"
    "  return v\n"
    "end\n"
    "local cjson = loaded.cjson\n"
    "for name, setting in next0, cjson do\n"
    "  if type0(setting) == 'function' and name ~= 'encode' and name ~= 'decode' then\n"
    "    cjson[name] = function(...)\n"
    "      if select0('#', ...) > 0 then err('cjson.' .. name .. ': the cjson settings are fixed once the scripts are loaded', 2) end\n"
    "      return setting()\n"
    "    end\n"
    "  end\n"
    "end\n"
    "loaded.cjson = view('cjson', cjson)\n"
    "for _, name in next0, {'string', 'table', 'math', 'utf8', 'os', 'gw'} do\n"
    "  local v = view(name, G[name])\n"
    "  rawset0(G, name, v)\n"
    "  if loaded[name] ~= nil then loaded[name] = v end\n"
    "end\n"
    /* the scripts' modules too, as require hands them out from now on:
     * what they captured of each other at load stays theirs */
    "for name, m in next0, loaded do\n"
    "  if type0(m) == 'table' and not locked[m] and name ~= '_G' then loaded[name] = view(name, m) end\n"
    "end\n"
    "rawset0(G, 'rawset', function(t, k, v)\n"
    "  if locked[t] then err('rawset: this table is locked once the scripts are loaded', 2) end\n"
    "  if k == '__mode' then err('rawset: __mode (weak tables) is not allowed in tagway scripts', 2) end\n"
    "  return rawset0(t, k, v)\n"
    "end)\n"
    /* _G itself becomes an empty view over the globals: an assignment to
     * any global, defined or not, reaches __newindex */
    "local globals = {}\n"
    "for k, v in next0, G do globals[k] = v end\n"
    "for k in next0, globals do rawset0(G, k, nil) end\n"
    "locked[G] = true\n"
    "setmt(globals, {__index = function(_, k) err('read of undeclared global \\'' .. tostring(k) .. '\\'', 2) end})\n"
    "setmt(G, {__metatable = false, __index = globals, __pairs = iterate(globals),\n"
    "  __newindex = function(_, k)\n"
    "    if rawget0(globals, k) ~= nil then err('assignment to global \\'' .. tostring(k) .. '\\': globals are read-only once the scripts are loaded', 2) end\n"
    "    err('assignment to undeclared global \\'' .. tostring(k) .. '\\'', 2)\n"
    "  end})\n";

static int lock_state(lhost *h, char *err, size_t errlen)
{
    lua_State *L = h->L;
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    if (luaL_loadbufferx(L, lock_globals_lua, sizeof lock_globals_lua - 1, "=lock", "t") != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        return -1;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    return pcall(h, 1, 0, 1, err, errlen) == LHOST_OK ? 0 : -1;
}

/* ---- loading scripts from disk ----------------------------------------- */

static int record_file(lhost *h, const char *path, const char *text, size_t len)
{
    lhost_file *f;
    /* once per file: a module whose require fails is read again at every
     * require, and each would add a record for good */
    for (size_t i = 0; i < h->nfiles; i++)
        if (strcmp(h->files[i].path, path) == 0) {
            sha256_hex(text, len, h->files[i].sha256);
            h->last_file = h->files[i].path;
            return 0;
        }
    if (!(f = realloc(h->files, (h->nfiles + 1) * sizeof *f)))
        return -1;
    h->files = f;
    f = &h->files[h->nfiles];
    if (!(f->path = strdup(path)))
        return -1;
    sha256_hex(text, len, f->sha256);
    h->nfiles++;
    h->last_file = f->path;
    return 0;
}

/* ---- one reload's files --------------------------------------------------- */

/* Every worker's state of a reload (or of the start) is built from the
 * same bytes: each build read the files again, so one edited between two
 * workers' builds put them on different versions under one generation
 * (an audit saw it with --watch).  The first build records what it reads
 * and lists; the others are given the records. */
typedef struct {
    char *key;                   /* a file's path, or a folder's */
    int is_folder;
    int err;                     /* a file the first build could not read: its errno */
    char *text;                  /* file: its bytes; folder: its sorted names, NUL-separated */
    size_t len;                  /* bytes; for a folder, its name count */
} snap_entry;

struct lhost_snap {
    snap_entry *e;
    size_t n, cap;
};

lhost_snap *lhost_snap_new(void)
{
    return calloc(1, sizeof(lhost_snap));
}

void lhost_snap_free(lhost_snap *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].key);
        free(s->e[i].text);
    }
    free(s->e);
    free(s);
}

static snap_entry *snap_find(lhost_snap *s, const char *key, int is_folder)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (s->e[i].is_folder == is_folder && strcmp(s->e[i].key, key) == 0)
            return &s->e[i];
    return NULL;
}

/* Keeps a copy of text under key (or, with err, that it could not be
 * read: an optional module the first build did not find must not be
 * found by the next).  0, or -1 without memory. */
static int snap_put(lhost_snap *s, const char *key, int is_folder, int err, const char *text,
                    size_t size, size_t len)
{
    snap_entry e = {strdup(key), is_folder, err, malloc(size ? size : 1), len};
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        snap_entry *grown = realloc(s->e, cap * sizeof *grown);
        if (!grown)
            goto fail;
        s->e = grown;
        s->cap = cap;
    }
    if (!e.key || !e.text)
        goto fail;
    if (size)
        memcpy(e.text, text, size);
    s->e[s->n++] = e;
    return 0;
fail:
    free(e.key);
    free(e.text);
    return -1;
}

/* Why a script file could not be read, for the reload's answer: EAGAIN is
 * util_read_file's "cut short while being read", which strerror words as
 * a system fault. */
static const char *read_failure(int err)
{
    return err == EAGAIN ? "the file changed while it was being read; try again"
                         : strerror(err);
}

char *lhost_snap_read(lhost_snap *s, const char *path, size_t *len)
{
    snap_entry *e = snap_find(s, path, 0);
    char *text;
    if (e) {
        if (e->err) {
            errno = e->err;
            return NULL;
        }
        if (!(text = malloc(e->len + 1)))
            return NULL;
        memcpy(text, e->text, e->len + 1);
        *len = e->len;
        return text;
    }
    text = util_read_file(path, len);
    if (s) {
        int err = text ? 0 : errno;
        if (snap_put(s, path, 0, err, text, text ? *len + 1 : 0, text ? *len : 0) != 0) {
            free(text);
            errno = ENOMEM;
            return NULL;
        }
        errno = err;
    }
    return text;
}

int lhost_load_config(gw_options *o, lhost_snap *snap, char *err, size_t errlen)
{
    size_t len;
    char *text;
    int rc;
    if (!o->config[0])
        return 0;
    if (!(text = lhost_snap_read(snap, o->config, &len))) {
        snprintf(err, errlen, "%s: %s", o->config, read_failure(errno));
        return -1;
    }
    rc = config_load_text(o, text, len, err, errlen);
    free(text);
    return rc;
}

const char *lhost_loaded_text(const lhost *h, const char *path, size_t *len)
{
    snap_entry *e = snap_find(h->snap, path, 0);
    if (!e || e->err)
        return NULL;
    *len = e->len;
    return e->text;
}

/* Pushes the chunk of a text file [-0, +1]; on failure pushes nothing and
 * fills err with "path:line: what" (or "path: why"). */
static int load_chunk(lhost *h, const char *path, char *err, size_t errlen)
{
    char chunkname[PATH_MAX + 2];
    size_t len = 0;
    char *text = lhost_snap_read(h->snap, path, &len);
    int rc;
    if (!text) {
        snprintf(err, errlen, "%s: %s", path, read_failure(errno));
        return -1;
    }
    snprintf(chunkname, sizeof chunkname, "@%s", path);
    rc = luaL_loadbufferx(h->L, text, len, chunkname, "t");
    if (rc == LUA_OK && record_file(h, path, text, len) != 0) {
        lua_pop(h->L, 1);
        rc = LUA_ERRMEM;
        lua_pushliteral(h->L, "out of memory");
    }
    free(text);
    if (rc != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(h->L, -1));
        lua_pop(h->L, 1);
        return -1;
    }
    return 0;
}

/* Runs a file's chunk and leaves its single result [-0, +1]. */
static int run_file(lhost *h, const char *path, char *err, size_t errlen)
{
    const char *outer = h->running_file;
    lhost_rc rc;
    if (load_chunk(h, path, err, errlen) != 0)
        return -1;
    /* a data file: a bare name that is not defined is a mistake */
    lua_pushcfunction(h->L, lstrict_run);
    lua_insert(h->L, -2);
    h->running_file = h->last_file;
    rc = pcall(h, 1, 1, LOAD_BUDGET_SCALE, err, errlen);
    h->running_file = outer;
    return rc == LHOST_OK ? 0 : -1;
}

/* require(name): modules come only from the scripts folder, as text,
 * cached per generation, and only while the generation is built.  Names
 * are restricted so a path cannot escape. */
static int l_require(lua_State *L)
{
    lhost *h = lua_touserdata(L, lua_upvalueindex(1));
    const char *name = luaL_checkstring(L, 1), *outer;
    char path[PATH_MAX], err[1024];
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, name) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9') || *c == '_' || *c == '.'))
            return luaL_error(L, "require: invalid module name '%s'", name);
    /* while serving, a file read now would be one worker's and outside
     * the reload's snapshot: every worker of a generation runs the same
     * bytes, checked when the generation was built */
    if (!h->building)
        return luaL_error(L, "require '%s': modules load with the scripts (at start and at "
                             "each reload), not while serving: require it from a module "
                             "that main.lua loads", name);
    if (snprintf(path, sizeof path, "%s/%s.lua", h->g->opt.scripts, name) >= (int)sizeof path)
        return luaL_error(L, "require: module path too long");
    for (char *c = path + strlen(h->g->opt.scripts) + 1; *c; c++)
        if (*c == '.' && strcmp(c, ".lua") != 0)
            *c = '/';
    if (load_chunk(h, path, err, sizeof err) != 0)
        return luaL_error(L, "require '%s': %s", name, err);
    outer = h->running_file;
    h->running_file = h->last_file; /* stays, if it fails, for pcall's message */
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    h->running_file = outer;
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
    return 1;
}

int lhost_is_script_name(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".lua") == 0 && name[0] != '.';
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted *.lua names of a folder; NULL with err on failure. */
static char **list_lua(const char *dir, size_t *n, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t cap = 0;
    *n = 0;
    if (!d) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return NULL;
    }
    while ((e = readdir(d))) {
        if (!lhost_is_script_name(e->d_name))
            continue;
        if (*n + 2 > cap) {
            char **grown = realloc(names, (cap = cap * 2 + 8) * sizeof *names);
            if (!grown)
                goto oom;
            names = grown;
        }
        if (!(names[*n] = strdup(e->d_name)))
            goto oom;
        (*n)++;
    }
    closedir(d);
    if (!names && !(names = calloc(1, sizeof *names)))
        goto oom_closed;
    qsort(names, *n, sizeof *names, cmp_names);
    return names;
oom:
    closedir(d);
oom_closed:
    for (size_t i = 0; i < *n; i++)
        free(names[i]);
    free(names);
    snprintf(err, errlen, "%s: out of memory", dir);
    return NULL;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

/* The line to name when a policy file returns no table with its name
 * (API.md §6 wants file:line): with a table, the first line that starts
 * with `name =`; else (or without one) the last that starts with `return`;
 * else 1. */
static int name_line(lhost *h, const char *path, int is_table)
{
    size_t len = 0, i = 0;
    char *text = lhost_snap_read(h->snap, path, &len);
    int line = 1, name_at = 0, return_at = 0;
    if (!text)
        return 1;
    while (i < len) {
        size_t j = i, k;
        while (j < len && (text[j] == ' ' || text[j] == '\t'))
            j++;
        if (is_table && !name_at && len - j > 4 && memcmp(text + j, "name", 4) == 0) {
            for (k = j + 4; k < len && (text[k] == ' ' || text[k] == '\t'); k++)
                ;
            if (k < len && text[k] == '=' && (k + 1 == len || text[k + 1] != '='))
                name_at = line;
        }
        if (len - j >= 6 && memcmp(text + j, "return", 6) == 0)
            return_at = line;
        while (i < len && text[i] != '\n')
            i++;
        i++;
        line++;
    }
    free(text);
    return name_at ? name_at : return_at ? return_at : 1;
}

/* list_lua, as this reload first listed the folder. */
static char **list_folder(lhost *h, const char *dir, size_t *n, char *err, size_t errlen)
{
    snap_entry *e = snap_find(h->snap, dir, 1);
    char **names;
    size_t size = 0;
    if (!e) {
        if (!(names = list_lua(dir, n, err, errlen)) || !h->snap)
            return names;
        for (size_t i = 0; i < *n; i++)
            size += strlen(names[i]) + 1;
        char *flat = malloc(size ? size : 1), *at = flat;
        for (size_t i = 0; flat && i < *n; i++)
            at = stpcpy(at, names[i]) + 1;
        if (flat && snap_put(h->snap, dir, 1, 0, flat, size, *n) == 0) {
            free(flat);
            return names;
        }
        free(flat);
        for (size_t i = 0; i < *n; i++)
            free(names[i]);
        free(names);
        snprintf(err, errlen, "%s: out of memory", dir);
        return NULL;
    }
    if (!(names = calloc(e->len ? e->len : 1, sizeof *names)))
        goto oom;
    *n = 0;
    for (const char *at = e->text; *n < e->len; at += strlen(at) + 1) {
        if (!(names[*n] = strdup(at)))
            goto oom;
        (*n)++;
    }
    return names;
oom:
    for (size_t i = 0; names && i < *n; i++)
        free(names[i]);
    free(names);
    snprintf(err, errlen, "%s: out of memory", dir);
    return NULL;
}

/* t[name] of the table at idx, pushed, without metamethods: its type.
 * The tables a script file returns are read here after its budgeted run
 * has ended, where an __index (a loop, an error) would run unbounded and
 * unprotected. */
static int raw_field(lua_State *L, int idx, const char *name)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, name);
    return lua_rawget(L, idx);
}

/* Loads every .lua file of dir into a table name -> result [-0, +1].  With
 * check_name, each result must be a table whose `name` is the file name. */
static int load_folder(lhost *h, const char *dir, int check_name, char *err, size_t errlen)
{
    size_t n = 0;
    char **names = list_folder(h, dir, &n, err, errlen), path[PATH_MAX];
    int rc = -1, is_table;
    if (!names)
        return -1;
    lua_newtable(h->L);
    for (size_t i = 0; i < n; i++) {
        size_t stem = strlen(names[i]) - 4;
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path) {
            snprintf(err, errlen, "%s: path too long", dir);
            goto done;
        }
        if (run_file(h, path, err, errlen) != 0)
            goto done;
        is_table = lua_istable(h->L, -1);
        if (check_name && (!is_table ||
                           raw_field(h->L, -1, "name") != LUA_TSTRING ||
                           strncmp(lua_tostring(h->L, -1), names[i], stem) != 0 ||
                           lua_tostring(h->L, -1)[stem] != '\0')) {
            snprintf(err, errlen, "%s:%d: must return a table whose name is \"%.*s\"",
                     path, name_line(h, path, is_table),
                     (int)stem, names[i]);
            goto done;
        }
        if (check_name)
            lua_pop(h->L, 1);
        lua_pushlstring(h->L, names[i], stem);
        lua_insert(h->L, -2);
        lua_settable(h->L, -3);
    }
    rc = 0;
done:
    free_names(names, n);   /* on failure the stack is dropped with the state */
    return rc;
}

/* Resolves a configured path against the configuration file's folder. */
static void resolve_path(const gw_options *o, const char *p, char *out, size_t cap)
{
    const char *slash = strrchr(o->config, '/');
    if (p[0] == '/' || !o->config[0])
        snprintf(out, cap, "%s", p);
    else if (!slash)
        snprintf(out, cap, "%s", p);
    else
        snprintf(out, cap, "%.*s/%s", (int)(slash - o->config), o->config, p);
}

/* ctx.variants = { {path = dir, modules = {name = routes}}, ... } from the
 * config's `variants` list, which sits at stack index cfg. */
static int load_variants(lhost *h, int cfg, char *err, size_t errlen)
{
    lua_State *L = h->L;
    char dir[PATH_MAX];
    lua_newtable(L);
    if (raw_field(L, cfg, "variants") == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s: variants must be a list of folders", h->g->opt.config);
        return -1;
    }
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
        resolve_path(&h->g->opt, lua_tostring(L, -1), dir, sizeof dir);
        lua_pop(L, 1);
        lua_createtable(L, 0, 2);
        lua_pushstring(L, dir);
        lua_setfield(L, -2, "path");
        if (load_folder(h, dir, 0, err, errlen) != 0)
            return -1;
        lua_setfield(L, -2, "modules");
        lua_rawseti(L, -3, i);  /* the variants list, under cfg.variants and the entry */
    }
    lua_pop(L, 2);
    return 0;
}

/* Builds the table main.init receives [-0, +1]. */
static int build_ctx(lhost *h, char *err, size_t errlen)
{
    lua_State *L = h->L;
    gw_options *o = &h->g->opt;
    lua_createtable(L, 0, 6);
    if (o->config[0]) {
        if (run_file(h, o->config, err, errlen) != 0)
            return -1;
        if (!lua_istable(L, -1)) {
            snprintf(err, errlen, "%s: must return a table", o->config);
            return -1;
        }
    } else {
        lua_newtable(L);
    }
    if (load_variants(h, lua_gettop(L), err, errlen) != 0)
        return -1;
    lua_setfield(L, -3, "variants");
    lua_setfield(L, -2, "config");
    lua_pushstring(L, o->config[0] ? o->config : "(no configuration file)");
    lua_setfield(L, -2, "config_path");
    if (load_folder(h, o->policies, 1, err, errlen) != 0)
        return -1;
    lua_setfield(L, -2, "policies");
    lua_pushstring(L, o->policies);
    lua_setfield(L, -2, "policies_dir");
    lua_pushboolean(L, o->auth);
    lua_setfield(L, -2, "auth");
    lua_pushinteger(L, (lua_Integer)h->generation);
    lua_setfield(L, -2, "generation");
    return 0;
}

/* require "main", check its entry points, run main.init(ctx). */
static int init_main(lhost *h, char *err, size_t errlen)
{
    lua_State *L = h->L;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "main");
    if (pcall(h, 1, 1, LOAD_BUDGET_SCALE, err, errlen) != LHOST_OK)
        return -1;
    if (!lua_istable(L, -1) || raw_field(L, -1, "handle") != LUA_TFUNCTION) {
        snprintf(err, errlen, "%s/main.lua: must return a table with a handle function",
                 h->g->opt.scripts);
        return -1;
    }
    h->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (raw_field(L, -1, "job_step") == LUA_TFUNCTION)
        h->job_step_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
        lua_pop(L, 1);
    if (raw_field(L, -1, "init") == LUA_TFUNCTION) {
        if (build_ctx(h, err, errlen) != 0)
            return -1;
        if (pcall(h, 1, 0, LOAD_BUDGET_SCALE, err, errlen) != LHOST_OK)
            return -1;
    } else {
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* Lua's last resort, when an error escapes every protected call: say so
 * before it aborts.  Every call into the scripts is protected, so this is
 * a bug of ours. */
static int panic(lua_State *L)
{
    util_log_json(lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)",
                  "{\"level\":\"fatal\",\"msg\":\"unprotected Lua error\",\"error\":");
    return 0;
}

typedef struct {
    lhost *h;
    char *err;
    size_t errlen;
    int rc;
} build_args;

/* Fills a new state: everything it pushes may hit the memory cap, whose
 * error must land here rather than in Lua's panic. */
static int build_protected(lua_State *L)
{
    build_args *a = lua_touserdata(L, 1);
    lhost *h = a->h;
    lua_settop(L, 0);
    open_sandbox(L, h);
    lua_pushlightuserdata(L, h);
    lua_pushcclosure(L, l_require, 1);
    lua_setglobal(L, "require");
    lapi_open(L, h);
    a->rc = init_main(h, a->err, a->errlen) != 0 || lock_state(h, a->err, a->errlen) != 0 ? -1 : 0;
    return 0;
}

lhost *lhost_new(gw *g, uint64_t generation, lhost_snap *snap, char *err, size_t errlen)
{
    lhost *h = calloc(1, sizeof *h);
    build_args build;
    int64_t period_us;
    int rc;
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->g = g;
    h->snap = snap;
    h->generation = generation;
    h->mem_limit = g->opt.script_memory;
    h->handle_ref = LUA_NOREF;
    h->job_step_ref = LUA_NOREF;
    if (!(h->L = lua_newstate(l_alloc, h))) {
        snprintf(err, errlen, "cannot create a Lua state");
        goto fail;
    }
    /* a tenth of the budget between looks (1-50 ms): a runaway stops
     * within 110% of its budget, and an idle poller wakes 20 times/s */
    period_us = g->opt.script_time_ms * 100;
    period_us = period_us < 1000 ? 1000 : period_us > 50000 ? 50000 : period_us;
    if (!(h->wd = watchdog_new(period_us, budget_overrun, h))) {
        snprintf(err, errlen, "cannot start the script watchdog");
        goto fail;
    }
    lua_atpanic(h->L, panic);
    /* another worker may build this state (a reload reaches all workers):
     * its init must not touch the storage of the worker it is for */
    h->building = 1;
    build.h = h;
    build.err = err;
    build.errlen = errlen;
    lua_pushcfunction(h->L, build_protected);
    lua_pushlightuserdata(h->L, &build);
    if ((rc = lua_pcall(h->L, 1, 0, 0)) != LUA_OK) {
        snprintf(err, errlen, "%s", rc == LUA_ERRMEM ? "the scripts exceeded their memory budget while loading"
                                    : lua_type(h->L, -1) == LUA_TSTRING ? lua_tostring(h->L, -1)
                                                                         : "error while loading the scripts");
        goto fail;
    }
    if (build.rc != 0)
        goto fail;
    h->building = 0;
    h->snap = NULL;             /* the caller's, and for this build only */
    lua_settop(h->L, 0);
    lua_gc(h->L, LUA_GCCOLLECT, 0);
    /* requests make short-lived garbage: the generational mode suits it */
    lua_gc(h->L, LUA_GCGEN, 0, 0);
    return h;
fail:
    lhost_free(h);
    return NULL;
}

void lhost_free(lhost *h)
{
    if (!h)
        return;
    watchdog_free(h->wd);
    if (h->L)
        lua_close(h->L);
    pool_drain(h);
    for (size_t i = 0; i < h->nfiles; i++)
        free(h->files[i].path);
    free(h->files);
    free(h);
}

/* ---- serving a request --------------------------------------------------- */

static void push_request(lua_State *L, const lhost_request *r)
{
    lua_createtable(L, 0, 8);
    lua_pushstring(L, r->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, r->method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, r->path);
    lua_setfield(L, -2, "path");
    /* a '%' or a byte past ASCII: only then can a path segment decode to
     * something that is not UTF-8, and the router look (nearly every
     * path is plain ASCII, and the look in Lua cost GET tags ~3%) */
    for (const char *c = r->path; *c; c++)
        if (*c == '%' || (unsigned char)*c >= 0x80) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "path_escaped");
            break;
        }
    if (r->query) {
        lua_pushstring(L, r->query);
        lua_setfield(L, -2, "query");
    }
    lua_pushlstring(L, r->body ? r->body : "", r->body_len);
    lua_setfield(L, -2, "body");
    lua_pushboolean(L, r->too_large);
    lua_setfield(L, -2, "too_large");
    if (r->too_large) {
        lua_pushinteger(L, (lua_Integer)r->body_limit);
        lua_setfield(L, -2, "body_limit");
    }
    lua_pushstring(L, r->remote ? r->remote : "");
    lua_setfield(L, -2, "remote");
}

/* handle(req), protected: the request table (the whole body) is built
 * here, where the memory cap's error is caught, and the answers that are
 * numbers become strings here too (that allocates). */
static int handle_protected(lua_State *L)
{
    lhost *h = host_of(L);
    const lhost_request *r = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->handle_ref);
    push_request(L, r);
    lua_call(L, 1, 6);
    for (int i = 2; i <= 5; i++)
        if (lua_type(L, i) == LUA_TNUMBER)
            lua_tostring(L, i);
    return 6;
}

static const char *string_at(lua_State *L, int idx, size_t *len)
{
    return lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, len) : NULL;
}

/* handle(req) returns status, body, content_type, route, project and
 * retry_after (seconds, or nil). */
static int take_response(lhost *h, lhost_response *resp, char *err, size_t errlen)
{
    lua_State *L = h->L;
    size_t len = 0;
    const char *body = string_at(L, -5, &len), *s = string_at(L, -4, NULL);
    lua_Integer status = lua_tointeger(L, -6);
    lua_Number retry = lua_tonumber(L, -1);
    /* a final status only: evhttp sends a 1xx as the answer's status
     * line without a length, and the body after it reads as the next
     * answer (and a write would be kept, 1xx being below 300) */
    if (!lua_isinteger(L, -6) || status < 200 || status > 599) {
        snprintf(err, errlen, "handle() returned an invalid status (an integer 200-599 is needed)");
        return -1;
    }
    if (!body && !lua_isnil(L, -5)) {
        snprintf(err, errlen, "handle() returned a %s as the body (a string or nil is needed)",
                 luaL_typename(L, -5));
        return -1;
    }
    if (!lua_isnil(L, -4) && (!s || !*s || strpbrk(s, "\r\n") || strlen(s) >= sizeof resp->content_type)) {
        snprintf(err, errlen, "handle() returned an invalid content type (a one-line string is needed)");
        return -1;
    }
    /* evhttp would send the body of these too, after headers that say
     * there is none */
    if (len && (status == 204 || status == 205 || status == 304)) {
        snprintf(err, errlen, "handle() returned a body with status %d, which carries none",
                 (int)status);
        return -1;
    }
    resp->status = (int)status;
    if (body && evbuffer_add(resp->body, body, len) != 0) {
        snprintf(err, errlen, "out of memory for the response body");
        return -1;
    }
    if (!lua_isnil(L, -1) && (lua_type(L, -1) != LUA_TNUMBER || !(retry > 0 && retry <= 86400))) {
        snprintf(err, errlen, "handle() returned an invalid retry_after (seconds, 0 to 86400)");
        return -1;
    }
    util_copy(resp->content_type, sizeof resp->content_type, s ? s : "application/json;charset=UTF-8");
    if ((s = string_at(L, -3, NULL)))
        util_copy(resp->route, sizeof resp->route, s);
    if ((s = string_at(L, -2, NULL)))
        util_copy(resp->project, sizeof resp->project, s);
    resp->retry_after_s = lua_isnil(L, -1) ? 0 : (int)ceil(retry);
    return 0;
}

lhost_rc lhost_handle(lhost *h, const lhost_request *req, lhost_response *resp)
{
    lua_State *L = h->L;
    char err[4096];
    lhost_rc rc;
    h->req = req;
    h->resp = resp;
    lua_pushcfunction(L, handle_protected);
    lua_pushlightuserdata(L, (void *)req);
    rc = pcall(h, 1, 6, 1, err, sizeof err);
    if (rc == LHOST_OK) {
        if (take_response(h, resp, err, sizeof err) != 0)
            rc = LHOST_ERROR;
        lua_pop(L, 6);
    }
    h->req = NULL;
    h->resp = NULL;
    if (rc != LHOST_OK) {
        evbuffer_drain(resp->body, evbuffer_get_length(resp->body));
        util_log_json(err, "{\"level\":\"error\",\"request_id\":\"%s\",\"kind\":\"%s\",\"generation\":%llu,\"traceback\":",
                      req->id, rc == LHOST_BUDGET ? "budget" : "error", (unsigned long long)h->generation);
        if (rc == LHOST_BUDGET)
            h->g->stats->budget_kills++;
        else
            h->g->stats->script_errors++;
        lua_settop(L, 0);
        /* a state that hit its memory cap gets a full collection now */
        lua_gc(L, LUA_GCCOLLECT, 0);
    }
    return rc;
}

const lhost_file *lhost_files(const lhost *h, size_t *n)
{
    *n = h->nfiles;
    return h->files;
}

uint64_t lhost_generation(const lhost *h) { return h->generation; }
size_t lhost_memory(const lhost *h) { return h->mem_used; }
const lhost_request *lhost_current(const lhost *h) { return h->req; }
lhost_response *lhost_current_response(lhost *h) { return h->resp; }
gw *lhost_gw(const lhost *h) { return h->g; }

static void set_str(lua_State *L, const char *field, const char *v)
{
    if (!v)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, field);
}

typedef struct {
    const store_job *job;
    int progress;
} job_args;

/* job_step(job), protected like handle_protected: builds the job table,
 * calls, and reads the result's status, progress, code and reason (a
 * field read may run a metamethod; a number becomes a string) into four
 * values; nil for the fields of a result that is not a table. */
static int job_step_protected(lua_State *L)
{
    lhost *h = host_of(L);
    const job_args *a = lua_touserdata(L, 1);
    static const char *const fields[] = {"status", "progress", "code", "reason"};
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->job_step_ref);
    lua_createtable(L, 0, 10);
    set_str(L, "id", a->job->id);
    set_str(L, "project_id", a->job->project);
    set_str(L, "kind", a->job->kind);
    set_str(L, "status", a->job->status);
    set_str(L, "image_id", a->job->image_id);
    set_str(L, "image_name", a->job->image_name);
    set_str(L, "params", a->job->params);
    lua_pushinteger(L, a->progress);
    lua_setfield(L, -2, "progress");
    lua_call(L, 1, 1);
    for (int i = 0; i < 4; i++) {
        if (lua_istable(L, 1))
            lua_getfield(L, 1, fields[i]);
        else
            lua_pushnil(L);
        if (i != 1 && lua_type(L, -1) == LUA_TNUMBER)
            lua_tostring(L, -1);
    }
    return 4;
}

/* The four values job_step_protected leaves; -1 when they name no known
 * status (the job fails). */
static int read_job_result(lua_State *L, lhost_job_result *out)
{
    const char *state = string_at(L, -4, NULL), *code = string_at(L, -2, NULL),
               *reason = string_at(L, -1, NULL);
    out->progress = lua_type(L, -3) == LUA_TNUMBER ? (int)lua_tointeger(L, -3) : 0;
    util_copy(out->code, sizeof out->code, code ? code : "IMG.0061");
    util_copy(out->reason, sizeof out->reason, reason ? reason : "");
    if (state && !strcmp(state, "success"))
        out->state = LHOST_JOB_SUCCESS;
    else if (state && !strcmp(state, "fail"))
        out->state = LHOST_JOB_FAIL;
    else if (state && !strcmp(state, "running"))
        out->state = LHOST_JOB_RUNNING;
    else { /* a backend that answers nothing known would keep the job running for ever */
        out->state = LHOST_JOB_FAIL;
        util_copy(out->code, sizeof out->code, "IMG.0061");
        snprintf(out->reason, sizeof out->reason, "the import backend answered no status "
                 "(\"running\", \"success\" or \"fail\")");
        return -1;
    }
    return 0;
}

static void log_job_error(const store_job *job, const char *what)
{
    util_log_json(what, "{\"level\":\"error\",\"job_id\":\"%s\",\"kind\":\"job_step\",\"traceback\":", job->id);
}

lhost_rc lhost_job_step(lhost *h, const store_job *job, int progress, lhost_job_result *out)
{
    lua_State *L = h->L;
    char err[2048];
    job_args args;
    lhost_rc rc;
    memset(out, 0, sizeof *out);
    if (h->job_step_ref == LUA_NOREF) {
        out->state = LHOST_JOB_FAIL;
        util_copy(out->code, sizeof out->code, "IMG.0061");
        util_copy(out->reason, sizeof out->reason, "no import backend (main.job_step) is loaded");
        return LHOST_OK;
    }
    args.job = job;
    args.progress = progress;
    lua_pushcfunction(L, job_step_protected);
    lua_pushlightuserdata(L, &args);
    rc = pcall(h, 1, 4, 1, err, sizeof err);
    if (rc != LHOST_OK) {
        log_job_error(job, err);
        lua_settop(L, 0);
        return rc;
    }
    if (read_job_result(L, out) != 0)
        log_job_error(job, out->reason);
    lua_pop(L, 4);
    return LHOST_OK;
}
