/* config_include.c - reading the configuration files: parse each file
 * safely, check its root, substitute ${ENV} in attribute values, validate it
 * against the RelaxNG schema, and expand <include href="..."/> in place.
 *
 * Safety: files are read into memory with a size cap and parsed with a new
 * parser context, XML_PARSE_NONET and never NOENT/DTDLOAD/XINCLUDE/HUGE. A
 * DOCTYPE stops the parser at once (a SAX hook), before any entity in an
 * internal subset is even declared, so entity tricks (XXE, billion laughs)
 * never run.
 *
 * Includes are not spliced into one tree: every file keeps its own document
 * (so libxml2's line numbers and the schema's errors stay right for it) and
 * the merged configuration is the list of top-level elements with the file
 * each came from (esb__config_src.items). Each included file is validated
 * on its own; its root is <esb> like the top file's. */
#include "config.h"

#include "conf.h"

#include "config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/relaxng.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#define ESB_NS "urn:esb:config:1"
/* libxml2 errors kept per file (a broken file can produce many). */
#define MAX_XML_ERRORS 10

#ifndef ESB_SRCDIR
#define ESB_SRCDIR "."
#endif

const char *esb__config_schema_path(void)
{
    static const char installed[] = ESB_DATADIR "/esb-config.rng";
    static const char source[] = ESB_SRCDIR "/routes/esb-config.rng";
    const char *env = getenv("ESB_SCHEMA");
    if (env && *env) return env;
    if (access(installed, R_OK) == 0) return installed;
    if (access(source, R_OK) == 0) return source;
    return installed;
}

int esb__config_line(const struct _xmlNode *node)
{
    if (!node) return 0;
    long l = xmlGetLineNo(node);
    return l > 0 && l < INT_MAX ? (int)l : 0;
}

/* libxml2's messages end with a newline; copy without it. */
static void trim_msg(const char *m, char *buf, size_t n)
{
    snprintf(buf, n, "%s", m ? m : "error");
    size_t len = strlen(buf);
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' ')) buf[--len] = '\0';
}

/* ---- reading and parsing one file ---- */

struct parse_state {
    const char *file;
    struct esb_diags *d;
    int nerrors;
    int doctype_line; /* > 0: a DOCTYPE was seen (and the parse stopped) */
};

static void on_parse_error(void *data, xmlErrorPtr e)
{
    xmlParserCtxtPtr ctxt = data;
    struct parse_state *st = ctxt ? ctxt->_private : NULL;
    char msg[300];
    if (!st || !e || e->level < XML_ERR_ERROR || st->doctype_line) return;
    if (st->nerrors++ >= MAX_XML_ERRORS) return;
    trim_msg(e->message, msg, sizeof(msg));
    esb_diag_add(st->d, st->file, e->line, NULL, "not well-formed XML: %s", msg);
}

/* SAX internalSubset: called at <!DOCTYPE name ...> before its [internal
 * subset] is parsed. Refuse and stop right here. */
static void on_doctype(void *ctx, const xmlChar *name, const xmlChar *ext_id, const xmlChar *sys_id)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct parse_state *st = ctxt->_private;
    st->doctype_line = ctxt->input && ctxt->input->line > 0 ? ctxt->input->line : 1;
    xmlStopParser(ctxt);
}

/* Read the whole of path (capped). Returns 0 or a negative errno / ESB_EFULL. */
static int slurp(const char *path, char **buf, size_t *len)
{
    struct stat st;
    int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
    char *p = NULL;
    size_t n = 0;

    if (fd < 0) return -errno;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EISDIR; /* directories, fifos, devices: not a config file */
        goto out;
    }
    if ((uint64_t)st.st_size > ESB__CONFIG_MAX_FILE_SIZE) {
        rc = ESB_EFULL;
        goto out;
    }
    p = esb_malloc((size_t)st.st_size + 1);
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, p + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = -errno;
            goto out;
        }
        if (r == 0) break; /* shrank meanwhile: parse what is there */
        n += (size_t)r;
    }
    p[n] = '\0';
out:
    close(fd);
    if (rc < 0) {
        free(p);
        return rc;
    }
    *buf = p;
    *len = n;
    return 0;
}

