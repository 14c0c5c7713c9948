/* lua_misc.c - esb.log, esb.uuid and esb.time.
 *
 * esb.time works in integer milliseconds since the Unix epoch, UTC, for the
 * years 0000-9999; time zones are explicit offsets in minutes. Calendar
 * arithmetic is done here (days from civil dates), so nothing depends on the
 * TZ environment or the C library's time zone database. */
#include "config.h"

#include "lua_modules.h"
#include "lua_modules_internal.h"

#include "log.h"
#include "uuid.h"

#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>

/* ---- esb.log ---- */

#define LOG_MAX 1800 /* esb_log lines are at most 2 KiB */

static int do_log(lua_State *L, enum esb_log_level level)
{
    char out[LOG_MAX + 4];
    size_t n, o = 0;
    if (level < esb_log_get_level()) return 0; /* arguments not formatted */
    int nargs = lua_gettop(L);
    if (nargs > 1) {
        lua_pushliteral(L, "");
        if (!lua_getmetatable(L, -1) || lua_getfield(L, -1, "__index") != LUA_TTABLE ||
            lua_getfield(L, -1, "format") != LUA_TFUNCTION)
            esb__lmod_error(L, "esb.log: string.format is not available");
        lua_insert(L, 1);
        lua_settop(L, nargs + 1);
        lua_call(L, nargs, 1);
    } else {
        luaL_checkany(L, 1);
        luaL_tolstring(L, 1, NULL);
    }
    const char *msg = lua_tolstring(L, -1, &n);
    if (!msg) esb__lmod_error(L, "esb.log: string.format did not return a string");
    for (size_t i = 0; i < n && o < LOG_MAX; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c == '\n' || c == '\r' || c == '\t') {
            out[o++] = '\\';
            out[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else {
            out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
        }
    }
    if (o >= LOG_MAX) memcpy(out + LOG_MAX - 3, "...", 3), o = LOG_MAX;
    out[o] = '\0';
    lua_getfield(L, LUA_REGISTRYINDEX, ESB_LUA_REG_SCRIPT);
    const char *name = lua_isstring(L, -1) ? lua_tostring(L, -1) : "lua";
    esb_log(level, "[lua:%s] %s", name, out);
    return 0;
}

static int l_debug(lua_State *L)
{
    return do_log(L, ESB_LOG_DEBUG);
}

static int l_info(lua_State *L)
{
    return do_log(L, ESB_LOG_INFO);
}

static int l_warn(lua_State *L)
{
    return do_log(L, ESB_LOG_WARN);
}

static int l_error(lua_State *L)
{
    return do_log(L, ESB_LOG_ERROR);
}

int esb_luaopen_log(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"debug", l_debug}, {"info", l_info}, {"warn", l_warn}, {"error", l_error}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}

/* ---- esb.uuid ---- */

static int l_v7(lua_State *L)
{
    esb_uuid_t u;
    char s[ESB_UUID_STRLEN + 1];
    esb_uuid_v7(&u);
    esb_uuid_format(&u, s);
    lua_pushlstring(L, s, ESB_UUID_STRLEN);
    return 1;
}

