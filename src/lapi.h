/* lapi: the gw.* table, the only door from Lua into C (store, index, auth,
 * jobs, reload).  Registered per state with the host as upvalue, so two
 * generations never share hidden C state. */
#ifndef TAGWAY_LAPI_H
#define TAGWAY_LAPI_H
#include <lua.h>

struct lhost;
/* Creates the global table `gw` in L [-0, +0]. */
void lapi_open(lua_State *L, struct lhost *h);

#endif
