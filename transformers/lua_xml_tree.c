/* lua_xml_tree.c - the esb.xml functions that work on node tables only:
 * text, find, find_all and serialize (our own writer: escaping, name checks,
 * namespace declarations added where a prefix is not bound in scope, into a
 * Lua-owned buffer). The table shape is described in lua_xml.c and
 * docs/lua-api.md. Walks are depth-capped, so a table cycle ends in an
 * error. */
#include "config.h"

#include "lua_modules.h"
#include "lua_modules_internal.h"

#include <stdio.h>

#include <lauxlib.h>

/* ---- walking tables: text, find, find_all ---- */

/* Walks are capped in depth (a cycle) and, for walks that produce little
 * output (text, find), in visited nodes: a table whose children share
 * subtrees ({t, t} nested 100 deep) would otherwise take 2^100 steps in C,
 * out of reach of the instruction budget. */
#define MAX_VISITS ((size_t)1 << 24)

static void check_depth(lua_State *L, int depth, size_t *visits, const char *who)
{
    if (depth > ESB_LMOD_XML_MAX_DEPTH)
        esb__lmod_error(L, "%s: nesting deeper than %d (a cycle?)", who, ESB_LMOD_XML_MAX_DEPTH);
    if (visits && ++*visits > MAX_VISITS)
        esb__lmod_error(L, "%s: more than %zu nodes (shared subtrees?)", who, MAX_VISITS);
    luaL_checkstack(L, 8, "out of stack space");
}

/* Push node.children of the table at idx (a table, or nil); returns its length. */
static lua_Integer get_children(lua_State *L, int idx)
{
    if (lua_getfield(L, idx, "children") != LUA_TTABLE) return 0;
    return (lua_Integer)lua_rawlen(L, -1);
}

static void text_of(lua_State *L, int node, struct esb__lmod_buf *b, int depth, size_t *visits)
{
    check_depth(L, depth, visits, b->who);
    lua_Integer n = get_children(L, node);
    int ch = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, ch, i);
        if (t == LUA_TSTRING || t == LUA_TNUMBER) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            esb__lmod_buf_add(b, s, len);
        } else if (t == LUA_TTABLE) {
            text_of(L, lua_gettop(L), b, depth + 1, visits);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Push the text of the element at idx, as esb.xml.text gives it: a lone
 * string child as it is (no copy), none "", else the concatenation. */
static void push_text(lua_State *L, int node, const char *who)
{
    int top = lua_gettop(L);
    lua_Integer n = get_children(L, node);
    if (n == 0) {
        lua_settop(L, top);
        lua_pushliteral(L, "");
        return;
    }
    if (n == 1 && lua_rawgeti(L, top + 1, 1) == LUA_TSTRING) {
        lua_remove(L, top + 1);
        return;
    }
    lua_settop(L, top);
    struct esb__lmod_buf b;
    size_t visits = 0;
    esb__lmod_buf_init(L, &b, ESB_LMOD_MAX_OUTPUT, who);
    text_of(L, node, &b, 0, &visits);
    esb__lmod_buf_push(&b);
    lua_remove(L, top + 1); /* the buffer's slot */
}

int esb__lmod_xml_text(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING) {
        lua_settop(L, 1);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    push_text(L, 1, "esb.xml.text");
    return 1;
}

/* index(e [, ns]) / texts(e [, ns]): {name = the first child element named
 * so, or its text} over the children of e whose ns field equals ns (nil: no
 * ns field). The field names are pushed once, not looked up per child. */
static int index_children(lua_State *L, int texts)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    lua_pushliteral(L, "ns");           /* 3 */
    lua_pushliteral(L, "name");         /* 4 */
    lua_createtable(L, 0, 4);           /* 5: the result */
    lua_Integer n = get_children(L, 1); /* 6 */
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 6, i) == LUA_TTABLE) { /* 7 */
            lua_pushvalue(L, 3);
            lua_gettable(L, 7);
            int same = lua_rawequal(L, -1, 2);
            lua_pop(L, 1);
            lua_pushvalue(L, 4);
            if (same && lua_gettable(L, 7) == LUA_TSTRING) { /* 8 */
                lua_pushvalue(L, 8);
                if (lua_rawget(L, 5) == LUA_TNIL) {
                    lua_pushvalue(L, 8);
                    if (texts)
                        push_text(L, 7, "esb.xml.texts");
                    else
                        lua_pushvalue(L, 7);
                    lua_rawset(L, 5);
                }
            }
        }
        lua_settop(L, 6);
    }
    lua_settop(L, 5);
    return 1;
}

