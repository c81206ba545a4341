/* lstrict: see lstrict.h.  Uses Lua's auxiliary library. */
#include "lstrict.h"

#include <lauxlib.h>

/* __index [t, k]; upvalue 1: the globals. */
static int undefined_read(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_gettable(L, lua_upvalueindex(1)) != LUA_TNIL)
        return 1;
    luaL_where(L, 1);           /* the line of the file that named it */
    if (lua_type(L, 2) == LUA_TSTRING)
        lua_pushfstring(L, "'%s' is not defined (a text value needs quotes: \"%s\")",
                        lua_tostring(L, 2), lua_tostring(L, 2));
    else
        lua_pushliteral(L, "read of an undefined global");
    lua_concat(L, 2);
    return lua_error(L);
}

/* __newindex [t, k, v] */
static int global_write(lua_State *L)
{
    luaL_where(L, 1);
    lua_pushfstring(L, "assignment to global '%s' (declare it local: local %s = ...)",
                    lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?",
                    lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "name");
    lua_concat(L, 2);
    return lua_error(L);
}

int lstrict_run(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 3);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_pushcclosure(L, undefined_read, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, global_write);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    if (!lua_setupvalue(L, 1, 1))   /* a main chunk's first upvalue is _ENV */
        lua_pop(L, 1);
    lua_call(L, 0, 1);
    return 1;
}
