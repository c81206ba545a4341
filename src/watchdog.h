/* watchdog: stops a Lua call that overruns its time budget without the
 * per-instruction cost of a count hook.  A thread polls the armed deadline;
 * when a call overruns it, it signals the thread that armed it, and `fire`
 * runs there, inside the signal handler, where lua_sethook is safe (the
 * same pattern as lua.c's Ctrl-C handler).  Arm/disarm are two atomic
 * stores: no lock, no syscall on the request path. */
#ifndef TAGWAY_WATCHDOG_H
#define TAGWAY_WATCHDOG_H
#include <stdint.h>

typedef struct watchdog watchdog;

/* Called in a signal handler on the watched thread: async-signal-safe
 * work only (lua_sethook is). */
typedef void (*watchdog_fire_fn)(void *ud);

/* Polls every period_us.  NULL on failure. */
watchdog *watchdog_new(int64_t period_us, watchdog_fire_fn fire, void *ud);
/* Stops and joins the poller.  Call it from a thread that has armed
 * this watchdog, or from the only thread that ever did. */
void watchdog_free(watchdog *wd);

/* A call starts on this thread that must end by deadline_us (util_mono_us
 * clock); an overrun signals this thread. */
void watchdog_arm(watchdog *wd, int64_t deadline_us);
/* The armed call may run until deadline_us instead. */
void watchdog_extend(watchdog *wd, int64_t deadline_us);
/* The call ended; a late signal for it is ignored. */
void watchdog_disarm(watchdog *wd);

#endif
