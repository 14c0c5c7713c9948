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
#include <libxml/SAX2.h>

/* Each thread keeps one parser context per mode and reuses it (xmlCtxtReadMemory
 * resets it): making one costs more than parsing a small message (a
 * context, its SAX handler, stacks and a name dictionary: 8 % of a 1 KiB
 * order's transform). The dictionary keeps every element and attribute
 * name it has seen, so a context is replaced after CTXT_MAX_USES documents
 * or once its dictionary holds more than CTXT_MAX_DICT bytes. */
#define CTXT_MAX_USES 1000
#define CTXT_MAX_DICT (256 * 1024)

/* One reused context per thread and mode: the DOM mode keeps libxml2's
 * SAX2 tree builder, the SAX mode has only the caller's callbacks (no
 * document is made at all). */
enum { MODE_DOM, MODE_SAX, MODE_COUNT };

struct reuse {
    xmlParserCtxtPtr c[MODE_COUNT];
    unsigned uses[MODE_COUNT];
};

/* ctxt->_private during a parse */
struct state {
    int doctype;                 /* a DOCTYPE stopped the parser */
    const struct esb_xml_sax *h; /* SAX mode */
    const char *fail;            /* a callback's reason to stop */
};

static pthread_key_t reuse_key;
static pthread_once_t reuse_once = PTHREAD_ONCE_INIT;

static void reuse_free(void *p)
{
    struct reuse *r = p;
    for (int m = 0; m < MODE_COUNT; m++)
        if (r->c[m]) xmlFreeParserCtxt(r->c[m]);
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
    ((struct state *)c->_private)->doctype = 1;
    xmlStopParser(c);
}

static void quiet(void *ud, xmlErrorPtr e)
{
    (void)ud;
    (void)e;
}

/* The line of the first start tag with more than max attributes ('='
 * outside quotes), or 0. Comments, CDATA and PIs are skipped. Lines are
 * counted only for the answer (this runs before every parse). */
static long line_at(const char *s, size_t i)
{
    long k = 1;
    for (const char *p = s, *end = s + i; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        k++;
    return k;
}

static long too_many_attrs(const char *s, size_t n, int max)
{
    for (size_t i = 0; i < n; i++) {
        const char *lt = memchr(s + i, '<', n - i); /* most bytes are text */
        if (!lt) break;
        i = (size_t)(lt - s);
        const char *end = NULL;
        if (n - i >= 4 && memcmp(s + i, "<!--", 4) == 0)
            end = "-->";
        else if (n - i >= 9 && memcmp(s + i, "<![CDATA[", 9) == 0)
            end = "]]>";
        else if (n - i >= 2 && s[i + 1] == '?')
            end = "?>";
        if (end) { /* skip to the terminator */
            size_t el = strlen(end);
            for (i++; i < n && !(n - i >= el && memcmp(s + i, end, el) == 0); i++) continue;
            continue;
        }
        int count = 0;
        char quote = 0;
        for (i++; i < n && (quote || s[i] != '>'); i++) {
            if (quote) {
                if (s[i] == quote) quote = 0;
            } else if (s[i] == '"' || s[i] == '\'') {
                quote = s[i];
            } else if (s[i] == '=' && ++count > max) {
                return line_at(s, i);
            }
        }
    }
    return 0;
}

static void sax_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                      const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                      int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    struct state *st = ((xmlParserCtxtPtr)ctx)->_private;
    (void)nb_defaulted; /* no DTD, so no defaulted attributes */
    st->h->start(st->h->ud, localname, prefix, uri, nb_namespaces, namespaces, nb_attributes,
                 attributes);
}

static void sax_end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri)
{
    (void)localname;
    (void)prefix;
    (void)uri;
    struct state *st = ((xmlParserCtxtPtr)ctx)->_private;
    st->h->end(st->h->ud);
}

static void sax_text(void *ctx, const xmlChar *s, int len)
{
    struct state *st = ((xmlParserCtxtPtr)ctx)->_private;
    st->h->text(st->h->ud, (const char *)s, (size_t)len);
}

void esb_xml_sax_stop(struct esb_xml_sax *h, const char *why)
{
    xmlParserCtxtPtr c = h->ctx;
    ((struct state *)c->_private)->fail = why;
    xmlStopParser(c);
}

/* This thread's context for mode m (made or replaced as needed), or a new
 * one that the caller frees (*own = 1) when thread storage failed. */
static xmlParserCtxtPtr ctxt_get(int m, int *own)
{
    (void)pthread_once(&reuse_once, reuse_key_make);
    struct reuse *r = pthread_getspecific(reuse_key);
    if (!r && (r = calloc(1, sizeof(*r))) != NULL && pthread_setspecific(reuse_key, r) != 0) {
        free(r);
        r = NULL;
    }
    if (r && r->c[m] &&
        (r->uses[m] >= CTXT_MAX_USES || xmlDictGetUsage(r->c[m]->dict) > CTXT_MAX_DICT)) {
        xmlFreeParserCtxt(r->c[m]);
        r->c[m] = NULL;
    }
    xmlParserCtxtPtr c = r ? r->c[m] : NULL;
    if (!c) {
        c = xmlNewParserCtxt();
        if (!c) return NULL;
        if (m == MODE_SAX) { /* only our callbacks: no tree, no document */
            memset(c->sax, 0, sizeof(*c->sax));
            c->sax->initialized = XML_SAX2_MAGIC;
            c->sax->startElementNs = sax_start;
            c->sax->endElementNs = sax_end;
            c->sax->characters = sax_text;
            c->sax->ignorableWhitespace = sax_text;
        }
        c->sax->internalSubset = doctype_stop;
        c->sax->serror = quiet;
        if (r) {
            r->c[m] = c;
            r->uses[m] = 0;
        }
    }
    *own = r == NULL;
    if (r) r->uses[m]++;
    return c;
}

