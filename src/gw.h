/* gw: the state of one event loop ("worker"), one struct passed explicitly
 * to every module (no hidden globals), the state all workers share, and the
 * options the process was started with.  The options come from the command
 * line and the optional Lua configuration file.
 *
 * With --workers N there are N gw structs, one per thread: each has its own
 * event loop, HTTP server, SQLite connection and Lua generation; they share
 * the tag index (read-locked by queries, write-locked by the writer), one
 * writer at a time for SQLite (so the index is fed in commit order), the
 * metrics, the import job runner (worker 0 runs it) and the generation
 * counter a reload bumps. */
#ifndef TAGWAY_GW_H
#define TAGWAY_GW_H
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
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
struct ratelim;

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
    int request_timeout_s;      /* a request's headers and body arrive within; 0: off */
    int workers;                /* event loops (threads), default: cores */
    int tags_cache;             /* GET tags answers kept in memory; 0: none */
} gw_options;

/* Counters the metrics endpoint reports, summed over the workers. */
typedef struct gw_stats {
    _Atomic uint64_t script_errors, budget_kills;
    _Atomic uint64_t reloads_ok, reloads_failed;
} gw_stats;

typedef struct gw gw;

/* What the workers share.  Lock order: write_lock, then index_lock. */
typedef struct gw_shared {
    struct store *writer;         /* the one write connection, under write_lock */
    struct tagcache *tags_cache;  /* answers of GET tags; NULL: off */
    pthread_mutex_t write_lock;   /* held by a request from its first write to its end,
                                     and for a group's COMMIT + index feed */
    pthread_rwlock_t index_lock;  /* the tag index: queries read, the writer writes */
    pthread_mutex_t reload_lock;  /* reloads, and handing generations to workers */
    _Atomic uint64_t generation;  /* the newest generation; workers catch up */
    gw **workers;                 /* [nworkers], worker 0 first */
    int nworkers;
    struct lhost **next;          /* [nworkers]: a built generation not yet taken */
    gw_stats stats;
    _Atomic int stopping;
    _Atomic int reload_asked;     /* SIGHUP: worker 0 reloads when it wakes */
    _Atomic int conns;            /* client connections, all workers (estimate) */
    _Atomic int crowded;          /* near the connection cap: answers close theirs */
    struct ratelim *rates;        /* the policies' rate_limit buckets; locks itself */
    gw_options file_opt;          /* what the configuration file set at start (over
                                     the defaults): a reload's are compared to it */
} gw_shared;

struct gw {
    gw_options opt;
    int worker;                 /* 0 .. nworkers-1 */
    gw_shared *shared;
    pthread_t thread;
    int started;                /* its thread runs (workers 1..n-1) */
    struct event_base *base;
    struct evhttp *http;
    void *http_state;           /* owned by http.c */
    struct store *store;        /* this worker's connection */
    struct tagidx *index;       /* shared: under shared->index_lock */
    struct lhost *lua;          /* the generation serving this worker's requests */
    struct lhost *retired;      /* previous generation, freed between requests */
    struct jobs *jobs;          /* shared; worker 0 runs the jobs */
    struct metrics *metrics;    /* shared; locks itself */
    struct watch *watch;        /* worker 0 only */
    uint64_t generation;        /* of g->lua */
    int64_t started_ms;
    int in_request;             /* a Lua call is running: defer frees */
    int jobs_submitted;         /* this pass submitted an import: kick the
                                   runner again once its group commits */
    gw_stats *stats;            /* &shared->stats */
};

int gw_shared_init(gw_shared *s, int nworkers);
void gw_shared_destroy(gw_shared *s);
/* Makes g worker number `worker` of s (options copied from opt). */
void gw_worker_init(gw *g, gw_shared *s, int worker, const gw_options *opt);

/* Builds a new Lua generation for every worker, swaps it in here and hands
 * it to the others, which take it before their next request; on failure
 * the current one keeps serving and err says why (file:line).
 * 0 ok, -1 failed, GW_RELOAD_BUSY another reload was building (both
 * counted in the reload metrics as failed). */
int gw_reload(gw *g, char *err, size_t errlen);
/* The same, but when another reload is building (or this worker's last one
 * is still settling) it reads nothing and returns GW_RELOAD_BUSY, not
 * counted: for a caller that tries again (--watch). */
#define GW_RELOAD_BUSY (-2)
int gw_reload_try(gw *g, char *err, size_t errlen);
/* One log line for a reload's outcome (rc from gw_reload or _try); how
 * says who asked: "SIGHUP", "watch", "admin". */
void gw_reload_log(const gw *g, const char *how, int rc, const char *err);
/* Frees the retired generation once no Lua call is running in it, and
 * takes a newer generation another worker built.  Between requests only. */
void gw_settle(gw *g);

/* The shared index, for reading (queries, status).  No Lua call may run
 * between these two: a Lua error would leave the lock held. */
void gw_index_read(gw *g);
void gw_index_done(gw *g);

#endif