int esb__lmod_xml_index(lua_State *L)
{
    return index_children(L, 0);
}

int esb__lmod_xml_texts(lua_State *L)
{
    return index_children(L, 1);
}

struct find {
    const char *name, *ns;
    int all;
    lua_Integer found;
    int out; /* result table (find_all) */
    size_t visits;
};

static int field_is(lua_State *L, int idx, const char *field, const char *want)
{
    lua_getfield(L, idx, field);
    const char *v = lua_tostring(L, -1);
    int same = v && strcmp(v, want) == 0;
    lua_pop(L, 1);
    return same;
}

static int matches(lua_State *L, int node, const struct find *f)
{
    const char *colon = strchr(f->name, ':');
    if (f->ns && !field_is(L, node, "ns", f->ns)) return 0;
    if (strcmp(f->name, "*") == 0) return 1;
    if (!colon) return field_is(L, node, "name", f->name);
    lua_getfield(L, node, "prefix");
    lua_getfield(L, node, "name");
    size_t pl;
    const char *p = lua_tolstring(L, -2, &pl), *n = lua_tostring(L, -1);
    int same = p && n && pl == (size_t)(colon - f->name) && memcmp(p, f->name, pl) == 0 &&
               strcmp(n, colon + 1) == 0;
    lua_pop(L, 2);
    return same;
}

/* Pre-order search of node's descendants; leaves the first match on top and
 * returns 1 (find), or appends all matches to f->out (find_all). */
static int find_in(lua_State *L, int node, struct find *f, int depth)
{
    check_depth(L, depth, &f->visits, f->all ? "esb.xml.find_all" : "esb.xml.find");
    lua_Integer n = get_children(L, node);
    int ch = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, ch, i) != LUA_TTABLE) {
            lua_pop(L, 1);
            continue;
        }
        int c = lua_gettop(L);
        if (matches(L, c, f)) {
            if (!f->all) return 1;
            lua_pushvalue(L, c);
            lua_rawseti(L, f->out, ++f->found);
        }
        if (find_in(L, c, f, depth + 1)) return 1;
        lua_settop(L, ch);
    }
    lua_pop(L, 1);
    return 0;
}

static int do_find(lua_State *L, int all)
{
    struct find f = {.all = all};
    luaL_checktype(L, 1, LUA_TTABLE);
    f.name = luaL_checkstring(L, 2);
    f.ns = luaL_optstring(L, 3, NULL);
    lua_settop(L, 3);
    if (all) {
        lua_newtable(L);
        f.out = lua_gettop(L);
    }
    if (find_in(L, 1, &f, 0)) return 1;
    if (!all) lua_pushnil(L);
    lua_settop(L, 4);
    return 1;
}

int esb__lmod_xml_find(lua_State *L)
{
    return do_find(L, 0);
}

int esb__lmod_xml_find_all(lua_State *L)
{
    return do_find(L, 1);
}

/* ---- serialization ---- */

static int name_char(unsigned char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80) return 1;
    return !first && ((c >= '0' && c <= '9') || c == '-' || c == '.');
}

static int valid_ncname(const char *s, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char((unsigned char)s[i], i == 0)) return 0;
    return 1;
}

/* "name" or "prefix:name" */
static int valid_qname(const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    if (!colon) return valid_ncname(s, n);
    return valid_ncname(s, (size_t)(colon - s)) &&
           valid_ncname(colon + 1, n - (size_t)(colon - s) - 1);
}

/* Append s escaped for text (attr = 0) or an attribute value (attr = 1). */
static void add_escaped(struct esb__lmod_buf *b, const char *s, size_t n, int attr)
{
    size_t bad = esb__lmod_utf8_check(s, n);
    if (bad < n) esb__lmod_error(b->L, "%s: text is not valid UTF-8 (byte %zu)", b->who, bad + 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *rep = NULL;
        if (c == '&')
            rep = "&amp;";
        else if (c == '<')
            rep = "&lt;";
        else if (c == '>')
            rep = "&gt;";
        else if (c == '\r')
            rep = "&#13;";
        else if (attr && c == '"')
            rep = "&quot;";
        else if (attr && c == '\n')
            rep = "&#10;";
        else if (attr && c == '\t')
            rep = "&#9;";
        else if (c < 0x20 && c != '\n' && c != '\t')
            esb__lmod_error(b->L, "%s: character U+%04X is not allowed in XML", b->who, c);
        else if (c == 0xef && i + 2 < n && (unsigned char)s[i + 1] == 0xbf &&
                 ((unsigned char)s[i + 2] & 0xfe) == 0xbe)
            esb__lmod_error(b->L, "%s: character U+FFFE/U+FFFF is not allowed in XML", b->who);
        if (!rep) continue;
        esb__lmod_buf_add(b, s + run, i - run);
        esb__lmod_buf_adds(b, rep);
        run = i + 1;
    }
    esb__lmod_buf_add(b, s + run, n - run);
}

