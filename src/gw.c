/* gw: operations on the process state that more than one module triggers:
 * the shared part's locks, swapping in a new script generation (reload
 * from SIGHUP, /admin/reload or --watch) on every worker, and freeing the
 * one it replaced.  Uses lhost. */
#include "gw.h"
#include "config.h"
#include "http.h"
#include "lhost.h"
#include "ratelim.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gw_shared_init(gw_shared *s, int nworkers)
{
    pthread_rwlockattr_t attr;
    memset(s, 0, sizeof *s);
    s->nworkers = nworkers;
    s->workers = calloc((size_t)nworkers, sizeof *s->workers);
    s->next = calloc((size_t)nworkers, sizeof *s->next);
    s->rates = ratelim_new();
    if (!s->workers || !s->next || !s->rates)
        goto fail;
    /* index writes are short; without writer preference a steady stream
     * of queries could hold a commit's index feed (and the writer) back */
    if (pthread_rwlockattr_init(&attr) != 0)
        goto fail;
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    if (pthread_rwlock_init(&s->index_lock, &attr) != 0) {
        pthread_rwlockattr_destroy(&attr);
        goto fail;
    }
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&s->write_lock, NULL);
    pthread_mutex_init(&s->reload_lock, NULL);
    atomic_init(&s->generation, 1);
    return 0;
fail:
    ratelim_free(s->rates);
    free(s->workers);
    free(s->next);
    s->rates = NULL;
    s->workers = NULL;
    s->next = NULL;
    return -1;
}

void gw_shared_destroy(gw_shared *s)
{
    if (!s->workers)
        return;
    for (int i = 0; i < s->nworkers; i++)
        lhost_free(s->next[i]);
    free(s->next);
    free(s->workers);
    ratelim_free(s->rates);
    s->rates = NULL;
    pthread_rwlock_destroy(&s->index_lock);
    pthread_mutex_destroy(&s->write_lock);
    pthread_mutex_destroy(&s->reload_lock);
    s->workers = NULL;
    s->next = NULL;
}

void gw_worker_init(gw *g, gw_shared *s, int worker, const gw_options *opt)
{
    memset(g, 0, sizeof *g);
    g->opt = *opt;
    g->worker = worker;
    g->shared = s;
    g->stats = &s->stats;
    g->generation = atomic_load(&s->generation);
    s->workers[worker] = g;
}

void gw_index_read(gw *g) { pthread_rwlock_rdlock(&g->shared->index_lock); }
void gw_index_done(gw *g) { pthread_rwlock_unlock(&g->shared->index_lock); }

/* Takes the generation another worker built for this one, if any. */
static void catch_up(gw *g)
{
    gw_shared *sh = g->shared;
    lhost *next;
    if (g->generation == atomic_load(&sh->generation))
        return;
    pthread_mutex_lock(&sh->reload_lock);
    next = sh->next[g->worker];
    sh->next[g->worker] = NULL;
    pthread_mutex_unlock(&sh->reload_lock);
    if (!next)
        return;
    lhost_free(g->lua);         /* not in a request: nothing runs in it */
    g->lua = next;
    g->generation = lhost_generation(next);
}

void gw_settle(gw *g)
{
    if (g->in_request)
        return;
    if (g->retired) {
        lhost_free(g->retired);
        g->retired = NULL;
    }
    catch_up(g);
}

/* A reload applies what the scripts read of the configuration file; the
 * C options in it wait for a restart.  Says so when the file now sets one
 * differently from the file the gateway started with, where "reload ok"
 * alone would read as applied. */
static void warn_start_options(const gw_shared *sh, const gw_options *now)
{
    char names[512];
    config_diff(&sh->file_opt, now, names, sizeof names);
    if (names[0])
        fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"the configuration file changes options "
                        "that take effect at the next start, not at a reload\",\"options\":\"%s\"}\n",
                names);
}

