/* lstrict: see lstrict.h.  Uses Lua's auxiliary library. */
#include "lstrict.h"

#include <lauxlib.h>
#include <string.h>

/* Standard names a data file may expect that a state may not offer (the
 * configuration's state opens no library): "not available", not "needs
 * quotes". */
static int is_library_name(const char *name)
{
    static const char *const names[] = {"os", "io", "string", "table", "math", "utf8", "require",
                                        "print", "pairs", "ipairs", "type", "tostring", "tonumber",
                                        "coroutine", "debug", "package", "load", "dofile", NULL};
    for (const char *const *n = names; *n; n++)
        if (strcmp(*n, name) == 0)
            return 1;
    return 0;
}

/* __index [t, k]; upvalue 1: the globals.  Read raw, then through the
 * globals' own __index table if they have one (once the scripts are
 * loaded, lhost's lock leaves _G empty over a table of the globals, whose
 * __index raises): that one's error would name this C function's level,
 * not the file and line. */
static int undefined_read(lua_State *L)
{
    lua_settop(L, 2);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
        return 1;
    if (lua_getmetatable(L, lua_upvalueindex(1)) && lua_getfield(L, -1, "__index") == LUA_TTABLE) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, -2) != LUA_TNIL)
            return 1;
    }
    lua_settop(L, 2);
    luaL_where(L, 1);           /* the line of the file that named it */
    if (lua_type(L, 2) != LUA_TSTRING)
        lua_pushliteral(L, "read of an undefined global");
    else if (is_library_name(lua_tostring(L, 2)))
        lua_pushfstring(L, "'%s' is not available in this file", lua_tostring(L, 2));
    else
        lua_pushfstring(L, "'%s' is not defined (a text value needs quotes: \"%s\")",
                        lua_tostring(L, 2), lua_tostring(L, 2));
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
