/* lua_xml_build.c - node tables from element and text events (see
 * lua_xml_build.h).
 *
 * Events are first written into one flat buffer (the "log"), then the
 * tables are built from it in a second pass. Two passes, because the SAX
 * callbacks run inside libxml2: a Lua error there (memory refused by the
 * VM's allocator) would jump out through the parser's frames. The second
 * pass also knows every element's number of children and attributes, so
 * each table is made at its final size.
 *
 * Records, all integers native-endian u32 (memcpy, no alignment):
 *   element  'E' nkids nns nattrs nsmode  str name  str prefix  [str uri]
 *            nns x (str prefix, str uri)  nattrs x (str key, str value)
 *            then its nkids children (elements and text records)
 *   text     'T' str text
 * where str is a length then the bytes, nsmode 0 = no ns field, 1 = ns is
 * the uri, 2 = ns = "" (no namespace under a default one), and a prefix of
 * length 0 means none. */
#include "config.h"

#include "lua_xml_build.h"

#include "lua_modules_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* An element still open while its events arrive. */
struct frame {
    size_t rec;      /* offset of its record */
    uint32_t nkids;  /* children kept so far */
    int has_elem;    /* an element child was seen */
    int default_ns;  /* a non-empty default namespace is in scope in it */
    int attrs_begun; /* no more namespace declarations */
};

struct esb__xml_log {
    char *buf;
    size_t len, cap;
    struct frame *fr;
    size_t depth, frcap;
    size_t run; /* offset of the open text record, or SIZE_MAX */
    int keep_blanks;
    int outer_default; /* default_ns where the root is */
    int failed;        /* out of memory: every later event is ignored */
    size_t root;       /* offset of the root element record, or SIZE_MAX */
};

enum { OFF_NKIDS = 1, OFF_NNS = 5, OFF_NATTRS = 9, OFF_NSMODE = 13, HEAD = 17 };

struct esb__xml_log *esb__xml_log_new(int keep_blanks, int default_ns, size_t hint)
{
    struct esb__xml_log *g = calloc(1, sizeof(*g));
    if (!g) return NULL;
    g->keep_blanks = keep_blanks;
    g->outer_default = default_ns;
    g->run = g->root = SIZE_MAX;
    g->cap = hint < 256 ? 256 : hint;
    g->buf = malloc(g->cap);
    if (!g->buf) {
        free(g);
        return NULL;
    }
    return g;
}

void esb__xml_log_free(void *p)
{
    struct esb__xml_log *g = p;
    if (!g) return;
    free(g->buf);
    free(g->fr);
    free(g);
}

int esb__xml_log_failed(const struct esb__xml_log *g)
{
    return g->failed;
}

static int reserve(struct esb__xml_log *g, size_t more)
{
    if (g->failed) return -1;
    if (more <= g->cap - g->len) return 0;
    size_t cap = g->cap;
    while (more > cap - g->len) {
        if (cap > SIZE_MAX / 2) goto fail;
        cap *= 2;
    }
    char *b = realloc(g->buf, cap);
    if (!b) goto fail;
    g->buf = b;
    g->cap = cap;
    return 0;
fail:
    g->failed = 1;
    return -1;
}

static void put_u32(struct esb__xml_log *g, size_t at, uint32_t v)
{
    memcpy(g->buf + at, &v, 4);
}

static uint32_t get_u32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Append a string record (length, bytes); the caller reserved room. */
static void add_str(struct esb__xml_log *g, const char *s, size_t n)
{
    put_u32(g, g->len, (uint32_t)n);
    if (n) memcpy(g->buf + g->len + 4, s, n);
    g->len += 4 + n;
}

static int add_strs(struct esb__xml_log *g, const char *a, size_t an, const char *b, size_t bn)
{
    if (an > UINT32_MAX || bn > UINT32_MAX || reserve(g, 8 + an + bn) != 0) return -1;
    add_str(g, a, an);
    add_str(g, b, bn);
    return 0;
}

static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return 0;
    return 1;
}

/* End the open text run: dropped when blank in an element that has
 * element children (unless keep_blanks), else one child of the parent. */
static void end_run(struct esb__xml_log *g, int elem_follows)
{
    if (g->run == SIZE_MAX) return;
    struct frame *f = &g->fr[g->depth - 1];
    const char *s = g->buf + g->run + 5;
    size_t n = get_u32(g->buf + g->run + 1);
    if (!g->keep_blanks && (elem_follows || f->has_elem) && is_blank(s, n))
        g->len = g->run;
    else
        f->nkids++;
    g->run = SIZE_MAX;
}