/* Namespace scope while writing: one frame per open element. */
struct scope {
    const struct scope *up;
    int nsdecls;                 /* stack index of node.nsdecls, or 0 */
    const char *auto_p, *auto_u; /* a declaration the writer added here */
};

/* URI bound to prefix ("" = default) in scope, or NULL if unbound. */
static const char *lookup(lua_State *L, const struct scope *s, const char *prefix)
{
    for (; s; s = s->up) {
        if (s->auto_p && strcmp(s->auto_p, prefix) == 0) return s->auto_u;
        if (s->nsdecls) {
            lua_getfield(L, s->nsdecls, prefix);
            const char *u = lua_tostring(L, -1);
            lua_pop(L, 1); /* still referenced by the nsdecls table */
            if (u) return u;
        }
    }
    return NULL;
}

struct ser {
    lua_State *L;
    struct esb__lmod_buf *b;
    int pretty;
};

static void indent(struct ser *w, int depth)
{
    esb__lmod_buf_addc(w->b, '\n');
    for (int i = 0; i < depth; i++) esb__lmod_buf_add(w->b, "  ", 2);
}

static void write_element(struct ser *w, int node, const struct scope *up, int depth);

static void write_attrs(struct ser *w, int node)
{
    lua_State *L = w->L;
    const char *who = w->b->who;
    if (lua_getfield(L, node, "attrs") != LUA_TTABLE) {
        if (!lua_isnil(L, -1)) esb__lmod_error(L, "%s: attrs must be a table", who);
        lua_pop(L, 1);
        return;
    }
    int attrs = lua_gettop(L);
    esb__lmod_sorted_keys(L, attrs, "attribute", who);
    int keys = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, keys);
    for (lua_Integer i = 1; i <= n; i++) {
        size_t kn, vn;
        lua_rawgeti(L, keys, i);
        const char *k = lua_tolstring(L, -1, &kn);
        if (!valid_qname(k, kn)) esb__lmod_error(L, "%s: bad attribute name '%s'", who, k);
        if (strcmp(k, "xmlns") == 0 || strncmp(k, "xmlns:", 6) == 0)
            esb__lmod_error(L, "%s: declare namespaces with ns/nsdecls, not attrs", who);
        lua_pushvalue(L, -1);
        int t = lua_rawget(L, attrs);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            esb__lmod_error(L, "%s: attribute '%s' must be a string or a number", who, k);
        const char *v = lua_tolstring(L, -1, &vn);
        esb__lmod_buf_addc(w->b, ' ');
        esb__lmod_buf_add(w->b, k, kn);
        esb__lmod_buf_add(w->b, "=\"", 2);
        add_escaped(w->b, v, vn, 1);
        esb__lmod_buf_addc(w->b, '"');
        lua_pop(L, 2);
    }
    lua_settop(L, attrs - 1);
}

static void write_ns(struct ser *w, const char *prefix, const char *uri)
{
    esb__lmod_buf_adds(w->b, *prefix ? " xmlns:" : " xmlns");
    esb__lmod_buf_adds(w->b, prefix);
    esb__lmod_buf_add(w->b, "=\"", 2);
    add_escaped(w->b, uri, strlen(uri), 1);
    esb__lmod_buf_addc(w->b, '"');
}

/* Write the start tag's name and namespace declarations; fills self. */
static void write_start(struct ser *w, int node, struct scope *self, const char *prefix)
{
    lua_State *L = w->L;
    const char *who = w->b->who;
    if (self->nsdecls) {
        esb__lmod_sorted_keys(L, self->nsdecls, "nsdecls", who);
        int keys = lua_gettop(L);
        for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, keys); i <= n; i++) {
            lua_rawgeti(L, keys, i);
            const char *p = lua_tostring(L, -1);
            if (*p && !valid_ncname(p, strlen(p)))
                esb__lmod_error(L, "%s: bad namespace prefix '%s'", who, p);
            lua_pushvalue(L, -1);
            if (lua_rawget(L, self->nsdecls) != LUA_TSTRING)
                esb__lmod_error(L, "%s: nsdecls values must be strings", who);
            write_ns(w, p, lua_tostring(L, -1));
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }
    lua_getfield(L, node, "ns");
    const char *ns = lua_tostring(L, -1), *cur = lookup(L, self, prefix);
    if (ns && !*ns) {
        if (*prefix) esb__lmod_error(L, "%s: a prefixed element needs a namespace", who);
        if (cur && *cur) {
            write_ns(w, "", "");
            self->auto_p = self->auto_u = "";
        }
    } else if (ns) {
        if (!cur || strcmp(cur, ns) != 0) {
            write_ns(w, prefix, ns);
            self->auto_p = prefix;
            self->auto_u = ns; /* anchored by the node table */
        }
    } else if (*prefix && !cur && strcmp(prefix, "xml") != 0) {
        esb__lmod_error(L, "%s: prefix '%s' is not declared (set ns)", who, prefix);
    }
    lua_pop(L, 1);
}

