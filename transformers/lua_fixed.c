/* lua_fixed.c - esb.fixed: fixed-width records (mainframe style) from a
 * field spec. Positions are 1-based byte offsets; a trailing CR/LF is not
 * part of the record. Errors name the field. */
#include "config.h"

#include "lua_modules.h"
#include "lua_modules_internal.h"

#include <stdio.h>

#include <lauxlib.h>

#define WHO       "esb.fixed.parse"
#define MAX_SCALE 18

enum ftype { T_STRING, T_INT, T_DECIMAL, T_DATE };

struct field {
    const char *name;
    lua_Integer start, len, scale;
    enum ftype type;
    int trim;
    const char *format;
};

static void read_spec(lua_State *L, int idx, lua_Integer i, struct field *f)
{
    static const char *const types[] = {"string", "int", "decimal", "date"};
    if (!lua_istable(L, idx))
        esb__lmod_error(L, "%s: spec field %lld is not a table", WHO, (long long)i);
    char who[64];
    snprintf(who, sizeof(who), "%s: spec field %lld:", WHO, (long long)i);
    f->name = esb__lmod_opt_str(L, idx, "name", NULL, NULL, who);
    if (!f->name || !*f->name) esb__lmod_error(L, "%s name is required", who);
    f->start = esb__lmod_opt_int(L, idx, "start", 0, 1, INT32_MAX, who);
    f->len = esb__lmod_opt_int(L, idx, "len", 0, 1, 1 << 20, who);
    if (!f->start || !f->len) esb__lmod_error(L, "%s field %s needs start and len", who, f->name);
    const char *t = esb__lmod_opt_str(L, idx, "type", "string", NULL, who);
    size_t k = 0;
    while (k < ESB_ARRAY_LEN(types) && strcmp(types[k], t) != 0) k++;
    if (k == ESB_ARRAY_LEN(types))
        esb__lmod_error(L, "%s field %s: unknown type '%s' (string, int, decimal, date)", who,
                        f->name, t);
    f->type = (enum ftype)k;
    f->trim = esb__lmod_opt_bool(L, idx, "trim", 1, who);
    f->scale = esb__lmod_opt_int(L, idx, "scale", 0, 0, MAX_SCALE, who);
    f->format = esb__lmod_opt_str(L, idx, "format", "YYYYMMDD", NULL, who);
}

static void trim(const char **s, size_t *n)
{
    while (*n && ((*s)[0] == ' ' || (*s)[0] == '\t')) (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

static int all_digits(const char *s, size_t n)
{
    if (!n) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* Push the integer in s, or raise naming the field. */
static void push_int(lua_State *L, const struct field *f, const char *s, size_t n)
{
    char tmp[32];
    lua_Integer v;
    if (esb__lmod_parse_int(s, n, &v) != 0) {
        snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 24 ? n : 24), s);
        esb__lmod_error(L, "%s: field %s: '%s' is not an integer", WHO, f->name, tmp);
    }
    lua_pushinteger(L, v);
}

/* Push the decimal in s (digits with an optional point; without one the
 * last `scale` digits are decimals) as a float. */
static void push_decimal(lua_State *L, const struct field *f, const char *s, size_t n)
{
    char num[80], tmp[32];
    int sign = n && (s[0] == '-' || s[0] == '+');
    const char *dot = memchr(s, '.', n);
    size_t ip = dot ? (size_t)(dot - s) : n;
    int good = n - (size_t)sign < 60 && (ip > (size_t)sign || dot) &&
               (ip == (size_t)sign || all_digits(s + sign, ip - (size_t)sign)) &&
               (!dot || all_digits(dot + 1, n - ip - 1));
    if (good && dot) {
        snprintf(num, sizeof(num), "%.*s", (int)n, s);
    } else if (good) {
        size_t digits = n - (size_t)sign, sc = (size_t)f->scale;
        size_t pad = sc + 1 > digits ? sc + 1 - digits : 0, dl = pad + digits;
        char d[80];
        memset(d, '0', pad);
        memcpy(d + pad, s + sign, digits);
        d[dl] = '\0';
        snprintf(num, sizeof(num), "%s%.*s.%s", s[0] == '-' ? "-" : "", (int)(dl - sc), d,
                 sc ? d + dl - sc : "0");
    }
    if (!good || lua_stringtonumber(L, num) == 0) {
        snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 24 ? n : 24), s);
        esb__lmod_error(L, "%s: field %s: '%s' is not a decimal", WHO, f->name, tmp);
    }
    lua_pushnumber(L, lua_tonumber(L, -1)); /* always a float */
    lua_remove(L, -2);
}

