/* lapi: gw.* functions for the scripts.  Misuse (wrong argument types)
 * raises; expected failures return nil, "reason".  C never holds heap
 * memory across a call that may raise: temporary arrays are Lua userdata
 * and store rows are borrowed until the next store call.
 * Uses lhost (current request), store, tagidx, auth, jobs, util. */
#include "lapi.h"
#include "auth.h"
#include "jobs.h"
#include "json.h"
#include "lhost.h"
#include "metrics.h"
#include "ratelim.h"
#include "sha256.h"
#include "store.h"
#include "tagcache.h"
#include "tagidx.h"
#include "util.h"

#include <event2/buffer.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAGE 1000

static lhost *host(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }
/* The worker behind this state.  Not while the state is being built: a
 * reload builds every worker's state on one thread, and the worker's
 * storage belongs to that worker's thread. */
static gw *gwp(lua_State *L)
{
    if (lhost_building(host(L)))
        luaL_error(L, "this gw function is not available while the scripts load");
    return lhost_gw(host(L));
}

static const lhost_request *need_request(lua_State *L)
{
    const lhost_request *r = lhost_current(host(L));
    if (!r)
        luaL_error(L, "this gw function is only available while serving a request");
    return r;
}

static int fail(lua_State *L, const char *why)
{
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
}

static int store_failed(lua_State *L)
{
    return luaL_error(L, "storage error: %s", store_errmsg(gwp(L)->store));
}

/* gw.header(name) -> value or nil */
static int l_header(lua_State *L)
{
    const lhost_request *r = need_request(L);
    const char *v = r->header(r->header_ud, luaL_checkstring(L, 1));
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
    return 1;
}

/* gw.auth() -> {project, role, via} | nil, status (401/403), message */
static int l_auth(lua_State *L)
{
    const lhost_request *r = need_request(L);
    aksk_request ar = {r->method, r->path, r->query, r->header, r->header_ud,
                       r->body, r->body_len};
    auth_caller c;
    const char *why = "";
    auth_rc rc = auth_check(gwp(L)->store, &ar, time(NULL), &c, &why);
    if (rc == AUTH_ERROR)
        return store_failed(L);
    if (rc != AUTH_OK) {
        lua_pushnil(L);
        lua_pushinteger(L, rc == AUTH_FORBIDDEN ? 403 : 401);
        lua_pushstring(L, why);
        return 3;
    }
    lua_createtable(L, 0, 3);
    lua_pushstring(L, c.project);
    lua_setfield(L, -2, "project");
    lua_pushstring(L, c.role);
    lua_setfield(L, -2, "role");
    lua_pushstring(L, c.via);
    lua_setfield(L, -2, "via");
    return 1;
}

static int push_tag_cb(void *ud, const char *key, const char *value)
{
    lua_State *L = ud;
    lua_createtable(L, 0, 2);
    lua_pushstring(L, key);
    lua_setfield(L, -2, "key");
    lua_pushstring(L, value);
    lua_setfield(L, -2, "value");
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

/* Pushes the image's tags as a sorted array [-0, +1]. */
static void push_tags(lua_State *L, int64_t seq)
{
    lua_newtable(L);
    if (store_image_tags(gwp(L)->store, seq, push_tag_cb, L) != 0)
        store_failed(L);
}

static void push_time(lua_State *L, int64_t ms, const char *field)
{
    char iso[32];
    util_iso8601_ms(ms, iso);
    lua_pushstring(L, iso);
    lua_setfield(L, -2, field);
}

/* Pushes an image row as a table, with tags [-0, +1]. */
static void push_image(lua_State *L, const store_image *im)
{
    int64_t seq = im->seq;
    lua_createtable(L, 0, 9);
    lua_pushstring(L, im->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, im->project);
    lua_setfield(L, -2, "project_id");
    lua_pushstring(L, im->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, im->status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, im->attrs);
    lua_setfield(L, -2, "attrs");
    push_time(L, im->created_ms, "created_at");
    push_time(L, im->updated_ms, "updated_at");
    push_tags(L, seq);          /* after the row's strings: this reuses no row memory */
    lua_setfield(L, -2, "tags");
}

/* Argument arg names something stored (a project, an image, a job): its
 * string, or NULL when it holds a NUL.  No write stores such a name, so
 * it names nothing; cut short at the NUL as a C string it would name
 * another (the router decodes %00 in a path). */
static const char *name_arg(lua_State *L, int arg)
{
    size_t len;
    const char *s = luaL_checklstring(L, arg, &len);
    return strlen(s) == len ? s : NULL;
}

/* gw.image_get(project, id) -> image table | nil */
static int l_image_get(lua_State *L)
{
    const char *project = name_arg(L, 1), *id = name_arg(L, 2);
    store_image im;
    store_rc rc = project && id ? store_image_get(gwp(L)->store, project, id, &im) : STORE_NOT_FOUND;
    if (rc == STORE_ERROR)
        return store_failed(L);
    if (rc == STORE_NOT_FOUND)
        return fail(L, "not_found");
    push_image(L, &im);
    return 1;
}

/* gw.image_tags(project, id) -> sorted tags array | nil */
/* Runs cb over the sorted tags of the image (project, id) named by args 1
 * and 2: 1 when it exists, 0 when not; a storage error raises.  seq (may
 * be NULL) receives the image's seq. */
static int each_image_tag(lua_State *L, store_tag_cb cb, void *ud, int64_t *seq)
{
    const char *project = name_arg(L, 1), *id = name_arg(L, 2);
    store_rc rc = project && id ? store_image_tags_by_id(gwp(L)->store, project, id, cb, ud, seq)
                                : STORE_NOT_FOUND;
    if (rc == STORE_ERROR)
        store_failed(L);
    return rc == STORE_OK;
}

static int l_image_tags(lua_State *L)
{
    lua_newtable(L);
    if (!each_image_tag(L, push_tag_cb, L, NULL))
        return fail(L, "not_found");
    return 1;
}

/* s as a JSON string literal: quotes, backslashes and control characters
 * escaped, UTF-8 as it is (stored strings were checked by the policy). */
static void add_json_string(luaL_Buffer *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *run = p;
    luaL_addchar(b, '"');
    for (; *p; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\' && *p != 0x7f)
            continue;
        luaL_addlstring(b, (const char *)run, (size_t)(p - run));
        run = p + 1;
        if (*p == '"' || *p == '\\') {
            luaL_addchar(b, '\\');
            luaL_addchar(b, (char)*p);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            luaL_addlstring(b, esc, sizeof esc);
        }
    }
    luaL_addlstring(b, (const char *)run, (size_t)(p - run));
    luaL_addchar(b, '"');
}

static int add_tag_json_cb(void *ud, const char *key, const char *value)
{
    luaL_Buffer *b = ud;
    /* after '[': a comma before every tag but the first */
    if (luaL_bufflen(b) > 1)
        luaL_addchar(b, ',');
    luaL_addstring(b, "{\"key\":");
    add_json_string(b, key);
    luaL_addstring(b, ",\"value\":");
    add_json_string(b, value);
    luaL_addchar(b, '}');
    return 0;
}

/* gw.image_tags_json(project, id) -> the sorted tags as a JSON array text
 * ('[{"key":..,"value":..},...]') | nil: the hottest read without a Lua
 * table per tag; the handler still shapes the body around it.  Answered
 * from the tags cache when it holds the image (tagcache.h), and what is
 * read from committed data is kept there. */
static int l_image_tags_json(lua_State *L)
{
    gw *g = gwp(L);
    tagcache *c = g->shared->tags_cache;
    const char *project = name_arg(L, 1), *id = name_arg(L, 2);
    char hit[TAGCACHE_MAX_JSON];
    size_t n;
    if (!project || !id)
        return fail(L, "not_found");
    n = tagcache_get(c, project, id, hit);
    uint64_t seen = 0;
    int keep;
    luaL_Buffer b;
    const char *json;
    if (n) {
        lua_pushlstring(L, hit, n);
        return 1;
    }
    keep = c && store_read_seen(g->store, &seen); /* before the read it bounds */
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '[');
    if (!each_image_tag(L, add_tag_json_cb, &b, NULL))
        return fail(L, "not_found");
    luaL_addchar(&b, ']');
    luaL_pushresult(&b);
    if (keep && (json = lua_tolstring(L, -1, &n)))
        tagcache_put(c, project, id, json, n, seen);
    return 1;
}

