/* jobs: the import job runner.  A timer tick takes up to BATCH active jobs
 * from the store, moves INIT ones to RUNNING, and gives each one step of
 * the Lua import backend.  Progress lives in memory only (a crash restarts
 * a job's steps from zero; the backend is deterministic, so the outcome is
 * the same); transitions are durable.  Uses libevent, store, lhost, util. */
#include "jobs.h"
#include "lhost.h"
#include "store.h"
#include "util.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 16
#define TICK_MS 20
#define IDLE_MS 1000                /* with nothing active: look again this often */
#define KICK_LINGER_US 2000000      /* after a kick, look every tick this long */

typedef struct {
    char id[33];
    int progress;
} job_progress;

/* One runner per process, on worker 0's loop.  Other workers submit jobs
 * too: their kick is a flag the runner's own loop looks at every tick, and
 * they read progress under the lock. */
struct jobs {
    gw *g;                      /* worker 0 */
    struct event *timer;
    struct event *kick_poll;    /* several workers: looks at `kicked` */
    pthread_mutex_t lock;       /* guards progress */
    job_progress *progress;     /* active jobs' progress, small */
    size_t nprogress, cap;
    int armed_ms;               /* the timer's delay while pending, 0: not pending */
    _Atomic int kicked;
    _Atomic int64_t kicked_us;  /* when a job was last submitted (any worker) */
};

static job_progress *progress_of(jobs *j, const char *id)
{
    for (size_t i = 0; i < j->nprogress; i++)
        if (strcmp(j->progress[i].id, id) == 0)
            return &j->progress[i];
    if (j->nprogress == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 32;
        job_progress *p = realloc(j->progress, cap * sizeof *p);
        if (!p)
            return NULL;
        j->progress = p;
        j->cap = cap;
    }
    util_copy(j->progress[j->nprogress].id, sizeof j->progress[0].id, id);
    j->progress[j->nprogress].progress = 0;
    return &j->progress[j->nprogress++];
}

static void progress_drop(jobs *j, const char *id)
{
    for (size_t i = 0; i < j->nprogress; i++)
        if (strcmp(j->progress[i].id, id) == 0) {
            j->progress[i] = j->progress[--j->nprogress];
            return;
        }
}

typedef struct {
    char ids[BATCH][33];
    int n;
} batch;

static int collect(void *ud, const store_job *job)
{
    batch *b = ud;
    util_copy(b->ids[b->n++], sizeof b->ids[0], job->id);
    return b->n == BATCH;
}

static void log_job(const char *id, const char *what, const char *detail)
{
    util_log_json(detail ? detail : "", "{\"level\":\"info\",\"job_id\":\"%s\",\"msg\":\"%s\",\"detail\":", id, what);
}

/* One step of one job.  Returns 1 while it is still active. */
static int step(jobs *j, const char *id)
{
    gw *g = j->g;
    store_job row;
    store_image image;
    lhost_job_result res;
    job_progress *p;
    int progress;
    store_rc rc;
    /* a failed read is no answer: the job stays active, tried next tick */
    if ((rc = store_job_get(g->store, NULL, id, &row)) != STORE_OK)
        return rc != STORE_NOT_FOUND;
    if (strcmp(row.status, "INIT") == 0) {
        if (store_job_start(g->store, id) != STORE_OK)
            return 1;          /* try again next tick */
        if ((rc = store_job_get(g->store, NULL, id, &row)) != STORE_OK)
            return rc != STORE_NOT_FOUND;
        if (strcmp(row.status, "RUNNING") != 0) { /* its image is gone */
            log_job(id, "job failed", row.fail_reason);
            return 0;
        }
        log_job(id, "job running", NULL);
    }
    pthread_mutex_lock(&j->lock);
    p = progress_of(j, id);
    progress = p ? p->progress : 0;
    pthread_mutex_unlock(&j->lock);
    if (!p)
        return 1;
    if (store_image_get(g->store, row.project, row.image_id, &image) == STORE_NOT_FOUND) {
        /* deleted meanwhile: the job ends now rather than when the backend
         * would have (minutes for a large object), holding a slot of its
         * project's max_running_jobs; ending it without a code, the
         * transition fails it with IMG.0027 */
        res.state = LHOST_JOB_SUCCESS;
    } else if (lhost_job_step(g->lua, &row, progress, &res) != LHOST_OK) {
        util_copy(res.code, sizeof res.code, "IMG.0061");
        util_copy(res.reason, sizeof res.reason, "the import backend script failed");
        res.state = LHOST_JOB_FAIL;
    }
    if (res.state == LHOST_JOB_RUNNING) {
        pthread_mutex_lock(&j->lock);
        if ((p = progress_of(j, id)))
            p->progress = res.progress;
        pthread_mutex_unlock(&j->lock);
        return 1;
    }
    if (store_job_finish(g->store, id, res.state == LHOST_JOB_FAIL ? res.code : NULL,
                         res.state == LHOST_JOB_FAIL ? res.reason : NULL) != STORE_OK)
        return 1;
    /* logged as stored: a job whose image went is FAIL whatever it ran to */
    if (store_job_get(g->store, NULL, id, &row) == STORE_OK && strcmp(row.status, "FAIL") == 0)
        log_job(id, "job failed", row.fail_reason);
    else
        log_job(id, "job succeeded", NULL);
    pthread_mutex_lock(&j->lock);
    progress_drop(j, id);
    pthread_mutex_unlock(&j->lock);
    return 0;
}

