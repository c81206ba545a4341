/* signals: the serve process's SIGTERM, SIGINT and SIGHUP, taken on a
 * thread of their own.  They used to arrive through worker 0's event loop,
 * so a worker 0 held in a C call that never returns (where no script
 * budget reaches) kept the process from stopping at all, and the deadline
 * meant to force the exit was never started.  Here the first SIGTERM or
 * SIGINT starts that deadline and asks the workers to stop, whatever any
 * worker is doing; SIGHUP asks for a reload. */
#ifndef TAGWAY_SIGNALS_H
#define TAGWAY_SIGNALS_H
#include <stddef.h>

typedef struct signals signals;

/* Called on the signal thread; they must only ask (set a flag, wake a
 * loop), as the workers they ask may be busy. */
typedef struct {
    void (*stop)(void *ud);
    void (*reload)(void *ud);
    void *ud;
} signals_cb;

/* Blocks the three signals in the calling thread and starts the signal
 * thread; every thread started after this leaves them to it.  First thing
 * in `serve`, before any other thread exists.  Until signals_arm, the
 * process is starting: SIGTERM and SIGINT end it at once, as they would
 * by default (nothing has been acknowledged yet), and a SIGHUP waits for
 * signals_arm.  NULL with err filled on failure. */
signals *signals_start(char *err, size_t errlen);
/* The gateway serves: from now on signals go to cb (a SIGHUP that came
 * during start-up is asked for now). */
void signals_arm(signals *s, const signals_cb *cb);
/* No callback runs once this returns (one running is waited for); a
 * SIGTERM still starts the deadline.  Before what the callbacks reach is
 * freed.  NULL is ignored. */
void signals_detach(signals *s);
/* The process stopped in time: the deadline is dropped, the thread ends.
 * Last, after everything that could hang.  NULL is ignored. */
void signals_free(signals *s);

#endif
