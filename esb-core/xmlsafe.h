/* xmlsafe.h - the one way message bodies are parsed as XML (DESIGN §8):
 * XML_PARSE_NONET, never NOENT/DTDLOAD/DTDATTR/DTDVALID/XINCLUDE/HUGE; a
 * DOCTYPE stops the parser before any entity is declared (so no XXE and
 * no billion laughs); libxml2's errors are collected, never printed; and a
 * start tag with more than ESB_XML_MAX_ATTRS attributes is refused before
 * parsing (libxml2 2.9 checks attributes pairwise: 100000 attributes cost
 * minutes of CPU). Used by route predicates and esb.xml. Thread-safe. */
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

#endif
