/* lua_re.c - esb.re: PCRE2 regular expressions (8-bit, JIT) for Lua.
 *
 * Per lua_State: one match context with match/depth/heap limits and a JIT
 * stack, one match data block (grown to the widest pattern), and an LRU
 * cache of compiled patterns keyed by flags + pattern text, so calling
 * esb.re.match(s, "same pattern") in a loop compiles once. These live in a
 * state userdata that every function holds as upvalue 1 (the cache table is
 * upvalue 2).
 *
 * Re-entrancy: a gsub replacement function (or a __gc finalizer run by an
 * allocation) may call esb.re again and reuse the shared match data, so the
 * ovector is copied out right after each pcre2_match, before any Lua call.
 *
 * Empty matches in gmatch/gsub follow pcre2demo: retry at the same offset
 * with NOTEMPTY_ATSTART|ANCHORED, else advance one character. */
#include "config.h"

#include "lua_modules.h"
#include "lua_modules_internal.h"

#include <stdio.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <lauxlib.h>
#include <pcre2.h>

#define RX_MT          "esb.re.regex"
#define STATE_MT       "esb.re.state"
#define CACHE_MAX      64
#define MATCH_LIMIT    10000000
#define DEPTH_LIMIT    10000000
#define HEAP_LIMIT_KIB 8192
#define JIT_STACK_MAX  (8 * 1024 * 1024)
#define MAX_PATTERN    (64 * 1024)
#define LOCAL_PAIRS    16 /* ovector copies up to this many groups live on the C stack */

struct restate {
    pcre2_match_data *md;
    uint32_t md_pairs;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    uint64_t clock; /* LRU stamps */
    int cached;     /* entries in the cache table */
};

struct rx {
    pcre2_code *code;
    uint32_t ncap; /* capture groups, without group 0 */
    int utf;
    uint64_t stamp;
};

static struct restate *state(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* ---- compiling and the cache ---- */

static uint32_t parse_flags(lua_State *L, int idx, unsigned *bits)
{
    static const struct {
        char c;
        uint32_t opt;
    } tab[] = {{'i', PCRE2_CASELESS},
               {'m', PCRE2_MULTILINE},
               {'s', PCRE2_DOTALL},
               {'x', PCRE2_EXTENDED},
               {'u', PCRE2_UTF}};
    uint32_t opts = 0;
    *bits = 0;
    const char *f = luaL_optstring(L, idx, "");
    for (; *f; f++) {
        size_t i = 0;
        while (i < ESB_ARRAY_LEN(tab) && tab[i].c != *f) i++;
        if (i == ESB_ARRAY_LEN(tab))
            esb__lmod_error(L, "esb.re: unknown flag '%c' (use i, m, s, x, u)", *f);
        opts |= tab[i].opt;
        *bits |= 1u << i;
    }
    return opts;
}

static int rx_gc(lua_State *L)
{
    struct rx *r = lua_touserdata(L, 1);
    if (r && r->code) pcre2_code_free(r->code);
    if (r) r->code = NULL;
    return 0;
}

/* Drop the least recently used cache entry (cache table at ci). */
static void evict(lua_State *L, struct restate *st, int ci)
{
    uint64_t min = UINT64_MAX;
    lua_pushnil(L); /* the oldest key */
    lua_pushnil(L);
    while (lua_next(L, ci)) {
        struct rx *r = lua_touserdata(L, -1);
        lua_pop(L, 1);
        if (r && r->stamp < min) {
            min = r->stamp;
            lua_pushvalue(L, -1);
            lua_replace(L, -3);
        }
    }
    if (!lua_isnil(L, -1)) {
        lua_pushnil(L);
        lua_rawset(L, ci);
        st->cached--;
    } else {
        lua_pop(L, 1);
    }
}

/* Push the compiled regex for pattern (string at pi, or a regex object) and
 * flags (at fi); returns it. */
static struct rx *get_rx(lua_State *L, int pi, int fi)
{
    struct restate *st = state(L);
    struct rx *r = luaL_testudata(L, pi, RX_MT);
    size_t n;
    unsigned bits;
    if (r) {
        lua_pushvalue(L, pi);
        return r;
    }
    const char *pat = luaL_checklstring(L, pi, &n);
    uint32_t opts = parse_flags(L, fi, &bits);
    if (n > MAX_PATTERN) esb__lmod_error(L, "esb.re: pattern longer than %d bytes", MAX_PATTERN);
    luaL_checkstack(L, 6, "out of stack space");
    int ci = lua_upvalueindex(2);
    char b = (char)('@' + bits);
    lua_pushlstring(L, &b, 1);
    lua_pushvalue(L, pi);
    lua_concat(L, 2);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, ci) == LUA_TUSERDATA) {
        r = lua_touserdata(L, -1);
        r->stamp = ++st->clock;
        lua_remove(L, -2);
        return r;
    }
    lua_pop(L, 1);
    r = lua_newuserdatauv(L, sizeof(*r), 0);
    memset(r, 0, sizeof(*r));
    luaL_setmetatable(L, RX_MT);
    int ec;
    PCRE2_SIZE off;
    r->code = pcre2_compile((PCRE2_SPTR)pat, n, opts, &ec, &off, NULL);
    if (!r->code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        esb__lmod_error(L, "esb.re: %s at offset %zu", (const char *)msg, (size_t)off);
    }
    (void)pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE); /* without JIT the interpreter runs */
    (void)pcre2_pattern_info(r->code, PCRE2_INFO_CAPTURECOUNT, &r->ncap);
    r->utf = (opts & PCRE2_UTF) != 0;
    r->stamp = ++st->clock;
    if (st->cached >= CACHE_MAX) evict(L, st, ci);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, ci);
    st->cached++;
    lua_remove(L, -2);
    return r;
}

