/* jsondepth.h - the nesting-depth pre-scan run on untrusted JSON text before
 * jansson parses it (jansson's parser recurses once per level): one linear
 * pass counting '[' and '{' outside strings, where a backslash skips the
 * next byte. It does not validate the JSON; jansson does that afterwards.
 * Used by route predicates (json=) and esb.json.decode. Thread-safe; no
 * allocation. */
#ifndef ESB_JSONDEPTH_H
#define ESB_JSONDEPTH_H

#include <stddef.h>

/* Scan n bytes at text for nesting deeper than max. Returns the byte offset
 * of the first bracket too deep, or -1 if there is none. When one is found
 * and line/col are not NULL, they get its 1-based line and column (a line
 * ends at each '\n' that is not skipped by a backslash in a string). */
long esb_jsondepth_scan(const void *text, size_t n, int max, int *line, int *col);

#endif