/* Runs on_tick within ms (sooner if it already would). */
static void arm(jobs *j, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if ((!j->armed_ms || ms < j->armed_ms) && evtimer_add(j->timer, &tv) == 0)
        j->armed_ms = ms;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    jobs *j = arg;
    batch b = {.n = 0};
    int active = 0;
    (void)fd, (void)what;
    j->armed_ms = 0;
    gw_settle(j->g);            /* a reload on another worker: take it first */
    j->g->in_request = 1;       /* a reload during a step must not free this state */
    if (store_jobs_active(j->g->store, BATCH, collect, &b) == 0)
        for (int i = 0; i < b.n; i++)
            active += step(j, b.ids[i]);
    j->g->in_request = 0;
    store_release(j->g->store);
    /* The runner never stops looking: a job whose kick it missed (its
     * commit came later than the linger, or a read failed) still starts
     * within IDLE_MS; the idle look is one indexed SELECT a second. */
    if (active || b.n == BATCH || util_mono_us() - atomic_load(&j->kicked_us) < KICK_LINGER_US)
        arm(j, TICK_MS);
    else
        arm(j, IDLE_MS);
}

static void on_kick_poll(evutil_socket_t fd, short what, void *arg)
{
    jobs *j = arg;
    (void)fd, (void)what;
    if (atomic_exchange(&j->kicked, 0))
        arm(j, TICK_MS);
}

jobs *jobs_new(gw *g)
{
    jobs *j = calloc(1, sizeof *j);
    struct timeval tick = {0, TICK_MS * 1000};
    if (!j)
        return NULL;
    j->g = g;
    if (pthread_mutex_init(&j->lock, NULL) != 0) {
        free(j);
        return NULL;
    }
    if (!(j->timer = evtimer_new(g->base, on_tick, j)))
        goto fail;
    if (g->shared->nworkers > 1 &&
        (!(j->kick_poll = event_new(g->base, -1, EV_PERSIST, on_kick_poll, j)) ||
         event_add(j->kick_poll, &tick) != 0))
        goto fail;
    return j;
fail:
    jobs_free(j);
    return NULL;
}

void jobs_kick(jobs *j)
{
    if (!j)
        return;
    /* a kick at submission comes before the job's group is committed:
     * the runner keeps looking every tick for a while, also after a kick
     * from its own loop (a first tick that ran before a delayed commit
     * found nothing, and the job stayed INIT until the next kick: an ASan
     * run saw it); the submitting worker kicks again once the group is
     * committed (http.c on_commit), however long its loop pass was */
    atomic_store(&j->kicked_us, util_mono_us());
    if (pthread_equal(pthread_self(), j->g->thread)) {
        arm(j, TICK_MS);
        return;
    }
    atomic_store(&j->kicked, 1);        /* seen within a tick */
}

void jobs_free(jobs *j)
{
    if (!j)
        return;
    if (j->timer)
        event_free(j->timer);
    if (j->kick_poll)
        event_free(j->kick_poll);
    pthread_mutex_destroy(&j->lock);
    free(j->progress);
    free(j);
}

int jobs_progress(jobs *j, const char *job_id)
{
    int progress = 0;
    if (!j)
        return 0;
    pthread_mutex_lock(&j->lock);
    for (size_t i = 0; i < j->nprogress; i++)
        if (strcmp(j->progress[i].id, job_id) == 0)
            progress = j->progress[i].progress;
    pthread_mutex_unlock(&j->lock);
    return progress;
}
