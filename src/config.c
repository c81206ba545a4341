/* config: option defaults, the Lua configuration file and option parsing.
 * The file runs in its own bare Lua state (no libraries) and must return a
 * table; only scalar options are read here, the rest (policies, variants)
 * is read by each script generation.  Uses Lua and util. */
#include "config.h"
#include "lstrict.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One event loop per core the process may run on. */
int config_default_workers(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    return n < 1 ? 1 : n > 64 ? 64 : n;
}

void config_defaults(gw_options *o)
{
    memset(o, 0, sizeof *o);
    util_copy(o->listen, sizeof o->listen, "127.0.0.1:8080");
    util_copy(o->db, sizeof o->db, "./data/tagway.db");
    util_copy(o->scripts, sizeof o->scripts, "./lua");
    util_copy(o->policies, sizeof o->policies, "./policies");
    util_copy(o->obs_root, sizeof o->obs_root, "./data/obs");
    o->auth = 1;
    o->body_limit = 1024 * 1024;
    o->script_memory = 64u * 1024 * 1024;
    o->script_time_ms = 1000;
    o->script_instructions = 0;   /* not counted: the watchdog keeps time */
    o->max_connections = 4096;
    o->timeout_s = 30;
    o->request_timeout_s = 60;
    o->workers = config_default_workers();
    o->tags_cache = 16384;
}

static int parse_long(const char *v, long long min, long long max, long long *out)
{
    char *end;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes"))
        *out = 1;
    else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no"))
        *out = 0;
    else
        return -1;
    return 0;
}

typedef struct {
    const char *name;
    char kind;                 /* s: string, a: ADDR:PORT, b: on/off, i/l/z: number */
    size_t offset, size;       /* string: buffer; number: scale in 'size' */
    long long min, max;
} option_def;

#define STR_OPT(n, f) {n, 's', offsetof(gw_options, f), sizeof(((gw_options *)0)->f), 0, 0}
static const option_def options[] = {
    {"listen", 'a', offsetof(gw_options, listen), sizeof(((gw_options *)0)->listen), 0, 0},
    STR_OPT("db", db), STR_OPT("scripts", scripts),
    STR_OPT("policies", policies), STR_OPT("obs_root", obs_root), STR_OPT("config", config),
    {"auth", 'b', offsetof(gw_options, auth), 0, 0, 0},
    {"watch", 'b', offsetof(gw_options, watch), 0, 0, 0},
    {"body_limit", 'z', offsetof(gw_options, body_limit), 1, 1024, 64LL << 20},
    {"script_memory_mb", 'z', offsetof(gw_options, script_memory), 1 << 20, 4, 4096},
    {"script_time_ms", 'l', offsetof(gw_options, script_time_ms), 1, 1, 600000},
    {"script_instructions", 'l', offsetof(gw_options, script_instructions), 1, 0, 1LL << 40},
    {"max_connections", 'i', offsetof(gw_options, max_connections), 1, 1, 1000000},
    {"timeout_s", 'i', offsetof(gw_options, timeout_s), 1, 1, 3600},
    {"request_timeout_s", 'i', offsetof(gw_options, request_timeout_s), 1, 0, 3600},
    {"workers", 'i', offsetof(gw_options, workers), 1, 1, 64},
    {"tags_cache", 'i', offsetof(gw_options, tags_cache), 1, 0, 1 << 24},
};

static const option_def *find_option(const char *key)
{
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (!strcmp(options[i].name, key))
            return &options[i];
    return NULL;
}

/* A command-line name as the table spells it ('-' or '_'). */
static void option_key(char *key, size_t cap, const char *name)
{
    util_copy(key, cap, name);
    for (char *c = key; *c; c++)
        if (*c == '-')
            *c = '_';
}

int config_is_option(const char *name)
{
    char key[64];
    option_key(key, sizeof key, name);
    return find_option(key) != NULL;
}

