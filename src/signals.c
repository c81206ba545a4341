/* signals.c: see signals.h.  The thread reads a signalfd (the signals are
 * blocked in every thread, so none is delivered any other way) and an
 * eventfd that signals_free writes.  Uses util. */
#include "signals.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* API.md §7 promises an exit within 10 seconds of the signal.  A worker
 * stuck where no budget reaches (a C call that never returns) would keep
 * the drain from ending: past the deadline the process leaves anyway.
 * Every answered write is durable before its answer, so what is cut short
 * is only what was never acknowledged. */
#define STOP_DEADLINE_MS 9500

struct signals {
    pthread_t thread;
    int sig_fd, done_fd;
    pthread_mutex_t mu;         /* held around a callback; detach takes it */
    int detached;
    signals_cb cb;
};

static void serve_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

int signals_block(void)
{
    sigset_t set;
    serve_signals(&set);
    return pthread_sigmask(SIG_BLOCK, &set, NULL) == 0 ? 0 : -1;
}

static void ask(signals *s, void (*fn)(void *ud))
{
    pthread_mutex_lock(&s->mu);
    if (!s->detached && fn)
        fn(s->cb.ud);
    pthread_mutex_unlock(&s->mu);
}

static void *signal_thread(void *arg)
{
    signals *s = arg;
    struct pollfd fds[2] = {{s->sig_fd, POLLIN, 0}, {s->done_fd, POLLIN, 0}};
    int64_t deadline = 0;       /* set by the first SIGTERM/SIGINT */
    for (;;) {
        struct signalfd_siginfo si;
        int timeout = -1;
        if (deadline) {
            int64_t left = deadline - util_mono_us();
            if (left <= 0) {
                fprintf(stderr, "{\"level\":\"error\",\"msg\":\"forced exit: still not stopped %d ms "
                                "after the signal (a worker is stuck)\"}\n", STOP_DEADLINE_MS);
                fflush(stderr);
                _exit(1);
            }
            timeout = (int)((left + 999) / 1000);
        }
        if (poll(fds, 2, timeout) < 0 && errno != EINTR)
            return NULL;        /* cannot happen with valid fds; the loop would spin */
        if (fds[1].revents)
            return NULL;
        if (!(fds[0].revents & POLLIN) || read(s->sig_fd, &si, sizeof si) != sizeof si)
            continue;
        if (si.ssi_signo == SIGHUP) {
            if (!deadline)
                ask(s, s->cb.reload);
        } else if (!deadline) {
            fprintf(stderr, "{\"level\":\"info\",\"msg\":\"stopping\"}\n");
            deadline = util_mono_us() + STOP_DEADLINE_MS * 1000LL;
            ask(s, s->cb.stop);
        }
    }
}

signals *signals_start(const signals_cb *cb, char *err, size_t errlen)
{
    signals *s = calloc(1, sizeof *s);
    sigset_t set;
    serve_signals(&set);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cb = *cb;
    s->done_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    if ((s->sig_fd = signalfd(-1, &set, SFD_CLOEXEC)) < 0 ||
        (s->done_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
        snprintf(err, errlen, "cannot take signals: %s", strerror(errno));
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, signal_thread, s) != 0) {
        snprintf(err, errlen, "cannot start the signal thread");
        goto fail;
    }
    return s;
fail:
    if (s->sig_fd >= 0)
        close(s->sig_fd);
    if (s->done_fd >= 0)
        close(s->done_fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return NULL;
}

void signals_detach(signals *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->detached = 1;
    pthread_mutex_unlock(&s->mu);
}

void signals_free(signals *s)
{
    uint64_t one = 1;
    if (!s)
        return;
    /* an eventfd write of 1 fails only near a count of 2^64; were it to,
     * the thread would still be reading s: leave it be, we are exiting */
    if (write(s->done_fd, &one, sizeof one) != sizeof one)
        return;
    pthread_join(s->thread, NULL);
    close(s->sig_fd);
    close(s->done_fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