int esb_luaopen_uuid(lua_State *L)
{
    static const luaL_Reg fns[] = {{"v7", l_v7}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}

/* ---- esb.time ---- */

#define MS_PER_DAY INT64_C(86400000)
#define MIN_MS     INT64_C(-62167219200000) /* 0000-01-01T00:00:00Z */
#define MAX_MS     INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */
#define MAX_OFFSET (23 * 60 + 59)
#define FMT_MAX    256

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

struct tparts {
    int y, mo, d, h, mi, s, ms, off; /* off: minutes east of UTC */
};

/* Validate the parts and convert to ms since the epoch; 0 or -1. */
static int to_ms(const struct tparts *t, int64_t *ms)
{
    if (t->y < 0 || t->y > 9999 || t->mo < 1 || t->mo > 12 || t->d < 1 ||
        t->d > days_in_month(t->y, t->mo) || t->h > 23 || t->mi > 59 || t->s > 59 ||
        t->off < -MAX_OFFSET || t->off > MAX_OFFSET)
        return -1;
    *ms = esb_days_from_civil(t->y, t->mo, t->d) * MS_PER_DAY +
          ((int64_t)t->h * 3600 + t->mi * 60 + t->s) * 1000 + t->ms - (int64_t)t->off * 60000;
    return 0;
}

/* Read exactly w digits at *p (before end) into *v. */
static int digits(const char **p, const char *end, int w, int *v)
{
    *v = 0;
    if (end - *p < w) return -1;
    for (int i = 0; i < w; i++, (*p)++) {
        if (**p < '0' || **p > '9') return -1;
        *v = *v * 10 + (**p - '0');
    }
    return 0;
}

/* Fraction digits (1-9) after the point, truncated to milliseconds. */
static int fraction(const char **p, const char *end, int *ms)
{
    int n = 0;
    *ms = 0;
    while (*p < end && **p >= '0' && **p <= '9') {
        if (n < 3) *ms = *ms * 10 + (**p - '0');
        n++;
        (*p)++;
    }
    if (n == 0 || n > 9) return -1;
    for (; n < 3; n++) *ms *= 10;
    return 0;
}

/* Z, z, +HH:MM, +HHMM or +HH (or -) */
static int offset(const char **p, const char *end, int *off)
{
    int h, m = 0;
    if (*p < end && (**p == 'Z' || **p == 'z')) {
        (*p)++;
        *off = 0;
        return 0;
    }
    if (*p >= end || (**p != '+' && **p != '-')) return -1;
    int neg = **p == '-';
    (*p)++;
    if (digits(p, end, 2, &h)) return -1;
    if (*p < end && **p == ':') {
        (*p)++;
        if (digits(p, end, 2, &m)) return -1;
    } else if (end - *p >= 2 && digits(p, end, 2, &m)) {
        return -1;
    }
    if (h > 23 || m > 59) return -1;
    *off = (neg ? -1 : 1) * (h * 60 + m);
    return 0;
}

int esb__lmod_time_parse(const char *s, size_t n, int64_t *ms)
{
    const char *p = s, *end = s + n;
    struct tparts t = {0};
    if (digits(&p, end, 4, &t.y)) return -1;
    if (p < end && *p == '-') {
        p++;
        if (digits(&p, end, 2, &t.mo) || p >= end || *p++ != '-' || digits(&p, end, 2, &t.d))
            return -1;
    } else if (digits(&p, end, 2, &t.mo) || digits(&p, end, 2, &t.d) || p != end) {
        return -1; /* YYYYMMDD stands alone */
    }
    if (p < end) {
        if (*p != 'T' && *p != 't' && *p != ' ') return -1;
        p++;
        if (digits(&p, end, 2, &t.h) || p >= end || *p++ != ':' || digits(&p, end, 2, &t.mi))
            return -1;
        if (p < end && *p == ':') {
            p++;
            if (digits(&p, end, 2, &t.s)) return -1;
            if (p < end && (*p == '.' || *p == ',')) {
                p++;
                if (fraction(&p, end, &t.ms)) return -1;
            }
        }
        if (p < end && offset(&p, end, &t.off)) return -1; /* no offset: UTC */
    }
    if (p != end) return -1;
    return to_ms(&t, ms);
}

/* Format ms (shifted by off minutes) with fmt into out; returns the length,
 * -1 if out of range, or -2 with *bad set for an unknown directive. */
static int format_time(int64_t ms, int off, const char *fmt, char *out, size_t cap, char *bad)
{
    if (ms < MIN_MS || ms > MAX_MS) return -1;
    int64_t local = ms + (int64_t)off * 60000;
    int64_t days = local >= 0 ? local / MS_PER_DAY : -((-local + MS_PER_DAY - 1) / MS_PER_DAY);
    int64_t rest = local - days * MS_PER_DAY;
    int y, mo, d;
    esb_civil_from_days(days, &y, &mo, &d);
    if (y < 0 || y > 9999) return -1;
    int h = (int)(rest / 3600000), mi = (int)(rest / 60000 % 60), s = (int)(rest / 1000 % 60);
    int frac = (int)(rest % 1000);
    size_t o = 0;
    for (const char *f = fmt; *f && o + 8 < cap; f++) {
        if (*f != '%') {
            out[o++] = *f;
            continue;
        }
        f++;
        int a = abs(off);
        switch (*f) {
        case 'Y':
            o += (size_t)snprintf(out + o, cap - o, "%04d", y);
            break;
        case 'm':
            o += (size_t)snprintf(out + o, cap - o, "%02d", mo);
            break;
        case 'd':
            o += (size_t)snprintf(out + o, cap - o, "%02d", d);
            break;
        case 'H':
            o += (size_t)snprintf(out + o, cap - o, "%02d", h);
            break;
        case 'M':
            o += (size_t)snprintf(out + o, cap - o, "%02d", mi);
            break;
        case 'S':
            o += (size_t)snprintf(out + o, cap - o, "%02d", s);
            break;
        case 'L':
            o += (size_t)snprintf(out + o, cap - o, "%03d", frac);
            break;
        case '%':
            out[o++] = '%';
            break;
        case 'z':
            if (off == 0)
                out[o++] = 'Z';
            else
                o += (size_t)snprintf(out + o, cap - o, "%c%02d:%02d", off < 0 ? '-' : '+', a / 60,
                                      a % 60);
            break;
        default:
            *bad = *f ? *f : '%';
            return -2;
        }
    }
    out[o] = '\0';
    return (int)o;
}

int esb__lmod_time_iso(int64_t ms, int offset_min, char out[40])
{
    char bad;
    return format_time(ms, offset_min, "%Y-%m-%dT%H:%M:%S.%L%z", out, 40, &bad) < 0 ? -1 : 0;
}

static int l_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)esb_now_ms());
    return 1;
}

