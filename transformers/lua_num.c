/* lua_num.c - esb.num: strict numbers from text fields.
 *
 * Lua's tonumber accepts hexadecimal, exponents, "inf" and "nan", which a
 * legacy field must not contain; a pattern check before it costs a
 * transform several Lua calls per field. These functions
 * accept exactly the decimal notation - blanks around it ignored, as
 * tonumber does - and answer like tonumber: the value, or nil and why
 * ("empty" for nil or blank text, so a caller tells missing from bad). */
#include "config.h"

#include "lua_modules.h"
#include "lua_modules_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include <lauxlib.h>

int esb__lmod_parse_int(const char *s, size_t n, lua_Integer *out)
{
    size_t i = n && (s[0] == '-' || s[0] == '+');
    int neg = n && s[0] == '-';
    if (i == n) return -1;
    /* the magnitude limit: 2^63 - 1, or 2^63 for a negative number */
    uint64_t v = 0, max = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    int range = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9) return -1;
        if (v > (max - d) / 10)
            range = 1; /* keep checking the syntax */
        else
            v = v * 10 + d;
    }
    if (range) return -2;
    /* -2^63 has no positive counterpart: negate in unsigned arithmetic */
    *out = neg ? (lua_Integer)(0 - v) : (lua_Integer)v;
    return 0;
}

static int blank(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r'); /* Lua's %s: space, \t \n \v \f \r */
}

/* Argument 1 as text without the blanks around it (a number is read as its
 * text); NULL and why (pushed: nil and the reason) when it has none. */
static const char *arg_text(lua_State *L, size_t *n, const char *bad)
{
    int t = lua_type(L, 1);
    const char *s = t == LUA_TSTRING || t == LUA_TNUMBER ? lua_tolstring(L, 1, n) : NULL;
    if (s) {
        while (*n && blank(s[0])) s++, (*n)--;
        while (*n && blank(s[*n - 1])) (*n)--;
        if (*n) return s;
    }
    lua_pushnil(L);
    lua_pushstring(L, t == LUA_TNIL || s ? "empty" : bad);
    return NULL;
}

/* [+-]? digits [. digits?] | [+-]? . digits */
static int decimal_syntax(const char *s, size_t n)
{
    size_t i = n && (s[0] == '-' || s[0] == '+'), digits = 0;
    int dot = 0;
    for (; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9')
            digits++;
        else if (s[i] == '.' && !dot)
            dot = 1;
        else
            return 0;
    }
    return digits > 0;
}

static int l_int(lua_State *L)
{
    size_t n;
    const char *s = arg_text(L, &n, "not an integer");
    if (!s) return 2;
    lua_Integer v;
    int rc = esb__lmod_parse_int(s, n, &v);
    if (rc == 0) {
        lua_pushinteger(L, v);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, rc == -2 ? "out of range" : "not an integer");
    return 2;
}

static int l_decimal(lua_State *L)
{
    size_t n;
    const char *s = arg_text(L, &n, "not a decimal number");
    if (!s) return 2;
    if (!decimal_syntax(s, n)) {
        lua_pushnil(L);
        lua_pushstring(L, "not a decimal number");
        return 2;
    }
    /* strtod is what Lua's tonumber uses; esbd never calls setlocale, so '.'
     * is the decimal point. It stops at the end of the checked text: a NUL
     * or a blank follows it. */
    errno = 0;
    double d = strtod(s, NULL);
    if (errno == ERANGE && isinf(d)) {
        lua_pushnil(L);
        lua_pushstring(L, "out of range");
        return 2;
    }
    lua_pushnumber(L, d); /* underflow to 0 or a denormal is a value, as in tonumber */
    return 1;
}

int esb_luaopen_num(lua_State *L)
{
    static const luaL_Reg fns[] = {{"int", l_int}, {"decimal", l_decimal}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
