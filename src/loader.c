/* loader: `tagway load --db PATH FILE.jsonl` (API.md §7).  Each line is a
 * JSON object {"id"?, "project_id", "name", "status"?, "tags": [{key,
 * value}]}; structure is checked (not tag policy), the whole file is one
 * transaction, and a bad line is named with nothing stored.  Lines are
 * decoded by lua-cjson in a bare Lua state.  Uses store, util, Lua. */
#include "loader.h"
#include "json.h"
#include "store.h"
#include "util.h"

#include <lauxlib.h>
#include <lua.h>
#include <lua-cjson.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_TAGS_PER_LINE 1000
#define LOAD_MAX_DEPTH 1000 /* lua-cjson's own default, as for request bodies */

typedef struct {
    store *s;
    lua_State *L;
    int decode_ref;
    FILE *in;
    long long line, images, tags;
    off_t size, read;
    int64_t start_us, last_progress_us;
    int tty;
    char err[512];
} loader;

static int bad(loader *ld, const char *what)
{
    snprintf(ld->err, sizeof ld->err, "line %lld: %s", ld->line, what);
    return -1;
}

/* bad() with the field and the rule put together, as API errors name them. */
__attribute__((format(printf, 2, 3))) static int badf(loader *ld, const char *fmt, ...)
{
    char what[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return bad(ld, what);
}

static int is_uuid(const char *s)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == '-' ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return s[sizeof shape - 1] == '\0';
}

enum { WRONG_TYPE = 1, WRONG_TEXT = 2 };

/* Reads field of the table on top: a string, or NULL when absent/null.
 * *wrong gets WRONG_TYPE when present with another type, WRONG_TEXT when
 * not UTF-8 or holding a NUL (cjson checks neither; the store would keep
 * bytes every JSON answer then carries, or a C string cut short). */
static const char *str_field(lua_State *L, const char *field, int *wrong)
{
    const char *v = NULL;
    size_t len;
    int t = lua_getfield(L, -1, field);
    if (t == LUA_TSTRING) {
        v = lua_tolstring(L, -1, &len);
        if (memchr(v, '\0', len) || !util_utf8_valid(v, len))
            *wrong |= WRONG_TEXT;
    } else if (t != LUA_TNIL && t != LUA_TLIGHTUSERDATA) /* cjson.null is lightuserdata */
        *wrong |= WRONG_TYPE;
    lua_pop(L, 1);              /* the string stays alive in the table */
    return v;
}

static int read_tags(loader *ld, store_tag *tags, size_t *n)
{
    lua_State *L = ld->L;
    int t = lua_getfield(L, -1, "tags");
    *n = 0;
    /* required, as API.md §7 writes the line: [] for an image without */
    if (t != LUA_TTABLE)
        return bad(ld, "tags must be an array of {key, value} ([] for none)");
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
        int wrong = 0;
        /* named as the API names them: tags[0] is the first */
        long long at = (long long)i - 1;
        if (*n == MAX_TAGS_PER_LINE)
            return badf(ld, "tags: more than %d tags", MAX_TAGS_PER_LINE);
        if (!lua_istable(L, -1))
            return badf(ld, "tags[%lld]: each tag must be an object {key, value}", at);
        tags[*n].key = str_field(L, "key", &wrong);
        if ((wrong & WRONG_TYPE) || !tags[*n].key || !tags[*n].key[0])
            return badf(ld, "tags[%lld].key: each tag needs a non-empty string key", at);
        if (wrong)
            return badf(ld, "tags[%lld].key: must be UTF-8 text without NUL characters", at);
        tags[*n].value = str_field(L, "value", &wrong);
        if ((wrong & WRONG_TYPE) || !tags[*n].value)
            return badf(ld, "tags[%lld].value: each tag needs a string value (\"\" for none)", at);
        if (wrong)
            return badf(ld, "tags[%lld].value: must be UTF-8 text without NUL characters", at);
        for (size_t j = 0; j < *n; j++)
            if (strcmp(tags[j].key, tags[*n].key) == 0)
                return badf(ld, "tags[%lld].key: duplicate key '%.100s' (tags[%zu] has it)", at,
                            tags[*n].key, j);
        lua_pop(L, 1);
        (*n)++;
    }
    lua_pop(L, 1);
    /* an object ({"k": "v"}) decodes to a table too: only an array's keys
     * are 1..n */
    size_t keys = 0;
    for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1))
        keys++;
    if (keys != *n)
        return bad(ld, "tags must be an array of {key, value} ([] for none)");
    lua_pop(L, 1);
    return 0;
}

