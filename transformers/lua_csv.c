/* lua_csv.c - esb.csv: RFC 4180 parsing and formatting.
 *
 * The parser is one pass over the text: quoted fields may hold delimiters,
 * line breaks and doubled quotes; records end at CRLF, LF or CR; a UTF-8 BOM
 * at the start is skipped; empty lines are skipped. Strict about what RFC
 * 4180 forbids (a quote inside an unquoted field, text after a closing
 * quote, an unterminated quote) with the line number in the error. Fields
 * are built in a Lua-owned scratch buffer; rows go straight into tables. */
#include "config.h"

#include "lua_modules.h"
#include "lua_modules_internal.h"

#include <stdio.h>

#include <lauxlib.h>

struct csv_opts {
    char delim;
    int quote; /* -1: no quoting */
    int trim;
};

struct parser {
    lua_State *L;
    const char *who;
    const char *p, *end;
    long line;
    struct csv_opts o;
    struct esb__lmod_buf field;
};

static void read_opts(lua_State *L, int idx, struct csv_opts *o, const char *who)
{
    size_t dl, ql;
    esb__lmod_check_opts(L, idx, who);
    const char *d = esb__lmod_opt_str(L, idx, "delimiter", ",", &dl, who);
    const char *q = esb__lmod_opt_str(L, idx, "quote", "\"", &ql, who);
    if (dl != 1 || *d == '\r' || *d == '\n')
        esb__lmod_error(L, "%s: opts.delimiter must be one character other than CR/LF", who);
    if (ql > 1 || (ql == 1 && (*q == '\r' || *q == '\n' || *q == *d)))
        esb__lmod_error(L, "%s: opts.quote must be one character (not the delimiter) or \"\"", who);
    o->delim = *d;
    o->quote = ql ? (unsigned char)*q : -1;
    o->trim = esb__lmod_opt_bool(L, idx, "trim", 0, who);
}

static int is_space(const struct parser *ps, char c)
{
    return (c == ' ' || c == '\t') && c != ps->o.delim;
}

static int at_eol(const struct parser *ps)
{
    return ps->p == ps->end || *ps->p == '\r' || *ps->p == '\n';
}

/* Read one field and push it; leaves p at the delimiter, line end or end. */
static void read_field(struct parser *ps)
{
    struct esb__lmod_buf *f = &ps->field;
    f->len = 0;
    if (ps->o.trim)
        while (ps->p < ps->end && is_space(ps, *ps->p)) ps->p++;
    if (ps->o.quote >= 0 && ps->p < ps->end && (unsigned char)*ps->p == ps->o.quote) {
        long start = ps->line;
        ps->p++;
        for (;;) {
            const char *q = memchr(ps->p, ps->o.quote, (size_t)(ps->end - ps->p));
            if (!q)
                esb__lmod_error(ps->L, "%s: line %ld: unterminated quoted field", ps->who, start);
            for (const char *c = ps->p; c < q; c++) ps->line += *c == '\n';
            esb__lmod_buf_add(f, ps->p, (size_t)(q - ps->p));
            ps->p = q + 1;
            if (ps->p < ps->end && (unsigned char)*ps->p == ps->o.quote) {
                esb__lmod_buf_addc(f, (char)ps->o.quote);
                ps->p++;
                continue;
            }
            break;
        }
        if (ps->o.trim)
            while (ps->p < ps->end && is_space(ps, *ps->p)) ps->p++;
        if (!at_eol(ps) && *ps->p != ps->o.delim)
            esb__lmod_error(ps->L, "%s: line %ld: unexpected text after a closing quote", ps->who,
                            ps->line);
    } else {
        const char *s = ps->p;
        while (!at_eol(ps) && *ps->p != ps->o.delim) {
            if (ps->o.quote >= 0 && (unsigned char)*ps->p == ps->o.quote)
                esb__lmod_error(ps->L, "%s: line %ld: quote in an unquoted field", ps->who,
                                ps->line);
            ps->p++;
        }
        const char *e = ps->p;
        if (ps->o.trim)
            while (e > s && is_space(ps, e[-1])) e--;
        lua_pushlstring(ps->L, s, (size_t)(e - s)); /* straight from the input */
        return;
    }
    lua_pushlstring(ps->L, f->len ? f->p : "", f->len);
}

