/* gw: the per-process state, one struct passed explicitly to every module
 * (no hidden globals), and the options it was started with.  The options
 * come from the command line and the optional Lua configuration file. */
#ifndef TAGWAY_GW_H
#define TAGWAY_GW_H
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evhttp;
struct store;
struct tagidx;
struct lhost;
struct jobs;
struct metrics;
struct watch;

typedef struct gw_options {
    char config[PATH_MAX];      /* "" when none */
    char listen[256];
    char db[PATH_MAX];
    char scripts[PATH_MAX];
    char policies[PATH_MAX];
    char obs_root[PATH_MAX];
    int auth;                   /* 1 on, 0 off (loopback only) */
    int watch;                  /* reload when script folders change */
    size_t body_limit;          /* bytes; larger bodies get 413 */
    size_t script_memory;       /* bytes per Lua state */
    int64_t script_time_ms;     /* wall-clock budget per request */
    int64_t script_instructions;/* VM instructions per request; 0: not counted */
    int max_connections;
    int timeout_s;              /* idle / slow-client timeout */
} gw_options;

/* Counters the metrics endpoint reports; owned by gw. */
typedef struct gw_stats {
    uint64_t script_errors, budget_kills;
    uint64_t reloads_ok, reloads_failed;
} gw_stats;

typedef struct gw {
    gw_options opt;
    struct event_base *base;
    struct evhttp *http;
    void *http_state;           /* owned by http.c */
    struct store *store;
    struct tagidx *index;
    struct lhost *lua;          /* the generation serving requests */
    struct lhost *retired;      /* previous generation, freed between requests */
    struct jobs *jobs;
    struct metrics *metrics;
    struct watch *watch;
    uint64_t generation;
    int64_t started_ms;
    int in_request;             /* a Lua call is running: defer frees */
    gw_stats stats;
} gw;

/* Builds a new Lua generation and swaps it in; on failure the current one
 * keeps serving and err says why (file:line).  0 ok, -1 failed. */
int gw_reload(gw *g, char *err, size_t errlen);
/* Frees the retired generation once no Lua call is running in it. */
void gw_settle(gw *g);

#endif