/* Documents up to PUSH_MAX bytes go to libxml2's push parser in one chunk:
 * 2.9's memory reader copies the input into a fresh buffer and grows it
 * piecewise, which costs more than parsing a small message. Larger ones
 * go to the pull parser: the push parser refuses more than 10 MB pending
 * in its buffer without XML_PARSE_HUGE ("Huge input lookup"), and for them
 * the copy does not matter. */
#define PUSH_MAX (1024 * 1024)

/* The reason a document is not well-formed, from libxml2's pull parser:
 * the push parser (used for speed: one chunk, no input copy per call)
 * reports a truncated document as "Extra content at the end of the
 * document"; the pull parser names the open tag. Only bad input pays for
 * the second parse. */
static void why_malformed(const char *s, size_t n, int opts, char *msg, size_t msglen)
{
    int own;
    xmlParserCtxtPtr c = ctxt_get(MODE_DOM, &own);
    if (!c) {
        snprintf(msg, msglen, "not well-formed");
        return;
    }
    struct state st = {0};
    c->_private = &st;
    xmlFreeDoc(xmlCtxtReadMemory(c, s, (int)n, NULL, NULL, opts & ~XML_PARSE_NOBLANKS));
    xmlErrorPtr e = xmlCtxtGetLastError(c);
    snprintf(msg, msglen, "line %d: %s", e ? e->line : 0,
             e && e->message ? e->message : "not well-formed");
    size_t k = strlen(msg);
    while (k && (msg[k - 1] == '\n' || msg[k - 1] == '\r' || msg[k - 1] == ' ')) msg[--k] = '\0';
    c->_private = NULL;
    if (own) xmlFreeParserCtxt(c);
}

/* The shared part of both modes: checks, parse, the verdict. Returns the
 * document (DOM mode) or (void *)1 (SAX mode) when well-formed, else NULL
 * with *fail and msg set. */
static void *parse(int m, struct esb_xml_sax *h, const char *s, size_t n, int extra_options,
                   enum esb_xml_fail *fail, char *msg, size_t msglen)
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
    int own;
    xmlParserCtxtPtr c = ctxt_get(m, &own);
    if (!c) {
        *fail = ESB_XML_MALFORMED;
        snprintf(msg, msglen, "cannot create an XML parser");
        return NULL;
    }
    struct state st = {.h = h};
    if (h) h->ctx = c;
    extra_options &= XML_PARSE_NOCDATA | XML_PARSE_BIG_LINES |
                     (m == MODE_DOM ? XML_PARSE_NOBLANKS : 0); /* it would set a DOM callback */
    c->_private = &st;
    /* Never NOENT, DTDLOAD, DTDATTR, DTDVALID, XINCLUDE or HUGE here. The
     * document is kept only if well-formed. */
    int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | extra_options;
    xmlDocPtr doc = NULL;
    if (n > PUSH_MAX) {
        doc = xmlCtxtReadMemory(c, s, (int)n, NULL, NULL, opts);
    } else if (xmlCtxtResetPush(c, s, n < 4 ? (int)n : 4, NULL, NULL) == 0) {
        /* the first 4 bytes go with the reset: the push parser detects the
         * encoding (a UTF-16 BOM) only from them */
        xmlCtxtUseOptions(c, opts);
        xmlParseChunk(c, s + (n < 4 ? n : 4), n < 4 ? 0 : (int)n - 4, 1);
        doc = c->myDoc;
        c->myDoc = NULL;
    }
    int good = c->wellFormed && !st.doctype && !st.fail &&
               (m == MODE_SAX ? !doc : doc && xmlDocGetRootElement(doc));
    void *ret = m == MODE_SAX ? (void *)1 : doc;
    if (!good) {
        if (st.doctype) {
            *fail = ESB_XML_REFUSED;
            snprintf(msg, msglen, "DOCTYPE not allowed");
        } else if (st.fail) {
            *fail = ESB_XML_REFUSED;
            snprintf(msg, msglen, "line %d: %s", xmlSAX2GetLineNumber(c), st.fail);
        } else {
            *fail = ESB_XML_MALFORMED;
            why_malformed(s, n, opts, msg, msglen);
        }
        xmlFreeDoc(doc);
        ret = NULL;
    } else {
        *fail = ESB_XML_OK;
    }
    c->_private = NULL;
    if (h) h->ctx = NULL;
    if (own) xmlFreeParserCtxt(c);
    return ret;
}

struct _xmlDoc *esb_xml_parse(const char *s, size_t n, int extra_options, enum esb_xml_fail *fail,
                              char *msg, size_t msglen)
{
    return parse(MODE_DOM, NULL, s, n, extra_options, fail, msg, msglen);
}

int esb_xml_sax(const char *s, size_t n, int extra_options, struct esb_xml_sax *h,
                enum esb_xml_fail *fail, char *msg, size_t msglen)
{
    return parse(MODE_SAX, h, s, n, extra_options, fail, msg, msglen) ? 0 : -1;
}