/* Read one record into a new array (pushed); returns its field count. */
static lua_Integer read_record(struct parser *ps)
{
    lua_Integer n = 0;
    lua_newtable(ps->L);
    for (;;) {
        read_field(ps);
        lua_rawseti(ps->L, -2, ++n);
        if (ps->p < ps->end && *ps->p == ps->o.delim) {
            ps->p++;
            continue;
        }
        break;
    }
    if (ps->p < ps->end && *ps->p == '\r') ps->p++;
    if (ps->p < ps->end && *ps->p == '\n') ps->p++;
    ps->line++;
    return n;
}

static void skip_empty_lines(struct parser *ps)
{
    while (ps->p < ps->end && (*ps->p == '\r' || *ps->p == '\n')) {
        if (*ps->p == '\r' && ps->p + 1 < ps->end && ps->p[1] == '\n') ps->p++;
        ps->p++;
        ps->line++;
    }
}

static void start(lua_State *L, struct parser *ps, const char *who)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (n > ESB_LMOD_MAX_INPUT)
        esb__lmod_error(L, "%s: input of %zu bytes is larger than %zu", who, n, ESB_LMOD_MAX_INPUT);
    *ps = (struct parser){.L = L, .who = who, .p = s, .end = s + n, .line = 1};
    read_opts(L, 2, &ps->o, who);
    if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) ps->p += 3;
    lua_settop(L, 2);
    esb__lmod_buf_init(L, &ps->field, ESB_LMOD_MAX_INPUT, who); /* slot 3 */
}

/* Turn the row array on top into a table keyed by the header at hi. */
static void keyed(struct parser *ps, int hi, lua_Integer nh, lua_Integer n, long line)
{
    lua_State *L = ps->L;
    if (n != nh)
        esb__lmod_error(L, "%s: line %ld: %lld fields, the header has %lld", ps->who, line,
                        (long long)n, (long long)nh);
    lua_createtable(L, 0, (int)nh);
    for (lua_Integer i = 1; i <= nh; i++) {
        lua_rawgeti(L, hi, i);
        lua_rawgeti(L, -3, i);
        lua_rawset(L, -3);
    }
    lua_remove(L, -2);
}

static int l_parse(lua_State *L)
{
    const char *who = "esb.csv.parse";
    struct parser ps;
    start(L, &ps, who);
    int header = esb__lmod_opt_bool(L, 2, "header", 0, who);
    lua_newtable(L); /* slot 4: rows */
    lua_Integer rows = 0, nh = 0;
    int hi = 0;
    if (header) {
        skip_empty_lines(&ps);
        nh = read_record(&ps);
        hi = lua_gettop(L);
        lua_newtable(L); /* names seen */
        for (lua_Integer i = 1; i <= nh; i++) {
            lua_rawgeti(L, hi, i);
            lua_pushvalue(L, -1);
            if (lua_rawget(L, -3) != LUA_TNIL)
                esb__lmod_error(L, "%s: line 1: duplicate header '%s'", who, lua_tostring(L, -2));
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
            lua_rawset(L, -3);
        }
        lua_pop(L, 1);
    }
    for (;;) {
        skip_empty_lines(&ps);
        if (ps.p >= ps.end) break;
        long line = ps.line;
        lua_Integer n = read_record(&ps);
        if (header) keyed(&ps, hi, nh, n, line);
        lua_rawseti(L, 4, ++rows);
    }
    lua_settop(L, 4);
    return 1;
}

static int l_parse_line(lua_State *L)
{
    const char *who = "esb.csv.parse_line";
    struct parser ps;
    start(L, &ps, who);
    read_record(&ps);
    skip_empty_lines(&ps);
    if (ps.p < ps.end) esb__lmod_error(L, "%s: more than one record in the input", who);
    return 1;
}

/* ---- formatting ---- */

