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
    _Atomic int stop;
};

static void on_signal(int sig, siginfo_t *info, void *uctx)
{
    watchdog *wd;
    int saved = errno;
    (void)sig;
    (void)uctx;
    /* only our own pthread_sigqueue carries the watchdog; a stray SIGALRM
     * (kill -ALRM) has no pointer and is ignored */
    if (info->si_code == SI_QUEUE && (wd = info->si_value.sival_ptr) != NULL) {
        uint64_t seq = atomic_load(&wd->seq);
        if ((seq & 1) && seq == atomic_load(&wd->fire_seq))
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

static void *poll_loop(void *arg)
{
    watchdog *wd = arg;
    struct timespec nap = {wd->period_us / 1000000, (wd->period_us % 1000000) * 1000};
    uint64_t signalled = 0;

    while (!atomic_load(&wd->stop)) {
        uint64_t seq;
        nanosleep(&nap, NULL);
        seq = atomic_load(&wd->seq);
        if (!(seq & 1) || seq == signalled || util_mono_us() <= atomic_load(&wd->deadline_us))
            continue;
        /* deadline read after seq: if the call ended meanwhile, seq moved
         * on and the handler ignores the signal */
        atomic_store(&wd->fire_seq, seq);
        union sigval v = {.sival_ptr = wd};
        if (pthread_sigqueue(atomic_load(&wd->watched), WATCHDOG_SIGNAL, v) == 0)
            signalled = seq;
    }
    return NULL;
}

watchdog *watchdog_new(int64_t period_us, watchdog_fire_fn fire, void *ud)
{
    watchdog *wd = calloc(1, sizeof *wd);
    if (!wd)
        return NULL;
    atomic_store(&wd->watched, pthread_self());
    wd->period_us = period_us > 0 ? period_us : 1000;
    wd->fire = fire;
    wd->ud = ud;
    if (install_handler() != 0 || pthread_create(&wd->poller, NULL, poll_loop, wd) != 0)
        goto fail;
    return wd;
fail:
    free(wd);
    return NULL;
}

void watchdog_free(watchdog *wd)
{
    if (!wd)
        return;
    atomic_store(&wd->stop, 1);
    pthread_join(wd->poller, NULL);
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

void watchdog_disarm(watchdog *wd)
{
    atomic_fetch_add(&wd->seq, 1);
}