static int l_format(lua_State *L)
{
    char out[FMT_MAX * 4], bad = 0;
    lua_Integer ms = luaL_checkinteger(L, 1);
    lua_Integer off = luaL_optinteger(L, 2, 0);
    const char *fmt = luaL_optstring(L, 3, "%Y-%m-%dT%H:%M:%S.%L%z");
    if (off < -MAX_OFFSET || off > MAX_OFFSET)
        esb__lmod_error(L, "esb.time.format: offset %lld minutes is out of range (+-%d)",
                        (long long)off, MAX_OFFSET);
    if (strlen(fmt) > FMT_MAX)
        esb__lmod_error(L, "esb.time.format: format longer than %d characters", FMT_MAX);
    int n = format_time(ms, (int)off, fmt, out, sizeof(out), &bad);
    if (n == -1)
        esb__lmod_error(L, "esb.time.format: time %lld is outside the years 0000-9999",
                        (long long)ms);
    if (n == -2) esb__lmod_error(L, "esb.time.format: unknown directive %%%c", bad);
    lua_pushlstring(L, out, (size_t)n);
    return 1;
}

static int l_parse(lua_State *L)
{
    size_t n;
    int64_t ms;
    const char *s = luaL_checklstring(L, 1, &n);
    if (esb__lmod_time_parse(s, n, &ms)) esb__lmod_error(L, "esb.time.parse: bad time '%.64s'", s);
    lua_pushinteger(L, (lua_Integer)ms);
    return 1;
}

static int l_parse_format(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n), *fmt = luaL_checkstring(L, 2);
    const char *p = s, *end = s + n;
    struct tparts t = {.y = 1970, .mo = 1, .d = 1};
    int64_t ms;
    int good = 1;
    for (const char *f = fmt; *f && good; f++) {
        if (*f != '%') {
            good = p < end && *p++ == *f;
            continue;
        }
        f++;
        switch (*f) {
        case 'Y':
            good = !digits(&p, end, 4, &t.y);
            break;
        case 'm':
            good = !digits(&p, end, 2, &t.mo);
            break;
        case 'd':
            good = !digits(&p, end, 2, &t.d);
            break;
        case 'H':
            good = !digits(&p, end, 2, &t.h);
            break;
        case 'M':
            good = !digits(&p, end, 2, &t.mi);
            break;
        case 'S':
            good = !digits(&p, end, 2, &t.s);
            break;
        case 'L':
            good = !digits(&p, end, 3, &t.ms);
            break;
        case 'f':
            good = !fraction(&p, end, &t.ms);
            break;
        case 'z':
            good = !offset(&p, end, &t.off);
            break;
        case '%':
            good = p < end && *p++ == '%';
            break;
        default:
            esb__lmod_error(L, "esb.time.parse_format: unknown directive %%%c", *f ? *f : ' ');
        }
    }
    if (!good || p != end || to_ms(&t, &ms))
        esb__lmod_error(L, "esb.time.parse_format: bad time '%.64s' for format '%.64s'", s, fmt);
    lua_pushinteger(L, (lua_Integer)ms);
    return 1;
}

int esb_luaopen_time(lua_State *L)
{
    static const luaL_Reg fns[] = {{"now", l_now},
                                   {"format", l_format},
                                   {"parse", l_parse},
                                   {"parse_format", l_parse_format},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
