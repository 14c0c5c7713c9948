/* lua_json.c - esb.json: JSON text <-> Lua values.
 *
 * Decoding goes through jansson (duplicate keys rejected, any value at the
 * top, \u0000 allowed since Lua strings hold NULs) after a linear pre-scan
 * (esb-core/jsondepth.c) that refuses nesting deeper than max_depth
 * (default 64) before jansson recurses. The jansson tree is held by a guard
 * while it is turned into tables, so a memory-cap error in between frees it
 * at once.
 *
 * Encoding is our own (jansson would lose the integer/float distinction
 * and the array marker): integers stay integers, floats are printed with
 * the shortest text that reads back to the same double, NaN/inf, cycles,
 * non-string object keys and invalid UTF-8 are errors. Output is built in
 * a Lua-owned buffer, so the host's memory cap counts it. */
#include "config.h"

#include "jsondepth.h"
#include "lua_modules.h"
#include "lua_modules_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>
#include <lauxlib.h>

#define DEFAULT_DEPTH 64
#define MAX_DEPTH     1000 /* jansson's own parser stops at 2048 */
#define ARRAY_MT      "esb.json.array"

static const char null_sentinel = 0; /* its address is esb.json.null */

void esb__lmod_json_push_null(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&null_sentinel);
}

int esb__lmod_json_is_null(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == &null_sentinel;
}

/* Push the shared array-marker metatable (protected: scripts cannot change
 * it, getmetatable(t) returns "esb.json.array"). */
static void push_array_mt(lua_State *L)
{
    if (luaL_newmetatable(L, ARRAY_MT)) {
        lua_pushliteral(L, ARRAY_MT);
        lua_setfield(L, -2, "__metatable");
    }
}

static int has_array_mt(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, ARRAY_MT);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

/* ---- decoding ---- */

static void push_json(lua_State *L, json_t *j)
{
    luaL_checkstack(L, 4, "out of stack space");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        lua_createtable(L, 0, (int)json_object_size(j));
        json_object_foreach(j, k, v)
        {
            lua_pushstring(L, k);
            push_json(L, v);
            lua_rawset(L, -3);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_json(L, json_array_get(j, i));
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        push_array_mt(L);
        lua_setmetatable(L, -2);
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(j));
        break;
    case JSON_REAL:
        lua_pushnumber(L, (lua_Number)json_real_value(j));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_NULL:
    default:
        esb__lmod_json_push_null(L);
        break;
    }
}

static void free_json(void *p)
{
    json_decref(p);
}

void esb__lmod_json_decode(lua_State *L, const char *s, size_t n, int max_depth, const char *who)
{
    int line, col;
    json_error_t je;

    if (n > ESB_LMOD_MAX_INPUT)
        esb__lmod_error(L, "%s: input of %zu bytes is larger than %zu", who, n, ESB_LMOD_MAX_INPUT);
    if (esb_jsondepth_scan(s, n, max_depth, &line, &col) >= 0)
        esb__lmod_error(L, "%s: nesting deeper than %d at line %d column %d", who, max_depth, line,
                        col);
    void **g = esb__lmod_guard(L, free_json);
    int gi = lua_gettop(L);
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j) esb__lmod_error(L, "%s: %s at line %d column %d", who, je.text, je.line, je.column);
    *g = j;
    push_json(L, j);
    esb__lmod_guard_drop(L, gi);
}

/* ---- encoding ---- */

#define SMALL_OBJECT 64 /* objects up to this many keys are sorted on the C stack */

struct enc {
    lua_State *L;
    const struct esb__lmod_json_opts *o;
    struct esb__lmod_buf *b;
    const void *array_mt;            /* the array marker, looked up once */
    const void *path[MAX_DEPTH + 1]; /* tables being encoded, for cycles (path[0..depth)) */
};

