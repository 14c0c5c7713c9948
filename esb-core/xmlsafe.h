/* xmlsafe.h - the one way message bodies are parsed as XML (DESIGN §8):
 * XML_PARSE_NONET, never NOENT/DTDLOAD/DTDATTR/DTDVALID/XINCLUDE/HUGE; a
 * DOCTYPE stops the parser before any entity is declared (so no XXE and
 * no billion laughs); libxml2's errors are collected, never printed; and a
 * start tag with more than ESB_XML_MAX_ATTRS attributes is refused before
 * parsing (libxml2 2.9 checks attributes pairwise: 100000 attributes cost
 * minutes of CPU). Used by route predicates and esb.xml. Thread-safe.
 *
 * Two modes on the same parser: esb_xml_parse builds a libxml2 document;
 * esb_xml_sax reports elements and text to callbacks and builds nothing
 * (esb.xml.parse makes Lua tables that way: no tree to allocate and free). */
#ifndef ESB_XMLSAFE_H
#define ESB_XMLSAFE_H

#include <stddef.h>

#define ESB_XML_MAX_ATTRS 256

struct _xmlDoc;

enum esb_xml_fail {
    ESB_XML_OK = 0,
    ESB_XML_MALFORMED, /* not well-formed, empty or too large */
    ESB_XML_REFUSED,   /* DOCTYPE, or too many attributes on one element */
};

/* Parse n bytes. extra_options may add XML_PARSE_NOCDATA, _NOBLANKS,
 * _BIG_LINES (anything else is masked out). On success returns the
 * document (free with xmlFreeDoc); on failure NULL, *fail set, and msg
 * holds e.g. "line 3: Opening and ending tag mismatch: a and b" or
 * "DOCTYPE not allowed" (no trailing newline). */
struct _xmlDoc *esb_xml_parse(const char *s, size_t n, int extra_options, enum esb_xml_fail *fail,
                              char *msg, size_t msglen);

/* SAX mode callbacks; ud is esb_xml_sax.ud. start: an element's local name,
 * prefix and namespace URI (NULL when none), its namespace declarations
 * (nns pairs prefix, URI; prefix NULL for the default namespace) and
 * attributes (nattrs quintuples local name, prefix, URI, value, value end;
 * the value is not NUL-terminated and has '&' written as "&#38;", as
 * libxml2 reports it). text: character data, in pieces (an entity or a
 * comment splits a run). Strings are valid during the call only. A
 * callback may end the parse with esb_xml_sax_stop. */
struct esb_xml_sax {
    void (*start)(void *ud, const unsigned char *name, const unsigned char *prefix,
                  const unsigned char *uri, int nns, const unsigned char **ns, int nattrs,
                  const unsigned char **attrs);
    void (*end)(void *ud);
    void (*text)(void *ud, const char *s, size_t n);
    void *ud;
    void *ctx; /* set by esb_xml_sax during the parse: for esb_xml_sax_stop */
};

/* Parse n bytes in SAX mode (the same checks, refusals and messages as
 * esb_xml_parse). Returns 0 when the document was well-formed and every
 * callback let it finish, else -1 with *fail and msg set (a stop: "line N:
 * WHY", ESB_XML_REFUSED). */
int esb_xml_sax(const char *s, size_t n, int extra_options, struct esb_xml_sax *h,
                enum esb_xml_fail *fail, char *msg, size_t msglen);

/* From a callback: stop the parse; esb_xml_sax fails with why (kept by
 * pointer: a string literal). */
void esb_xml_sax_stop(struct esb_xml_sax *h, const char *why);

#endif