typedef struct {
    lua_State *L;
    lua_Integer n;
} tag_map;

static int set_tag_cb(void *ud, const char *key, const char *value)
{
    tag_map *m = ud;
    lua_pushstring(m->L, value);
    lua_setfield(m->L, -2, key);
    m->n++;
    return 0;
}

/* gw.image_tag_map(project, id) -> {key = value}, count, seq | nil: the
 * image's tags as a map, for handlers that judge a write on them (one
 * table, not one per tag), and the image's seq, which gw.tags_apply takes
 * with them to find the image without its id. */
static int l_image_tag_map(lua_State *L)
{
    tag_map m = {L, 0};
    int64_t seq = 0;
    lua_newtable(L);
    if (!each_image_tag(L, set_tag_cb, &m, &seq))
        return fail(L, "not_found");
    lua_pushinteger(L, m.n);
    lua_pushinteger(L, (lua_Integer)seq);
    return 3;
}

/* A string C may treat as NUL-terminated: embedded NULs would silently
 * shorten it, so they are a script error here (handlers reject them). */
static const char *check_plain(lua_State *L, int at, int arg)
{
    size_t len;
    const char *s = lua_tolstring(L, at, &len);
    luaL_argcheck(L, strlen(s) == len, arg, "strings must not contain NUL");
    return s;
}

/* Pushes t[name] without metamethods and returns its type.  The readers
 * below keep pointers to strings they pop, anchored only by the table: a
 * value an __index made up is anchored nowhere, and a collection could
 * free it before the store reads it. */
static int raw_field(lua_State *L, int t, const char *name)
{
    t = lua_absindex(L, t);
    lua_pushstring(L, name);
    return lua_rawget(L, t);
}

/* Reads {{key=, value=}, ...} at idx into a userdata array left on the
 * stack [-0, +1]; the strings stay owned by the Lua table. */
static store_tag *check_tags(lua_State *L, int idx, size_t *n)
{
    store_tag *tags;
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = lua_rawlen(L, idx);
    tags = lua_newuserdatauv(L, (*n ? *n : 1) * sizeof *tags, 0);
    for (size_t i = 0; i < *n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        luaL_argcheck(L, lua_istable(L, -1), idx, "tags must be {key=, value=} tables");
        raw_field(L, -1, "key");
        raw_field(L, -2, "value");
        luaL_argcheck(L, lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING,
                      idx, "tag key and value must be strings");
        tags[i].key = check_plain(L, -2, idx);
        tags[i].value = check_plain(L, -1, idx);
        lua_pop(L, 3);          /* the strings stay alive in the table at idx */
    }
    return tags;
}

/* Reads a list of strings at idx into a userdata array [-0, +1]. */
static const char **check_strings(lua_State *L, int idx, size_t *n)
{
    const char **v;
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = lua_rawlen(L, idx);
    v = lua_newuserdatauv(L, (*n ? *n : 1) * sizeof *v, 0);
    for (size_t i = 0; i < *n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, idx, "list of strings expected");
        v[i] = check_plain(L, -1, idx);
        lua_pop(L, 1);
    }
    return v;
}

