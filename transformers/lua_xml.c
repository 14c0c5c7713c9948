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
 * The functions that work on node tables only (text, find, find_all,
 * serialize) are in lua_xml_tree.c. */
#include "config.h"

#include "lua_modules.h"
#include "lua_modules_internal.h"
#include "xmlsafe.h"

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
#define XPATH_OP_LIMIT 10000000UL /* XPath steps per evaluation */

/* ---- safe parsing: esb-core/xmlsafe.c ---- */

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) s[--n] = '\0';
}

/* Parse s into a document or raise "<who>: ..." (nothing leaks). */
static xmlDocPtr safe_parse(lua_State *L, const char *s, size_t n, const char *who)
{
    char msg[300];
    if (n > ESB_LMOD_MAX_INPUT)
        esb__lmod_error(L, "%s: input of %zu bytes is larger than %zu", who, n, ESB_LMOD_MAX_INPUT);
    enum esb_xml_fail fail;
    xmlDocPtr doc =
        esb_xml_parse(s, n, XML_PARSE_NOCDATA | XML_PARSE_BIG_LINES, &fail, msg, sizeof(msg));
    if (!doc) esb__lmod_error(L, "%s: %s", who, msg);
    return doc;
}

static void free_doc(void *p)
{
    xmlFreeDoc(p);
}

/* ---- document -> tables ---- */

static int is_text(xmlNodePtr n)
{
    return (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && n->content;
}

static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return 0;
    return 1;
}

/* The field names of node tables, pushed once per conversion (lua_setfield
 * would hash each name again for every element). */
enum { K_NAME, K_NS, K_PREFIX, K_ATTRS, K_CHILDREN, K_NSDECLS, K_COUNT };

struct conv {
    int keys; /* stack index of the first key */
    int keep_blanks;
};

static void conv_init(lua_State *L, struct conv *cv, int keep_blanks)
{
    static const char *const names[K_COUNT] = {"name",  "ns",       "prefix",
                                               "attrs", "children", "nsdecls"};
    luaL_checkstack(L, K_COUNT + 4, "out of stack space");
    cv->keys = lua_gettop(L) + 1;
    cv->keep_blanks = keep_blanks;
    for (int i = 0; i < K_COUNT; i++) lua_pushstring(L, names[i]);
}

/* node[key] = the value on top (popped) */
static void set_key(lua_State *L, const struct conv *cv, int key)
{
    lua_pushvalue(L, cv->keys + key);
    lua_insert(L, -2);
    lua_rawset(L, -3);
}

static void set_key_str(lua_State *L, const struct conv *cv, int key, const xmlChar *v)
{
    lua_pushstring(L, (const char *)v);
    set_key(L, cv, key);
}

/* Push the element el as a table. default_ns: a non-empty default namespace
 * is in scope at el's parent. */
static void push_element(lua_State *L, const struct conv *cv, xmlNodePtr el, int default_ns)
{
    int parent_default = default_ns, nattrs = 0, nkids = 0, has_elem = 0;
    luaL_checkstack(L, 8, "out of stack space");
    for (xmlAttrPtr a = el->properties; a; a = a->next) nattrs++;
    for (xmlNodePtr c = el->children; c; c = c->next) {
        nkids++;
        has_elem |= c->type == XML_ELEMENT_NODE;
    }
    lua_createtable(L, 0, 6);
    set_key_str(L, cv, K_NAME, el->name);
    if (el->nsDef) {
        lua_createtable(L, 0, 2);
        for (xmlNsPtr ns = el->nsDef; ns; ns = ns->next) {
            lua_pushstring(L, ns->prefix ? (const char *)ns->prefix : "");
            lua_pushstring(L, ns->href ? (const char *)ns->href : "");
            lua_rawset(L, -3);
            if (!ns->prefix) default_ns = ns->href && ns->href[0];
        }
        set_key(L, cv, K_NSDECLS);
    }
    if (el->ns) {
        if (el->ns->href) set_key_str(L, cv, K_NS, el->ns->href);
        if (el->ns->prefix) set_key_str(L, cv, K_PREFIX, el->ns->prefix);
    } else if (parent_default) {
        set_key_str(L, cv, K_NS, BAD_CAST "");
    }

    lua_createtable(L, 0, nattrs);
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
    set_key(L, cv, K_ATTRS);

    int n = 0;
    lua_createtable(L, nkids, 0);
    for (xmlNodePtr c = el->children; c;) {
        if (c->type == XML_ELEMENT_NODE) {
            push_element(L, cv, c, default_ns);
            lua_rawseti(L, -2, ++n);
            c = c->next;
            continue;
        }
        /* a run of text (comments and PIs between are dropped): one string,
         * built in one copy (not by repeated concatenation) */
        size_t total = 0;
        int pieces = 0;
        xmlNodePtr r, last = NULL, start = c;
        for (r = c; r && r->type != XML_ELEMENT_NODE; r = r->next) {
            if (is_text(r)) {
                total += strlen((const char *)r->content);
                pieces++;
                last = r;
            }
        }
        c = r;
        if (pieces == 0) continue;
        if (pieces == 1) {
            lua_pushstring(L, (const char *)last->content);
        } else {
            char *p = lua_newuserdatauv(L, total, 0), *o = p;
            for (xmlNodePtr t = start; t != r; t = t->next) {
                if (!is_text(t)) continue;
                size_t len = strlen((const char *)t->content);
                memcpy(o, t->content, len);
                o += len;
            }
            lua_pushlstring(L, p, total);
            lua_remove(L, -2);
        }
        size_t len;
        const char *str = lua_tolstring(L, -1, &len);
        if (!cv->keep_blanks && has_elem && is_blank(str, len))
            lua_pop(L, 1);
        else
            lua_rawseti(L, -2, ++n);
    }
    set_key(L, cv, K_CHILDREN);
}