/* ---- matching ---- */

/* Match at start; on a match copy the 2*(ncap+1) offsets to ov and return 1,
 * no match 0; limits and other failures raise. */
static int run(lua_State *L, const struct rx *r, const char *s, size_t len, size_t start,
               uint32_t opts, PCRE2_SIZE *ov)
{
    struct restate *st = state(L);
    char msg[160];
    if (st->md_pairs < r->ncap + 1) {
        pcre2_match_data *md = pcre2_match_data_create(r->ncap + 1, NULL);
        if (!md) esb__lmod_error(L, "esb.re: out of memory");
        pcre2_match_data_free(st->md);
        st->md = md;
        st->md_pairs = r->ncap + 1;
    }
    if (r->utf) opts |= PCRE2_NO_UTF_CHECK; /* checked once per call: check_subject */
    int rc = pcre2_match(r->code, (PCRE2_SPTR)s, len, start, opts, st->md, st->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof(msg));
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
            rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT ||
            rc == PCRE2_ERROR_NOMEMORY)
            esb__lmod_error(L, "esb.re: match limit hit (%s)", msg);
        esb__lmod_error(L, "esb.re: %s", msg);
    }
    memcpy(ov, pcre2_get_ovector_pointer(st->md), 2 * (r->ncap + 1) * sizeof(*ov));
    if (ov[0] > ov[1]) esb__lmod_error(L, "esb.re: \\K in an assertion is not supported");
    return 1;
}

static void check_subject(lua_State *L, const struct rx *r, const char *s, size_t len)
{
    size_t bad = r->utf ? esb__lmod_utf8_check(s, len) : len;
    if (bad < len) esb__lmod_error(L, "esb.re: subject is not valid UTF-8 (byte %zu)", bad + 1);
}

/* Offsets storage for r: the C array local if it fits, else a userdata. */
static PCRE2_SIZE *ovec(lua_State *L, const struct rx *r, PCRE2_SIZE *local)
{
    if (r->ncap + 1 <= LOCAL_PAIRS) return local;
    return lua_newuserdatauv(L, 2 * ((size_t)r->ncap + 1) * sizeof(PCRE2_SIZE), 0);
}

/* Push group i of a match (nil when it did not take part). */
static void push_group(lua_State *L, const char *s, const PCRE2_SIZE *ov, uint32_t i)
{
    if (ov[2 * i] == PCRE2_UNSET)
        lua_pushnil(L);
    else
        lua_pushlstring(L, s + ov[2 * i], ov[2 * i + 1] - ov[2 * i]);
}

static int push_match(lua_State *L, const struct rx *r, const char *s, const PCRE2_SIZE *ov)
{
    luaL_checkstack(L, (int)r->ncap + 2, "too many captures");
    for (uint32_t i = 0; i <= r->ncap; i++) push_group(L, s, ov, i);
    return (int)r->ncap + 1;
}

static size_t next_char(const struct rx *r, const char *s, size_t len, size_t pos)
{
    pos++;
    if (r->utf)
        while (pos < len && ((unsigned char)s[pos] & 0xc0) == 0x80) pos++;
    return pos;
}

/* match(subject at si, regex r) */
static int do_match(lua_State *L, int si, const struct rx *r)
{
    PCRE2_SIZE local[2 * LOCAL_PAIRS];
    size_t len;
    const char *s = luaL_checklstring(L, si, &len);
    check_subject(L, r, s, len);
    PCRE2_SIZE *ov = ovec(L, r, local);
    if (!run(L, r, s, len, 0, 0, ov)) {
        lua_pushnil(L);
        return 1;
    }
    return push_match(L, r, s, ov);
}