/* gw.write_begin(): from now until the request ends, it holds the one
 * writer: its reads see the latest state (writes of requests not yet
 * committed too) and no other request writes, so what it read still holds
 * when it writes.  Read-check-write handlers call it before reading. */
static int l_write_begin(lua_State *L)
{
    need_request(L);
    if (store_write_begin(gwp(L)->store) != 0)
        return store_failed(L);
    return 0;
}

static int tag_key_order(const void *a, const void *b)
{
    return strcmp(((const store_tag *)a)->key, ((const store_tag *)b)->key);
}

/* Reads a {key = value} map at idx into a userdata array sorted by key
 * [-0, +1]. */
static store_tag *check_tag_map(lua_State *L, int idx, size_t *n)
{
    store_tag *tags;
    size_t cap = 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1))
        cap++;
    tags = lua_newuserdatauv(L, (cap ? cap : 1) * sizeof *tags, 0);
    *n = 0;
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
        luaL_argcheck(L, lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING,
                      idx, "expect must map key strings to value strings");
        tags[*n].key = check_plain(L, -2, idx);     /* alive in the table at idx */
        tags[*n].value = check_plain(L, -1, idx);
        (*n)++;
    }
    qsort(tags, *n, sizeof *tags, tag_key_order);
    return tags;
}

/* gw.tags_apply(project, image_id, set, del, max_tags, expect, seq) ->
 * true | nil, "not_found" | "quota" | "conflict".  expect (optional): the
 * image's tags the caller decided on, as gw.image_tag_map's {key = value}
 * or gw.image_tags' list; when the image no longer holds exactly those,
 * nothing is written and the answer is "conflict" (decide again, after
 * gw.write_begin()).  seq (optional, with expect): the image's seq from
 * the same gw.image_tag_map call; it saves the store a lookup of the id,
 * and one that no longer names this image is a "conflict" too. */
static int l_tags_apply(lua_State *L)
{
    const char *project = name_arg(L, 1), *id = name_arg(L, 2);
    lua_Integer max_tags = luaL_optinteger(L, 5, -1);   /* before check_* push */
    int has_expect = !lua_isnoneornil(L, 6);
    size_t nset, ndel;
    store_tag *set;
    const char **del;
    store_tag_list expect = {0};
    expect.seq = (int64_t)luaL_optinteger(L, 7, 0);
    lua_settop(L, 7);
    set = check_tags(L, 3, &nset);
    del = check_strings(L, 4, &ndel);
    if (has_expect)
        expect.tags = lua_rawlen(L, 6) > 0 ? check_tags(L, 6, &expect.n) : check_tag_map(L, 6, &expect.n);
    /* beyond int: more than any image can hold, i.e. no limit */
    store_rc rc = !project || !id ? STORE_NOT_FOUND
                : store_tags_apply(gwp(L)->store, project, id, set, nset, (const char *const *)del, ndel,
                                   max_tags > INT_MAX ? -1 : (int)max_tags, has_expect ? &expect : NULL);
    if (rc == STORE_ERROR)
        return store_failed(L);
    if (rc == STORE_NOT_FOUND)
        return fail(L, "not_found");
    if (rc == STORE_QUOTA)
        return fail(L, "quota");
    if (rc == STORE_CONFLICT)
        return fail(L, "conflict");
    lua_pushboolean(L, 1);
    return 1;
}

static const char *opt_field(lua_State *L, int t, const char *field, const char *def)
{
    const char *v;
    raw_field(L, t, field);
    v = lua_isnil(L, -1) ? def : (luaL_checkstring(L, -1), check_plain(L, -1, t));
    lua_pop(L, 1);              /* strings stay alive in the table */
    return v;
}

/* gw.image_create(project, {id?, name, status, attrs}, tags) -> id | nil, reason */
static int l_image_create(lua_State *L)
{
    const char *project = (luaL_checkstring(L, 1), check_plain(L, 1, 1)), *id, *name, *status, *attrs;
    char id_out[37];
    size_t ntags;
    store_tag *tags;
    store_rc rc;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 3);
    id = opt_field(L, 2, "id", NULL);
    name = opt_field(L, 2, "name", NULL);
    status = opt_field(L, 2, "status", "active");
    attrs = opt_field(L, 2, "attrs", "{}");
    luaL_argcheck(L, name != NULL, 2, "name is required");
    tags = check_tags(L, 3, &ntags);
    rc = store_image_create(gwp(L)->store, project, id, name, status, attrs, tags, ntags, id_out);
    if (rc == STORE_ERROR)
        return store_failed(L);
    if (rc == STORE_CONFLICT)
        return fail(L, "conflict");
    lua_pushstring(L, id_out);
    return 1;
}

/* gw.image_delete(project, id) -> true | nil, "not_found" */
static int l_image_delete(lua_State *L)
{
    const char *project = name_arg(L, 1), *id = name_arg(L, 2);
    store_rc rc = project && id ? store_image_delete(gwp(L)->store, project, id) : STORE_NOT_FOUND;
    if (rc == STORE_ERROR)
        return store_failed(L);
    if (rc == STORE_NOT_FOUND)
        return fail(L, "not_found");
    lua_pushboolean(L, 1);
    return 1;
}

/* The project's keys and values are copied out of the index under its
 * read lock into an evbuffer, so no Lua call (which may raise) runs while
 * the lock is held: per key "key\0", the value count (uint32), "value\0"
 * each. */
typedef struct {
    struct evbuffer *buf;
    int failed;                 /* out of memory: the listing stopped short */
} tag_dump;

static int dump_key_cb(void *ud, const char *key, const char *const *values, size_t n)
{
    tag_dump *d = ud;
    uint32_t count = (uint32_t)n;
    if (evbuffer_add(d->buf, key, strlen(key) + 1) != 0 ||
        evbuffer_add(d->buf, &count, sizeof count) != 0)
        return d->failed = 1;
    for (size_t i = 0; i < n; i++)
        if (evbuffer_add(d->buf, values[i], strlen(values[i]) + 1) != 0)
            return d->failed = 1;
    return 0;
}

