/* fuzz_request: libFuzzer harness for the request path from raw bytes to
 * response, in process: router, JSON decoding, validation, policies,
 * storage and the tag index, through the real scripts (lua/, policies/)
 * on a temporary database.  Built like tests/unit/test_lhost.c builds its
 * host; no HTTP (tests/http covers evhttp).
 *
 * Input format (see tests/fuzz/README.md):
 *   byte 0   flags: bits 0-2 method (GET POST DELETE PUT HEAD PATCH OPTIONS
 *            GET), bit 3 send X-Project-Id, bit 4 body over the limit,
 *            bit 5 auth on with the admin token, bit 6 auth on with a
 *            member token (bit 5 wins), bit 7 unused
 *   then     the request target up to the first '\n' (path[?query]); the
 *            markers @P, @I, @J, @Q are replaced by the project id, an
 *            existing image id, an existing job id and another project id
 *   then     the body: every remaining byte (markers expanded the same way)
 *
 * Checked on every input: the host answers (no script error, no budget
 * kill: the budget is 10M VM instructions, counted rather than timed so
 * that findings reproduce), the status is one API.md documents, error
 * bodies are JSON objects, and never 500. */
#include "auth.h"
#include "config.h"
#include "gw.h"
#include "lhost.h"
#include "metrics.h"
#include "store.h"
#include "tagcache.h"
#include "tagidx.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef TAGWAY_ROOT
#define TAGWAY_ROOT "."
#endif

#define PROJECT "0123456789abcdef0123456789abcdef"
#define OTHER "fedcba9876543210fedcba9876543210"
#define MAX_TARGET 4096

static gw G;
static gw_shared S;
static lhost *host_off, *host_on;
static char image_id[64], job_id[64], admin_token[65], member_token[65];
static char workdir[512];

/* The database lives in a temporary folder removed at exit. */
static void cleanup(void)
{
    char path[600];
    static const char *const files[] = {"fuzz.db", "fuzz.db-wal", "fuzz.db-shm", "fuzz.db-journal"};
    if (G.store)
        store_close(G.store);
    G.store = NULL;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", workdir, files[i]);
        unlink(path);
    }
    rmdir(workdir);
}

typedef struct {
    const char *project;     /* X-Project-Id or NULL */
    const char *token;       /* X-Auth-Token or NULL */
} headers;

static const char *header(void *ud, const char *name)
{
    const headers *h = ud;
    if (strcasecmp(name, "X-Project-Id") == 0)
        return h->project;
    if (strcasecmp(name, "X-Auth-Token") == 0)
        return h->token;
    if (strcasecmp(name, "Content-Type") == 0)
        return "application/json";
    if (strcasecmp(name, "Host") == 0)
        return "127.0.0.1:8080";
    return NULL;
}

typedef struct {
    lhost_rc rc;
    int status;
    char *body;
    size_t len;
} result;

static result run(lhost *h, const char *method, const char *path, const char *query,
                  const char *body, size_t body_len, int too_large, const headers *hd)
{
    lhost_request r = {0};
    lhost_response resp = {0};
    result out = {0};
    r.id = "fuzz";
    r.method = method;
    r.path = path;
    r.query = query;
    r.body = too_large ? "" : body;
    r.body_len = too_large ? 0 : body_len;
    r.too_large = too_large;
    r.remote = "127.0.0.1";
    r.header = header;
    r.header_ud = (void *)hd;
    resp.body = evbuffer_new();
    G.in_request = 1;
    out.rc = lhost_handle(h, &r, &resp);
    G.in_request = 0;
    store_release(G.store);
    out.status = resp.status;
    out.len = evbuffer_get_length(resp.body);
    out.body = malloc(out.len + 1);
    evbuffer_remove(resp.body, out.body, out.len);
    out.body[out.len] = '\0';
    evbuffer_free(resp.body);
    return out;
}

/* Copies the value of "key":"..." from a JSON body. */
static void grab(const char *body, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(body, pat);
    if (!p) {
        fprintf(stderr, "fuzz_request setup: no %s in %s\n", key, body);
        abort();
    }
    p += strlen(pat);
    size_t n = strcspn(p, "\"");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
}

/* (Re)creates the image @I names, with two tags. */
static void seed_image(void)
{
    headers hd = {PROJECT, NULL};
    static const char img[] = "{\"name\": \"fuzz-seed\", \"image_tags\": [{\"key\": \"env\", \"value\": \"prod\"},"
                              " {\"key\": \"部门\", \"value\": \"研发\"}]}";
    result r = run(host_off, "POST", "/v2/images", NULL, img, sizeof img - 1, 0, &hd);
    if (r.status != 201)
        abort();
    grab(r.body, "id", image_id, sizeof image_id);
    free(r.body);
}