int config_set(gw_options *o, const char *name, const char *value, char *err, size_t errlen)
{
    char key[64], *field;
    long long n;
    const option_def *d;
    option_key(key, sizeof key, name);
    if (!(d = find_option(key))) {
        snprintf(err, errlen, "unknown option '%s'", name);
        return -1;
    }
    field = (char *)o + d->offset;
    if (d->kind == 's' || d->kind == 'a') {
        char host[256];
        int port;
        if (d->kind == 'a' && config_split_listen(value, host, sizeof host, &port) != 0) {
            snprintf(err, errlen, "invalid value for %s: '%s' (expected ADDR:PORT)", name, value);
            return -1;
        }
        if (util_copy(field, d->size, value) == 0)
            return 0;
    } else if (d->kind == 'b') {
        if (parse_bool(value, (int *)field) == 0)
            return 0;
    } else if (parse_long(value, d->min, d->max, &n) == 0) {
        if (d->kind == 'z') *(size_t *)field = (size_t)n * d->size;
        else if (d->kind == 'l') *(int64_t *)field = n;
        else *(int *)field = (int)n;
        return 0;
    }
    snprintf(err, errlen, "invalid value for %s: '%s'", name, value);
    return -1;
}

void config_diff(const gw_options *a, const gw_options *b, char *out, size_t cap)
{
    size_t used = 0;
    if (cap)
        out[0] = '\0';
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        const option_def *d = &options[i];
        const char *fa = (const char *)a + d->offset, *fb = (const char *)b + d->offset;
        int same;
        if (d->kind == 's' || d->kind == 'a')
            same = strcmp(fa, fb) == 0;
        else if (d->kind == 'z')
            same = *(const size_t *)fa == *(const size_t *)fb;
        else if (d->kind == 'l')
            same = *(const int64_t *)fa == *(const int64_t *)fb;
        else
            same = *(const int *)fa == *(const int *)fb;
        if (!same && used < cap) {
            int n = snprintf(out + used, cap - used, "%s%s", used ? ", " : "", d->name);
            used = n < 0 ? cap : used + (size_t)n;
        }
    }
}

/* Keys the scripts read themselves; the C side accepts and skips them. */
static int script_key(const char *k)
{
    static const char *const keys[] = {"default_policy", "project_policies", "variants",
                                       "metrics_auth", "import_backend", NULL};
    for (const char *const *p = keys; *p; p++)
        if (!strcmp(*p, k))
            return 1;
    return 0;
}

static int is_option(const char *k)
{
    return find_option(k) != NULL; /* a file's keys are spelt with '_' only */
}

static int is_path_option(const char *k)
{
    return !strcmp(k, "db") || !strcmp(k, "scripts") || !strcmp(k, "policies") ||
           !strcmp(k, "obs_root");
}

static int apply_table(lua_State *L, gw_options *o, const char *dir, char *err, size_t errlen)
{
    char value[PATH_MAX + 64];
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!k) {
            snprintf(err, errlen, "keys must be strings");
            return -1;
        }
        if (!script_key(k) && !is_option(k)) {  /* before its type: a misspelt table key */
            snprintf(err, errlen, "unknown option '%s'", k);
            return -1;
        }
        if (!script_key(k)) {
            if (lua_isboolean(L, -1))
                util_copy(value, sizeof value, lua_toboolean(L, -1) ? "on" : "off");
            else if (lua_isstring(L, -1) && is_path_option(k) && lua_tostring(L, -1)[0] != '/' && dir)
                snprintf(value, sizeof value, "%s/%s", dir, lua_tostring(L, -1));
            else if (lua_isstring(L, -1))
                util_copy(value, sizeof value, lua_tostring(L, -1));
            else {
                snprintf(err, errlen, "%s must be a string, number or boolean", k);
                return -1;
            }
            if (config_set(o, k, value, err, errlen) != 0)
                return -1;      /* the message names the key; the caller, the file */
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* A configuration file is a table, run in a state of its own: bounded,
 * since a reload runs it on a worker's loop (a file that never returns
 * would hold that loop for good, and one that allocates, the process). */
#define CONFIG_TIME_MS 2000
#define CONFIG_MEMORY (32u << 20)