void esb__xml_log_start(struct esb__xml_log *g, const char *name, const char *prefix,
                        const char *uri)
{
    if (g->failed) return;
    int parent_default = g->outer_default;
    if (g->depth) {
        end_run(g, 1);
        struct frame *p = &g->fr[g->depth - 1];
        p->has_elem = 1;
        p->nkids++;
        parent_default = p->default_ns;
    } else if (g->root != SIZE_MAX) {
        g->failed = 1; /* a second root: cannot happen in a well-formed document */
        return;
    }
    if (g->depth == g->frcap) {
        size_t cap = g->frcap ? g->frcap * 2 : 16;
        struct frame *fr = realloc(g->fr, cap * sizeof(*fr));
        if (!fr) {
            g->failed = 1;
            return;
        }
        g->fr = fr;
        g->frcap = cap;
    }
    size_t nn = strlen(name), pn = prefix ? strlen(prefix) : 0, un = uri ? strlen(uri) : 0;
    if (reserve(g, HEAD + 12 + nn + pn + un) != 0) return;
    size_t rec = g->len;
    g->buf[rec] = 'E';
    put_u32(g, rec + OFF_NKIDS, 0);
    put_u32(g, rec + OFF_NNS, 0);
    put_u32(g, rec + OFF_NATTRS, 0);
    put_u32(g, rec + OFF_NSMODE, uri ? 1 : parent_default ? 2 : 0);
    g->len += HEAD;
    add_str(g, name, nn);
    add_str(g, prefix, pn);
    if (uri) add_str(g, uri, un);
    if (g->depth == 0) g->root = rec;
    g->fr[g->depth++] = (struct frame){.rec = rec, .default_ns = parent_default};
}

void esb__xml_log_ns(struct esb__xml_log *g, const char *prefix, const char *uri)
{
    if (g->failed || !g->depth) return;
    struct frame *f = &g->fr[g->depth - 1];
    if (f->attrs_begun) { /* callers declare namespaces first */
        g->failed = 1;
        return;
    }
    if (!prefix) f->default_ns = uri && uri[0];
    const char *p = prefix ? prefix : "", *u = uri ? uri : "";
    if (add_strs(g, p, strlen(p), u, strlen(u)) != 0) return;
    put_u32(g, f->rec + OFF_NNS, get_u32(g->buf + f->rec + OFF_NNS) + 1);
}

void esb__xml_log_attr(struct esb__xml_log *g, const char *prefix, const char *name,
                       const char *value, size_t vn, int amp38)
{
    if (g->failed || !g->depth) return;
    struct frame *f = &g->fr[g->depth - 1];
    f->attrs_begun = 1;
    size_t pn = prefix ? strlen(prefix) : 0, nn = strlen(name), kn = pn ? pn + 1 + nn : nn;
    if (kn > UINT32_MAX || vn > UINT32_MAX || reserve(g, 8 + kn + vn) != 0) return;
    put_u32(g, g->len, (uint32_t)kn);
    char *o = g->buf + g->len + 4;
    if (pn) {
        memcpy(o, prefix, pn);
        o[pn] = ':';
        o += pn + 1;
    }
    memcpy(o, name, nn);
    g->len += 4 + kn;
    size_t at = g->len;
    o = g->buf + at + 4;
    const char *s = value, *end = value + vn;
    while (s < end) { /* copy, turning libxml2's "&#38;" back into '&' */
        const char *amp = amp38 ? memchr(s, '&', (size_t)(end - s)) : NULL;
        size_t k = amp ? (size_t)(amp - s) : (size_t)(end - s);
        memcpy(o, s, k);
        o += k;
        s += k;
        if (!amp) break;
        *o++ = '&';
        s += (size_t)(end - s) >= 5 && memcmp(s, "&#38;", 5) == 0 ? 5 : 1;
    }
    put_u32(g, at, (uint32_t)(o - (g->buf + at + 4)));
    g->len = (size_t)(o - g->buf);
    put_u32(g, f->rec + OFF_NATTRS, get_u32(g->buf + f->rec + OFF_NATTRS) + 1);
}

