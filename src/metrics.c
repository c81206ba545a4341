/* metrics: Prometheus counters for tagway.  Requests are counted per
 * (route template, status) in a small open table; latencies go into fixed
 * histogram buckets.  Rendering writes text/plain version 0.0.4.
 * Uses libevent's evbuffer for output. */
#include "metrics.h"
#include "util.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERIES 512

static const double buckets_s[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                   0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
#define NBUCKETS (sizeof buckets_s / sizeof buckets_s[0])

typedef struct {
    char route[192];
    int status;
    uint64_t count;
} series;

struct metrics {
    pthread_mutex_t lock;               /* every worker records here */
    series s[MAX_SERIES];
    size_t n;
    uint64_t overflow;                  /* requests past MAX_SERIES series */
    uint64_t bucket[NBUCKETS];
    uint64_t count;
    double sum_s;
};

metrics *metrics_new(void)
{
    metrics *m = calloc(1, sizeof(metrics));
    if (m && pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

void metrics_free(metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void metrics_request(metrics *m, const char *route, int status, int64_t latency_us)
{
    double secs = (double)latency_us / 1e6;
    size_t i;
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    for (i = 0; i < m->n; i++)
        if (m->s[i].status == status && strcmp(m->s[i].route, route) == 0)
            break;
    if (i == m->n && m->n < MAX_SERIES) {
        util_copy(m->s[i].route, sizeof m->s[i].route, route);
        m->s[i].status = status;
        m->n++;
    }
    if (i < m->n)
        m->s[i].count++;
    else
        m->overflow++;
    for (size_t b = 0; b < NBUCKETS; b++)
        if (secs <= buckets_s[b])
            m->bucket[b]++;
    m->count++;
    m->sum_s += secs;
    pthread_mutex_unlock(&m->lock);
}

/* Label values escape backslash, quote and newline. */
static void add_label(struct evbuffer *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(out, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, v, 1);
    }
}

static void render_requests(const metrics *m, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP tagway_requests_total Requests answered, by route template and status.\n"
                             "# TYPE tagway_requests_total counter\n");
    for (size_t i = 0; i < m->n; i++) {
        evbuffer_add_printf(out, "tagway_requests_total{route=\"");
        add_label(out, m->s[i].route);
        evbuffer_add_printf(out, "\",status=\"%d\"} %llu\n", m->s[i].status,
                            (unsigned long long)m->s[i].count);
    }
    evbuffer_add_printf(out, "# HELP tagway_request_duration_seconds Time from request to answer.\n"
                             "# TYPE tagway_request_duration_seconds histogram\n");
    for (size_t b = 0; b < NBUCKETS; b++)
        evbuffer_add_printf(out, "tagway_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                            buckets_s[b], (unsigned long long)m->bucket[b]);
    evbuffer_add_printf(out, "tagway_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                             "tagway_request_duration_seconds_sum %.6f\n"
                             "tagway_request_duration_seconds_count %llu\n",
                        (unsigned long long)m->count, m->sum_s, (unsigned long long)m->count);
}

int metrics_render(metrics *m, const metrics_gauges *g, const metrics_job_count *jobs,
                   size_t njobs, struct evbuffer *out)
{
    pthread_mutex_lock(&m->lock);
    render_requests(m, out);
    pthread_mutex_unlock(&m->lock);
    evbuffer_add_printf(out,
        "# HELP tagway_script_errors_total Script failures by kind.\n"
        "# TYPE tagway_script_errors_total counter\n"
        "tagway_script_errors_total{kind=\"error\"} %llu\n"
        "tagway_script_errors_total{kind=\"budget\"} %llu\n"
        "# HELP tagway_reloads_total Script reloads by result.\n"
        "# TYPE tagway_reloads_total counter\n"
        "tagway_reloads_total{result=\"ok\"} %llu\n"
        "tagway_reloads_total{result=\"error\"} %llu\n"
        "# HELP tagway_generation The script generation serving requests.\n"
        "# TYPE tagway_generation gauge\ntagway_generation %llu\n"
        "# HELP tagway_images Images stored (any status).\n"
        "# TYPE tagway_images gauge\ntagway_images %lld\n"
        "# HELP tagway_tags Tags stored ((image, key) pairs).\n"
        "# TYPE tagway_tags gauge\ntagway_tags %lld\n"
        "# HELP tagway_index_bytes Memory held by the tag index.\n"
        "# TYPE tagway_index_bytes gauge\ntagway_index_bytes %zu\n"
        "# HELP tagway_script_bytes Memory held by the serving Lua state.\n"
        "# TYPE tagway_script_bytes gauge\ntagway_script_bytes %zu\n"
        "# HELP tagway_sqlite_commits_total Write transactions committed.\n"
        "# TYPE tagway_sqlite_commits_total counter\ntagway_sqlite_commits_total %llu\n"
        "# HELP tagway_sqlite_commit_seconds_total Time spent in COMMIT, under the write lock (the sync is apart).\n"
        "# TYPE tagway_sqlite_commit_seconds_total counter\ntagway_sqlite_commit_seconds_total %.6f\n"
        "# HELP tagway_sqlite_syncs_total fdatasyncs of the WAL; one makes every earlier commit durable.\n"
        "# TYPE tagway_sqlite_syncs_total counter\ntagway_sqlite_syncs_total %llu\n"
        "# HELP tagway_sqlite_sync_seconds_total Time spent syncing the WAL (outside the write lock).\n"
        "# TYPE tagway_sqlite_sync_seconds_total counter\ntagway_sqlite_sync_seconds_total %.6f\n"
        "# HELP tagway_sqlite_failed_groups_total Write groups not stored (COMMIT failed, or SQLite "
        "undid them: a full disk, an I/O error); every request in one was answered 503.\n"
        "# TYPE tagway_sqlite_failed_groups_total counter\ntagway_sqlite_failed_groups_total %llu\n"
        "# HELP tagway_tags_cache_lookups_total GET tags answers looked for in the cache, by result.\n"
        "# TYPE tagway_tags_cache_lookups_total counter\n"
        "tagway_tags_cache_lookups_total{result=\"hit\"} %llu\n"
        "tagway_tags_cache_lookups_total{result=\"miss\"} %llu\n"
        "# HELP tagway_tags_cache_entries GET tags answers held in the cache.\n"
        "# TYPE tagway_tags_cache_entries gauge\ntagway_tags_cache_entries %llu\n"
        "# HELP tagway_tags_cache_bytes Bytes of the answers held in the cache.\n"
        "# TYPE tagway_tags_cache_bytes gauge\ntagway_tags_cache_bytes %llu\n"
        "# HELP tagway_jobs Import jobs by status.\n# TYPE tagway_jobs gauge\n",
        (unsigned long long)g->script_errors, (unsigned long long)g->budget_kills,
        (unsigned long long)g->reloads_ok, (unsigned long long)g->reloads_failed,
        (unsigned long long)g->generation, (long long)g->images, (long long)g->tags,
        g->index_bytes, g->script_bytes, (unsigned long long)g->commits,
        (double)g->commit_us_total / 1e6, (unsigned long long)g->syncs,
        (double)g->sync_us_total / 1e6, (unsigned long long)g->failed_groups,
        (unsigned long long)g->cache_hits,
        (unsigned long long)g->cache_misses, (unsigned long long)g->cache_entries,
        (unsigned long long)g->cache_bytes);
    for (const char *const *st = (const char *const[]){"INIT", "RUNNING", "SUCCESS", "FAIL", NULL}; *st; st++) {
        int64_t n = 0;
        for (size_t i = 0; i < njobs; i++)
            if (strcmp(jobs[i].status, *st) == 0)
                n = jobs[i].n;
        evbuffer_add_printf(out, "tagway_jobs{status=\"%s\"} %lld\n", *st, (long long)n);
    }
    return 0;
}