static int json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whether text may hold an empty object: a '{' whose next non-space is
 * '}', in a string or not.  A line has a '{' for each tag; this spares the
 * common line the copy below. */
static int maybe_empty_object(const char *text, size_t len)
{
    for (const char *p = text, *end = text + len; (p = memchr(p, '{', (size_t)(end - p))); ) {
        for (p++; p < end && json_space(*p); p++)
            ;
        if (p < end && *p == '}')
            return 1;
    }
    return 0;
}

/* cjson.decode (the upvalue) of the text argument, with every empty object
 * outside a string first written {"\u0000":0}: lua-cjson 2.1 decodes {}
 * and [] to the same empty table, and "tags": {} was taken for no tags.
 * A member named NUL, which no field has, makes an empty object a table
 * that is no array; an empty table is then always [] (request.lua does the
 * same for request bodies).  Runs under the caller's lua_pcall. */
static int decode_marked(lua_State *L)
{
    size_t len, from = 0;
    const char *text = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;

    lua_pushvalue(L, lua_upvalueindex(1));
    if (!maybe_empty_object(text, len)) {
        lua_pushvalue(L, 1);
        lua_call(L, 1, 1);
        return 1;
    }
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"') {           /* a string: skip it whole */
            for (i++; i < len && text[i] != '"'; i++)
                if (text[i] == '\\')
                    i++;
        } else if (text[i] == '{') {
            size_t j = i + 1;
            while (j < len && json_space(text[j]))
                j++;
            if (j < len && text[j] == '}') {
                luaL_addlstring(&b, text + from, i - from);
                luaL_addstring(&b, "{\"\\u0000\":0}");
                from = j + 1;
                i = j;
            }
        }
    }
    luaL_addlstring(&b, text + from, len - from);
    luaL_pushresult(&b);        /* above the decode function pushed first */
    lua_call(L, 1, 1);
    return 1;
}

/* The statuses an image lives through (API.md §3, §5). */
static int is_image_status(const char *s)
{
    return !strcmp(s, "active") || !strcmp(s, "queued") || !strcmp(s, "saving") ||
           !strcmp(s, "killed");
}

static int load_line(loader *ld, const char *text, size_t len, store_tag *tags)
{
    lua_State *L = ld->L;
    const char *id, *project, *name, *status;
    char fresh[37];
    int wrong = 0;
    size_t ntags;
    store_rc rc;
    size_t at;
    const char *syntax;
    int checked;
    lua_settop(L, 0);
    /* lua-cjson would take raw control characters in strings, 40. and more */
    checked = json_check(text, len, LOAD_MAX_DEPTH, &at, &syntax);
    if (checked != JSON_OK) {
        char why[200];
        if (checked == JSON_TOO_DEEP)
            snprintf(why, sizeof why, "nests JSON deeper than %d levels", LOAD_MAX_DEPTH);
        else
            snprintf(why, sizeof why, "not valid JSON (%s at byte %zu)", syntax, at + 1);
        return bad(ld, why);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ld->decode_ref);
    lua_pushlstring(L, text, len);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        char why[200];
        snprintf(why, sizeof why, "not valid JSON (%s)",
                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
        return bad(ld, why);
    }
    if (!lua_istable(L, -1) || lua_rawlen(L, -1) > 0)   /* an array decodes to a table too */
        return bad(ld, "not a JSON object");
    {
        static const char *const fields[] = {"id", "project_id", "name", "status"};
        const char **into[] = {&id, &project, &name, &status};
        for (size_t f = 0; f < 4; f++) {
            *into[f] = str_field(L, fields[f], &wrong);
            if (wrong & WRONG_TYPE)
                return badf(ld, "%s: must be a string", fields[f]);
            if (wrong)
                return badf(ld, "%s: must be UTF-8 text without NUL characters", fields[f]);
        }
    }
    if (!project || strlen(project) != 32 || !util_is_hex(project, 32))
        return bad(ld, "project_id must be 32 lowercase hex characters");
    if (!name || !name[0])
        return bad(ld, "name must be a non-empty string");
    if (id && !is_uuid(id))
        return bad(ld, "id must be a lowercase UUID");
    /* a deleted image is gone from every query (API.md §2, §5): the store
     * keeps none, so one cannot be loaded either */
    if (status && strcmp(status, "deleted") == 0)
        return bad(ld, "status 'deleted' cannot be loaded: deleted images are not stored");
    if (status && !is_image_status(status))
        return bad(ld, "status must be one of queued, saving, active, killed");
    if (!id) {
        if (util_uuid(fresh) != 0)
            return bad(ld, "no randomness available");
        id = fresh;
    }
    if (read_tags(ld, tags, &ntags) != 0)
        return -1;
    rc = store_bulk_image(ld->s, project, id, name, status ? status : "active", tags, ntags);
    if (rc == STORE_CONFLICT)
        return badf(ld, "id: '%s' repeats an earlier line or an image already stored", id);
    if (rc != STORE_OK)
        return bad(ld, store_errmsg(ld->s));
    ld->images++;
    ld->tags += (long long)ntags;
    return 0;
}