/* Is a non-empty default namespace in scope at node? */
static int default_ns_at(xmlDocPtr doc, xmlNodePtr node)
{
    xmlNsPtr ns = node && node->type == XML_ELEMENT_NODE ? xmlSearchNs(doc, node, NULL) : NULL;
    return ns && ns->href && ns->href[0];
}

/* Push element el as a table (keep_blanks as in parse). */
static void push_tree(lua_State *L, xmlDocPtr doc, xmlNodePtr el, int keep_blanks)
{
    struct conv cv;
    conv_init(L, &cv, keep_blanks);
    push_element(L, &cv, el, default_ns_at(doc, el->parent));
    lua_replace(L, cv.keys);
    lua_settop(L, cv.keys);
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
    push_tree(L, doc, xmlDocGetRootElement(doc), keep);
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
        else if (n->type == XML_ELEMENT_NODE && depth < ESB_LMOD_XML_MAX_DEPTH)
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

/* libxml2 hands a custom XPath error handler only the code, no message. */
static void xpath_error(void *ud, xmlErrorPtr e)
{
    static const char *const msgs[] = {"ok",
                                       "number encoding",
                                       "unfinished literal",
                                       "start of literal",
                                       "expected $ for variable reference",
                                       "undefined variable",
                                       "invalid predicate",
                                       "invalid expression",
                                       "missing closing curly brace",
                                       "unregistered function",
                                       "invalid operand",
                                       "invalid type",
                                       "invalid number of arguments",
                                       "invalid context size",
                                       "invalid context position",
                                       "memory allocation error",
                                       "syntax error",
                                       "resource error",
                                       "sub resource error",
                                       "undefined namespace prefix",
                                       "encoding error",
                                       "character out of XML range",
                                       "invalid or incomplete context",
                                       "stack usage error",
                                       "forbidden variable",
                                       "operation limit exceeded",
                                       "recursion limit exceeded"};
    char *msg = ud;
    if (msg[0] || !e) return;
    int c = e->code - XML_XPATH_EXPRESSION_OK;
    if (e->message) {
        snprintf(msg, 200, "%s", e->message);
        chomp(msg);
    } else if (c >= 0 && (size_t)c < ESB_ARRAY_LEN(msgs)) {
        snprintf(msg, 200, "%s", msgs[c]);
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
                push_tree(L, doc, nd, 0);
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
            esb__lmod_xml_serialize(L, 1, 0, 0, &b);
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
    push_tree(L, d->doc, xmlDocGetRootElement(d->doc), keep);
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
                                   {"text", esb__lmod_xml_text},
                                   {"find", esb__lmod_xml_find},
                                   {"find_all", esb__lmod_xml_find_all},
                                   {"xpath", l_xpath},
                                   {"xpath_nodes", l_xpath_nodes},
                                   {"serialize", esb__lmod_xml_serialize_fn},
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