/* The dump's walk: each key, its value count, then its values, all
 * NUL-terminated.  The pushers below run as protected calls (the caller
 * frees the dump even if Lua raises), with the dump and the lhost as
 * arguments: a project's listing can hold a million values, a loop the
 * count hook never sees, so they tick the budget themselves. */
typedef struct {
    const char *d;
    size_t len, at;
} dump_walk;

static const char *walk_str(dump_walk *w)
{
    const char *s = w->d + w->at;
    w->at += strlen(s) + 1;
    return s;
}

static uint32_t walk_count(dump_walk *w)
{
    uint32_t count;
    memcpy(&count, w->d + w->at, sizeof count);
    w->at += sizeof count;
    return count;
}

static dump_walk walk_of(lua_State *L)
{
    struct evbuffer *b = lua_touserdata(L, 1);
    dump_walk w = {"", evbuffer_get_length(b), 0};
    if (w.len)
        w.d = (const char *)evbuffer_pullup(b, -1);
    return w;
}

/* {{key=, values={...}}, ...}.  A string each, and with the memory cap
 * near every new string can cost the state a full collection: the tick
 * comes at every one. */
static int push_dump(lua_State *L)
{
    dump_walk w = walk_of(L);
    lhost *h = lua_touserdata(L, 2);
    lua_newtable(L);
    while (w.at < w.len) {
        uint32_t count;
        lua_createtable(L, 0, 2);
        lua_pushstring(L, walk_str(&w));
        lua_setfield(L, -2, "key");
        count = walk_count(&w);
        lua_createtable(L, (int)count, 0);
        for (uint32_t i = 0; i < count; i++) {
            lhost_budget_tick(h, L);
            lua_pushstring(L, walk_str(&w));
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "values");
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    return 1;
}

/* '[{"key":..,"values":[..]},...]': one string however many values. */
static int push_dump_json(lua_State *L)
{
    dump_walk w = walk_of(L);
    lhost *h = lua_touserdata(L, 2);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '[');
    while (w.at < w.len) {
        uint32_t count;
        if (luaL_bufflen(&b) > 1)
            luaL_addchar(&b, ',');
        luaL_addstring(&b, "{\"key\":");
        add_json_string(&b, walk_str(&w));
        luaL_addstring(&b, ",\"values\":[");
        count = walk_count(&w);
        for (uint32_t i = 0; i < count; i++) {
            if ((i & 1023) == 0)
                lhost_budget_tick(h, L);
            if (i)
                luaL_addchar(&b, ',');
            add_json_string(&b, walk_str(&w));
        }
        luaL_addstring(&b, "]}");
    }
    luaL_addchar(&b, ']');
    luaL_pushresult(&b);
    return 1;
}

/* The sorted tags of the project argument, pushed by `pusher`. */
static int project_tags_with(lua_State *L, lua_CFunction pusher)
{
    const char *project = name_arg(L, 1);
    gw *g = gwp(L);
    tag_dump d = {evbuffer_new(), 0};
    int rc;
    if (!d.buf)
        return luaL_error(L, "out of memory listing tags");
    if (project) {
        gw_index_read(g);
        rc = tagidx_project_tags(g->index, project, dump_key_cb, &d);
        gw_index_done(g);
        if (rc != 0 || d.failed) {
            evbuffer_free(d.buf);
            return luaL_error(L, "out of memory listing tags");
        }
    }
    lua_pushcfunction(L, pusher);
    lua_pushlightuserdata(L, d.buf);
    lua_pushlightuserdata(L, host(L));
    rc = lua_pcall(L, 2, 1, 0);
    evbuffer_free(d.buf);
    if (rc != LUA_OK)
        return lua_error(L);
    return 1;
}

/* gw.project_tags(project) -> {{key=, values={...}}, ...} sorted */
static int l_project_tags(lua_State *L)
{
    return project_tags_with(L, push_dump);
}

/* gw.project_tags_json(project) -> the same as JSON array text, for §1.5:
 * no Lua string per value */
static int l_project_tags_json(lua_State *L)
{
    return project_tags_with(L, push_dump_json);
}

/* Reads q[field] = {{key=, values={...}}, ...} into entries.  The
 * entries and each values array are userdata left on the stack, so they
 * live until the call returns; the strings are anchored by q itself. */
static const tagidx_entry *check_entries(lua_State *L, int q, const char *field, size_t *n)
{
    tagidx_entry *e;
    int t;
    raw_field(L, q, field);
    t = lua_gettop(L);
    *n = lua_istable(L, t) ? lua_rawlen(L, t) : 0;
    luaL_checkstack(L, (int)*n + 8, "query has too many entries");
    e = lua_newuserdatauv(L, (*n ? *n : 1) * sizeof *e, 0);
    for (size_t i = 0; i < *n; i++) {
        size_t nv;
        lua_rawgeti(L, t, (lua_Integer)i + 1);
        luaL_argcheck(L, lua_istable(L, -1), 2, "query entries must be tables");
        raw_field(L, -1, "key");
        luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 2, "entry key must be a string");
        e[i].key = lua_tostring(L, -1);
        lua_pop(L, 1);
        raw_field(L, -1, "values");
        e[i].values = check_strings(L, lua_gettop(L), &nv);
        e[i].nvalues = nv;
        lua_remove(L, -2);      /* the values table: still held by the entry */
        lua_remove(L, -2);      /* the entry: still held by q */
    }
    return e;
}

