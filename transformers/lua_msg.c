/* lua_msg.c - messages to Lua tables and back (see lua_internal.h).
 *
 * In: {id, content_type, body, headers = {lowercase name = value}}; for a
 * name given twice the first value is shown.
 * Out: the transform's result is read with raw access only (no metamethod
 * of the script runs) and without Lua allocations (numbers are formatted
 * here), then checked against the message model's limits (msg.h) and the
 * call's max_output. Cheap paths: a body that is still the very string we
 * pushed shares the input's body bytes; headers equal to the input's keep
 * the input's list (order and duplicates included). Otherwise headers come
 * in the input's order first, then the new ones sorted by name, so the
 * output does not depend on Lua's table order. */
#include "config.h"

#include "lua_internal.h"

#include "msg.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct hdr {
    char *name;  /* lowercased, owned */
    char *value; /* owned */
    int used;
};

struct conv {
    lua_State *L;
    const struct esb_msg *in;
    const struct esb__lua_pushed *pushed;
    uint64_t max_output;
    struct esb__lua_out *o;
    char *reason;
    size_t reason_len;
    char where[40]; /* "" or " [3]" for a list item */
};

ESB_PRINTF(2, 3)
static int fail(struct conv *c, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->reason, c->reason_len, "transform result%s: %s", c->where, msg);
    return -1;
}

static void lower(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] + 32) : src[i];
    dst[n] = '\0';
}

void esb__lua_push_msg(lua_State *L, const struct esb_msg *m, struct esb__lua_pushed *p)
{
    char name[ESB_MSG_MAX_NAME + 1];
    p->dups = 0;
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, m->id_text, strlen(m->id_text));
    lua_setfield(L, -2, "id");
    lua_pushstring(L, m->content_type);
    lua_setfield(L, -2, "content_type");
    lua_pushlstring(L, (const char *)m->body->data, m->body->len);
    p->body = lua_tostring(L, -1);
    lua_setfield(L, -2, "body");
    lua_createtable(L, 0, (int)(m->nheaders < 64 ? m->nheaders : 64));
    for (size_t i = 0; i < m->nheaders; i++) {
        size_t n = strlen(m->headers[i].name);
        if (n > ESB_MSG_MAX_NAME) continue;
        lower(name, m->headers[i].name, n);
        lua_pushlstring(L, name, n);
        if (lua_rawget(L, -2) != LUA_TNIL) { /* the first of duplicates wins */
            lua_pop(L, 1);
            p->dups = 1;
            continue;
        }
        lua_pop(L, 1);
        lua_pushlstring(L, name, n);
        lua_pushstring(L, m->headers[i].value);
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    p->table = lua_absindex(L, -1);
}

void esb__lua_out_free(struct esb__lua_out *o)
{
    for (size_t i = 0; i < o->n; i++) esb_msg_unref(o->v[i]);
    free(o->v);
    memset(o, 0, sizeof(*o));
}

/* The text of a header value at idx (a string or a number) into buf or as
 * a pointer to the Lua string; NULL if another type. No allocation. */
static const char *value_text(lua_State *L, int idx, char buf[64], size_t *len)
{
    if (lua_type(L, idx) == LUA_TSTRING) return lua_tolstring(L, idx, len);
    if (lua_type(L, idx) != LUA_TNUMBER) return NULL;
    if (lua_isinteger(L, idx)) {
        *len = (size_t)snprintf(buf, 64, "%lld", (long long)lua_tointeger(L, idx));
    } else {
        *len = (size_t)snprintf(buf, 64, "%.14g", (double)lua_tonumber(L, idx));
        if (strspn(buf, "-0123456789") == *len) { /* like tostring(): 3.0, not 3 */
            memcpy(buf + *len, ".0", 3);
            *len += 2;
        }
    }
    return buf;
}

static int token_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Are the headers at h exactly the input's (as pushed)? An input with a
 * name given twice takes the slow path. */