static void write_children(struct ser *w, int node, const struct scope *self, int depth, int *empty)
{
    lua_State *L = w->L;
    lua_Integer n = get_children(L, node);
    int ch = lua_gettop(L), only_elems = n > 0;
    for (lua_Integer i = 1; i <= n && only_elems; i++) {
        only_elems = lua_rawgeti(L, ch, i) == LUA_TTABLE;
        lua_pop(L, 1);
    }
    *empty = n == 0;
    if (n) esb__lmod_buf_addc(w->b, '>');
    for (lua_Integer i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, ch, i);
        if (t == LUA_TTABLE) {
            if (w->pretty && only_elems) indent(w, depth + 1);
            write_element(w, lua_gettop(L), self, depth + 1);
        } else if (t == LUA_TSTRING || t == LUA_TNUMBER) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            add_escaped(w->b, s, len, 0);
        } else {
            esb__lmod_error(L, "%s: a child must be a node table or a string, not %s", w->b->who,
                            luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    if (w->pretty && only_elems) indent(w, depth);
    lua_pop(L, 1);
}

static void write_element(struct ser *w, int node, const struct scope *up, int depth)
{
    lua_State *L = w->L;
    const char *who = w->b->who;
    size_t nn, pn = 0;
    int empty;
    check_depth(L, depth, NULL, who); /* the output cap bounds the work */
    if (lua_getfield(L, node, "name") != LUA_TSTRING)
        esb__lmod_error(L, "%s: an element needs a string name", who);
    const char *name = lua_tolstring(L, -1, &nn);
    if (!valid_ncname(name, nn)) esb__lmod_error(L, "%s: bad element name '%s'", who, name);
    const char *prefix = "";
    if (lua_getfield(L, node, "prefix") == LUA_TSTRING) prefix = lua_tolstring(L, -1, &pn);
    if (*prefix && !valid_ncname(prefix, pn))
        esb__lmod_error(L, "%s: bad namespace prefix '%s'", who, prefix);
    struct scope self = {.up = up};
    if (lua_getfield(L, node, "nsdecls") == LUA_TTABLE) self.nsdecls = lua_gettop(L);

    esb__lmod_buf_addc(w->b, '<');
    if (pn) {
        esb__lmod_buf_add(w->b, prefix, pn);
        esb__lmod_buf_addc(w->b, ':');
    }
    esb__lmod_buf_add(w->b, name, nn);
    write_start(w, node, &self, prefix);
    write_attrs(w, node);
    write_children(w, node, &self, depth, &empty);
    if (empty) {
        esb__lmod_buf_add(w->b, "/>", 2);
    } else {
        esb__lmod_buf_add(w->b, "</", 2);
        if (pn) {
            esb__lmod_buf_add(w->b, prefix, pn);
            esb__lmod_buf_addc(w->b, ':');
        }
        esb__lmod_buf_add(w->b, name, nn);
        esb__lmod_buf_addc(w->b, '>');
    }
    lua_pop(L, 3);
}

void esb__lmod_xml_serialize(lua_State *L, int node, int decl, int pretty, struct esb__lmod_buf *b)
{
    struct ser w = {.L = L, .b = b, .pretty = pretty};
    if (decl) esb__lmod_buf_adds(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    write_element(&w, node, NULL, 0);
}

int esb__lmod_xml_serialize_fn(lua_State *L)
{
    const char *who = "esb.xml.serialize";
    struct esb__lmod_buf b;
    luaL_checktype(L, 1, LUA_TTABLE);
    esb__lmod_check_opts(L, 2, who);
    int decl = esb__lmod_opt_bool(L, 2, "declaration", 0, who);
    int pretty = esb__lmod_opt_bool(L, 2, "pretty", 0, who);
    esb__lmod_buf_init(L, &b, ESB_LMOD_MAX_OUTPUT, who);
    esb__lmod_xml_serialize(L, 1, decl, pretty, &b);
    esb__lmod_buf_push(&b);
    return 1;
}
