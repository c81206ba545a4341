/* signals: the serve process's SIGTERM, SIGINT and SIGHUP, taken on a
 * thread of their own.  They used to arrive through worker 0's event loop,
 * so a worker 0 held in a C call that never returns (where no script
 * budget reaches) kept the process from stopping at all, and the deadline
 * meant to force the exit was never started.  Here the first SIGTERM or
 * SIGINT asks the workers to stop and starts that deadline whatever any
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

/* Blocks the three signals in the calling thread, so that every thread it
 * starts from now on leaves them to the signal thread.  First thing in
 * `serve`, before any thread exists; a signal sent before signals_start
 * waits for it.  0, or -1. */
int signals_block(void);
/* Starts the signal thread.  NULL with err filled on failure. */
signals *signals_start(const signals_cb *cb, char *err, size_t errlen);
/* No callback runs once this returns (one running is waited for); a
 * SIGTERM still starts the deadline.  Before what the callbacks reach is
 * freed. */
void signals_detach(signals *s);
/* The process stopped in time: the deadline is dropped, the thread ends.
 * Last, after everything that could hang.  NULL is ignored. */
void signals_free(signals *s);

#endif