static lhost *make_host(int auth)
{
    char err[4096];
    G.opt.auth = auth;
    lhost *h = lhost_new(&G, 1, NULL, err, sizeof err);
    if (!h) {
        fprintf(stderr, "fuzz_request setup: %s\n", err);
        abort();
    }
    return h;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char db[sizeof workdir + 16], err[1024], ak[33], sk[65];
    (void)argc, (void)argv;
    /* TAGWAY_FUZZ_TMP, else tmpfs when there is one (every write is an fsync) */
    const char *parent = getenv("TAGWAY_FUZZ_TMP");
    if (!parent || !*parent)
        parent = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    if (snprintf(workdir, sizeof workdir, "%s/tagway-fuzz-XXXXXX", parent) >= (int)sizeof workdir)
        abort();
    if (!mkdtemp(workdir))
        abort();
    atexit(cleanup);
    snprintf(db, sizeof db, "%s/fuzz.db", workdir);
    {
        gw_options opt;
        config_defaults(&opt);
        if (gw_shared_init(&S, 1) != 0)
            abort();
        gw_worker_init(&G, &S, 0, &opt);   /* G.shared, G.stats */
    }
    snprintf(G.opt.scripts, sizeof G.opt.scripts, "%s/lua", TAGWAY_ROOT);
    snprintf(G.opt.policies, sizeof G.opt.policies, "%s/policies", TAGWAY_ROOT);
    snprintf(G.opt.obs_root, sizeof G.opt.obs_root, "%s/obs", workdir);
    snprintf(G.opt.db, sizeof G.opt.db, "%s", db);
    /* budgets counted, not timed, so every finding reproduces: 10M VM
     * instructions (a fifth of the default), time only as a backstop */
    G.opt.script_instructions = 10000000;
    G.opt.script_time_ms = 30000;
    if (store_open(&G.store, db, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_request setup: %s\n", err);
        abort();
    }
    G.index = tagidx_new();
    store_attach_index(G.store, G.index);
    /* the GET tags answer cache, on as by default when serving */
    if (G.opt.tags_cache && !(S.tags_cache = tagcache_new((uint32_t)G.opt.tags_cache)))
        abort();
    store_attach_tags_cache(G.store, S.tags_cache);
    G.base = event_base_new();
    G.metrics = metrics_new();
    G.generation = 1;
    G.started_ms = util_now_ms();
    host_off = make_host(0);
    host_on = make_host(1);
    G.lua = host_off;
    if (auth_issue(G.store, PROJECT, "admin", admin_token, ak, sk, err, sizeof err) != 0 ||
        auth_issue(G.store, PROJECT, "member", member_token, ak, sk, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_request setup: %s\n", err);
        abort();
    }
    /* an image with tags and a job to aim at */
    headers hd = {PROJECT, NULL};
    seed_image();
    static const char imp[] = "{\"name\": \"fuzz-job\", \"os_version\": \"CentOS 7.9 64bit\", "
                              "\"image_url\": \"bkt:disk.zvhd2\", \"min_disk\": 40}";
    result r = run(host_off, "POST", "/v2/cloudimages/quickimport/action", NULL, imp, sizeof imp - 1, 0, &hd);
    if (r.status != 200)
        abort();
    grab(r.body, "job_id", job_id, sizeof job_id);
    free(r.body);
    return 0;
}

/* Expands @P @I @J @Q into out (cap bytes, NUL-terminated); -> length. */
static size_t expand(const uint8_t *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        const char *rep = NULL;
        if (s[i] == '@' && i + 1 < n) {
            switch (s[i + 1]) {
            case 'P': rep = PROJECT; break;
            case 'I': rep = image_id; break;
            case 'J': rep = job_id; break;
            case 'Q': rep = OTHER; break;
            }
        }
        if (rep) {
            size_t l = strlen(rep);
            if (o + l + 1 >= cap)
                break;
            memcpy(out + o, rep, l);
            o += l;
            i++;
        } else {
            out[o++] = (char)s[i];
        }
    }
    out[o] = '\0';
    return o;
}

static int documented(int status)
{
    static const int ok[] = {200, 201, 204, 400, 401, 403, 404, 413};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (status == ok[i])
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "POST", "DELETE", "PUT", "HEAD", "PATCH", "OPTIONS", "GET"};
    char target[MAX_TARGET];
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    const uint8_t *rest = data + 1, *nl = memchr(rest, '\n', size - 1);
    size_t tlen = nl ? (size_t)(nl - rest) : size - 1;
    const uint8_t *body = nl ? nl + 1 : rest + tlen;
    size_t body_len = (size_t)(data + size - body);
    expand(rest, tlen, target, sizeof target);
    if (target[0] == '\0')
        snprintf(target, sizeof target, "/");
    /* reload swaps the whole script generation: not the request path */
    if (strncmp(target, "/admin/reload", 13) == 0)
        return 0;
    char *query = strchr(target, '?');
    if (query)
        *query++ = '\0';
    headers hd = {(flags & 8) ? PROJECT : NULL, NULL};
    lhost *h = host_off;
    if (flags & 0x20) {
        h = host_on;
        hd.token = admin_token;
    } else if (flags & 0x40) {
        h = host_on;
        hd.token = member_token;
    }
    size_t cap = body_len * 18 + 1;
    char *xbody = malloc(cap);
    if (!xbody)
        return 0;
    size_t xlen = expand(body, body_len, xbody, cap);
    result r = run(h, methods[flags & 7], target, query, xbody, xlen, (flags & 16) != 0, &hd);
    free(xbody);
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "%s %s -> %d %.200s\n", methods[flags & 7], target, r.status, r.body);
    if (r.rc != LHOST_OK) {
        fprintf(stderr, "fuzz_request: host failed (rc %d) on %s %s\n", r.rc, methods[flags & 7], target);
        abort();
    }
    if (!documented(r.status)) {
        fprintf(stderr, "fuzz_request: undocumented status %d on %s %s: %s\n", r.status, methods[flags & 7],
                target, r.body);
        abort();
    }
    if (r.status >= 400 && (r.len == 0 || r.body[0] != '{' || !strstr(r.body, "\"error"))) {
        fprintf(stderr, "fuzz_request: error %d without a JSON error body: %s\n", r.status, r.body);
        abort();
    }
    free(r.body);
    /* keep @I pointing at an image once an input deleted it */
    if (r.status == 204 && (flags & 7) == 2 && strstr(target, image_id) && !strstr(target, "/tags/"))
        seed_image();
    return 0;
}
