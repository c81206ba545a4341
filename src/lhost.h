/* lhost: one sandboxed, budgeted Lua 5.4 state holding a complete script
 * generation (routes, handlers, shapers, policies, variants, config).
 * Builds and validates a generation, runs the request entry point under
 * the instruction/time budget and memory cap, and reports failures with a
 * traceback in the log, never to the client. */
#ifndef TAGWAY_LHOST_H
#define TAGWAY_LHOST_H
#include <stddef.h>
#include <stdint.h>
#include "gw.h"
#include "store.h"

typedef struct lhost lhost;
struct evbuffer;
struct lua_State;

/* What the HTTP layer hands to a script and gets back. */
typedef struct lhost_request {
    const char *id;             /* X-Request-Id */
    const char *method;
    const char *path;           /* raw, percent-encoded, no query */
    const char *query;          /* raw or NULL */
    const char *body;
    size_t body_len;
    int too_large;              /* body over the limit: not read */
    size_t body_limit;          /* that limit, for the 413's message */
    const char *remote;
    /* header lookup (case-insensitive) for gw.header and auth */
    const char *(*header)(void *ud, const char *name);
    void *header_ud;
} lhost_request;

typedef struct lhost_response {
    int status;
    struct evbuffer *body;      /* filled by lhost_handle */
    char content_type[64];
    char route[192];            /* route template, for logs and metrics */
    char project[64];           /* caller's project, "" if none */
    int retry_after_s;          /* > 0: a Retry-After header (a 429's) */
} lhost_response;

typedef enum { LHOST_OK = 0, LHOST_ERROR = 1, LHOST_BUDGET = 2 } lhost_rc;

typedef struct lhost_file {
    char *path;
    char sha256[65];
} lhost_file;

/* The files one reload (or the start) read: give every worker's build of
 * it the same snapshot, and each state is built from the same bytes,
 * whatever is edited meanwhile (the first build reads the disk). */
typedef struct lhost_snap lhost_snap;
lhost_snap *lhost_snap_new(void);
void lhost_snap_free(lhost_snap *s);
/* A file's bytes as the snapshot holds them, read from the disk (and
 * kept, or that it could not be read) the first time; s NULL: the disk
 * alone.  malloc'd and NUL-terminated, as util_read_file; NULL with errno. */
char *lhost_snap_read(lhost_snap *s, const char *path, size_t *len);
/* The configuration file o->config (if set) applied to o, read through
 * snap, so the generation built with snap reads the same bytes.  0 ok,
 * -1 with err naming the file. */
int lhost_load_config(gw_options *o, lhost_snap *snap, char *err, size_t errlen);

/* Builds a generation from the folders and config in g->opt, reading
 * through snap (NULL: the disk alone).  NULL with err filled
 * ("file:line: what") if anything fails to load or validate. */
lhost *lhost_new(gw *g, uint64_t generation, lhost_snap *snap, char *err, size_t errlen);
void lhost_free(lhost *h);

lhost_rc lhost_handle(lhost *h, const lhost_request *req, lhost_response *resp);

/* One step of an import job through main.job_step(job) (the Lua import
 * backend).  job is a store row; progress the step's in-memory percent. */
typedef enum { LHOST_JOB_RUNNING, LHOST_JOB_SUCCESS, LHOST_JOB_FAIL } lhost_job_state;
typedef struct {
    lhost_job_state state;
    int progress;
    char code[32];
    char reason[256];
} lhost_job_result;
lhost_rc lhost_job_step(lhost *h, const store_job *job, int progress, lhost_job_result *out);

/* While h is being built (lhost_new): the bytes the build read of path,
 * as the snapshot holds them; NULL otherwise. */
const char *lhost_loaded_text(const lhost *h, const char *path, size_t *len);

/* Whether a file name is one a folder of scripts or policies loads
 * ("x.lua", not hidden). */
int lhost_is_script_name(const char *name);

/* The files this generation loaded, with their hashes. */
const lhost_file *lhost_files(const lhost *h, size_t *n);
uint64_t lhost_generation(const lhost *h);
size_t lhost_memory(const lhost *h);

/* For lapi: the request being served, or NULL outside a request. */
const lhost_request *lhost_current(const lhost *h);
/* Moves the running call's deadline later by us (time the call spent
 * blocked on something that is not the script, e.g. another worker's
 * write lock).  No effect between calls. */
void lhost_extend_budget(lhost *h, int64_t us);
/* For C functions whose loops the count hook cannot see: raises the
 * budget error (a Lua error on L) once the running call is past its
 * deadline or was killed; returns otherwise. */
void lhost_budget_tick(lhost *h, struct lua_State *L);
/* 1 while lhost_new runs the scripts' init. */
int lhost_building(const lhost *h);
/* A message handler (lua_CFunction) for lua_pcall/xpcall: the error as
 * "file:line: message" (an object that is not a string gets the position
 * of the Lua code that raised it) with a traceback. */
int lhost_traceback(struct lua_State *L);
lhost_response *lhost_current_response(lhost *h);
gw *lhost_gw(const lhost *h);

#endif
