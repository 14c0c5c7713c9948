/* lua_xml.c - esb.xml: XML text <-> Lua tables, XPath, serialization.
 *
 * Parsing is libxml2 with a new parser context per call, XML_PARSE_NONET |
 * NOERROR | NOWARNING | NOCDATA and never NOENT/DTDLOAD/DTDATTR/XINCLUDE/
 * HUGE. A DOCTYPE stops the parser in a SAX hook before its internal subset
 * is read (as in config_include.c), so entity tricks (XXE, billion laughs)
 * never run; libxml2's default depth limit (256) applies.
 *
 * Table shape (docs/lua-api.md): an element is
 *   { name=, ns=, prefix=, attrs={...}, children={...}, nsdecls={...} }
 * with text children as plain strings. ns == "" marks an element in no
 * namespace under a default namespace (written back as xmlns="").
 *
 * Serialization is our own writer over that shape (escaping, name checks,
 * namespace declarations added where a prefix is not in scope), into a
 * Lua-owned buffer. */
#include "config.h"

#include "lua_modules.h"
#include "lua_modules_internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#define DOC_MT         "esb.xml.doc"
#define MAX_TREE_DEPTH 256        /* libxml2's own limit without HUGE */
#define XPATH_OP_LIMIT 10000000UL /* XPath steps per evaluation */

/* ---- safe parsing ---- */

static void on_doctype(void *ctx, const xmlChar *name, const xmlChar *eid, const xmlChar *sid)
{
    (void)name;
    (void)eid;
    (void)sid;
    xmlParserCtxtPtr c = ctx;
    *(int *)c->_private = 1;
    xmlStopParser(c);
}

static void quiet(void *ud, xmlErrorPtr e)
{
    (void)ud;
    (void)e;
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) s[--n] = '\0';
}

/* Parse s into a document or raise "<who>: ..." (nothing leaks). */
static xmlDocPtr safe_parse(lua_State *L, const char *s, size_t n, const char *who)
{
    char msg[300];
    int doctype = 0;

    if (n == 0) esb__lmod_error(L, "%s: empty document", who);
    if (n > ESB_LMOD_MAX_INPUT || n > INT_MAX)
        esb__lmod_error(L, "%s: input of %zu bytes is larger than %zu", who, n, ESB_LMOD_MAX_INPUT);
    xmlParserCtxtPtr c = xmlCreateMemoryParserCtxt(s, (int)n);
    if (!c) esb__lmod_error(L, "%s: cannot create an XML parser", who);
    /* Never NOENT, DTDLOAD, DTDATTR, DTDVALID, XINCLUDE or HUGE here. */
    (void)xmlCtxtUseOptions(c, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                   XML_PARSE_NOCDATA | XML_PARSE_BIG_LINES);
    c->sax->internalSubset = on_doctype;
    c->sax->serror = quiet;
    c->_private = &doctype;
    (void)xmlParseDocument(c);
    xmlDocPtr doc = c->myDoc;
    c->myDoc = NULL;
    int good = c->wellFormed && doc && !doctype && xmlDocGetRootElement(doc);
    if (!good) {
        if (doctype) {
            snprintf(msg, sizeof(msg), "DOCTYPE not allowed");
        } else {
            xmlErrorPtr e = xmlCtxtGetLastError(c);
            snprintf(msg, sizeof(msg), "line %d: %s", e ? e->line : 0,
                     e && e->message ? e->message : "not well-formed");
            chomp(msg);
        }
        xmlFreeDoc(doc);
    }
    xmlFreeParserCtxt(c);
    if (!good) esb__lmod_error(L, "%s: %s", who, msg);
    return doc;
}

static void free_doc(void *p)
{
    xmlFreeDoc(p);
}

/* ---- document -> tables ---- */

static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return 0;
    return 1;
}

static void setfield_str(lua_State *L, const char *k, const xmlChar *v)
{
    lua_pushstring(L, (const char *)v);
    lua_setfield(L, -2, k);
}

/* Push the element el as a table. default_ns: a non-empty default namespace
 * is in scope at el's parent. */