/* Parse file (its text in buf) into a document, or NULL with diagnostics. */
static xmlDoc *parse_doc(const char *file, const char *buf, size_t len, struct esb_diags *d)
{
    struct parse_state st = {.file = file, .d = d};
    xmlDoc *doc = NULL;
    xmlParserCtxtPtr ctxt = NULL;

    if (len > INT_MAX) goto out; /* cannot happen under the size cap */
    ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        esb_diag_add(d, file, 0, NULL, "out of memory creating an XML parser");
        goto out;
    }
    ctxt->_private = &st;
    ctxt->sax->serror = on_parse_error;
    ctxt->sax->internalSubset = on_doctype;
    /* Never NOENT, DTDLOAD, DTDATTR, DTDVALID, XINCLUDE or HUGE here. */
    doc = xmlCtxtReadMemory(ctxt, buf, (int)len, file, NULL,
                            XML_PARSE_NONET | XML_PARSE_NOWARNING | XML_PARSE_NOERROR |
                                XML_PARSE_NOCDATA | XML_PARSE_BIG_LINES);
    if (st.doctype_line) {
        esb_diag_add(d, file, st.doctype_line, NULL,
                     "a DOCTYPE is not allowed in a config file (no DTDs, no entities)");
        if (doc) xmlFreeDoc(doc);
        doc = NULL;
    } else if (!doc && st.nerrors == 0) {
        esb_diag_add(d, file, 0, NULL, "not well-formed XML");
    }
out:
    if (ctxt) xmlFreeParserCtxt(ctxt);
    return doc;
}

/* ---- ${ENV} substitution ---- */

static int is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Substitute ${NAME}, ${NAME:-default} and $$ in v. Returns 0 with *out a
 * new string (NULL if v has nothing to substitute), or ESB_EINVAL with the
 * reason in why. A '$' before anything else stays as it is ("$.a", "x$"). */
static int substitute(const char *v, char **out, char *why, size_t whylen)
{
    struct esb_buf b;
    int rc = 0;

    *out = NULL;
    if (!strchr(v, '$')) return 0;
    esb_buf_init(&b, ESB__CONFIG_MAX_VALUE);
    for (const char *p = v; *p;) {
        const char *add = p;
        size_t addlen = 1;
        if (p[0] == '$' && p[1] == '$') {
            p += 2;
        } else if (p[0] == '$' && p[1] == '{') {
            const char *name = p + 2, *end = strchr(name, '}');
            const char *ne = name;
            while (is_name_char(*ne)) ne++;
            if (!end) {
                snprintf(why, whylen, "unterminated '${' (a literal '$' is written '$$')");
                rc = ESB_EINVAL;
                goto out;
            }
            if (ne == name || !is_name_start(*name) || (ne != end && strncmp(ne, ":-", 2) != 0)) {
                snprintf(why, whylen,
                         "bad variable reference '%.*s' (expected ${NAME} or ${NAME:-default}, "
                         "NAME of letters, digits and '_')",
                         (int)(end - p + 1 > 80 ? 80 : end - p + 1), p);
                rc = ESB_EINVAL;
                goto out;
            }
            char var[128];
            if ((size_t)(ne - name) >= sizeof(var)) {
                snprintf(why, whylen, "variable name too long");
                rc = ESB_EINVAL;
                goto out;
            }
            memcpy(var, name, (size_t)(ne - name));
            var[ne - name] = '\0';
            const char *val = getenv(var);
            if (val) {
                add = val;
                addlen = strlen(val);
            } else if (ne != end) { /* ":-default" */
                add = ne + 2;
                addlen = (size_t)(end - add);
            } else {
                snprintf(why, whylen,
                         "environment variable %.100s is not set (give a default with "
                         "${%.100s:-VALUE})",
                         var, var);
                rc = ESB_EINVAL;
                goto out;
            }
            p = end + 1;
        } else {
            p++;
        }
        if (esb_buf_add(&b, add, addlen) < 0) {
            snprintf(why, whylen, "value longer than %u bytes after substitution",
                     ESB__CONFIG_MAX_VALUE);
            rc = ESB_EINVAL;
            goto out;
        }
    }
    if (esb_buf_add(&b, "", 1) < 0) {
        snprintf(why, whylen, "value too long after substitution");
        rc = ESB_EINVAL;
        goto out;
    }
    *out = (char *)b.data;
    b.data = NULL;
out:
    esb_buf_free(&b);
    return rc;
}

/* Substitute in every attribute of node and its descendants. Returns the
 * number of errors (each a diagnostic). */