static int same_headers(struct conv *c, int h)
{
    lua_State *L = c->L;
    const struct esb_msg *in = c->in;
    char name[ESB_MSG_MAX_NAME + 1], buf[64];
    size_t n = 0;
    if (c->pushed->dups) return 0;
    for (size_t i = 0; i < in->nheaders; i++) {
        size_t nl = strlen(in->headers[i].name), vl;
        if (nl > ESB_MSG_MAX_NAME) return 0;
        lower(name, in->headers[i].name, nl);
        lua_pushlstring(L, name, nl); /* an existing key: interned, no allocation */
        lua_rawget(L, h);
        const char *v = value_text(L, -1, buf, &vl);
        int eq = v && vl == strlen(in->headers[i].value) && !memcmp(v, in->headers[i].value, vl);
        lua_pop(L, 1);
        if (!eq) return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, h)) {
        lua_pop(L, 1);
        n++;
    }
    return n == in->nheaders;
}

static int cmp_hdr(const void *a, const void *b)
{
    return strcmp(((const struct hdr *)a)->name, ((const struct hdr *)b)->name);
}

static void free_hdrs(struct hdr *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].value);
    }
    free(v);
}

/* Read the headers table at h into a sorted array (*ct_header: the value
 * of a "content-type" key, owned, or NULL). */
static int read_headers(struct conv *c, int h, struct hdr **out, size_t *nout, char **ct_header)
{
    lua_State *L = c->L;
    struct hdr *v = NULL;
    size_t n = 0, cap = 0;
    char buf[64];
    *out = NULL;
    *nout = 0;
    *ct_header = NULL;
    lua_pushnil(L);
    while (lua_next(L, h)) {
        size_t nl, vl;
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            free_hdrs(v, n);
            return fail(c, "headers: a header name must be a string (got a %s)",
                        luaL_typename(L, -2));
        }
        const char *name = lua_tolstring(L, -2, &nl);
        const char *val = value_text(L, -1, buf, &vl);
        const char *err = NULL;
        if (nl == 0 || nl > ESB_MSG_MAX_NAME) err = "a header name is 1 to 1024 characters";
        for (size_t i = 0; i < nl && !err; i++)
            if (!token_char(name[i]))
                err = "a header name has only letters, digits and !#$%&'*+-.^_`|~";
        if (!err && !val) err = "a header value must be a string or a number";
        if (!err && vl > ESB_MSG_MAX_VALUE) err = "a header value is at most 65536 bytes";
        for (size_t i = 0; i < vl && !err; i++)
            if (val[i] == '\r' || val[i] == '\n' || val[i] == '\0')
                err = "a header value must not contain CR, LF or NUL";
        if (!err && n >= ESB_MSG_MAX_HEADERS) err = "more than 1024 headers";
        if (err) {
            int rc = fail(c, "headers['%.60s']: %s (got %s)", name, err,
                          val ? "a string" : luaL_typename(L, -1));
            lua_pop(L, 2);
            free_hdrs(v, n);
            return rc;
        }
        char *lname = esb_malloc(nl + 1);
        lower(lname, name, nl);
        if (strcmp(lname, "content-type") == 0) {
            free(*ct_header);
            *ct_header = esb_strndup(val, vl);
            free(lname);
        } else {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                v = esb_realloc(v, cap * sizeof(*v));
            }
            v[n++] = (struct hdr){lname, esb_strndup(val, vl), 0};
        }
        lua_pop(L, 1);
    }
    if (n > 1) qsort(v, n, sizeof(*v), cmp_hdr);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(v[i - 1].name, v[i].name) == 0) {
            int rc =
                fail(c, "headers: '%.60s' is given twice (names are case-insensitive)", v[i].name);
            free_hdrs(v, n);
            free(*ct_header);
            *ct_header = NULL;
            return rc;
        }
    }
    *out = v;
    *nout = n;
    return 0;
}