static void push_element(lua_State *L, xmlNodePtr el, int default_ns, int keep_blanks)
{
    luaL_checkstack(L, 8, "out of stack space");
    lua_createtable(L, 0, 6);
    setfield_str(L, "name", el->name);
    if (el->nsDef) {
        lua_createtable(L, 0, 2);
        for (xmlNsPtr ns = el->nsDef; ns; ns = ns->next) {
            lua_pushstring(L, ns->prefix ? (const char *)ns->prefix : "");
            lua_pushstring(L, ns->href ? (const char *)ns->href : "");
            lua_rawset(L, -3);
            if (!ns->prefix) default_ns = ns->href && ns->href[0];
        }
        lua_setfield(L, -2, "nsdecls");
    }
    if (el->ns) {
        if (el->ns->href) setfield_str(L, "ns", el->ns->href);
        if (el->ns->prefix) setfield_str(L, "prefix", el->ns->prefix);
    } else if (default_ns) {
        setfield_str(L, "ns", BAD_CAST "");
    }

    lua_newtable(L);
    for (xmlAttrPtr a = el->properties; a; a = a->next) {
        if (a->ns && a->ns->prefix)
            lua_pushfstring(L, "%s:%s", a->ns->prefix, a->name);
        else
            lua_pushstring(L, (const char *)a->name);
        int parts = 0;
        for (xmlNodePtr t = a->children; t; t = t->next) {
            if (!t->content) continue;
            lua_pushstring(L, (const char *)t->content);
            if (++parts > 1) lua_concat(L, 2), parts = 1;
        }
        if (!parts) lua_pushliteral(L, "");
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "attrs");

    int has_elem = 0, n = 0, pending = 0;
    for (xmlNodePtr c = el->children; c; c = c->next) has_elem |= c->type == XML_ELEMENT_NODE;
    lua_newtable(L);
    for (xmlNodePtr c = el->children;; c = c->next) {
        if (c && (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE)) {
            if (!c->content) continue;
            lua_pushstring(L, (const char *)c->content);
            if (pending) lua_concat(L, 2);
            pending = 1;
            continue;
        }
        if (c && c->type != XML_ELEMENT_NODE) continue; /* comments, PIs */
        if (pending) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            if (!keep_blanks && has_elem && is_blank(s, len))
                lua_pop(L, 1);
            else
                lua_rawseti(L, -2, ++n);
            pending = 0;
        }
        if (!c) break;
        push_element(L, c, default_ns, keep_blanks);
        lua_rawseti(L, -2, ++n);
    }
    lua_setfield(L, -2, "children");
}

/* Is a non-empty default namespace in scope at node? */
static int default_ns_at(xmlDocPtr doc, xmlNodePtr node)
{
    xmlNsPtr ns = node ? xmlSearchNs(doc, node, NULL) : NULL;
    return ns && ns->href && ns->href[0];
}

static int l_parse(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    esb__lmod_check_opts(L, 2, "esb.xml.parse");
    int keep = esb__lmod_opt_bool(L, 2, "keep_blanks", 0, "esb.xml.parse");
    void **g = esb__lmod_guard(L, free_doc);
    xmlDocPtr doc = safe_parse(L, s, n, "esb.xml.parse");
    *g = doc;
    push_element(L, xmlDocGetRootElement(doc), 0, keep);
    return 1;
}

/* ---- walking tables: text, find, find_all ---- */

static void check_depth(lua_State *L, int depth, const char *who)
{
    if (depth > MAX_TREE_DEPTH)
        esb__lmod_error(L, "%s: nesting deeper than %d (a cycle?)", who, MAX_TREE_DEPTH);
    luaL_checkstack(L, 8, "out of stack space");
}

/* Push node.children of the table at idx (a table, or nil); returns its length. */
static lua_Integer get_children(lua_State *L, int idx)
{
    if (lua_getfield(L, idx, "children") != LUA_TTABLE) return 0;
    return (lua_Integer)lua_rawlen(L, -1);
}