/* Push the date in s read with f->format (YYYY, MM, DD, other characters
 * literal) as "YYYY-MM-DD"; all blanks or all zeros push nothing (returns 0). */
static int push_date(lua_State *L, const struct field *f, const char *s, size_t n)
{
    char out[40], tmp[32];
    int y = -1, m = -1, d = -1, zeros = 1;
    const char *fmt = f->format;
    size_t i = 0;
    for (size_t k = 0; k < n; k++) zeros &= s[k] == '0' || (k > 0 && s[k] && strchr("-/.", s[k]));
    if (zeros) return 0; /* "00000000", "0000-00-00": no date */
    int good = 1;
    while (*fmt && good) {
        int *dst = NULL;
        size_t w = 1;
        if (strncmp(fmt, "YYYY", 4) == 0)
            dst = &y, w = 4;
        else if (strncmp(fmt, "MM", 2) == 0)
            dst = &m, w = 2;
        else if (strncmp(fmt, "DD", 2) == 0)
            dst = &d, w = 2;
        if (i + w > n) {
            good = 0;
        } else if (dst) {
            good = all_digits(s + i, w);
            *dst = 0;
            for (size_t k = 0; good && k < w; k++) *dst = *dst * 10 + (s[i + k] - '0');
        } else {
            good = s[i] == *fmt;
        }
        i += w;
        fmt += w;
    }
    int64_t ms;
    if (good && i == n && y >= 0 && m >= 0 && d >= 0) {
        snprintf(out, sizeof(out), "%04d-%02d-%02d", y, m, d);
        good = esb__lmod_time_parse(out, strlen(out), &ms) == 0;
    } else {
        good = 0;
    }
    if (!good) {
        snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 24 ? n : 24), s);
        esb__lmod_error(L, "%s: field %s: '%s' is not a date in format %s", WHO, f->name, tmp,
                        f->format);
    }
    lua_pushstring(L, out);
    return 1;
}

static int l_parse(lua_State *L)
{
    size_t len;
    const char *line = luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    lua_Integer nf = (lua_Integer)lua_rawlen(L, 2);
    lua_createtable(L, 0, nf > 64 ? 64 : (int)nf); /* 3: the record */
    for (lua_Integer i = 1; i <= nf; i++) {
        struct field f;
        lua_rawgeti(L, 2, i); /* 4 */
        read_spec(L, 4, i, &f);
        if ((size_t)(f.start - 1) + (size_t)f.len > len)
            esb__lmod_error(L, "%s: field %s (start %lld, len %lld) beyond line length %zu", WHO,
                            f.name, (long long)f.start, (long long)f.len, len);
        const char *s = line + f.start - 1;
        size_t n = (size_t)f.len;
        if (f.trim || f.type != T_STRING) trim(&s, &n);
        int pushed = 1;
        switch (f.type) {
        case T_STRING:
            lua_pushlstring(L, s, n);
            break;
        case T_INT:
            if ((pushed = n > 0)) push_int(L, &f, s, n);
            break;
        case T_DECIMAL:
            if ((pushed = n > 0)) push_decimal(L, &f, s, n);
            break;
        case T_DATE:
            pushed = n > 0 && push_date(L, &f, s, n);
            break;
        }
        if (pushed) lua_setfield(L, 3, f.name);
        lua_settop(L, 3);
    }
    return 1;
}

int esb_luaopen_fixed(lua_State *L)
{
    static const luaL_Reg fns[] = {{"parse", l_parse}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
