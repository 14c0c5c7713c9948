/* jsonpath.h - the JSON path subset used by json= predicates, compiled once
 * into a small program and evaluated on jansson values.
 *
 * Syntax (the documented subset, nothing more):
 *   $             the root (every path starts with it)
 *   .name         a member; name is letters, digits and _ - $ @ or UTF-8
 *   ['name']      a member with any name ('...' or "...", \\ and \' escapes)
 *   [N]           an array element, N = 0, 1, ... (no negative indexes)
 *   [*]           every element of an array, or every member value of an
 *                 object (the wildcard: a path may match several values)
 * chained in any order: $.a.b, $['a'], $.a[0], $.a[*].b, $[*][1]['x y'].
 *
 * A compiled path is immutable and may be shared by threads. */
#ifndef ESB_JSONPATH_H
#define ESB_JSONPATH_H

#include <stddef.h>

#include "util.h"

struct json_t;
struct esb_jsonpath;

#define ESB_JSONPATH_MAX_LEN   1024 /* characters in a path */
#define ESB_JSONPATH_MAX_STEPS 64   /* selectors after '$' */

/* Compile path. Returns 0 and *out, or ESB_EINVAL with err->msg like
 * "$.a[x]: expected a number or * at column 5" (columns count from 1). */
int esb_jsonpath_compile(const char *path, struct esb_jsonpath **out, struct esb_err *err) ESB_WUR;
void esb_jsonpath_free(struct esb_jsonpath *p); /* NULL-safe */

/* The path's text as compiled (borrowed). */
const char *esb_jsonpath_text(const struct esb_jsonpath *p);

/* Call fn for every value that p selects in root, in document order (values
 * borrowed for the call). Stops at the first non-zero return of fn and
 * returns it; returns 0 after the last value (or when nothing matched).
 * Allocates nothing. */
int esb_jsonpath_eval(const struct esb_jsonpath *p, struct json_t *root,
                      int (*fn)(void *ctx, struct json_t *v), void *ctx);

/* Convenience: store up to max selected values (borrowed) in vals; returns
 * the total number selected (may exceed max). */
size_t esb_jsonpath_collect(const struct esb_jsonpath *p, struct json_t *root, struct json_t **vals,
                            size_t max);

#endif