static int build_query(lua_State *L, int q, tagidx_query *iq)
{
    memset(iq, 0, sizeof *iq);
    iq->tags = check_entries(L, q, "tags", &iq->ntags);
    iq->tags_any = check_entries(L, q, "tags_any", &iq->ntags_any);
    iq->not_tags = check_entries(L, q, "not_tags", &iq->nnot_tags);
    iq->not_tags_any = check_entries(L, q, "not_tags_any", &iq->nnot_tags_any);
    raw_field(L, q, "without_any_tag");
    iq->without_any_tag = lua_toboolean(L, -1);
    lua_pop(L, 1);
    iq->name = opt_field(L, q, "resource_name", NULL);
    return 0;
}

/* Resolves resource_id to its document in this project (0: none). */
static void resolve_doc(lua_State *L, int q, const char *project, tagidx_query *iq)
{
    const char *rid = opt_field(L, q, "resource_id", NULL);
    store_image im;
    store_rc rc;
    if (!rid)
        return;
    iq->has_doc = 1;
    rc = store_image_get(gwp(L)->store, project, rid, &im);
    if (rc == STORE_ERROR)
        store_failed(L);
    iq->doc = rc == STORE_OK ? (uint32_t)im.seq : 0;
}

/* gw.query(project, q) -> total[, images]
 * q: tags, tags_any, not_tags, not_tags_any ({{key, values}}),
 * without_any_tag, resource_id, resource_name, count (bool), offset, limit. */
static int l_query(lua_State *L)
{
    const char *project = name_arg(L, 1);
    gw *g = gwp(L);
    tagidx *ix = g->index;
    tagidx_query iq;
    int rc;
    uint64_t total = 0;
    lua_Integer offset, limit;
    uint32_t *docs;
    size_t ndocs = 0;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!project) { /* a project no image is in */
        lua_pushinteger(L, 0);
        if (raw_field(L, 2, "count") != LUA_TNIL && lua_toboolean(L, -1))
            return lua_pop(L, 1), 1;
        lua_pop(L, 1);
        lua_newtable(L);
        return 2;
    }
    build_query(L, 2, &iq);
    resolve_doc(L, 2, project, &iq);
    if (raw_field(L, 2, "count") != LUA_TNIL && lua_toboolean(L, -1)) {
        gw_index_read(g);
        rc = tagidx_count(ix, project, &iq, &total);
        gw_index_done(g);
        if (rc != 0)
            return luaL_error(L, "out of memory evaluating the query");
        lua_pushinteger(L, (lua_Integer)total);
        return 1;
    }
    raw_field(L, 2, "offset");
    raw_field(L, 2, "limit");
    offset = luaL_optinteger(L, -2, 0);
    limit = luaL_optinteger(L, -1, 10);
    luaL_argcheck(L, offset >= 0 && limit >= 1 && limit <= MAX_PAGE, 2, "offset/limit out of range");
    docs = lua_newuserdatauv(L, (size_t)limit * sizeof *docs, 0);
    for (int attempt = 1;; attempt++) {
        size_t missing = 0;
        /* With several workers the pass's snapshot and the index can
         * straddle another worker's commit: an image it deleted is still
         * in the index (fed after the commit), one it created or re-tagged
         * is in the index but not yet in the snapshot, or the other way
         * round, and the page would list tags that contradict the query.
         * So the rows are read from a snapshot that matches the index:
         * the pass's when no commit has begun since it was taken (asked
         * under the index lock: a commit fed just before it is taken would
         * be missed), else one taken while commits are held, under the
         * index lock again (commits are held first: a feed holds them as it
         * waits for the index). */
        gw_index_read(g);
        if (g->shared->nworkers > 1 && (attempt > 1 || !store_snapshot_is_index(g->store))) {
            gw_index_done(g);
            store_commits_hold(g->store);
            gw_index_read(g);
            if (store_snapshot_at_index(g->store) < 0)
                store_pass_end(g->store);   /* at least a fresh one */
            store_commits_release(g->store);
        }
        rc = tagidx_page(ix, project, &iq, (uint64_t)offset, (uint32_t)limit, &total, docs, &ndocs);
        gw_index_done(g);
        if (rc != 0)
            return luaL_error(L, "out of memory evaluating the query");
        lua_pushinteger(L, (lua_Integer)total);
        lua_createtable(L, (int)ndocs, 0);
        for (size_t i = 0, n = 0; i < ndocs; i++) {
            store_image im;
            store_rc src = store_image_by_seq(g->store, docs[i], &im);
            if (src == STORE_NOT_FOUND && g->shared->nworkers > 1) {
                missing++;
                continue;
            }
            if (src != STORE_OK)
                return luaL_error(L, "index and storage disagree on document %d", (int)docs[i]);
            push_image(L, &im);
            lua_rawseti(L, -2, (lua_Integer)++n);
        }
        /* a snapshot that matched no state of the index (none possible
         * here) can miss an image of the page: ask again */
        if (!missing || attempt == 3)
            return 2;
        lua_pop(L, 2);
    }
}

static int l_uuid(lua_State *L)
{
    char id[37];
    if (util_uuid(id) != 0)
        return luaL_error(L, "no randomness available");
    lua_pushstring(L, id);
    return 1;
}

/* gw.rate_take(name, per_second, burst) -> nil when a request may go,
 * else the seconds until one may (a float): one token of name's bucket,
 * shared by every worker (ratelim.h). */
static int l_rate_take(lua_State *L)
{
    lua_Number rate = luaL_checknumber(L, 2), burst = luaL_checknumber(L, 3);
    const char *name;
    gw *g = gwp(L);
    int64_t wait_us;
    luaL_checkstring(L, 1);
    name = check_plain(L, 1, 1);
    /* at least one a quarter hour: a wait is then at most that long */
    luaL_argcheck(L, rate >= 1.0 / 900 && rate <= 1e9, 2, "must be a number in [1/900, 1e9]");
    luaL_argcheck(L, burst >= 1 && burst <= 1e9, 3, "must be a number in [1, 1e9]");
    if (!g->shared)
        return 0;               /* `tagway check`: nothing to throttle */
    wait_us = ratelim_take(g->shared->rates, name, rate, burst, util_mono_us());
    if (wait_us == 0)
        return 0;
    lua_pushnumber(L, (lua_Number)wait_us / 1e6);
    return 1;
}

