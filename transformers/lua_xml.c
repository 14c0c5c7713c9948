/* lua_xml.c - esb.xml: XML text <-> Lua tables, XPath, serialization.
 *
 * Parsing is esb-core/xmlsafe.c (libxml2, XML_PARSE_NONET | NOERROR |
 * NOWARNING | NOCDATA, never NOENT/DTDLOAD/DTDATTR/XINCLUDE/HUGE; a DOCTYPE
 * stops the parser in a SAX hook before its internal subset is read, so
 * entity tricks (XXE, billion laughs) never run; libxml2's default depth
 * limit (256) applies). esb.xml.parse uses its SAX mode: the tables are
 * built from the events (lua_xml_build.c) and no document tree is made;
 * XPath and esb.xml.load need the tree.
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
#include "lua_xml_build.h"
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

/* Raise "<who>: input of N bytes is larger than ..." for oversized text. */
static void check_size(lua_State *L, size_t n, const char *who)
{
    if (n > ESB_LMOD_MAX_INPUT)
        esb__lmod_error(L, "%s: input of %zu bytes is larger than %zu", who, n, ESB_LMOD_MAX_INPUT);
}

/* Parse s into a document or raise "<who>: ..." (nothing leaks). */
static xmlDocPtr safe_parse(lua_State *L, const char *s, size_t n, const char *who)
{
    char msg[300];
    check_size(L, n, who);
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

/* ---- document -> tables (lua_xml_build.c) ---- */

/* The events of element el and its subtree. */
static void log_element(struct esb__xml_log *g, xmlNodePtr el)
{
    esb__xml_log_start(g, (const char *)el->name, el->ns ? (const char *)el->ns->prefix : NULL,
                       el->ns ? (const char *)el->ns->href : NULL);
    for (xmlNsPtr ns = el->nsDef; ns; ns = ns->next)
        esb__xml_log_ns(g, (const char *)ns->prefix, (const char *)ns->href);
    for (xmlAttrPtr a = el->properties; a; a = a->next) {
        const char *prefix = a->ns ? (const char *)a->ns->prefix : NULL;
        if (a->children && !a->children->next && a->children->content) { /* the usual case */
            const char *v = (const char *)a->children->content;
            esb__xml_log_attr(g, prefix, (const char *)a->name, v, strlen(v), 0);
            continue;
        }
        xmlChar *v = xmlNodeListGetString(el->doc, a->children, 1);
        esb__xml_log_attr(g, prefix, (const char *)a->name, v ? (const char *)v : "",
                          v ? strlen((const char *)v) : 0, 0);
        xmlFree(v);
    }
    for (xmlNodePtr c = el->children; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE)
            log_element(g, c);
        else if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
            esb__xml_log_text(g, (const char *)c->content, strlen((const char *)c->content));
    }
    esb__xml_log_end(g);
}

/* Is a non-empty default namespace in scope at node? */
static int default_ns_at(xmlDocPtr doc, xmlNodePtr node)
{
    xmlNsPtr ns = node && node->type == XML_ELEMENT_NODE ? xmlSearchNs(doc, node, NULL) : NULL;
    return ns && ns->href && ns->href[0];
}

/* A new event log owned by a guard on the stack (freed when it closes). */
static struct esb__xml_log *log_new(lua_State *L, int keep_blanks, int default_ns, size_t hint)
{
    void **g = esb__lmod_guard(L, esb__xml_log_free);
    *g = esb__xml_log_new(keep_blanks, default_ns, hint);
    if (!*g) esb__lmod_error(L, "esb.xml: out of memory");
    return *g;
}

/* Push element el as a table (keep_blanks as in parse). */
static void push_tree(lua_State *L, xmlDocPtr doc, xmlNodePtr el, int keep_blanks)
{
    struct esb__xml_log *g = log_new(L, keep_blanks, default_ns_at(doc, el->parent), 4096);
    log_element(g, el);
    esb__xml_log_push(L, g);
    esb__lmod_guard_drop(L, -2);
}

/* esb.xml.parse: SAX events straight into the log, no document. */
struct sax_run {
    struct esb_xml_sax h;
    struct esb__xml_log *g;
};

/* Out of memory for the log: stop the parser (every later event is lost). */
static void sax_check(struct sax_run *r)
{
    if (esb__xml_log_failed(r->g)) esb_xml_sax_stop(&r->h, "out of memory");
}

static void sax_start(void *ud, const unsigned char *name, const unsigned char *prefix,
                      const unsigned char *uri, int nns, const unsigned char **ns, int nattrs,
                      const unsigned char **attrs)
{
    struct sax_run *r = ud;
    struct esb__xml_log *g = r->g;
    esb__xml_log_start(g, (const char *)name, (const char *)prefix, (const char *)uri);
    for (int i = 0; i < nns; i++)
        esb__xml_log_ns(g, (const char *)ns[2 * i], (const char *)ns[2 * i + 1]);
    for (int i = 0; i < nattrs; i++) {
        const unsigned char **a = attrs + 5 * i; /* name, prefix, URI, value, end */
        esb__xml_log_attr(g, (const char *)a[1], (const char *)a[0], (const char *)a[3],
                          (size_t)(a[4] - a[3]), 1);
    }
    sax_check(r);
}

static void sax_end(void *ud)
{
    struct sax_run *r = ud;
    esb__xml_log_end(r->g);
}

static void sax_text(void *ud, const char *s, size_t n)
{
    struct sax_run *r = ud;
    esb__xml_log_text(r->g, s, n);
    sax_check(r);
}

static int l_parse(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    esb__lmod_check_opts(L, 2, "esb.xml.parse");
    int keep = esb__lmod_opt_bool(L, 2, "keep_blanks", 0, "esb.xml.parse");
    check_size(L, n, "esb.xml.parse");
    struct sax_run r = {.h = {.start = sax_start, .end = sax_end, .text = sax_text},
                        .g = log_new(L, keep, 0, n + n / 2)};
    r.h.ud = &r;
    char msg[300];
    enum esb_xml_fail fail;
    if (esb_xml_sax(s, n, XML_PARSE_NOCDATA | XML_PARSE_BIG_LINES, &r.h, &fail, msg, sizeof(msg)))
        esb__lmod_error(L, "esb.xml.parse: %s", msg);
    esb__xml_log_push(L, r.g);
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
                                   {"index", esb__lmod_xml_index},
                                   {"texts", esb__lmod_xml_texts},
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
