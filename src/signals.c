/* signals.c: see signals.h.  The thread reads a signalfd (the signals are
 * blocked in every thread, so none is delivered any other way) and an
 * eventfd that signals_free writes.  It never touches stdio: a worker
 * blocked writing a log line to a pipe nobody reads holds stderr's lock,
 * and the thread that must end a stuck process cannot wait on it.  Uses
 * util. */
#include "signals.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

/* API.md §7 promises an exit within 10 seconds of the signal.  A worker
 * stuck where no budget reaches (a C call that never returns) would keep
 * the drain from ending: past the deadline the process leaves anyway.
 * Every answered write is durable before its answer, so what is cut short
 * is only what was never acknowledged. */
#define STOP_DEADLINE_MS 9500
#define STR(x) #x
#define XSTR(x) STR(x)

struct signals {
    pthread_t thread;
    int sig_fd, done_fd;
    int log_fd;                 /* stderr opened anew, non-blocking; -1: fd 2 */
    pthread_mutex_t mu;         /* held around a callback; arm and detach take it */
    int armed, detached, hup_waiting;
    signals_cb cb;
};

/* The signals taken.  A stop signal the parent set to be ignored stays
 * ignored (a shell starts a background job with SIGINT ignored, so that
 * the terminal's Ctrl-C is not for it); SIGHUP, a reload here and never an
 * end, is taken even under nohup. */
static void serve_signals(sigset_t *set)
{
    static const int stops[] = {SIGTERM, SIGINT};
    sigemptyset(set);
    for (size_t i = 0; i < sizeof stops / sizeof *stops; i++) {
        struct sigaction old;
        if (sigaction(stops[i], NULL, &old) != 0 || old.sa_handler != SIG_IGN)
            sigaddset(set, stops[i]);
    }
    sigaddset(set, SIGHUP);
}

/* A log line to stderr, dropped rather than waited for when the reader
 * has stopped reading.  On a pipe, through a non-blocking description of
 * its own (/proc/self/fd/2 opens the pipe anew; fd 2's own flags are the
 * parent's too); elsewhere on fd 2 after a poll (a file never blocks; a
 * second description of it would write at an offset of its own, where
 * fd 2's next line would overwrite this one). */
static void log_now(const signals *s, const char *line)
{
    struct pollfd out = {STDERR_FILENO, POLLOUT, 0};
    if (s->log_fd >= 0) {
        if (write(s->log_fd, line, strlen(line)) < 0)
            return;             /* full: nowhere to say it */
    } else if (poll(&out, 1, 0) == 1 && (out.revents & POLLOUT) &&
               write(STDERR_FILENO, line, strlen(line)) < 0)
        return;
}

/* Before the gateway serves, a stop signal ends the process the default
 * way: unblocked here, the pending signal is delivered to this thread. */
static void die_by(int signo)
{
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signo);
    signal(signo, SIG_DFL);
    raise(signo);               /* pending, blocked: it waits for the unblock */
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    _exit(128 + signo);         /* not reached */
}

static void on_signal(signals *s, int signo, int64_t *deadline)
{
    pthread_mutex_lock(&s->mu);
    if (signo == SIGHUP) {
        if (!s->armed)
            s->hup_waiting = 1;
        else if (!s->detached && !*deadline)
            s->cb.reload(s->cb.ud);
    } else if (!s->armed && !s->detached) {
        log_now(s, "{\"level\":\"info\",\"msg\":\"stopped during start-up\"}\n");
        die_by(signo);
    } else if (!*deadline) {
        /* the deadline first: whatever follows may be what gets stuck */
        *deadline = util_mono_us() + STOP_DEADLINE_MS * 1000LL;
        if (s->armed && !s->detached)
            s->cb.stop(s->cb.ud);
        log_now(s, "{\"level\":\"info\",\"msg\":\"stopping\"}\n");
    }
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
                log_now(s, "{\"level\":\"error\",\"msg\":\"forced exit: still not stopped "
                        XSTR(STOP_DEADLINE_MS) " ms after the signal (a worker is stuck)\"}\n");
                _exit(1);
            }
            timeout = (int)((left + 999) / 1000);
        }
        if (poll(fds, 2, timeout) < 0 && errno != EINTR)
            return NULL;        /* cannot happen with valid fds; the loop would spin */
        if (fds[1].revents)
            return NULL;
        if ((fds[0].revents & POLLIN) && read(s->sig_fd, &si, sizeof si) == sizeof si)
            on_signal(s, (int)si.ssi_signo, &deadline);
    }
}

signals *signals_start(char *err, size_t errlen)
{
    signals *s = calloc(1, sizeof *s);
    sigset_t set;
    struct stat st;
    serve_signals(&set);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->sig_fd = s->done_fd = -1;
    s->log_fd = fstat(STDERR_FILENO, &st) == 0 && S_ISFIFO(st.st_mode)
                    ? open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC) : -1;
    pthread_mutex_init(&s->mu, NULL);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 ||
        (s->sig_fd = signalfd(-1, &set, SFD_CLOEXEC)) < 0 ||
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
    if (s->log_fd >= 0)
        close(s->log_fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return NULL;
}

void signals_arm(signals *s, const signals_cb *cb)
{
    pthread_mutex_lock(&s->mu);
    s->cb = *cb;
    s->armed = 1;
    if (s->hup_waiting && !s->detached)
        s->cb.reload(s->cb.ud);
    s->hup_waiting = 0;
    pthread_mutex_unlock(&s->mu);
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
    if (s->log_fd >= 0)
        close(s->log_fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