static int l_now_ms(lua_State *L)
{
    lua_pushinteger(L, util_now_ms());
    return 1;
}

static int l_iso8601(lua_State *L)
{
    char iso[32];
    util_iso8601_ms(luaL_checkinteger(L, 1), iso);
    lua_pushstring(L, iso);
    return 1;
}

static int l_sha256(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char hex[65];
    sha256_hex(s, n, hex);
    lua_pushstring(L, hex);
    return 1;
}

/* gw.json_check(text, max_depth) -> true, or false, why, byte, too_deep:
 * whether text is strict JSON (json.h) before lua-cjson, which is not,
 * decodes it; byte is 1-based. */
static int l_json_check(lua_State *L)
{
    size_t len, at;
    const char *text = luaL_checklstring(L, 1, &len), *why;
    lua_Integer depth = luaL_checkinteger(L, 2);
    int rc;

    luaL_argcheck(L, depth >= 0 && depth <= (lua_Integer)JSON_DEPTH_MAX, 2, "must be in [0, 10000]");
    rc = json_check(text, len, (unsigned)depth, &at, &why);
    if (rc == JSON_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, why);
    lua_pushinteger(L, (lua_Integer)at + 1);
    lua_pushboolean(L, rc == JSON_TOO_DEEP);
    return 4;
}

/* gw.log(message): one JSON line on stderr, tagged with the request id. */
static int l_log(lua_State *L)
{
    const lhost_request *r = lhost_current(host(L));
    const char *msg = luaL_checkstring(L, 1);
    util_log_json(msg, "{\"level\":\"info\",\"request_id\":\"%s\",\"msg\":", r ? r->id : "");
    return 0;
}

static void push_files(lua_State *L, const lhost *h)
{
    size_t n;
    const lhost_file *f = lhost_files(h, &n);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, f[i].path);
        lua_setfield(L, -2, "path");
        lua_pushstring(L, f[i].sha256);
        lua_setfield(L, -2, "sha256");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static size_t index_memory(gw *g)
{
    size_t bytes;
    gw_index_read(g);
    bytes = tagidx_memory(g->index);
    gw_index_done(g);
    return bytes;
}

/* gw.status() -> {generation, files, uptime_s, images, tags, memory, workers} */
static int l_status(lua_State *L)
{
    gw *g = gwp(L);
    int64_t images = 0, tags = 0;
    if (store_counts(g->store, &images, &tags) != 0)
        return store_failed(L);
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, (lua_Integer)lhost_generation(host(L)));
    lua_setfield(L, -2, "generation");
    push_files(L, host(L));
    lua_setfield(L, -2, "files");
    lua_pushinteger(L, (util_now_ms() - g->started_ms) / 1000);
    lua_setfield(L, -2, "uptime_s");
    lua_pushinteger(L, images);
    lua_setfield(L, -2, "images");
    lua_pushinteger(L, tags);
    lua_setfield(L, -2, "tags");
    lua_pushinteger(L, (lua_Integer)index_memory(g));
    lua_setfield(L, -2, "index_bytes");
    lua_pushinteger(L, (lua_Integer)lhost_memory(host(L)));
    lua_setfield(L, -2, "script_bytes");
    lua_pushinteger(L, g->shared->nworkers);
    lua_setfield(L, -2, "workers");
    return 1;
}

/* gw.reload() -> {generation, files} | nil, "file:line: what", busy (true
 * when another reload was building: worth trying again).  The new
 * generation serves from the next request on; this one finishes here. */
static int l_reload(lua_State *L)
{
    gw *g = gwp(L);
    char err[2048];
    int64_t t0 = util_mono_us(), took;
    int rc = gw_reload(g, err, sizeof err);
    /* building every worker's generation is the gateway's work, not this
     * script's: it does not count against the request's time budget */
    took = util_mono_us() - t0;
    lhost_extend_budget(host(L), took);
    gw_reload_log(g, "admin", rc, err);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        lua_pushboolean(L, rc == GW_RELOAD_BUSY);
        return 3;
    }
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, (double)took / 1000.0);
    lua_setfield(L, -2, "ms");          /* time to build and validate it */
    lua_pushinteger(L, (lua_Integer)g->generation);
    lua_setfield(L, -2, "generation");
    push_files(L, g->lua);
    lua_setfield(L, -2, "files");
    return 1;
}

/* gw.import_submit(project, {name, attrs, kind, params}, tags[, max_active])
 *   -> job_id, image_id.  Image (queued) and job (INIT) in one transaction;
 *   refused when the project has max_active jobs INIT or RUNNING (absent,
 *   negative or beyond int: no limit, as no more could ever be running). */
static int l_import_submit(lua_State *L)
{
    const char *project = (luaL_checkstring(L, 1), check_plain(L, 1, 1)), *name, *attrs, *kind, *params;
    char job_id[33], image_id[37];
    size_t ntags;
    store_tag *tags;
    store_rc rc;
    lua_Integer max_active;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 4);
    name = opt_field(L, 2, "name", NULL);
    attrs = opt_field(L, 2, "attrs", "{}");
    kind = opt_field(L, 2, "kind", NULL);
    params = opt_field(L, 2, "params", "{}");
    luaL_argcheck(L, name && kind, 2, "name and kind are required");
    max_active = luaL_optinteger(L, 4, -1);
    tags = check_tags(L, 3, &ntags);
    if (util_random_hex(job_id, 16) != 0)
        return luaL_error(L, "no randomness available");
    rc = store_import_create(gwp(L)->store, project, job_id, kind, params, name, attrs,
                             tags, ntags, max_active < 0 || max_active > INT_MAX ? -1 : (int)max_active, image_id);
    if (rc == STORE_QUOTA)
        return fail(L, "quota");
    if (rc != STORE_OK)
        return store_failed(L);
    jobs_kick(gwp(L)->jobs);
    gwp(L)->jobs_submitted = 1;
    lua_pushstring(L, job_id);
    lua_pushstring(L, image_id);
    return 2;
}

