/* lua_modules.h - the `esb.*` helper modules, written in C on the project's
 * own dependencies. Each opener pushes its module table (luaL_newlib style)
 * and returns 1; the host (lua_host.c) calls them all and stores the tables
 * in the `esb` global. All functions are safe on hostile input: errors are
 * raised as Lua errors with a clear message (never a crash), sizes capped.
 * Documented in docs/lua-api.md with examples that the tests run. */
#ifndef ESB_LUA_MODULES_H
#define ESB_LUA_MODULES_H

struct lua_State;

int esb_luaopen_json(struct lua_State *L);      /* decode/encode (jansson), esb.json.null */
int esb_luaopen_xml(struct lua_State *L);       /* parse -> tables, xpath, serialize (libxml2) */
int esb_luaopen_re(struct lua_State *L);        /* match/gmatch/gsub (PCRE2, JIT, limits) */
int esb_luaopen_csv(struct lua_State *L);       /* RFC 4180 parse/format */
int esb_luaopen_fixed(struct lua_State *L);     /* fixed-width records from a field spec */
int esb_luaopen_log(struct lua_State *L);       /* esb.log.info(...) etc. */
int esb_luaopen_uuid(struct lua_State *L);      /* esb.uuid.v7() */
int esb_luaopen_time(struct lua_State *L);      /* ISO 8601 parse/format, offsets */
int esb_luaopen_num(struct lua_State *L);       /* strict int/decimal from text */
int esb_luaopen_canonical(struct lua_State *L); /* CloudEvents 1.0 structured events */

struct esb_lua_module {
    const char *name;
    int (*open)(struct lua_State *L);
};
/* All modules, {NULL, NULL}-terminated (lua_modules.c). */
extern const struct esb_lua_module esb_lua_modules[];

#endif
