/* lua_sandbox.c - what a script sees (see lua_host.h, lua_host.c): the
 * allowed libraries, per-program environments that a call cannot change for
 * the next one, and the sandboxed base functions.
 *
 * The state has the base, string, table, math, utf8 and coroutine
 * libraries (esb__lua_open_libs), the string library made bounded
 * (lua_safelib.c) and without dump, the string metatable protected, and the
 * esb.* modules. Scripts never see the real global table: each program
 * (and each required module) gets its own environment, built from layers:
 *
 *   _ENV = E (proxy, empty) --__index--> G0 (the allow-listed globals,
 *                                             the script's own globals)
 *   string = P (proxy, empty) --__index--> S (a copy of the library)
 *
 * While the chunk's top level runs ("loading"), writes through a proxy go
 * to its layer and stay. During a call they land in the proxy itself and
 * the proxy is listed as dirty; after the call every dirty proxy is emptied
 * (esb__lua_clear_dirty). So `string.upper = f` or a new global lasts one
 * call, and a clean call costs nothing to reset. Proxies' metatables are
 * protected (__metatable), like the string metatable and the metatables
 * modules register (luaL_newmetatable).
 *
 * Replaced base functions: pcall/xpcall/coroutine.resume rethrow the
 * instruction limit; coroutine.create/wrap count the new coroutine in
 * small steps; rawset marks proxies dirty; setmetatable refuses __gc;
 * print logs; load is text-only in the caller's environment; require reads
 * DIR/a/b.lua only. */
#include "config.h"

#include "lua_internal.h"

#include "log.h"
#include "lua_modules.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROTECTED "protected" /* what getmetatable() says of a protected table */
#define PRINT_MAX 1024        /* longest print() line logged */
#define MOD_MAX   200         /* longest require() name */

static char group_key; /* its address: the key of a proxy's group in its metatable */

/* ---- proxies ---- */

static int proxy_newindex(lua_State *L);

/* Is the table at idx a proxy? */
static int is_proxy(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx)) return 0;
    lua_getfield(L, -1, "__newindex");
    int yes = lua_tocfunction(L, -1) == proxy_newindex;
    lua_pop(L, 2);
    return yes;
}

/* A write to proxy t (1) of k (2) = v (3): into its layer while its group
 * is loading, else into the proxy, listed as dirty. */
static int proxy_newindex(lua_State *L)
{
    lua_settop(L, 3);
    lua_getmetatable(L, 1);        /* 4: mt */
    lua_rawgetp(L, 4, &group_key); /* 5: group */
    int loading = lua_rawgeti(L, 5, 1) == LUA_TBOOLEAN && lua_toboolean(L, -1);
    if (loading) {
        lua_getfield(L, 4, "__index");
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 3);
        lua_rawset(L, -3);
        return 0;
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, 1);
    struct esb_lua_vm *vm = esb__lua_vm_of(L);
    if (!vm) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_dirty);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, ++vm->ndirty);
    return 0;
}

/* pairs() of a proxy walks its layer without handing the layer out. */
static int proxy_next(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1))) return 2;
    lua_pushnil(L);
    return 1;
}

static int proxy_pairs(lua_State *L)
{
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_pushcclosure(L, proxy_next, 1);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Push a proxy of the table at layer, in group (both absolute indexes). */
static void push_proxy(lua_State *L, int layer, int group)
{
    lua_createtable(L, 0, 0);
    lua_createtable(L, 0, 5);
    lua_pushvalue(L, layer);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, proxy_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, proxy_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, PROTECTED);
    lua_setfield(L, -2, "__metatable");
    lua_pushvalue(L, group);
    lua_rawsetp(L, -2, &group_key);
    lua_setmetatable(L, -2);
}

/* Push a proxy over a shallow copy of the table at src. */
static void push_lib(lua_State *L, int src, int group)
{
    src = lua_absindex(L, src);
    lua_newtable(L);
    int copy = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, copy);
    }
    push_proxy(L, copy, group);
    lua_remove(L, copy);
}

