/* lua_modules.c - the table of esb.* modules, and the helpers the module
 * files share (lua_modules_internal.h): error raising, the output buffer on
 * a Lua stack slot, to-be-closed guards for C resources, UTF-8 checking and
 * option parsing. */
#include "config.h"

#include "lua_modules.h"
#include "lua_modules_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>

const struct esb_lua_module esb_lua_modules[] = {
    {"json", esb_luaopen_json},
    {"xml", esb_luaopen_xml},
    {"re", esb_luaopen_re},
    {"csv", esb_luaopen_csv},
    {"fixed", esb_luaopen_fixed},
    {"log", esb_luaopen_log},
    {"uuid", esb_luaopen_uuid},
    {"time", esb_luaopen_time},
    {"num", esb_luaopen_num},
    {"canonical", esb_luaopen_canonical},
    {NULL, NULL},
};

int esb__lmod_error(lua_State *L, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    luaL_where(L, 1);
    lua_pushstring(L, msg);
    lua_concat(L, 2);
    lua_error(L);
    abort(); /* not reached */
}

/* ---- output buffer ---- */

void esb__lmod_buf_init(lua_State *L, struct esb__lmod_buf *b, size_t max, const char *who)
{
    luaL_checkstack(L, 4, "out of stack space");
    lua_pushboolean(L, 0); /* placeholder until the first growth */
    *b = (struct esb__lmod_buf){.L = L, .idx = lua_absindex(L, -1), .max = max, .who = who};
}

void esb__lmod_buf_grow(struct esb__lmod_buf *b, size_t n)
{
    if (n > b->max - b->len)
        esb__lmod_error(b->L, "%s: output larger than %zu bytes", b->who, b->max);
    size_t need = b->len + n, cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > b->max / 2 ? b->max : cap * 2;
    luaL_checkstack(b->L, 2, "out of stack space");
    char *p = lua_newuserdatauv(b->L, cap, 0);
    if (b->len) memcpy(p, b->p, b->len);
    lua_replace(b->L, b->idx); /* the old storage becomes garbage */
    b->p = p;
    b->cap = cap;
}

void esb__lmod_buf_push(struct esb__lmod_buf *b)
{
    lua_pushlstring(b->L, b->len ? b->p : "", b->len);
}

/* ---- guards ---- */

#define GUARD_MT "esb.guard"

struct guard {
    void (*fn)(void *);
    void *p;
};

static int guard_close(lua_State *L)
{
    struct guard *g = lua_touserdata(L, 1);
    if (g && g->p) {
        void *p = g->p;
        g->p = NULL;
        g->fn(p);
    }
    return 0;
}

void **esb__lmod_guard(lua_State *L, void (*fn)(void *))
{
    luaL_checkstack(L, 4, "out of stack space");
    struct guard *g = lua_newuserdatauv(L, sizeof(*g), 0);
    g->fn = fn;
    g->p = NULL;
    if (luaL_newmetatable(L, GUARD_MT)) {
        lua_pushcfunction(L, guard_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, guard_close);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, "esb.guard");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    lua_toclose(L, -1);
    return &g->p;
}

void esb__lmod_guard_drop(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_closeslot(L, idx);
    lua_remove(L, idx);
}

/* ---- sorted keys ---- */

int esb__lmod_key_cmp(const void *a, const void *b)
{
    const struct esb__lmod_key *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

lua_Integer esb__lmod_sorted_keys(lua_State *L, int t, const char *what, const char *who)
{
    luaL_checkstack(L, 6, "out of stack space");
    t = lua_absindex(L, t);
    lua_newtable(L); /* the keys, unsorted: anchors the strings */
    int anchor = lua_gettop(L);
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            esb__lmod_error(L, "%s: %s keys must be strings", who, what);
        lua_pushvalue(L, -1);
        lua_rawseti(L, anchor, ++n);
    }
    struct esb__lmod_key *k = lua_newuserdatauv(L, (size_t)n * sizeof(*k) + 1, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, anchor, i + 1);
        k[i].s = lua_tolstring(L, -1, &k[i].n);
        lua_pop(L, 1); /* still in the anchor table */
    }
    qsort(k, (size_t)n, sizeof(*k), esb__lmod_key_cmp);
    lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_pushlstring(L, k[i].s, k[i].n);
        lua_rawseti(L, -2, i + 1);
    }
    lua_replace(L, anchor);
    lua_pop(L, 1);
    return n;
}

/* ---- UTF-8 ---- */

size_t esb__lmod_utf8_check(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

/* ---- options ---- */

void esb__lmod_check_opts(lua_State *L, int idx, const char *who)
{
    int t = lua_type(L, idx);
    if (t != LUA_TNONE && t != LUA_TNIL && t != LUA_TTABLE)
        esb__lmod_error(L, "%s: options must be a table, not %s", who, lua_typename(L, t));
}

/* Push opts[name] (nil when there is no options table); returns its type.
 * Raw access: a string read here stays anchored by the table. */
static int get_opt(lua_State *L, int idx, const char *name)
{
    luaL_checkstack(L, 2, "out of stack space");
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    lua_pushstring(L, name);
    return lua_rawget(L, idx < 0 ? idx - 1 : idx);
}

int esb__lmod_opt_bool(lua_State *L, int idx, const char *name, int def, const char *who)
{
    int t = get_opt(L, idx, name);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    if (t != LUA_TBOOLEAN) esb__lmod_error(L, "%s: opts.%s must be a boolean", who, name);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

lua_Integer esb__lmod_opt_int(lua_State *L, int idx, const char *name, lua_Integer def,
                              lua_Integer min, lua_Integer max, const char *who)
{
    int t = get_opt(L, idx, name);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    int isint = 0;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    lua_pop(L, 1);
    if (t != LUA_TNUMBER || !isint || v < min || v > max)
        esb__lmod_error(L, "%s: opts.%s must be an integer from %lld to %lld", who, name,
                        (long long)min, (long long)max);
    return v;
}

const char *esb__lmod_opt_str(lua_State *L, int idx, const char *name, const char *def, size_t *len,
                              const char *who)
{
    int t = get_opt(L, idx, name);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        if (len) *len = def ? strlen(def) : 0;
        return def;
    }
    if (t != LUA_TSTRING) esb__lmod_error(L, "%s: opts.%s must be a string", who, name);
    const char *s = lua_tolstring(L, -1, len);
    lua_pop(L, 1); /* still referenced by the options table */
    return s;
}
