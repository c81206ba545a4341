/* lstrict: the environment data files run in (policies, API variants, the
 * configuration file): reading a name that is not defined is an error
 * naming it, not nil, and assigning a global is refused.  `owner =
 * immutable`, its quotes forgotten, read nil and dropped the rule without
 * a word.  Uses Lua. */
#ifndef TAGWAY_LSTRICT_H
#define TAGWAY_LSTRICT_H
#include <lua.h>

/* A lua_CFunction: called with a loaded chunk, runs it in a new
 * environment over the state's globals, where defined globals read as
 * usual and anything else raises at its line, and returns its first
 * result.  Call it protected (it allocates): push it, the chunk, pcall. */
int lstrict_run(lua_State *L);

#endif
