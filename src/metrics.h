/* metrics: request counters by route and status, a latency histogram and
 * SQLite commit timing, rendered in the Prometheus text format together
 * with the gauges other modules report.  One per process, shared by the
 * workers (it locks itself); no globals. */
#ifndef TAGWAY_METRICS_H
#define TAGWAY_METRICS_H
#include <stddef.h>
#include <stdint.h>

typedef struct metrics metrics;
struct evbuffer;

metrics *metrics_new(void);
void metrics_free(metrics *m);
/* Records one answered request (route template or "-" when unmatched). */
void metrics_request(metrics *m, const char *route, int status, int64_t latency_us);

typedef struct {
    uint64_t script_errors, budget_kills, reloads_ok, reloads_failed;
    int64_t images, tags;
    size_t index_bytes, script_bytes;
    uint64_t generation;
    uint64_t commits, commit_us_total;
    uint64_t syncs, sync_us_total;
    uint64_t failed_groups;
    uint64_t cache_hits, cache_misses, cache_entries, cache_bytes;
} metrics_gauges;

typedef struct {
    const char *status;
    int64_t n;
} metrics_job_count;

/* Appends the whole exposition to out.  0 ok, -1 out of memory. */
int metrics_render(metrics *m, const metrics_gauges *g, const metrics_job_count *jobs,
                   size_t njobs, struct evbuffer *out);

#endif