/* Add the headers of v to m: the input's order first, then the others. */
static void apply_headers(struct conv *c, struct esb_msg *m, struct hdr *v, size_t n)
{
    char name[ESB_MSG_MAX_NAME + 1];
    for (size_t i = 0; n && i < c->in->nheaders; i++) {
        size_t nl = strlen(c->in->headers[i].name);
        if (nl > ESB_MSG_MAX_NAME) continue;
        lower(name, c->in->headers[i].name, nl);
        struct hdr key = {name, NULL, 0};
        struct hdr *h = bsearch(&key, v, n, sizeof(*v), cmp_hdr);
        if (h && !h->used) {
            esb_msg_add_header(m, h->name, h->value);
            h->used = 1;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!v[i].used) esb_msg_add_header(m, v[i].name, v[i].value);
}

static int field(lua_State *L, int t, const char *name)
{
    lua_pushstring(L, name);
    return lua_rawget(L, t);
}

/* Convert the message table at t; is_input: it is the table we pushed;
 * child: a split item (fresh id). Appends to c->o. */
static int to_msg(struct conv *c, int t, int is_input, int child)
{
    lua_State *L = c->L;
    int top = lua_gettop(L);
    struct esb_msg *m = NULL;
    struct hdr *hv = NULL;
    size_t nh = 0;
    char *ct_header = NULL;
    int rc = -1;

    if (field(L, t, "body") != LUA_TSTRING) {
        rc = fail(c, "body must be a string (got %s)", luaL_typename(L, -1));
        goto out;
    }
    size_t blen;
    const char *body = lua_tolstring(L, -1, &blen);
    if (blen > c->max_output - c->o->bytes) {
        rc = fail(c, "the bodies returned are larger than max-output (%llu bytes)",
                  (unsigned long long)c->max_output);
        goto out;
    }
    int ct_type = field(L, t, "content_type");
    size_t ctl = 0;
    const char *ct = ct_type == LUA_TSTRING ? lua_tolstring(L, -1, &ctl) : NULL;
    if (ct_type != LUA_TNIL && ct_type != LUA_TSTRING) {
        rc = fail(c, "content_type must be a string (got %s)", luaL_typename(L, -1));
        goto out;
    }
    for (size_t i = 0; ct && i < ctl; i++)
        if ((unsigned char)ct[i] < 0x20 || ct[i] == 0x7f) ctl = ESB_MSG_MAX_NAME + 1;
    if (ctl > ESB_MSG_MAX_NAME) {
        rc = fail(c, "content_type must be at most %d bytes without control characters",
                  ESB_MSG_MAX_NAME);
        goto out;
    }
    int id_type = field(L, t, "id");
    esb_uuid_t id;
    int have_id = 0;
    if (id_type == LUA_TSTRING && !child) {
        if (esb_uuid_parse(lua_tostring(L, -1), &id) != 0) {
            rc =
                fail(c, "id must be a UUID like 0190a5c2-7b1e-7c3d-8e4f-0123456789ab (got '%.60s')",
                     lua_tostring(L, -1));
            goto out;
        }
        have_id = 1;
    } else if (id_type != LUA_TNIL && id_type != LUA_TSTRING) {
        rc = fail(c, "id must be a string (got %s)", luaL_typename(L, -1));
        goto out;
    } else if (is_input && !child) {
        id = c->in->id;
        have_id = 1;
    }
    int htype = field(L, t, "headers");
    int h = lua_gettop(L);
    if (htype != LUA_TNIL && htype != LUA_TTABLE) {
        rc = fail(c, "headers must be a table (got %s)", luaL_typename(L, -1));
        goto out;
    }
    if (htype == LUA_TTABLE && same_headers(c, h)) {
        m = esb_msg_clone(c->in);
    } else {
        if (htype == LUA_TTABLE && read_headers(c, h, &hv, &nh, &ct_header) < 0) goto out;
        m = esb_msg_new();
        apply_headers(c, m, hv, nh);
    }
    if (have_id) {
        m->id = id;
        esb_uuid_format(&m->id, m->id_text);
    } else if (memcmp(&m->id, &c->in->id, sizeof(id)) == 0) { /* a clone of the input */
        esb_uuid_v7(&m->id);
        esb_uuid_format(&m->id, m->id_text);
    }
    if (body == c->pushed->body)
        esb_msg_set_body_take(m, esb_body_ref(c->in->body));
    else
        esb_msg_set_body(m, body, blen);
    if (ct) {
        char tmp[ESB_MSG_MAX_NAME + 1];
        memcpy(tmp, ct, ctl);
        tmp[ctl] = '\0';
        esb_msg_set_content_type(m, tmp);
    } else {
        esb_msg_set_content_type(m, ct_header ? ct_header : "");
    }
    c->o->bytes += blen;
    if (c->o->n == c->o->cap) {
        c->o->cap = c->o->cap ? c->o->cap * 2 : 4;
        c->o->v = esb_realloc(c->o->v, c->o->cap * sizeof(*c->o->v));
    }
    c->o->v[c->o->n++] = m;
    m = NULL;
    rc = 0;
out:
    esb_msg_unref(m);
    free_hdrs(hv, nh);
    free(ct_header);
    lua_settop(L, top);
    return rc;
}

int esb__lua_to_msgs(lua_State *L, int idx, const struct esb_msg *in,
                     const struct esb__lua_pushed *p, uint64_t max_output, struct esb__lua_out *o,
                     char *reason, size_t reason_len)
{
    struct conv c = {L, in, p, max_output, o, reason, reason_len, ""};
    idx = lua_absindex(L, idx);
    int type = lua_type(L, idx);
    if (type == LUA_TNIL) return 0;
    if (type != LUA_TTABLE)
        return fail(&c, "a transform returns a message table, a list of them, or nil (got %s)",
                    luaL_typename(L, idx));
    if (lua_rawequal(L, idx, p->table)) return to_msg(&c, idx, 1, 0);
    int has_body = field(L, idx, "body") != LUA_TNIL;
    lua_pop(L, 1);
    if (has_body) return to_msg(&c, idx, 0, 0);
    lua_Unsigned n = lua_rawlen(L, idx);
    if (n == 0) {
        lua_pushnil(L);
        if (lua_next(L, idx) == 0) return 0; /* {}: an empty list, nothing to send */
        lua_pop(L, 2);
        return fail(&c, "a table that is neither a message (no body) nor a list of messages");
    }
    if (n > ESB_LUA_MAX_SPLIT)
        return fail(&c, "a list of %llu messages (at most %d)", (unsigned long long)n,
                    ESB_LUA_MAX_SPLIT);
    const char *corr = esb_msg_header(in, "correlation-id");
    char num[24], size[24];
    snprintf(size, sizeof(size), "%llu", (unsigned long long)n);
    for (lua_Unsigned i = 1; i <= n; i++) {
        snprintf(c.where, sizeof(c.where), " [%llu]", (unsigned long long)i);
        if (lua_rawgeti(L, idx, (lua_Integer)i) != LUA_TTABLE) {
            int rc = fail(&c, "a list item must be a message table (got %s)", luaL_typename(L, -1));
            lua_pop(L, 1);
            return rc;
        }
        int rc = to_msg(&c, lua_gettop(L), lua_rawequal(L, -1, p->table), 1);
        lua_pop(L, 1);
        if (rc < 0) return rc;
        struct esb_msg *m = o->v[o->n - 1];
        if (!esb_msg_header(m, "correlation-id"))
            esb_msg_set_header(m, "correlation-id", corr ? corr : in->id_text);
        snprintf(num, sizeof(num), "%llu", (unsigned long long)i);
        esb_msg_set_header(m, "split-index", num);
        esb_msg_set_header(m, "split-size", size);
    }
    return 0;
}