/* Empty every proxy written during the call. No allocation. */
void esb__lua_clear_dirty(lua_State *L, struct esb_lua_vm *vm)
{
    if (!vm->ndirty) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_dirty);
    int list = lua_gettop(L);
    for (int i = 1; i <= vm->ndirty; i++) {
        if (lua_rawgeti(L, list, i) == LUA_TTABLE) {
            int t = lua_gettop(L);
            lua_pushnil(L);
            while (lua_next(L, t)) {
                lua_pop(L, 1);
                lua_pushvalue(L, -1);
                lua_pushnil(L);
                lua_rawset(L, t);
            }
        }
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_rawseti(L, list, i);
    }
    lua_pop(L, 1);
    vm->ndirty = 0;
}

/* The top level of the environment at idx has run: from now on, writes
 * through its proxies last one call. */
void esb__lua_end_loading(lua_State *L, int idx)
{
    lua_getmetatable(L, idx);
    lua_rawgetp(L, -1, &group_key);
    lua_pushboolean(L, 0);
    lua_rawseti(L, -2, 1);
    lua_pop(L, 2);
}

/* ---- sandboxed base functions ---- */

static int rethrow_if_killed(lua_State *L)
{
    struct esb_lua_vm *vm = esb__lua_vm_of(L);
    if (vm && vm->killed) {
        lua_pushstring(L, vm->kill_msg);
        return lua_error(L);
    }
    return 0;
}

static int finish_pcall(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        rethrow_if_killed(L);
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
    return finish_pcall(L, status, 0);
}

/* xpcall's handler, wrapped: once the budget is spent it is not called. A
 * limit error is raised inside the count hook, where Lua has turned hooks
 * off until the error is caught, so a handler would run unbounded. */
static int xp_handler(lua_State *L)
{
    struct esb_lua_vm *vm = esb__lua_vm_of(L);
    if (vm && vm->killed) {
        lua_pushstring(L, vm->kill_msg);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xp_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_pcall);
    return finish_pcall(L, status, 2);
}

/* A new coroutine inherits the hook but starts a fresh count, so the few
 * instructions a short-lived one runs before its first hook would go
 * uncounted: count coroutines in smaller steps, and charge each creation
 * one step (the most it can leave uncounted) plus its cost. */
static void hook_thread(lua_State *L, lua_State *co)
{
    esb__lua_charge(L, ESB_LUA_CO_HOOK_EVERY);
    lua_sethook(co, esb__lua_hook, LUA_MASKCOUNT, ESB_LUA_CO_HOOK_EVERY);
}

static int sb_co_create(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    if (lua_type(L, -1) == LUA_TTHREAD) hook_thread(L, lua_tothread(L, -1));
    return 1;
}

static int sb_co_wrap(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    if (lua_getupvalue(L, -1, 1) && lua_type(L, -1) == LUA_TTHREAD)
        hook_thread(L, lua_tothread(L, -1));
    lua_settop(L, 1);
    return 1;
}

/* coroutine.resume catches errors too: not the instruction limit. */
static int sb_resume(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    rethrow_if_killed(L);
    return lua_gettop(L);
}

static int sb_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    lua_settop(L, 3);
    if (is_proxy(L, 1)) {
        proxy_newindex(L);
        lua_settop(L, 1);
        return 1;
    }
    lua_rawset(L, 1);
    return 1;
}

/* setmetatable without __gc: a finalizer would run at an arbitrary later
 * time, on another message's budget or outside any call. */
static int sb_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE && lua_getfield(L, 2, "__gc") != LUA_TNIL)
        return luaL_error(L, "__gc metamethods are not allowed in the sandbox");
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

static int sb_print(lua_State *L)
{
    struct esb_lua_vm *vm = esb__lua_vm_of(L);
    char line[PRINT_MAX + 1];
    size_t used = 0;
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t l;
        const char *s = luaL_tolstring(L, i, &l);
        if (i > 1 && used < PRINT_MAX) line[used++] = ' ';
        for (size_t k = 0; k < l && used < PRINT_MAX; k++) {
            unsigned char ch = (unsigned char)s[k];
            line[used++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        }
        lua_pop(L, 1);
    }
    line[used] = '\0';
    esb_info("[lua:%s] %s", vm && vm->cur ? vm->cur->path : "lua", line);
    return 0;
}