/* gmatch iterator; upvalues: state, cache, subject, regex, position, retry */
static int gmatch_next(lua_State *L)
{
    PCRE2_SIZE local[2 * LOCAL_PAIRS];
    size_t len;
    const char *s = lua_tolstring(L, lua_upvalueindex(3), &len);
    const struct rx *r = lua_touserdata(L, lua_upvalueindex(4));
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(5));
    uint32_t opts = (uint32_t)lua_tointeger(L, lua_upvalueindex(6));
    PCRE2_SIZE *ov = ovec(L, r, local);
    while (pos >= 0 && (size_t)pos <= len) {
        if (!run(L, r, s, len, (size_t)pos, opts, ov)) {
            if (!opts) break;
            pos = (lua_Integer)next_char(r, s, len, (size_t)pos);
            opts = 0;
            continue;
        }
        opts = ov[0] == ov[1] ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
        lua_pushinteger(L, (lua_Integer)ov[1]);
        lua_replace(L, lua_upvalueindex(5));
        lua_pushinteger(L, opts);
        lua_replace(L, lua_upvalueindex(6));
        return push_match(L, r, s, ov);
    }
    lua_pushinteger(L, -1);
    lua_replace(L, lua_upvalueindex(5));
    return 0;
}

static int do_gmatch(lua_State *L, int si, int ri)
{
    const struct rx *r = lua_touserdata(L, ri);
    size_t len;
    const char *s = luaL_checklstring(L, si, &len);
    check_subject(L, r, s, len);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushvalue(L, si);
    lua_pushvalue(L, ri);
    lua_pushinteger(L, 0);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, gmatch_next, 6);
    return 1;
}

/* Check a replacement template: $0..$9 within the groups, $$. */
static void check_template(lua_State *L, const struct rx *r, const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '$') continue;
        if (i + 1 < n && t[i + 1] == '$') {
            i++;
        } else if (i + 1 < n && t[i + 1] >= '0' && t[i + 1] <= '9') {
            if ((uint32_t)(t[i + 1] - '0') > r->ncap)
                esb__lmod_error(L, "esb.re.gsub: $%c but the pattern has %u groups", t[i + 1],
                                (unsigned)r->ncap);
            i++;
        } else {
            esb__lmod_error(L, "esb.re.gsub: '$' must be followed by a digit or '$' (use $$)");
        }
    }
}

static void add_template(struct esb__lmod_buf *b, const char *t, size_t n, const char *s,
                         const PCRE2_SIZE *ov)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '$') continue;
        esb__lmod_buf_add(b, t + run, i - run);
        if (t[i + 1] == '$') {
            esb__lmod_buf_addc(b, '$');
        } else {
            int g = t[i + 1] - '0';
            if (ov[2 * g] != PCRE2_UNSET)
                esb__lmod_buf_add(b, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
        }
        i++;
        run = i + 1;
    }
    esb__lmod_buf_add(b, t + run, n - run);
}

