/* lua_xml_build.h - esb.xml node tables (the shape in lua_xml.c and
 * docs/lua-api.md) built from a stream of element and text events, the same
 * way whether they come from libxml2's SAX callbacks (esb.xml.parse: no
 * document tree is made) or from a walk over a parsed document (XPath
 * results, doc:root()).
 *
 * Pass one records the events in a flat buffer and never calls Lua (it runs
 * inside libxml2's callbacks, where a Lua error must not jump out); pass
 * two, esb__xml_log_push, makes every table at its final size. Text: the
 * pieces between two element boundaries form one string (comments and PIs
 * in between are ignored); a blank one in an element that has element
 * children is dropped unless keep_blanks. An element in no namespace under
 * a non-empty default namespace gets ns = "". */
#ifndef ESB_LUA_XML_BUILD_H
#define ESB_LUA_XML_BUILD_H

#include <stddef.h>

#include <lua.h>

struct esb__xml_log;

/* hint: expected bytes (the input's size is a good guess); default_ns: a
 * non-empty default namespace is in scope where the root element is (a
 * subtree of a document). NULL: no memory. */
struct esb__xml_log *esb__xml_log_new(int keep_blanks, int default_ns, size_t hint);
void esb__xml_log_free(void *g); /* void *: fits esb__lmod_guard */

/* Events, in document order: start, its namespace declarations (prefix NULL
 * = default), then its attributes, then children (text, start ... end),
 * then end. uri NULL: no namespace. amp38: the value has '&' written as
 * "&#38;" (libxml2's SAX2 attribute values). Out of memory makes every
 * later call a no-op and esb__xml_log_failed true. */
void esb__xml_log_start(struct esb__xml_log *g, const char *name, const char *prefix,
                        const char *uri);
void esb__xml_log_ns(struct esb__xml_log *g, const char *prefix, const char *uri);
void esb__xml_log_attr(struct esb__xml_log *g, const char *prefix, const char *name,
                       const char *value, size_t vn, int amp38);
void esb__xml_log_text(struct esb__xml_log *g, const char *s, size_t n);
void esb__xml_log_end(struct esb__xml_log *g);
int esb__xml_log_failed(const struct esb__xml_log *g);

/* Push the root element's table; raises a Lua error if the log failed or
 * is incomplete. */
void esb__xml_log_push(lua_State *L, const struct esb__xml_log *g);

#endif