/* load(chunk [, name [, mode [, env]]]): text only; env defaults to the
 * caller's environment (upvalue 1). Upvalue 2 is the real load. */
static int sb_load(lua_State *L)
{
    int given_env = lua_gettop(L) >= 4;
    lua_settop(L, 4);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    if (!given_env) {
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_replace(L, 4);
    }
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, 1);
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L);
}

int esb__lua_read_file(const char *path, char **out, size_t *len, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    int rc = -1;
    *out = NULL;
    if (fd < 0) {
        snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "%s is not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > ESB_LUA_MAX_SCRIPT) {
        snprintf(why, whylen, "%s is larger than %u bytes", path, ESB_LUA_MAX_SCRIPT);
        goto out;
    }
    char *buf = esb_malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    rc = 0;
out:
    close(fd);
    return rc;
}

/* require("a.b"): script_dir/a/b.lua only, text, in its own sandbox
 * environment; the result is cached per VM (by path). */
static int sb_require(lua_State *L)
{
    struct esb_lua_vm *vm = esb__lua_vm_of(L);
    size_t nl;
    const char *name = luaL_checklstring(L, 1, &nl);
    int good = nl > 0 && nl <= MOD_MAX && name[0] != '.' && name[nl - 1] != '.';
    for (size_t i = 0; i < nl && good; i++) {
        char ch = name[i];
        good = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               ch == '_' || (ch == '.' && name[i + 1] != '.');
    }
    if (!good)
        return luaL_error(L,
                          "require '%s': a module name is letters, digits and '_' in parts "
                          "separated by '.' (it names DIR/a/b.lua; no paths, no C modules)",
                          name);
    if (!vm || !vm->cur) return luaL_error(L, "require: no script directory");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, vm->cur->dir);
    luaL_addchar(&b, '/');
    for (size_t i = 0; i < nl; i++) luaL_addchar(&b, name[i] == '.' ? '/' : name[i]);
    luaL_addstring(&b, ".lua");
    luaL_pushresult(&b); /* 2: path */
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_loaded);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL) return 1;
    lua_pop(L, 1); /* 3: loaded */
    char *src, why[300];
    size_t len;
    if (esb__lua_read_file(lua_tostring(L, 2), &src, &len, why, sizeof(why)) < 0)
        return luaL_error(L, "require '%s': %s", name, why);
    lua_pushfstring(L, "@%s", lua_tostring(L, 2) + strlen(vm->cur->dir) + 1);
    int st = luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t");
    free(src);
    if (st != LUA_OK) return lua_error(L);
    esb__lua_build_env(L, vm); /* 6: E */
    lua_pushvalue(L, 6);
    lua_setupvalue(L, 5, 1);
    lua_pushvalue(L, 5);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1); /* 7: result */
    esb__lua_end_loading(L, 6);
    if (lua_isnil(L, 7)) {
        lua_pushboolean(L, 1);
        lua_replace(L, 7);
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 7);
    lua_rawset(L, 3);
    return 1;
}

/* ---- environments and the state ---- */

static const char *const base_names[] = {
    "assert", "error",  "getmetatable", "ipairs",   "next", "pairs",    "rawequal", "rawget",
    "rawlen", "select", "tonumber",     "tostring", "type", "_VERSION", NULL,
};
static const char *const lib_names[] = {"string", "table", "math", "utf8", "coroutine", NULL};

/* Push a new environment E (in loading mode): the allow-listed globals,
 * library proxies and esb proxies in a layer G0. */