static int substitute_tree(xmlNode *node, const char *file, struct esb_diags *d)
{
    int errors = 0;
    for (xmlNode *n = node; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) continue;
        for (xmlAttr *a = n->properties; a; a = a->next) {
            xmlChar *v = xmlNodeListGetString(n->doc, a->children, 1);
            char *nv = NULL, why[512];
            if (substitute(v ? (const char *)v : "", &nv, why, sizeof(why)) < 0) {
                esb_diag_add(d, file, esb__config_line(n), (const char *)n->name,
                             "attribute '%s': %s", (const char *)a->name, why);
                errors++;
            } else if (nv) {
                xmlSetNsProp(n, a->ns, a->name, (const xmlChar *)nv);
                free(nv);
            }
            xmlFree(v);
        }
        errors += substitute_tree(n->children, file, d);
    }
    return errors;
}

/* ---- schema validation ---- */

struct rng_error {
    int prio; /* 1 specific, 2 attributes of an element, 3 generic */
    int line;
    char elem[64];
    char msg[256];
};

struct rng_state {
    struct rng_error errs[MAX_XML_ERRORS];
    int n;
};

/* Walk up from node to the element called name (libxml2 sometimes reports
 * an element's attribute errors at its first child). */
static xmlNode *find_up(xmlNode *node, const char *name)
{
    for (xmlNode *n = node; n && n->type == XML_ELEMENT_NODE; n = n->parent)
        if (name && strcmp((const char *)n->name, name) == 0) return n;
    return node;
}

static void on_rng_error(void *data, xmlErrorPtr e)
{
    struct rng_state *st = data;
    if (!e || st->n >= MAX_XML_ERRORS) return;
    struct rng_error *r = &st->errs[st->n];
    xmlNode *node = e->node;
    char raw[200];
    trim_msg(e->message, raw, sizeof(raw));
    r->prio = 3;
    switch (e->code) {
    case XML_RELAXNG_ERR_INVALIDATTR:
        r->prio = 1;
        snprintf(r->msg, sizeof(r->msg), "attribute '%s' is not allowed here%s",
                 e->str1 ? e->str1 : "?",
                 node && (strcmp((const char *)node->name, "when") == 0 ||
                          strcmp((const char *)node->name, "filter") == 0)
                     ? " (a predicate is exactly one of: xpath; json with equals, matches, gt, "
                       "lt or exists; regex [with header]; header with equals, exists or matches)"
                     : "");
        break;
    case XML_RELAXNG_ERR_ELEMWRONG:
        r->prio = 1;
        if (node && e->str1 && strcmp((const char *)node->name, e->str1) == 0)
            snprintf(r->msg, sizeof(r->msg),
                     "not allowed here (docs/config.md lists where each "
                     "element goes)");
        else
            snprintf(r->msg, sizeof(r->msg), "element <%s> is not allowed here",
                     e->str1 ? e->str1 : "?");
        break;
    case XML_RELAXNG_ERR_ELEMNAME:
        r->prio = 1;
        snprintf(r->msg, sizeof(r->msg), "expected element <%s>, found <%s>",
                 e->str1 ? e->str1 : "?", e->str2 ? e->str2 : "?");
        break;
    case XML_RELAXNG_ERR_ATTRVALID:
        r->prio = 2;
        node = find_up(node, e->str1);
        snprintf(r->msg, sizeof(r->msg),
                 "missing, misplaced or conflicting attributes (see <%s> in docs/config.md)",
                 e->str1 ? e->str1 : "?");
        break;
    case XML_RELAXNG_ERR_INTEREXTRA:
        r->prio = 3;
        snprintf(r->msg, sizeof(r->msg), "element <%s> is not allowed here, or appears twice",
                 e->str1 ? e->str1 : "?");
        break;
    default:
        snprintf(r->msg, sizeof(r->msg), "%s", raw);
        break;
    }
    r->line = esb__config_line(node);
    snprintf(r->elem, sizeof(r->elem), "%s",
             node && node->type == XML_ELEMENT_NODE ? (const char *)node->name : "");
    st->n++;
}