static void format_field(lua_State *L, struct esb__lmod_buf *b, const struct csv_opts *o,
                         int quote_all, int alone, lua_Integer row, lua_Integer col)
{
    size_t n;
    const char *s;
    int t = lua_type(L, -1);
    if (t == LUA_TNIL) {
        s = "", n = 0;
    } else if (t == LUA_TBOOLEAN) {
        s = lua_toboolean(L, -1) ? "true" : "false", n = strlen(s);
    } else if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        s = lua_tolstring(L, -1, &n);
    } else {
        esb__lmod_error(L, "esb.csv.format: row %lld field %lld: cannot format a %s",
                        (long long)row, (long long)col, lua_typename(L, t));
    }
    int need = quote_all || (alone && n == 0);
    for (size_t i = 0; i < n && !need; i++)
        need = s[i] == o->delim || s[i] == '\r' || s[i] == '\n' ||
               (o->quote >= 0 && (unsigned char)s[i] == o->quote);
    if (!need) {
        esb__lmod_buf_add(b, s, n);
        return;
    }
    if (o->quote < 0)
        esb__lmod_error(L,
                        "esb.csv.format: row %lld field %lld needs quoting but opts.quote is \"\"",
                        (long long)row, (long long)col);
    esb__lmod_buf_addc(b, (char)o->quote);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] != o->quote) continue;
        esb__lmod_buf_add(b, s + run, i + 1 - run);
        esb__lmod_buf_addc(b, (char)o->quote);
        run = i + 1;
    }
    esb__lmod_buf_add(b, s + run, n - run);
    esb__lmod_buf_addc(b, (char)o->quote);
}

/* Append the row on top: an array, or (names at hi) a table keyed by names. */
static void format_row(lua_State *L, struct esb__lmod_buf *b, const struct csv_opts *o,
                       int quote_all, int hi, lua_Integer row, const char *nl, size_t nll)
{
    int r = lua_gettop(L);
    if (!lua_istable(L, r))
        esb__lmod_error(L, "esb.csv.format: row %lld is a %s, not a table", (long long)row,
                        luaL_typename(L, r));
    lua_Integer n = (lua_Integer)lua_rawlen(L, hi ? hi : r);
    for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1) esb__lmod_buf_addc(b, o->delim);
        if (hi) {
            lua_rawgeti(L, hi, i);
            if (lua_rawget(L, r) == LUA_TNIL) { /* an array row under a header */
                lua_pop(L, 1);
                lua_rawgeti(L, r, i);
            }
        } else {
            lua_rawgeti(L, r, i);
        }
        format_field(L, b, o, quote_all, n == 1, row, i);
        lua_pop(L, 1);
    }
    esb__lmod_buf_add(b, nl, nll);
}

static int l_format(lua_State *L)
{
    const char *who = "esb.csv.format";
    struct csv_opts o;
    struct esb__lmod_buf b;
    size_t nll;
    luaL_checktype(L, 1, LUA_TTABLE);
    read_opts(L, 2, &o, who);
    const char *nl = esb__lmod_opt_str(L, 2, "newline", "\r\n", &nll, who);
    if (strcmp(nl, "\r\n") != 0 && strcmp(nl, "\n") != 0)
        esb__lmod_error(L, "%s: opts.newline must be \"\\r\\n\" or \"\\n\"", who);
    int quote_all = esb__lmod_opt_bool(L, 2, "quote_all", 0, who);
    lua_settop(L, 2);
    int hi = 0;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "header"); /* slot 3 */
        if (!lua_isnil(L, 3) && !lua_istable(L, 3))
            esb__lmod_error(L, "%s: opts.header must be an array of names", who);
        if (lua_istable(L, 3)) hi = 3;
    }
    lua_settop(L, 3);
    esb__lmod_buf_init(L, &b, ESB_LMOD_MAX_OUTPUT, who);
    if (hi) {
        lua_pushvalue(L, hi);
        format_row(L, &b, &o, quote_all, 0, 0, nl, nll);
        lua_pop(L, 1);
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        format_row(L, &b, &o, quote_all, hi, i, nl, nll);
        lua_pop(L, 1);
    }
    esb__lmod_buf_push(&b);
    return 1;
}

int esb_luaopen_csv(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"parse", l_parse}, {"parse_line", l_parse_line}, {"format", l_format}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