void esb__lua_build_env(lua_State *L, struct esb_lua_vm *vm)
{
    int base = lua_gettop(L);
    lua_createtable(L, 1, 0); /* group: {loading} */
    int group = base + 1;
    lua_pushboolean(L, 1);
    lua_rawseti(L, group, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_libs);
    int libs = base + 2;
    lua_createtable(L, 0, 40);
    int g0 = base + 3;
    lua_getfield(L, libs, "_G");
    int real_g = base + 4;
    for (int i = 0; base_names[i]; i++) {
        lua_getfield(L, real_g, base_names[i]);
        lua_setfield(L, g0, base_names[i]);
    }
    static const luaL_Reg own[] = {
        {"pcall", sb_pcall},   {"xpcall", sb_xpcall},
        {"rawset", sb_rawset}, {"setmetatable", sb_setmetatable},
        {"print", sb_print},   {"require", sb_require},
        {NULL, NULL},
    };
    for (const luaL_Reg *r = own; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, g0, r->name);
    }
    for (int i = 0; lib_names[i]; i++) {
        lua_getfield(L, libs, lib_names[i]);
        push_lib(L, -1, group);
        lua_setfield(L, g0, lib_names[i]);
        lua_pop(L, 1);
    }
    /* coroutine.resume rethrows the instruction limit */
    lua_getfield(L, g0, "coroutine");
    lua_getmetatable(L, -1);
    lua_getfield(L, -1, "__index"); /* the copy */
    lua_getfield(L, -1, "resume");
    lua_pushcclosure(L, sb_resume, 1);
    lua_setfield(L, -2, "resume");
    lua_settop(L, real_g);
    /* esb: a proxy over a copy whose modules are proxies over copies */
    lua_getfield(L, libs, "esb");
    int esb = base + 5;
    lua_newtable(L);
    int esbcopy = base + 6;
    lua_pushnil(L);
    while (lua_next(L, esb)) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            push_lib(L, -1, group);
            lua_replace(L, -2);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, esbcopy);
    }
    push_proxy(L, esbcopy, group);
    lua_setfield(L, g0, "esb");
    push_proxy(L, g0, group); /* E */
    int e = base + 7;
    lua_pushvalue(L, e);
    lua_setfield(L, g0, "_G");
    lua_pushvalue(L, e);
    lua_getfield(L, real_g, "load");
    lua_pushcclosure(L, sb_load, 2);
    lua_setfield(L, g0, "load");
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
}

/* Lock the metatables modules registered with luaL_newmetatable, so a
 * script cannot change methods every later message sees. */
static void protect_registry_metatables(lua_State *L)
{
    lua_pushnil(L);
    while (lua_next(L, LUA_REGISTRYINDEX)) {
        int v = lua_gettop(L);
        if (lua_type(L, v - 1) == LUA_TSTRING && lua_type(L, v) == LUA_TTABLE &&
            lua_getfield(L, v, "__name") != LUA_TNIL &&
            lua_getfield(L, v, "__metatable") == LUA_TNIL) {
            lua_pushliteral(L, PROTECTED);
            lua_setfield(L, v, "__metatable");
        }
        lua_settop(L, v - 1); /* the key, for lua_next */
    }
}

int esb__lua_open_libs(lua_State *L)
{
    struct esb_lua_vm *vm = esb__lua_vm_of(L);
    lua_newtable(L);
    int libs = lua_gettop(L);
    static const luaL_Reg std[] = {
        {"_G", luaopen_base},   {"string", luaopen_string}, {"table", luaopen_table},
        {"math", luaopen_math}, {"utf8", luaopen_utf8},     {"coroutine", luaopen_coroutine},
        {NULL, NULL},
    };
    for (const luaL_Reg *r = std; r->name; r++) {
        luaL_requiref(L, r->name, r->func, 0);
        lua_setfield(L, libs, r->name);
    }
    lua_getfield(L, libs, "string");
    lua_getfield(L, libs, "table");
    esb__lua_safelib(L);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_getfield(L, libs, "coroutine");
    lua_getfield(L, -1, "create");
    lua_pushcclosure(L, sb_co_create, 1);
    lua_setfield(L, -2, "create");
    lua_getfield(L, -1, "wrap");
    lua_pushcclosure(L, sb_co_wrap, 1);
    lua_setfield(L, -2, "wrap");
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushliteral(L, PROTECTED);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    lua_newtable(L);
    for (const struct esb_lua_module *m = esb_lua_modules; m->name; m++) {
        lua_pushcfunction(L, m->open);
        lua_call(L, 0, 1);
        lua_setfield(L, -2, m->name);
    }
    lua_setfield(L, libs, "esb");
    protect_registry_metatables(L);
    vm->ref_libs = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    vm->ref_dirty = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    vm->ref_loaded = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}