int gw_reload_try(gw *g, char *err, size_t errlen)
{
    gw_shared *sh = g->shared;
    lhost **built;
    lhost_snap *snap;
    gw_options scratch;
    uint64_t gen;
    char *tb;
    int n = sh->nworkers;
    if (g->retired) {
        snprintf(err, errlen, "a reload is still settling; try again");
        return GW_RELOAD_BUSY;
    }
    if (!(built = calloc((size_t)n, sizeof *built))) {
        snprintf(err, errlen, "out of memory");
        sh->stats.reloads_failed++;
        return -1;
    }
    /* another worker's reload is building: waiting would stall this
     * worker's loop for as long (up to the load budget, per file) */
    if (pthread_mutex_trylock(&sh->reload_lock) != 0) {
        free(built);
        snprintf(err, errlen, "another reload is running; try again");
        return GW_RELOAD_BUSY;
    }
    gen = atomic_load(&sh->generation) + 1;
    /* every worker's state is built and checked before any is handed
     * out: a reload reaches all workers or none, all built from the
     * bytes the first build read.  First the configuration file, as
     * start and `tagway check` read it: a key they refuse (a misspelt
     * default_policy) would otherwise be dropped by the scripts, and the
     * gateway run a set it cannot restart with.  Its C options take
     * effect at a restart; here they are only checked. */
    config_defaults(&scratch);
    util_copy(scratch.config, sizeof scratch.config, g->opt.config);
    if (!(snap = lhost_snap_new()) || lhost_load_config(&scratch, snap, err, errlen) != 0) {
        if (!snap)
            snprintf(err, errlen, "out of memory");
        lhost_snap_free(snap);
        pthread_mutex_unlock(&sh->reload_lock);
        free(built);
        sh->stats.reloads_failed++;
        return -1;
    }
    for (int i = 0; i < n; i++) {
        /* a stop asked meanwhile: the process is leaving, and building
         * the other workers' states (each up to the load budget) would
         * only hold its drain toward the forced-exit deadline */
        if (atomic_load(&sh->stopping))
            snprintf(err, errlen, "the gateway is stopping; reload abandoned");
        else if ((built[i] = lhost_new(sh->workers[i], gen, snap, err, errlen)))
            continue;
        lhost_snap_free(snap);
        pthread_mutex_unlock(&sh->reload_lock);
        for (int j = 0; j < i; j++)
            lhost_free(built[j]);
        free(built);
        if ((tb = strstr(err, "\nstack traceback:")))
            *tb = '\0';       /* the client gets file:line: what */
        sh->stats.reloads_failed++;
        return -1;
    }
    lhost_snap_free(snap);
    for (int i = 0; i < n; i++) {
        lhost_free(sh->next[i]);    /* one a worker never took (this one's too) */
        sh->next[i] = i == g->worker ? NULL : built[i];
    }
    atomic_store(&sh->generation, gen);
    pthread_mutex_unlock(&sh->reload_lock);
    /* this worker at once (it may be inside the /admin/reload request:
     * the old state finishes it and is freed after) */
    g->retired = g->lua;
    g->lua = built[g->worker];
    g->generation = gen;
    free(built);
    sh->stats.reloads_ok++;
    http_wake_all(g);           /* idle workers take it now, not at their next request */
    warn_start_options(sh, &scratch);
    return 0;
}

int gw_reload(gw *g, char *err, size_t errlen)
{
    int rc = gw_reload_try(g, err, errlen);
    if (rc == GW_RELOAD_BUSY)
        g->shared->stats.reloads_failed++;
    return rc;
}

void gw_reload_log(const gw *g, const char *how, int rc, const char *err)
{
    if (rc == 0) {
        fprintf(stderr, "{\"level\":\"info\",\"msg\":\"reload (%s) ok\",\"generation\":%llu}\n", how,
                (unsigned long long)g->generation);
        return;
    }
    util_log_json(err, "{\"level\":\"error\",\"msg\":\"reload (%s) failed\",\"error\":", how);
}