static void set_opt_string(lua_State *L, const char *field, const char *v)
{
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
    lua_setfield(L, -2, field);
}

/* gw.job_get(project, job_id) -> job table | nil, "not_found" */
static int l_job_get(lua_State *L)
{
    const char *project = name_arg(L, 1), *job_id = name_arg(L, 2);
    store_job j;
    store_rc rc = project && job_id ? store_job_get(gwp(L)->store, project, job_id, &j) : STORE_NOT_FOUND;
    if (rc == STORE_ERROR)
        return store_failed(L);
    if (rc == STORE_NOT_FOUND)
        return fail(L, "not_found");
    lua_createtable(L, 0, 12);
    set_opt_string(L, "id", j.id);
    set_opt_string(L, "project_id", j.project);
    set_opt_string(L, "kind", j.kind);
    set_opt_string(L, "status", j.status);
    set_opt_string(L, "image_id", j.image_id);
    set_opt_string(L, "image_name", j.image_name);
    set_opt_string(L, "params", j.params);
    set_opt_string(L, "error_code", j.error_code);
    set_opt_string(L, "fail_reason", j.fail_reason);
    push_time(L, j.begin_ms, "begin_time");
    if (j.end_ms)
        push_time(L, j.end_ms, "end_time");
    lua_pushinteger(L, jobs_progress(gwp(L)->jobs, j.id));
    lua_setfield(L, -2, "progress");
    return 1;
}

/* gw.jobs_active(project) -> number of INIT/RUNNING jobs */
static int l_jobs_active(lua_State *L)
{
    const char *project = name_arg(L, 1);
    int64_t n = project ? store_jobs_active_count(gwp(L)->store, project) : 0;
    if (n < 0)
        return store_failed(L);
    lua_pushinteger(L, n);
    return 1;
}

static int push_count_cb(void *ud, const char *status, int64_t n)
{
    lua_State *L = ud;
    lua_pushinteger(L, n);
    lua_setfield(L, -2, status);
    return 0;
}

/* gw.job_counts() -> {INIT = n, RUNNING = n, ...} */
static int l_job_counts(lua_State *L)
{
    lua_newtable(L);
    if (store_job_counts(gwp(L)->store, push_count_cb, L) != 0)
        return store_failed(L);
    return 1;
}

/* A bucket of API.md §3's characters (a leading '.' included: with three
 * characters at least it is never "." or ".."), and an object that stays
 * inside it. */
static int valid_object_path(const char *bucket, const char *object)
{
    size_t nb = strlen(bucket);
    if (nb < 3 || nb > 63 || strspn(bucket, "abcdefghijklmnopqrstuvwxyz0123456789-.") != nb)
        return 0;
    if (!object[0] || object[0] == '/' || strstr(object, "/../") ||
        strncmp(object, "../", 3) == 0 || strcmp(object, "..") == 0 ||
        (strlen(object) >= 3 && strcmp(object + strlen(object) - 3, "/..") == 0))
        return 0;
    return 1;
}

/* rel opened from the folder dfd one name at a time, following no link
 * at all (nor ".."): where openat2 is missing.  fd, or -1 with errno. */
static int open_walk(int dfd, const char *rel, int flags)
{
    int cur = dfd, fd = -1, saved;
    for (const char *p = rel;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char part[NAME_MAX + 1];
        if (n == 0 && slash) {          /* "a//b" */
            p = slash + 1;
            continue;
        }
        if (n == 0 || n > NAME_MAX) {
            errno = ENOENT;
            break;
        }
        memcpy(part, p, n);
        part[n] = '\0';
        if (strcmp(part, "..") == 0) {
            errno = EXDEV;
            break;
        }
        if (!slash) {
            fd = openat(cur, part, flags | O_NOFOLLOW);
            break;
        }
        int next = openat(cur, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0)
            break;
        if (cur != dfd)
            close(cur);
        cur = next;
        p = slash + 1;
    }
    saved = errno;
    if (cur != dfd)
        close(cur);
    errno = saved;
    return fd;
}

/* Opens rel (read-only, not blocking) under the folder root, never
 * outside it: neither ".." nor a symlink may lead out (a link in a bucket
 * to /etc/passwd was read, and the job's outcome told whether a host file
 * existed and how large it was).  openat2's RESOLVE_BENEATH; where the
 * kernel has none (before 5.6) or a seccomp filter refuses it, the path
 * is walked following no link at all.  fd, or -1 with errno (EXDEV or
 * ELOOP: it leads out, or through a link). */
static int open_beneath(const char *root, const char *rel)
{
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int dfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC), fd, saved;
    if (dfd < 0)
        return -1;
    fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof how);
    if (fd < 0 && (errno == ENOSYS || errno == EPERM || errno == EINVAL || errno == E2BIG))
        fd = open_walk(dfd, rel, (int)how.flags);
    saved = errno;
    close(dfd);
    errno = saved;
    return fd;
}

/* gw.obs_size(bucket, object) -> bytes | nil, reason: the default import
 * backend's view of the local object store (<obs_root>/<bucket>/<object>). */
