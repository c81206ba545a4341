/* lpattern: Lua 5.4's string.find, string.match, string.gmatch and
 * string.gsub with an interruptible work budget.
 *
 * Count hooks never fire inside C functions, so a backtracking pattern can
 * keep the stock functions busy for hours.  These versions call a budget
 * callback every LPATTERN_TICK steps of matching work; the callback may
 * raise a Lua error to stop the match.  Results and error messages are
 * those of the stock library. */
#ifndef LPATTERN_H
#define LPATTERN_H

#include <lua.h>

#ifndef LPATTERN_TICK
#define LPATTERN_TICK 1024
#endif

/* Called every LPATTERN_TICK steps of matching work; may raise a Lua error
 * (lua_error/luaL_error) to stop it.  It may run while gsub has a
 * luaL_Buffer open, so it must leave the stack as it found it. */
typedef void (*lpattern_tick)(lua_State *L, void *ud);

/* Sets find, match, gmatch and gsub in the table at index idx to budgeted
 * versions.  tick may be NULL (no budget). */
void lpattern_install(lua_State *L, int idx, lpattern_tick tick, void *ud);

#endif