typedef struct {
    size_t used;
    int64_t deadline_us;
} config_budget;

static void *config_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    config_budget *b = ud;
    void *p;
    if (!ptr)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        b->used -= osize;
        return NULL;
    }
    if (nsize > osize && b->used - osize + nsize > CONFIG_MEMORY)
        return NULL;            /* Lua raises "not enough memory" */
    if ((p = realloc(ptr, nsize)))
        b->used = b->used - osize + nsize;
    return p;
}

static void config_hook(lua_State *L, lua_Debug *ar)
{
    void *ud;
    (void)ar;
    lua_getallocf(L, &ud);
    if (util_mono_us() > ((config_budget *)ud)->deadline_us) {
        luaL_where(L, 0);       /* in a hook, level 0 is the chunk it stopped */
        lua_pushfstring(L, "the configuration ran longer than %d ms", CONFIG_TIME_MS);
        lua_concat(L, 2);
        lua_error(L);
    }
}

/* err as "FILE: why", unless it names the file already (Lua's
 * "FILE:LINE: why"): every caller prints it as it is. */
static void name_the_file(const char *path, char *err, size_t errlen)
{
    char why[1024];
    size_t len = strlen(path);
    if (strncmp(err, path, len) == 0 && err[len] == ':')
        return;
    util_copy(why, sizeof why, err);
    snprintf(err, errlen, "%s: %s", path, why);
}

int config_load_text(gw_options *o, const char *text, size_t len, char *err, size_t errlen)
{
    config_budget budget = {0, util_mono_us() + CONFIG_TIME_MS * 1000LL};
    lua_State *L;
    char dir[PATH_MAX], chunkname[PATH_MAX + 2];
    const char *slash = strrchr(o->config, '/');
    int rc = -1;
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - o->config) : 1, slash ? o->config : ".");
    snprintf(chunkname, sizeof chunkname, "@%s", o->config);
    if (!(L = lua_newstate(config_alloc, &budget))) {
        snprintf(err, errlen, "%s: out of memory", o->config);
        return -1;
    }
    lua_sethook(L, config_hook, LUA_MASKCOUNT, 1000);
    /* as the scripts load it (lhost's load_chunk): the same bytes pass or
     * fail both (luaL_loadfile would skip a first line starting '#') */
    lua_pushcfunction(L, lstrict_run);
    if (luaL_loadbufferx(L, text, len, chunkname, "t") != LUA_OK || lua_pcall(L, 1, 1, 0) != LUA_OK) {
        if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "not enough memory"))
            snprintf(err, errlen, "%s", lua_tostring(L, -1));
        else
            snprintf(err, errlen, "not enough memory (a configuration may use %u MiB)",
                     CONFIG_MEMORY >> 20);
        goto done;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "must return a table");
        goto done;
    }
    rc = apply_table(L, o, dir, err, errlen);
done:
    lua_close(L);
    if (rc != 0)
        name_the_file(o->config, err, errlen);
    return rc;
}

int config_split_listen(const char *listen, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(listen, ':');
    size_t n;
    char *end;
    long p;
    if (!colon)
        return -1;
    n = (size_t)(colon - listen);
    if (n >= cap)
        return -1;
    memcpy(host, listen, n);
    host[n] = '\0';
    if (host[0] == '[' && n >= 2 && host[n - 1] == ']') {
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    if (!colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return -1;              /* strtol would take " 80" and "+80" */
    p = strtol(colon + 1, &end, 10);
    if (*end || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

/* The host is judged as an address, not by its spelling: a name such as
 * 127.0.0.1.example.com would be resolved to wherever DNS says. */
int config_is_loopback(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
    char host[INET6_ADDRSTRLEN + 2];
    struct in_addr a4;
    struct in6_addr a6;
    if (n >= 2 && listen[0] == '[' && listen[n - 1] == ']') {
        listen++;
        n -= 2;
    }
    if (n >= sizeof host)
        return 0;
    memcpy(host, listen, n);
    host[n] = '\0';
    if (strcmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}