static void enc_string(struct esb__lmod_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t bad = esb__lmod_utf8_check(s, n);
    if (bad < n) esb__lmod_error(b->L, "%s: string is not valid UTF-8 (byte %zu)", b->who, bad + 1);
    esb__lmod_buf_addc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        esb__lmod_buf_add(b, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0};
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            esb__lmod_buf_add(b, esc, 6);
            continue;
        }
        esb__lmod_buf_add(b, esc, 2);
    }
    esb__lmod_buf_add(b, s + run, n - run);
    esb__lmod_buf_addc(b, '"');
}

/* The shortest of %.15g..%.17g that reads back as d; always looks like a
 * float ("1.0", not "1") so it decodes as a float again. */
static void enc_integer(struct esb__lmod_buf *b, long long v)
{
    char out[24], *p = out + sizeof(out);
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0) *--p = '-';
    esb__lmod_buf_add(b, p, (size_t)(out + sizeof(out) - p));
}

/* Write v >= 0 in decimal at o; returns the length. */
static int snprintf_int(char *o, long long v)
{
    char t[24];
    int n = 0;
    do t[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (int i = 0; i < n; i++) o[i] = t[n - 1 - i];
    return n;
}

static void enc_double(struct esb__lmod_buf *b, double d)
{
    char out[40];
    if (!isfinite(d)) esb__lmod_error(b->L, "%s: cannot encode NaN or infinity", b->who);
    if (d == (double)(long long)d && d > -1e15 && d < 1e15 && (d != 0 || !signbit(d))) {
        enc_integer(b, (long long)d); /* what %.15g prints for it, without printf */
        esb__lmod_buf_add(b, ".0", 2);
        return;
    }
    /* a decimal with up to 6 places and 15 digits (prices, quantities):
     * m / 10^k, exact when the division gives d back (m and 10^k are exact
     * doubles, so the quotient is the double nearest m / 10^k); the text
     * is then what %.15g prints */
    static const double p10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    double a = fabs(d);
    if (a >= 1e-4 && a < 1e9) {
        for (int k = 1; k <= 6; k++) {
            double v = a * p10[k];
            if (v >= 1e15 || v != floor(v)) continue;
            long long m = (long long)v, div = (long long)p10[k];
            if ((double)m / p10[k] != a) break;
            char *o = out;
            if (d < 0) *o++ = '-';
            o += snprintf_int(o, m / div);
            *o++ = '.';
            for (long long f = m % div, q = div / 10; q; q /= 10) *o++ = (char)('0' + f / q % 10);
            while (o[-1] == '0' && o[-2] != '.') o--; /* none: k is the first that fits */
            esb__lmod_buf_add(b, out, (size_t)(o - out));
            return;
        }
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, sizeof(out), "%.*g", prec, d);
        if (strtod(out, NULL) == d) break;
    }
    if (!strpbrk(out, ".eE")) strcat(out, ".0");
    esb__lmod_buf_adds(b, out);
}

static void newline(struct enc *e, int depth)
{
    if (!e->o->pretty) return;
    esb__lmod_buf_addc(e->b, '\n');
    for (int i = 0; i < depth; i++) esb__lmod_buf_add(e->b, "  ", 2);
}

static void encode_value(struct enc *e, int idx, int depth);

static void object_member(struct enc *e, int first, int depth, int key_idx, int val_idx)
{
    size_t kn;
    const char *k = lua_tolstring(e->L, key_idx, &kn);
    if (!first) esb__lmod_buf_addc(e->b, ',');
    newline(e, depth + 1);
    enc_string(e->b, k, kn);
    if (e->o->pretty)
        esb__lmod_buf_add(e->b, ": ", 2);
    else
        esb__lmod_buf_addc(e->b, ':');
    encode_value(e, val_idx, depth + 1);
}