/* Validate doc; report the most specific schema errors. 0 or ESB_EINVAL. */
static int validate(xmlRelaxNGPtr schema, xmlDoc *doc, const char *file, struct esb_diags *d)
{
    struct rng_state st = {.n = 0};
    xmlRelaxNGValidCtxtPtr v = xmlRelaxNGNewValidCtxt(schema);
    if (!v) {
        esb_diag_add(d, file, 0, NULL, "out of memory creating a schema validator");
        return ESB_EINVAL;
    }
    xmlRelaxNGSetValidStructuredErrors(v, on_rng_error, &st);
    int rc = xmlRelaxNGValidateDoc(v, doc);
    xmlRelaxNGFreeValidCtxt(v);
    if (rc == 0) return 0;

    int best = 3;
    for (int i = 0; i < st.n; i++)
        if (st.errs[i].prio < best) best = st.errs[i].prio;
    /* Show the most specific kind only, and one message per line: libxml2
     * follows a real error with generic ones about every ancestor. */
    int shown = 0;
    for (int i = 0; i < st.n; i++) {
        const struct rng_error *r = &st.errs[i];
        int skip = best < 3 && r->prio == 3;
        for (int j = 0; j < st.n && !skip; j++) {
            const struct rng_error *o = &st.errs[j];
            if (j == i || o->line != r->line || (best < 3 && o->prio == 3)) continue;
            if (o->prio < r->prio || (o->prio == r->prio && j < i)) skip = 1;
        }
        if (skip) continue;
        esb_diag_add(d, file, r->line, r->elem[0] ? r->elem : NULL, "%s", r->msg);
        shown++;
    }
    if (!shown) esb_diag_add(d, file, 0, NULL, "does not match the config schema");
    return ESB_EINVAL;
}

/* ---- files and includes ---- */

struct reader {
    struct esb__config_src *src;
    struct esb_diags *d;
    xmlRelaxNGPtr schema;
    char *stack[ESB__CONFIG_MAX_INCLUDE_DEPTH + 2]; /* realpaths of the open files */
    const char *names[ESB__CONFIG_MAX_INCLUDE_DEPTH + 2];
};

static void push_item(struct esb__config_src *src, xmlNode *node, const char *file)
{
    if (src->nitems == src->cap) {
        src->cap = src->cap ? src->cap * 2 : 32;
        src->items = esb_realloc(src->items, src->cap * sizeof(*src->items));
    }
    src->items[src->nitems++] = (struct esb__config_item){.node = node, .file = file};
}

/* The path of href relative to the directory of file. */
static char *resolve(const char *file, const char *href)
{
    const char *slash = strrchr(file, '/');
    if (href[0] == '/' || !slash) return esb_strdup(href);
    size_t dl = (size_t)(slash - file + 1), hl = strlen(href);
    char *p = esb_malloc(dl + hl + 1);
    memcpy(p, file, dl);
    memcpy(p + dl, href, hl + 1);
    return p;
}

static int is_esb(const xmlNode *n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
           strcmp((const char *)n->ns->href, ESB_NS) == 0 &&
           strcmp((const char *)n->name, name) == 0;
}

/* Read file (name as diagnostics show it) at include depth; inc/inc_file is
 * the <include> element that asked for it (NULL for the top file). */