static void text_of(lua_State *L, int node, struct esb__lmod_buf *b, int depth)
{
    check_depth(L, depth, b->who);
    lua_Integer n = get_children(L, node);
    int ch = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, ch, i);
        if (t == LUA_TSTRING || t == LUA_TNUMBER) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            esb__lmod_buf_add(b, s, len);
        } else if (t == LUA_TTABLE) {
            text_of(L, lua_gettop(L), b, depth + 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static int l_text(lua_State *L)
{
    struct esb__lmod_buf b;
    if (lua_type(L, 1) == LUA_TSTRING) {
        lua_settop(L, 1);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    esb__lmod_buf_init(L, &b, ESB_LMOD_MAX_OUTPUT, "esb.xml.text");
    text_of(L, 1, &b, 0);
    esb__lmod_buf_push(&b);
    return 1;
}

struct find {
    const char *name, *ns;
    int all;
    lua_Integer found;
    int out; /* result table (find_all) */
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
    check_depth(L, depth, f->all ? "esb.xml.find_all" : "esb.xml.find");
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

static int l_find(lua_State *L)
{
    return do_find(L, 0);
}

static int l_find_all(lua_State *L)
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

/* Push the string keys of the table at t, sorted, as an array. */
static void sorted_keys(lua_State *L, int t, const char *what, const char *who)
{
    lua_newtable(L);
    int out = lua_gettop(L);
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            esb__lmod_error(L, "%s: %s keys must be strings", who, what);
        lua_pushvalue(L, -1);
        lua_rawseti(L, out, ++n);
    }
    /* insertion sort via table.sort would call Lua; n is small: do it here */
    for (lua_Integer i = 2; i <= n; i++) {
        for (lua_Integer j = i; j > 1; j--) {
            lua_rawgeti(L, out, j - 1);
            lua_rawgeti(L, out, j);
            if (strcmp(lua_tostring(L, -2), lua_tostring(L, -1)) <= 0) {
                lua_pop(L, 2);
                break;
            }
            lua_rawseti(L, out, j - 1);
            lua_rawseti(L, out, j);
        }
    }
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
    sorted_keys(L, attrs, "attribute", who);
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
        sorted_keys(L, self->nsdecls, "nsdecls", who);
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
    check_depth(L, depth, who);
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

static void serialize(lua_State *L, int node, int decl, int pretty, struct esb__lmod_buf *b)
{
    struct ser w = {.L = L, .b = b, .pretty = pretty};
    if (decl) esb__lmod_buf_adds(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    write_element(&w, node, NULL, 0);
}

static int l_serialize(lua_State *L)
{
    const char *who = "esb.xml.serialize";
    struct esb__lmod_buf b;
    luaL_checktype(L, 1, LUA_TTABLE);
    esb__lmod_check_opts(L, 2, who);
    int decl = esb__lmod_opt_bool(L, 2, "declaration", 0, who);
    int pretty = esb__lmod_opt_bool(L, 2, "pretty", 0, who);
    esb__lmod_buf_init(L, &b, ESB_LMOD_MAX_OUTPUT, who);
    serialize(L, 1, decl, pretty, &b);
    esb__lmod_buf_push(&b);
    return 1;
}

/* ---- XPath ---- */

struct doc_ud {
    xmlDocPtr doc;
};

static void string_value(xmlNodePtr n, struct esb__lmod_buf *b, int depth)
{
    for (; n; n = n->next) {
        if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && n->content)
            esb__lmod_buf_adds(b, (const char *)n->content);
        else if (n->type == XML_ELEMENT_NODE && depth < MAX_TREE_DEPTH)
            string_value(n->children, b, depth + 1);
    }
}

/* Push the XPath string-value of n. */
static void push_string_value(lua_State *L, xmlNodePtr n, const char *who)
{
    struct esb__lmod_buf b;
    switch (n->type) {
    case XML_NAMESPACE_DECL: {
        xmlNsPtr ns = (xmlNsPtr)n;
        lua_pushstring(L, ns->href ? (const char *)ns->href : "");
        return;
    }
    case XML_ELEMENT_NODE:
    case XML_ATTRIBUTE_NODE:
    case XML_DOCUMENT_NODE:
        esb__lmod_buf_init(L, &b, ESB_LMOD_MAX_OUTPUT, who);
        string_value(n->children, &b, 0);
        esb__lmod_buf_push(&b);
        lua_remove(L, -2);
        return;
    default:
        lua_pushstring(L, n->content ? (const char *)n->content : "");
        return;
    }
}

static void free_xpctx(void *p)
{
    xmlXPathFreeContext(p);
}

static void free_xpobj(void *p)
{
    xmlXPathFreeObject(p);
}

static void xpath_error(void *ud, xmlErrorPtr e)
{
    char *msg = ud;
    if (!msg[0] && e && e->message) {
        snprintf(msg, 200, "%s", e->message);
        chomp(msg);
    }
}

/* Evaluate expr (at ei) on doc with namespaces (table at nsi or 0) and push
 * the result. nodes: element results as tables instead of strings. */
static void eval_xpath(lua_State *L, xmlDocPtr doc, int ei, int nsi, int nodes, const char *who)
{
    char msg[200] = "";
    const char *expr = luaL_checkstring(L, ei);
    void **gc = esb__lmod_guard(L, free_xpctx);
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    if (!ctx) esb__lmod_error(L, "%s: cannot create an XPath context", who);
    *gc = ctx;
    ctx->opLimit = XPATH_OP_LIMIT;
    ctx->error = xpath_error;
    ctx->userData = msg;
    if (nsi) {
        lua_pushnil(L);
        while (lua_next(L, nsi)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                esb__lmod_error(L, "%s: namespaces must map prefix strings to URI strings", who);
            if (xmlXPathRegisterNs(ctx, BAD_CAST lua_tostring(L, -2), BAD_CAST lua_tostring(L, -1)))
                esb__lmod_error(L, "%s: cannot register namespace prefix '%s'", who,
                                lua_tostring(L, -2));
            lua_pop(L, 1);
        }
    }
    void **go = esb__lmod_guard(L, free_xpobj);
    xmlXPathObjectPtr r = xmlXPathEvalExpression(BAD_CAST expr, ctx);
    *go = r;
    if (!r) esb__lmod_error(L, "%s: cannot evaluate '%s': %s", who, expr, msg[0] ? msg : "error");
    switch (r->type) {
    case XPATH_NODESET: {
        int n = r->nodesetval ? r->nodesetval->nodeNr : 0;
        lua_createtable(L, n, 0);
        for (int i = 0; i < n; i++) {
            xmlNodePtr nd = r->nodesetval->nodeTab[i];
            if (nodes && nd->type == XML_DOCUMENT_NODE) nd = xmlDocGetRootElement(doc);
            if (nodes && nd && nd->type == XML_ELEMENT_NODE)
                push_element(L, nd, nd->parent ? default_ns_at(doc, nd->parent) : 0, 0);
            else if (nd)
                push_string_value(L, nd, who);
            else
                continue;
            lua_rawseti(L, -2, i + 1);
        }
        break;
    }
    case XPATH_BOOLEAN:
        lua_pushboolean(L, r->boolval);
        break;
    case XPATH_NUMBER:
        if (r->floatval > -9.0e15 && r->floatval < 9.0e15 &&
            r->floatval == (double)(int64_t)r->floatval)
            lua_pushinteger(L, (lua_Integer)r->floatval);
        else
            lua_pushnumber(L, r->floatval);
        break;
    case XPATH_STRING:
        lua_pushstring(L, r->stringval ? (const char *)r->stringval : "");
        break;
    default:
        esb__lmod_error(L, "%s: unsupported XPath result type", who);
    }
}

static int do_xpath(lua_State *L, int nodes)
{
    const char *who = nodes ? "esb.xml.xpath_nodes" : "esb.xml.xpath";
    xmlDocPtr doc = NULL;
    luaL_checkstring(L, 2);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    int nsi = lua_istable(L, 3) ? 3 : 0;
    struct doc_ud *d = luaL_testudata(L, 1, DOC_MT);
    if (d) {
        doc = d->doc;
    } else if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TTABLE) {
        size_t n;
        const char *s;
        if (lua_type(L, 1) == LUA_TTABLE) {
            struct esb__lmod_buf b;
            esb__lmod_buf_init(L, &b, ESB_LMOD_MAX_OUTPUT, who);
            serialize(L, 1, 0, 0, &b);
            esb__lmod_buf_push(&b);
            lua_replace(L, 1); /* the text keeps living in slot 1 */
            lua_pop(L, 1);
        }
        s = lua_tolstring(L, 1, &n);
        void **g = esb__lmod_guard(L, free_doc);
        doc = safe_parse(L, s, n, who);
        *g = doc;
    } else {
        esb__lmod_error(L, "%s: expected XML text, a node table or a document, not %s", who,
                        luaL_typename(L, 1));
    }
    eval_xpath(L, doc, 2, nsi, nodes, who);
    return 1;
}

static int l_xpath(lua_State *L)
{
    return do_xpath(L, 0);
}

static int l_xpath_nodes(lua_State *L)
{
    return do_xpath(L, 1);
}

/* ---- documents kept parsed: esb.xml.load ---- */

static int doc_gc(lua_State *L)
{
    struct doc_ud *d = lua_touserdata(L, 1);
    if (d && d->doc) xmlFreeDoc(d->doc);
    if (d) d->doc = NULL;
    return 0;
}

static int l_load(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    struct doc_ud *d = lua_newuserdatauv(L, sizeof(*d), 0);
    d->doc = NULL;
    luaL_setmetatable(L, DOC_MT);
    d->doc = safe_parse(L, s, n, "esb.xml.load");
    return 1;
}

static int doc_root(lua_State *L)
{
    struct doc_ud *d = luaL_checkudata(L, 1, DOC_MT);
    esb__lmod_check_opts(L, 2, "esb.xml doc:root");
    int keep = esb__lmod_opt_bool(L, 2, "keep_blanks", 0, "esb.xml doc:root");
    push_element(L, xmlDocGetRootElement(d->doc), 0, keep);
    return 1;
}

static int doc_xpath(lua_State *L)
{
    luaL_checkudata(L, 1, DOC_MT);
    return do_xpath(L, 0);
}

static int doc_xpath_nodes(lua_State *L)
{
    luaL_checkudata(L, 1, DOC_MT);
    return do_xpath(L, 1);
}

int esb_luaopen_xml(lua_State *L)
{
    static const luaL_Reg fns[] = {{"parse", l_parse},
                                   {"load", l_load},
                                   {"text", l_text},
                                   {"find", l_find},
                                   {"find_all", l_find_all},
                                   {"xpath", l_xpath},
                                   {"xpath_nodes", l_xpath_nodes},
                                   {"serialize", l_serialize},
                                   {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"root", doc_root}, {"xpath", doc_xpath}, {"xpath_nodes", doc_xpath_nodes}, {NULL, NULL}};
    xmlInitParser();
    if (luaL_newmetatable(L, DOC_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, doc_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, DOC_MT);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