static void encode_object(struct enc *e, int t, size_t nkeys, int depth)
{
    lua_State *L = e->L;
    esb__lmod_buf_addc(e->b, '{');
    if (!e->o->sort_keys) {
        int first = 1;
        lua_pushnil(L);
        while (lua_next(L, t)) {
            object_member(e, first, depth, lua_absindex(L, -2), lua_absindex(L, -1));
            first = 0;
            lua_pop(L, 1);
        }
    } else if (nkeys <= SMALL_OBJECT) {
        /* the keys on the stack (no table, no re-interning), sorted as
         * (pointer, length, stack slot) */
        struct esb__lmod_key keys[SMALL_OBJECT];
        int slot[SMALL_OBJECT];
        int base = lua_gettop(L);
        luaL_checkstack(L, (int)nkeys + 4, "out of stack space");
        size_t n = 0;
        lua_pushnil(L);
        while (lua_next(L, t) && n < nkeys) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1); /* stays: the key of slot n */
            keys[n].s = lua_tolstring(L, -1, &keys[n].n);
            keys[n].slot = base + 1 + (int)n;
            n++;
            lua_insert(L, -2); /* the iteration key back on top */
        }
        lua_settop(L, base + (int)n);
        if (n > 16) qsort(keys, n, sizeof(*keys), esb__lmod_key_cmp);
        for (size_t i = 1; n <= 16 && i < n; i++) { /* insertion sort for the usual few */
            struct esb__lmod_key k = keys[i];
            size_t j = i;
            for (; j > 0 && esb__lmod_key_cmp(&keys[j - 1], &k) > 0; j--) keys[j] = keys[j - 1];
            keys[j] = k;
        }
        for (size_t i = 0; i < n; i++) slot[i] = keys[i].slot;
        for (size_t i = 0; i < n; i++) {
            lua_pushvalue(L, slot[i]);
            lua_rawget(L, t);
            object_member(e, i == 0, depth, slot[i], lua_absindex(L, -1));
            lua_pop(L, 1);
        }
        lua_settop(L, base);
    } else {
        /* keys anchored in a table; sorted as (pointer, length) pairs */
        lua_createtable(L, (int)nkeys, 0);
        int kt = lua_gettop(L);
        struct esb__lmod_key *keys = lua_newuserdatauv(L, nkeys * sizeof(*keys) + 1, 0);
        size_t n = 0;
        lua_pushnil(L);
        while (lua_next(L, t) && n < nkeys) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_rawseti(L, kt, (lua_Integer)n + 1);
            keys[n].s = lua_tolstring(L, -1, &keys[n].n);
            n++;
        }
        lua_settop(L, kt + 1);
        qsort(keys, n, sizeof(*keys), esb__lmod_key_cmp);
        for (size_t i = 0; i < n; i++) {
            lua_pushlstring(L, keys[i].s, keys[i].n);
            lua_pushvalue(L, -1);
            lua_rawget(L, t);
            object_member(e, i == 0, depth, lua_absindex(L, -2), lua_absindex(L, -1));
            lua_pop(L, 2);
        }
        lua_settop(L, kt - 1);
    }
    if (nkeys) newline(e, depth);
    esb__lmod_buf_addc(e->b, '}');
}

static void encode_table(struct enc *e, int t, int depth)
{
    lua_State *L = e->L;
    const void *self = lua_topointer(L, t);
    if (depth >= e->o->max_depth)
        esb__lmod_error(L, "%s: nesting deeper than %d", e->b->who, e->o->max_depth);
    for (int i = 0; i < depth; i++)
        if (e->path[i] == self) esb__lmod_error(L, "%s: cycle detected", e->b->who);
    e->path[depth] = self;
    luaL_checkstack(L, 8, "out of stack space");

    lua_Integer n = 0;
    size_t nkeys = 0;
    int is_array = 0;
    if (lua_getmetatable(L, t)) {
        is_array = lua_topointer(L, -1) == e->array_mt;
        lua_pop(L, 1);
    }
    if (is_array) {
        n = (lua_Integer)lua_rawlen(L, t);
    } else {
        int ints = 1, strs = 1;
        lua_Integer max = 0;
        lua_pushnil(L);
        while (lua_next(L, t)) {
            lua_pop(L, 1);
            nkeys++;
            if (lua_type(L, -1) == LUA_TSTRING) {
                ints = 0;
            } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
                strs = 0;
                if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
            } else {
                ints = strs = 0;
            }
        }
        if (nkeys && ints && (size_t)max == nkeys) {
            is_array = 1;
            n = max;
        } else if (!strs) {
            esb__lmod_error(L, "%s: object keys must be strings (table mixes key types)",
                            e->b->who);
        }
    }
    if (!is_array) {
        encode_object(e, t, nkeys, depth);
        return;
    }
    esb__lmod_buf_addc(e->b, '[');
    for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1) esb__lmod_buf_addc(e->b, ',');
        newline(e, depth + 1);
        lua_rawgeti(L, t, i);
        encode_value(e, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
    }
    if (n) newline(e, depth);
    esb__lmod_buf_addc(e->b, ']');
}