static void progress(loader *ld, int final)
{
    int64_t now = util_mono_us();
    double secs = (double)(now - ld->start_us) / 1e6, rate;
    if (!final && (!ld->tty || now - ld->last_progress_us < 500000))
        return;
    ld->last_progress_us = now;
    rate = secs > 0 ? (double)ld->images / secs : 0;
    if (!final) {
        double done = ld->size > 0 ? (double)ld->read / (double)ld->size : 0;
        double eta = done > 0 ? secs / done - secs : 0;
        fprintf(stderr, "\rtagway load: line %lld, %.0f images/s, %.1f s elapsed, ~%.0f s left   ",
                ld->line, rate, secs, eta);
        return;
    }
    if (ld->tty)
        fputc('\n', stderr);
    printf("{\"images\": %lld, \"tags\": %lld, \"lines\": %lld, \"seconds\": %.2f, \"images_per_s\": %.0f}\n",
           ld->images, ld->tags, ld->line, secs, rate);
}

static int setup(loader *ld, const char *db_path, const char *file)
{
    struct stat st;
    if (store_open(&ld->s, db_path, ld->err, sizeof ld->err) != 0)
        return -1;
    if (!(ld->L = luaL_newstate())) {
        snprintf(ld->err, sizeof ld->err, "out of memory");
        return -1;
    }
    luaL_requiref(ld->L, "cjson", luaopen_cjson, 0);
    lua_getfield(ld->L, -1, "decode");
    lua_pushcclosure(ld->L, decode_marked, 1);
    ld->decode_ref = luaL_ref(ld->L, LUA_REGISTRYINDEX);
    lua_settop(ld->L, 0);
    if (!(ld->in = strcmp(file, "-") == 0 ? stdin : fopen(file, "r"))) {
        snprintf(ld->err, sizeof ld->err, "cannot open it: %s", strerror(errno));
        return -1;
    }
    ld->size = fstat(fileno(ld->in), &st) == 0 ? st.st_size : 0;
    ld->tty = isatty(STDERR_FILENO);
    ld->start_us = util_mono_us();
    return 0;
}

static int load_all(loader *ld)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    store_tag *tags = malloc(MAX_TAGS_PER_LINE * sizeof *tags);
    if (!tags) {
        snprintf(ld->err, sizeof ld->err, "out of memory");
        return -1;
    }
    while (rc == 0 && (n = getline(&line, &cap, ld->in)) >= 0) {
        ld->line++;
        ld->read += n;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = '\0';
        if (n == 0)
            continue;
        rc = load_line(ld, line, (size_t)n, tags);
        progress(ld, 0);
    }
    if (rc == 0 && ferror(ld->in)) {
        snprintf(ld->err, sizeof ld->err, "read error after line %lld", ld->line);
        rc = -1;
    }
    free(line);
    free(tags);
    return rc;
}

int loader_run(const char *db_path, const char *file)
{
    loader ld = {0};
    int rc = 1, claim = store_claim(db_path, ld.err, sizeof ld.err);
    if (claim < 0 || setup(&ld, db_path, file) != 0)
        goto done;
    if (store_bulk_begin(ld.s) != 0) {
        snprintf(ld.err, sizeof ld.err, "%s", store_errmsg(ld.s));
        goto done;
    }
    if (load_all(&ld) != 0) {
        store_bulk_rollback(ld.s);
        goto done;
    }
    if (store_bulk_commit(ld.s) != 0) {
        snprintf(ld.err, sizeof ld.err, "commit failed: %s", store_errmsg(ld.s));
        store_bulk_rollback(ld.s);
        goto done;
    }
    progress(&ld, 1);
    rc = 0;
done:
    if (rc != 0) {
        if (ld.tty && ld.line)
            fputc('\n', stderr);
        fprintf(stderr, "tagway load: %s: %s; nothing was stored\n", file, ld.err);
    }
    if (ld.in && ld.in != stdin)
        fclose(ld.in);
    if (ld.L)
        lua_close(ld.L);
    store_close(ld.s);
    store_unclaim(claim);
    return rc;
}