static int l_obs_size(lua_State *L)
{
    size_t nb, no;
    const char *bucket = luaL_checklstring(L, 1, &nb), *object = luaL_checklstring(L, 2, &no);
    char path[PATH_MAX];
    struct stat st;
    int fd;
    /* a NUL inside a name would name another file here than the one the
     * scripts checked ("x\0.raw" is "x"): no file has such a name */
    if (strlen(bucket) != nb || strlen(object) != no)
        return fail(L, "object not found");
    if (!valid_object_path(bucket, object))
        return fail(L, "invalid bucket or object name");
    if (snprintf(path, sizeof path, "%s/%s", bucket, object) >= (int)sizeof path)
        return fail(L, "object path too long");
    /* the backend reads the object: one it may not open is no object,
     * and one outside the store is none either (not told apart) */
    if ((fd = open_beneath(gwp(L)->opt.obs_root, path)) < 0)
        return fail(L, errno == EACCES ? "object cannot be read" : "object not found");
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(L, "object not found");
    }
    close(fd);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    return 1;
}

/* gw.source(path) -> text | nil: the text of a file this generation
 * loaded (for messages that point at a line, e.g. policy examples): while
 * the generation is built, the bytes it loaded; later, the file now. */
static int l_source(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n, len;
    const lhost_file *f = lhost_files(host(L), &n);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        luaL_Buffer b;
        char *dst;
        FILE *fp;
        size_t got;
        const char *loaded;
        if (strcmp(f[i].path, path) != 0)
            continue;
        if ((loaded = lhost_loaded_text(host(L), path, &len))) {
            lua_pushlstring(L, loaded, len);
            return 1;
        }
        if (stat(path, &st) != 0)
            return fail(L, "cannot read the file");
        /* the buffer is Lua's before the file is opened: no error can
         * escape while the FILE is held */
        dst = luaL_buffinitsize(L, &b, (size_t)st.st_size + 1);
        if (!(fp = fopen(path, "rb")))
            return fail(L, "cannot read the file");
        got = fread(dst, 1, (size_t)st.st_size, fp);
        fclose(fp);
        luaL_pushresultsize(&b, got);
        return 1;
    }
    return fail(L, "not a file of this generation");
}

typedef struct {
    metrics_job_count c[16];
    char names[16][16];         /* copies: the rows are gone after the next step */
    size_t n;
} job_counts;

static int collect_count(void *ud, const char *status, int64_t n)
{
    job_counts *jc = ud;
    if (jc->n < 16) {
        util_copy(jc->names[jc->n], sizeof jc->names[0], status);
        jc->c[jc->n].status = jc->names[jc->n];
        jc->c[jc->n++].n = n;
    }
    return 0;
}

/* gw.metrics_write(): appends the Prometheus exposition to the response
 * body being built (nothing crosses into Lua, so nothing can leak). */
static int l_metrics_write(lua_State *L)
{
    gw *g = gwp(L);
    lhost_response *resp = lhost_current_response(host(L));
    metrics_gauges mg = {0};
    tagcache_stats cs;
    job_counts jc = {.n = 0};
    need_request(L);
    mg.script_errors = g->stats->script_errors;
    mg.budget_kills = g->stats->budget_kills;
    mg.reloads_ok = g->stats->reloads_ok;
    mg.reloads_failed = g->stats->reloads_failed;
    mg.generation = g->generation;
    mg.index_bytes = index_memory(g);
    mg.script_bytes = lhost_memory(host(L));
    store_write_stats ws;
    store_write_stats_get(g->store, &ws);
    mg.commits = ws.commits;
    mg.commit_us_total = ws.commit_us;
    mg.syncs = ws.syncs;
    mg.sync_us_total = ws.sync_us;
    mg.failed_groups = ws.failed_groups;
    tagcache_stats_get(g->shared->tags_cache, &cs);
    mg.cache_hits = cs.hits;
    mg.cache_misses = cs.misses;
    mg.cache_entries = cs.entries;
    mg.cache_bytes = cs.bytes;
    if (store_counts(g->store, &mg.images, &mg.tags) != 0)
        return store_failed(L);
    if (store_job_counts(g->store, collect_count, &jc) != 0)
        return store_failed(L);
    metrics_render(g->metrics, &mg, jc.c, jc.n, resp->body);
    return 0;
}

/* gw.traceback(e): message handler for xpcall.  Handled failures
 * (shape.fail's tables, whose metatable is named "tagway.failure") pass
 * through; anything else gains its position and a traceback, taken here
 * where it was raised, not where a handler re-raises it. */
static int l_traceback(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTABLE && luaL_getmetafield(L, 1, "__name") == LUA_TSTRING &&
        strcmp(lua_tostring(L, -1), "tagway.failure") == 0) {
        lua_pop(L, 1);
        return 1;
    }
    lua_settop(L, 1);
    return lhost_traceback(L);
}

void lapi_open(lua_State *L, lhost *h)
{
    static const luaL_Reg fns[] = {
        {"header", l_header},         {"auth", l_auth},
        {"image_get", l_image_get},   {"image_tags", l_image_tags},
        {"image_tag_map", l_image_tag_map},
        {"image_tags_json", l_image_tags_json},
        {"image_create", l_image_create}, {"image_delete", l_image_delete},
        {"tags_apply", l_tags_apply}, {"write_begin", l_write_begin}, {"project_tags", l_project_tags},
        {"project_tags_json", l_project_tags_json},
        {"query", l_query},           {"uuid", l_uuid},
        {"now_ms", l_now_ms},         {"iso8601", l_iso8601},
        {"rate_take", l_rate_take},
        {"sha256", l_sha256},         {"log", l_log},
        {"json_check", l_json_check},
        {"status", l_status},         {"reload", l_reload},
        {"traceback", l_traceback},
        {"import_submit", l_import_submit}, {"job_get", l_job_get},
        {"jobs_active", l_jobs_active}, {"job_counts", l_job_counts},
        {"obs_size", l_obs_size},     {"source", l_source},
        {"metrics_write", l_metrics_write},
        {NULL, NULL}};
    lua_newtable(L);
    lua_pushlightuserdata(L, h);
    luaL_setfuncs(L, fns, 1);
    lua_setglobal(L, "gw");
}