void esb__xml_log_text(struct esb__xml_log *g, const char *s, size_t n)
{
    if (g->failed || !g->depth || n == 0) return;
    if (g->run == SIZE_MAX) {
        if (reserve(g, 5) != 0) return;
        g->run = g->len;
        g->buf[g->len] = 'T';
        put_u32(g, g->len + 1, 0);
        g->len += 5;
    }
    size_t have = get_u32(g->buf + g->run + 1);
    if (n > UINT32_MAX - have || reserve(g, n) != 0) return;
    memcpy(g->buf + g->len, s, n);
    g->len += n;
    put_u32(g, g->run + 1, (uint32_t)(have + n));
}

void esb__xml_log_end(struct esb__xml_log *g)
{
    if (g->failed || !g->depth) return;
    end_run(g, 0);
    struct frame *f = &g->fr[--g->depth];
    put_u32(g, f->rec + OFF_NKIDS, f->nkids);
}

/* ---- pass two: the tables ---- */

/* The field names, pushed once per build (lua_setfield would hash each
 * name again for every element). */
enum { K_NAME, K_NS, K_PREFIX, K_ATTRS, K_CHILDREN, K_NSDECLS, K_COUNT };

struct reader {
    lua_State *L;
    const char *p;
    int keys; /* stack index of the first key */
};

static const char *read_str(struct reader *r, size_t *n)
{
    *n = get_u32(r->p);
    const char *s = r->p + 4;
    r->p += 4 + *n;
    return s;
}

static void push_str(struct reader *r)
{
    size_t n;
    const char *s = read_str(r, &n);
    lua_pushlstring(r->L, s, n);
}

/* t[key] = the value on top (popped); t just below it */
static void set_key(struct reader *r, int key)
{
    lua_pushvalue(r->L, r->keys + key);
    lua_insert(r->L, -2);
    lua_rawset(r->L, -3);
}

/* Push a table of the next n (key, value) string pairs. */
static void push_map(struct reader *r, uint32_t n)
{
    lua_createtable(r->L, 0, (int)n);
    for (uint32_t i = 0; i < n; i++) {
        push_str(r);
        push_str(r);
        lua_rawset(r->L, -3);
    }
}

static void build_element(struct reader *r, int depth)
{
    lua_State *L = r->L;
    if (depth > ESB_LMOD_XML_MAX_DEPTH) esb__lmod_error(L, "esb.xml: nesting too deep");
    luaL_checkstack(L, 8, "out of stack space");
    const char *h = r->p;
    uint32_t nkids = get_u32(h + OFF_NKIDS), nns = get_u32(h + OFF_NNS),
             nattrs = get_u32(h + OFF_NATTRS), nsmode = get_u32(h + OFF_NSMODE);
    r->p += HEAD;
    size_t nn, pn, un = 0;
    const char *name = read_str(r, &nn), *prefix = read_str(r, &pn), *uri = NULL;
    if (nsmode == 1) uri = read_str(r, &un);
    lua_createtable(L, 0, 3 + (nsmode != 0) + (pn != 0) + (nns != 0));
    lua_pushlstring(L, name, nn);
    set_key(r, K_NAME);
    if (nsmode) {
        lua_pushlstring(L, nsmode == 1 ? uri : "", un);
        set_key(r, K_NS);
    }
    if (pn) {
        lua_pushlstring(L, prefix, pn);
        set_key(r, K_PREFIX);
    }
    if (nns) {
        push_map(r, nns);
        set_key(r, K_NSDECLS);
    }
    push_map(r, nattrs);
    set_key(r, K_ATTRS);
    lua_createtable(L, (int)nkids, 0);
    for (uint32_t i = 1; i <= nkids; i++) {
        if (*r->p == 'E') {
            build_element(r, depth + 1);
        } else {
            r->p++;
            push_str(r);
        }
        lua_rawseti(L, -2, i);
    }
    set_key(r, K_CHILDREN);
}

void esb__xml_log_push(lua_State *L, const struct esb__xml_log *g)
{
    static const char *const names[K_COUNT] = {"name",  "ns",       "prefix",
                                               "attrs", "children", "nsdecls"};
    if (g->failed || g->root == SIZE_MAX || g->depth)
        esb__lmod_error(L, "esb.xml: out of memory building the node tables");
    luaL_checkstack(L, K_COUNT + 4, "out of stack space");
    struct reader r = {.L = L, .p = g->buf + g->root};
    r.keys = lua_gettop(L) + 1;
    for (int i = 0; i < K_COUNT; i++) lua_pushstring(L, names[i]);
    build_element(&r, 0);
    lua_replace(L, r.keys);
    lua_settop(L, r.keys);
}