static int read_file(struct reader *r, const char *file, int depth, xmlNode *inc,
                     const char *inc_file)
{
    const int inc_line = esb__config_line(inc);
    char *buf = NULL, *real = NULL;
    size_t len = 0;
    int rc = ESB_EINVAL;

    if (depth > ESB__CONFIG_MAX_INCLUDE_DEPTH) {
        esb_diag_add(r->d, inc_file, inc_line, "include",
                     "includes nested deeper than %d levels (at '%s')",
                     ESB__CONFIG_MAX_INCLUDE_DEPTH, file);
        return ESB_EINVAL;
    }
    if (r->src->ndocs >= ESB__CONFIG_MAX_FILES) {
        esb_diag_add(r->d, inc_file, inc_line, "include", "more than %d config files",
                     ESB__CONFIG_MAX_FILES);
        return ESB_EINVAL;
    }
    real = realpath(file, NULL);
    int err = real ? slurp(file, &buf, &len) : -errno;
    if (err < 0) {
        const char *why = err == ESB_EFULL ? "file larger than 16 MiB" : esb_strerror(err);
        if (inc)
            esb_diag_add(r->d, inc_file, inc_line, "include", "cannot read '%s': %s", file, why);
        else
            esb_diag_add(r->d, file, 0, NULL, "cannot read: %s", why);
        goto out;
    }
    for (int i = 0; i < depth; i++) {
        if (strcmp(r->stack[i], real) != 0) continue;
        char chain[512];
        size_t used = 0;
        chain[0] = '\0';
        for (int j = i; j < depth && used < sizeof(chain); j++) {
            int w = snprintf(chain + used, sizeof(chain) - used, "%s -> ", r->names[j]);
            if (w < 0) break;
            used += (size_t)w;
        }
        esb_diag_add(r->d, inc_file, inc_line, "include", "include cycle: %s%s", chain, file);
        goto out;
    }

    xmlDoc *doc = parse_doc(file, buf, len, r->d);
    if (!doc) goto out;
    size_t k = r->src->ndocs++;
    r->src->docs = esb_realloc(r->src->docs, r->src->ndocs * sizeof(*r->src->docs));
    r->src->files = esb_realloc(r->src->files, r->src->ndocs * sizeof(*r->src->files));
    r->src->docs[k] = doc;
    r->src->files[k] = esb_strdup(file);
    const char *name = r->src->files[k];

    xmlNode *root = xmlDocGetRootElement(doc);
    if (!is_esb(root, "esb")) {
        esb_diag_add(r->d, name, esb__config_line(root), root ? (const char *)root->name : NULL,
                     "the root element must be <esb xmlns=\"" ESB_NS "\">%s",
                     root && strcmp((const char *)root->name, "esb") == 0
                         ? " (the namespace is missing or wrong)"
                         : "");
        goto out;
    }
    if (substitute_tree(root, name, r->d) > 0) goto out;
    if (validate(r->schema, doc, name, r->d) < 0) goto out;

    r->stack[depth] = real;
    r->names[depth] = name;
    rc = 0;
    for (xmlNode *n = root->children; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) continue;
        if (!is_esb(n, "include")) {
            push_item(r->src, n, name);
            continue;
        }
        xmlChar *href = xmlGetNoNsProp(n, (const xmlChar *)"href");
        if (!href || !*href) {
            esb_diag_add(r->d, name, esb__config_line(n), "include", "attribute 'href' is empty");
            rc = ESB_EINVAL;
        } else {
            char *path = resolve(name, (const char *)href);
            if (read_file(r, path, depth + 1, n, name) < 0) rc = ESB_EINVAL;
            free(path);
        }
        xmlFree(href);
    }
    r->stack[depth] = NULL;
out:
    free(real);
    free(buf);
    return rc;
}

static void on_schema_error(void *data, xmlErrorPtr e)
{
    struct esb_diags *d = data;
    char msg[300];
    if (!e || e->level < XML_ERR_ERROR) return;
    trim_msg(e->message, msg, sizeof(msg));
    esb_diag_add(d, e->file ? e->file : esb__config_schema_path(), e->line, NULL,
                 "config schema: %s", msg);
}

int esb__config_read(const char *path, struct esb__config_src *src, struct esb_diags *d)
{
    struct reader r = {.src = src, .d = d};
    const char *schema_path = esb__config_schema_path();
    xmlRelaxNGParserCtxtPtr pc = NULL;
    int rc = ESB_EINVAL;

    xmlInitParser();
    if (access(schema_path, R_OK) < 0) {
        esb_diag_add(d, schema_path, 0, NULL,
                     "cannot read the config schema: %s (set ESB_SCHEMA to its path)",
                     strerror(errno));
        goto out;
    }
    pc = xmlRelaxNGNewParserCtxt(schema_path);
    if (!pc) goto out;
    xmlRelaxNGSetParserStructuredErrors(pc, on_schema_error, d);
    r.schema = xmlRelaxNGParse(pc);
    if (!r.schema) {
        esb_diag_add(d, schema_path, 0, NULL, "the config schema does not compile");
        goto out;
    }
    rc = read_file(&r, path, 0, NULL, NULL);
out:
    if (r.schema) xmlRelaxNGFree(r.schema);
    if (pc) xmlRelaxNGFreeParserCtxt(pc);
    return rc;
}

void esb__config_src_free(struct esb__config_src *src)
{
    if (!src) return;
    for (size_t i = 0; i < src->ndocs; i++) {
        xmlFreeDoc(src->docs[i]);
        free(src->files[i]);
    }
    free(src->docs);
    free(src->files);
    free(src->items);
    memset(src, 0, sizeof(*src));
}