/* Append the replacement computed by a function or table (at ri). */
static void add_computed(lua_State *L, struct esb__lmod_buf *b, int ri, const struct rx *r,
                         const char *s, const PCRE2_SIZE *ov)
{
    if (lua_type(L, ri) == LUA_TFUNCTION) {
        lua_pushvalue(L, ri);
        int n = push_match(L, r, s, ov);
        lua_call(L, n, 1);
    } else {
        push_group(L, s, ov, r->ncap >= 1 && ov[2] != PCRE2_UNSET ? 1 : 0);
        lua_gettable(L, ri);
    }
    int t = lua_type(L, -1);
    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        esb__lmod_buf_add(b, s + ov[0], ov[1] - ov[0]); /* keep the match */
    } else if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        size_t n;
        const char *v = lua_tolstring(L, -1, &n);
        esb__lmod_buf_add(b, v, n);
    } else {
        esb__lmod_error(L, "esb.re.gsub: the replacement returned a %s", luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}

/* gsub(subject at si, regex at rxi, replacement at ri) */
static int do_gsub(lua_State *L, int si, int rxi, int ri)
{
    PCRE2_SIZE local[2 * LOCAL_PAIRS];
    struct esb__lmod_buf b;
    size_t len, tn = 0;
    const char *s = luaL_checklstring(L, si, &len), *tmpl = NULL;
    const struct rx *r = lua_touserdata(L, rxi);
    int rt = lua_type(L, ri);
    if (rt == LUA_TSTRING || rt == LUA_TNUMBER) {
        tmpl = lua_tolstring(L, ri, &tn);
        check_template(L, r, tmpl, tn);
    } else if (rt != LUA_TFUNCTION && rt != LUA_TTABLE) {
        esb__lmod_error(L, "esb.re.gsub: the replacement must be a string, function or table");
    }
    check_subject(L, r, s, len);
    PCRE2_SIZE *ov = ovec(L, r, local);
    esb__lmod_buf_init(L, &b, ESB_LMOD_MAX_OUTPUT, "esb.re.gsub");
    size_t pos = 0, copied = 0;
    lua_Integer count = 0;
    uint32_t opts = 0;
    while (pos <= len) {
        if (!run(L, r, s, len, pos, opts, ov)) {
            if (!opts) break;
            pos = next_char(r, s, len, pos);
            opts = 0;
            continue;
        }
        esb__lmod_buf_add(&b, s + copied, ov[0] - copied);
        if (tmpl)
            add_template(&b, tmpl, tn, s, ov);
        else
            add_computed(L, &b, ri, r, s, ov);
        copied = ov[1];
        count++;
        opts = ov[0] == ov[1] ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
        pos = ov[1];
    }
    esb__lmod_buf_add(&b, s + copied, len - copied);
    esb__lmod_buf_push(&b);
    lua_pushinteger(L, count);
    return 2;
}

/* ---- the module: esb.re.f(s, pattern, ..., flags) and regex:f(s, ...) ---- */

static int l_match(lua_State *L)
{
    return do_match(L, 1, get_rx(L, 2, 3));
}

static int l_gmatch(lua_State *L)
{
    get_rx(L, 2, 3);
    return do_gmatch(L, 1, lua_gettop(L));
}

static int l_gsub(lua_State *L)
{
    get_rx(L, 2, 4);
    return do_gsub(L, 1, lua_gettop(L), 3);
}

static int l_compile(lua_State *L)
{
    get_rx(L, 1, 2);
    return 1;
}

static int m_match(lua_State *L)
{
    return do_match(L, 2, luaL_checkudata(L, 1, RX_MT));
}

static int m_gmatch(lua_State *L)
{
    luaL_checkudata(L, 1, RX_MT);
    return do_gmatch(L, 2, 1);
}

static int m_gsub(lua_State *L)
{
    luaL_checkudata(L, 1, RX_MT);
    luaL_checkany(L, 3);
    return do_gsub(L, 2, 1, 3);
}

static int state_gc(lua_State *L)
{
    struct restate *st = lua_touserdata(L, 1);
    pcre2_match_data_free(st->md);
    pcre2_match_context_free(st->mctx);
    pcre2_jit_stack_free(st->jit);
    memset(st, 0, sizeof(*st));
    return 0;
}

int esb_luaopen_re(lua_State *L)
{
    static const luaL_Reg fns[] = {{"match", l_match},
                                   {"gmatch", l_gmatch},
                                   {"gsub", l_gsub},
                                   {"compile", l_compile},
                                   {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"match", m_match}, {"gmatch", m_gmatch}, {"gsub", m_gsub}, {NULL, NULL}};

    luaL_checkstack(L, 8, "out of stack space");
    struct restate *st = lua_newuserdatauv(L, sizeof(*st), 0);
    memset(st, 0, sizeof(*st));
    if (luaL_newmetatable(L, STATE_MT)) {
        lua_pushcfunction(L, state_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, STATE_MT);
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    st->mctx = pcre2_match_context_create(NULL);
    st->jit = pcre2_jit_stack_create(32 * 1024, JIT_STACK_MAX, NULL);
    if (!st->mctx) esb__lmod_error(L, "esb.re: out of memory");
    pcre2_set_match_limit(st->mctx, MATCH_LIMIT);
    pcre2_set_depth_limit(st->mctx, DEPTH_LIMIT);
    pcre2_set_heap_limit(st->mctx, HEAP_LIMIT_KIB);
    if (st->jit) pcre2_jit_stack_assign(st->mctx, NULL, st->jit);
    int sti = lua_gettop(L);
    lua_newtable(L); /* the compiled-pattern cache */
    int ci = lua_gettop(L);

    if (luaL_newmetatable(L, RX_MT)) {
        lua_pushcfunction(L, rx_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, RX_MT);
        lua_setfield(L, -2, "__metatable");
    }
    lua_newtable(L);
    lua_pushvalue(L, sti);
    lua_pushvalue(L, ci);
    luaL_setfuncs(L, methods, 2);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newlibtable(L, fns);
    lua_pushvalue(L, sti);
    lua_pushvalue(L, ci);
    luaL_setfuncs(L, fns, 2);
    lua_remove(L, sti);
    lua_remove(L, sti);
    return 1;
}
