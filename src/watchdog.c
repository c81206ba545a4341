/* watchdog.c: see watchdog.h.  `seq` is odd while a call is armed; the
 * handler fires only for the very call the poller saw overrun, so a signal
 * that arrives after the call ended (or during the next one) does nothing. */
#include "watchdog.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_SIGNAL SIGALRM  /* nothing else in tagway uses alarm() */

struct watchdog {
    pthread_t poller;
    _Atomic(pthread_t) watched;  /* the thread running the armed call */
    int64_t period_us;
    watchdog_fire_fn fire;
    void *ud;
    _Atomic uint64_t seq;        /* odd: a call is armed */
    _Atomic int64_t deadline_us;
    _Atomic uint64_t fire_seq;   /* the overrun call the signal is for */
    pthread_mutex_t mu;          /* with cv: the poller's sleep, cut short to stop */
    pthread_cond_t cv;
    int stop;
};

static void on_signal(int sig, siginfo_t *info, void *uctx)
{
    watchdog *wd;
    int saved = errno;
    (void)sig;
    (void)uctx;
    /* only this process's own pthread_sigqueue carries a watchdog; a
     * stray SIGALRM (kill -ALRM, or sigqueue from another process with a
     * pointer of its choosing) is ignored */
    if (info->si_code == SI_QUEUE && info->si_pid == getpid() &&
        (wd = info->si_value.sival_ptr) != NULL) {
        uint64_t seq = atomic_load(&wd->seq);
        /* the deadline may have moved on since (time spent waiting for a
         * lock is not the script's) */
        if ((seq & 1) && seq == atomic_load(&wd->fire_seq) &&
            util_mono_us() > atomic_load(&wd->deadline_us))
            wd->fire(wd->ud);
    }
    errno = saved;
}

static int install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART; /* syscalls in the loop resume */
    sigemptyset(&sa.sa_mask);
    return sigaction(WATCHDOG_SIGNAL, &sa, NULL);
}

/* Sleeps one period, or less when told to stop.  1 when stopping. */
static int nap(watchdog *wd)
{
    struct timespec until;
    int stop;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)(wd->period_us % 1000000) * 1000;
    until.tv_sec += wd->period_us / 1000000 + until.tv_nsec / 1000000000;
    until.tv_nsec %= 1000000000;
    pthread_mutex_lock(&wd->mu);
    while (!wd->stop && pthread_cond_timedwait(&wd->cv, &wd->mu, &until) == 0)
        ;
    stop = wd->stop;
    pthread_mutex_unlock(&wd->mu);
    return stop;
}

static void *poll_loop(void *arg)
{
    watchdog *wd = arg;
    uint64_t signalled_seq = 0;
    int64_t signalled_deadline = 0;

    while (!nap(wd)) {
        uint64_t seq = atomic_load(&wd->seq);
        int64_t deadline = atomic_load(&wd->deadline_us);
        if (!(seq & 1) || util_mono_us() <= deadline ||
            (seq == signalled_seq && deadline == signalled_deadline))
            continue;
        /* deadline read after seq: if the call ended meanwhile, seq moved
         * on and the handler ignores the signal */
        atomic_store(&wd->fire_seq, seq);
        union sigval v = {.sival_ptr = wd};
        if (pthread_sigqueue(atomic_load(&wd->watched), WATCHDOG_SIGNAL, v) == 0) {
            signalled_seq = seq;
            signalled_deadline = deadline;
        }
    }
    return NULL;
}

watchdog *watchdog_new(int64_t period_us, watchdog_fire_fn fire, void *ud)
{
    watchdog *wd = calloc(1, sizeof *wd);
    pthread_condattr_t attr;
    if (!wd)
        return NULL;
    atomic_store(&wd->watched, pthread_self());
    wd->period_us = period_us > 0 ? period_us : 1000;
    wd->fire = fire;
    wd->ud = ud;
    if (pthread_mutex_init(&wd->mu, NULL) != 0)
        goto fail;
    if (pthread_condattr_init(&attr) != 0 ||
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&wd->cv, &attr) != 0) {
        pthread_mutex_destroy(&wd->mu);
        goto fail;
    }
    pthread_condattr_destroy(&attr);
    if (install_handler() != 0 || pthread_create(&wd->poller, NULL, poll_loop, wd) != 0) {
        pthread_cond_destroy(&wd->cv);
        pthread_mutex_destroy(&wd->mu);
        goto fail;
    }
    return wd;
fail:
    free(wd);
    return NULL;
}

void watchdog_free(watchdog *wd)
{
    if (!wd)
        return;
    pthread_mutex_lock(&wd->mu);
    wd->stop = 1;                       /* no waiting out the period */
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
    pthread_join(wd->poller, NULL);
    pthread_cond_destroy(&wd->cv);
    pthread_mutex_destroy(&wd->mu);
    /* a signal the poller queued has been handled by now: it was queued to
     * this thread, which has since returned from the join */
    free(wd);
}

void watchdog_arm(watchdog *wd, int64_t deadline_us)
{
    /* a generation is built by the reloading worker and then serves on
     * its own one: the thread is taken at each call */
    atomic_store(&wd->watched, pthread_self());
    atomic_store(&wd->deadline_us, deadline_us);
    atomic_fetch_add(&wd->seq, 1);
}

void watchdog_extend(watchdog *wd, int64_t deadline_us)
{
    atomic_store(&wd->deadline_us, deadline_us);
}

void watchdog_disarm(watchdog *wd)
{
    atomic_fetch_add(&wd->seq, 1);
}
