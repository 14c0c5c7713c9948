/* xmlsafe.c - see xmlsafe.h. */
#include "config.h"

#include "xmlsafe.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>

/* Each thread keeps one parser context and reuses it (xmlCtxtReadMemory
 * resets it): making one costs more than parsing a small message (a
 * context, its SAX handler, stacks and a name dictionary: 8 % of a 1 KiB
 * order's transform). The dictionary keeps every element and attribute
 * name it has seen, so a context is replaced after CTXT_MAX_USES documents
 * or once its dictionary holds more than CTXT_MAX_DICT bytes. */
#define CTXT_MAX_USES 1000
#define CTXT_MAX_DICT (256 * 1024)

struct reuse {
    xmlParserCtxtPtr c;
    unsigned uses;
};

static pthread_key_t reuse_key;
static pthread_once_t reuse_once = PTHREAD_ONCE_INIT;

static void reuse_free(void *p)
{
    struct reuse *r = p;
    if (r->c) xmlFreeParserCtxt(r->c);
    free(r);
}

static void reuse_key_make(void)
{
    (void)pthread_key_create(&reuse_key, reuse_free);
}

/* SAX internalSubset: called on "<!DOCTYPE name ..." before any declaration
 * is read; stop right there. */
static void doctype_stop(void *ctx, const xmlChar *name, const xmlChar *eid, const xmlChar *sid)
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

/* The line of the first start tag with more than max attributes ('='
 * outside quotes), or 0. Comments, CDATA and PIs are skipped. */
static long count_lines(const char *s, size_t n)
{
    long k = 0;
    for (const char *p = s, *end = s + n; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        k++;
    return k;
}

static long too_many_attrs(const char *s, size_t n, int max)
{
    long line = 1;
    for (size_t i = 0; i < n; i++) {
        /* to the next '<' (memchr: most bytes are text), counting lines */
        const char *lt = memchr(s + i, '<', n - i);
        size_t to = lt ? (size_t)(lt - s) : n;
        line += count_lines(s + i, to - i);
        i = to;
        if (i >= n) break;
        const char *end = NULL;
        if (n - i >= 4 && memcmp(s + i, "<!--", 4) == 0)
            end = "-->";
        else if (n - i >= 9 && memcmp(s + i, "<![CDATA[", 9) == 0)
            end = "]]>";
        else if (n - i >= 2 && s[i + 1] == '?')
            end = "?>";
        if (end) { /* skip to the terminator */
            size_t el = strlen(end);
            for (i++; i < n && !(n - i >= el && memcmp(s + i, end, el) == 0); i++)
                line += s[i] == '\n';
            continue;
        }
        int count = 0;
        char quote = 0;
        for (i++; i < n && (quote || s[i] != '>'); i++) {
            if (s[i] == '\n') line++;
            if (quote) {
                if (s[i] == quote) quote = 0;
            } else if (s[i] == '"' || s[i] == '\'') {
                quote = s[i];
            } else if (s[i] == '=' && ++count > max) {
                return line;
            }
        }
    }
    return 0;
}

struct _xmlDoc *esb_xml_parse(const char *s, size_t n, int extra_options, enum esb_xml_fail *fail,
                              char *msg, size_t msglen)
{
    if (n == 0 || n > INT_MAX) {
        *fail = ESB_XML_MALFORMED;
        snprintf(msg, msglen, "%s", n ? "too large" : "empty document");
        return NULL;
    }
    long line = too_many_attrs(s, n, ESB_XML_MAX_ATTRS);
    if (line) {
        *fail = ESB_XML_REFUSED;
        snprintf(msg, msglen, "line %ld: more than %d attributes on one element", line,
                 ESB_XML_MAX_ATTRS);
        return NULL;
    }
    (void)pthread_once(&reuse_once, reuse_key_make);
    struct reuse *r = pthread_getspecific(reuse_key);
    if (!r && (r = calloc(1, sizeof(*r))) != NULL && pthread_setspecific(reuse_key, r) != 0) {
        free(r);
        r = NULL;
    }
    if (r && r->c && (r->uses >= CTXT_MAX_USES || xmlDictGetUsage(r->c->dict) > CTXT_MAX_DICT)) {
        xmlFreeParserCtxt(r->c);
        r->c = NULL;
    }
    xmlParserCtxtPtr c = r ? r->c : NULL;
    if (!c) {
        c = xmlNewParserCtxt();
        if (!c) {
            *fail = ESB_XML_MALFORMED;
            snprintf(msg, msglen, "cannot create an XML parser");
            return NULL;
        }
        c->sax->internalSubset = doctype_stop;
        c->sax->serror = quiet;
        if (r) {
            r->c = c;
            r->uses = 0;
        }
    }
    if (r) r->uses++;
    int doctype = 0;
    extra_options &= XML_PARSE_NOCDATA | XML_PARSE_NOBLANKS | XML_PARSE_BIG_LINES;
    c->_private = &doctype;
    /* Never NOENT, DTDLOAD, DTDATTR, DTDVALID, XINCLUDE or HUGE here. The
     * document is kept only if well-formed. */
    xmlDocPtr doc = xmlCtxtReadMemory(c, s, (int)n, NULL, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                          extra_options);
    int good = c->wellFormed && doc && !doctype && xmlDocGetRootElement(doc);
    if (!good) {
        if (doctype) {
            *fail = ESB_XML_REFUSED;
            snprintf(msg, msglen, "DOCTYPE not allowed");
        } else {
            *fail = ESB_XML_MALFORMED;
            xmlErrorPtr e = xmlCtxtGetLastError(c);
            snprintf(msg, msglen, "line %d: %s", e ? e->line : 0,
                     e && e->message ? e->message : "not well-formed");
            size_t k = strlen(msg);
            while (k && (msg[k - 1] == '\n' || msg[k - 1] == '\r' || msg[k - 1] == ' '))
                msg[--k] = '\0';
        }
        xmlFreeDoc(doc);
        doc = NULL;
    } else {
        *fail = ESB_XML_OK;
    }
    c->_private = NULL;
    if (!r) xmlFreeParserCtxt(c);
    return doc;
}