static void encode_value(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        esb__lmod_buf_add(e->b, "null", 4);
        break;
    case LUA_TBOOLEAN:
        esb__lmod_buf_adds(e->b, lua_toboolean(L, idx) ? "true" : "false");
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            enc_integer(e->b, (long long)lua_tointeger(L, idx));
        } else {
            enc_double(e->b, (double)lua_tonumber(L, idx));
        }
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        enc_string(e->b, s, n);
        break;
    }
    case LUA_TTABLE:
        encode_table(e, idx, depth);
        break;
    case LUA_TLIGHTUSERDATA:
        if (esb__lmod_json_is_null(L, idx)) {
            esb__lmod_buf_add(e->b, "null", 4);
            break;
        }
        /* fall through */
    default:
        esb__lmod_error(L, "%s: cannot encode a %s", e->b->who, luaL_typename(L, idx));
    }
}

void esb__lmod_json_encode(lua_State *L, int idx, const struct esb__lmod_json_opts *o,
                           struct esb__lmod_buf *b)
{
    struct enc e; /* not zeroed: path is written before it is read */
    e.L = L;
    e.o = o;
    e.b = b;
    luaL_checkstack(L, 2, "out of stack space");
    push_array_mt(L);
    e.array_mt = lua_topointer(L, -1);
    lua_pop(L, 1); /* still anchored in the registry */
    encode_value(&e, lua_absindex(L, idx), 0);
}

/* ---- the module ---- */

static int l_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    esb__lmod_check_opts(L, 2, "esb.json.decode");
    int depth =
        (int)esb__lmod_opt_int(L, 2, "max_depth", DEFAULT_DEPTH, 1, MAX_DEPTH, "esb.json.decode");
    esb__lmod_json_decode(L, s, n, depth, "esb.json.decode");
    return 1;
}

static int l_encode(lua_State *L)
{
    const char *who = "esb.json.encode";
    struct esb__lmod_json_opts o;
    struct esb__lmod_buf b;
    luaL_checkany(L, 1);
    esb__lmod_check_opts(L, 2, who);
    o.sort_keys = esb__lmod_opt_bool(L, 2, "sort_keys", 0, who);
    o.pretty = esb__lmod_opt_bool(L, 2, "pretty", 0, who);
    o.max_depth = (int)esb__lmod_opt_int(L, 2, "max_depth", DEFAULT_DEPTH, 1, MAX_DEPTH, who);
    esb__lmod_buf_init(L, &b, ESB_LMOD_MAX_OUTPUT, who);
    esb__lmod_json_encode(L, 1, &o, &b);
    esb__lmod_buf_push(&b);
    return 1;
}

static int l_array(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getmetatable(L, 1) && !has_array_mt(L, 1))
        esb__lmod_error(L, "esb.json.array: the table already has a metatable");
    lua_settop(L, 1);
    push_array_mt(L);
    lua_setmetatable(L, 1);
    return 1;
}

static int l_is_array(lua_State *L)
{
    lua_pushboolean(L, lua_type(L, 1) == LUA_TTABLE && has_array_mt(L, 1));
    return 1;
}

int esb_luaopen_json(lua_State *L)
{
    static const luaL_Reg fns[] = {{"decode", l_decode},
                                   {"encode", l_encode},
                                   {"array", l_array},
                                   {"is_array", l_is_array},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    esb__lmod_json_push_null(L);
    lua_setfield(L, -2, "null");
    push_array_mt(L);
    lua_pop(L, 1);
    return 1;
}
