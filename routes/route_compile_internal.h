/* route_compile_internal.h - what the two files of the route compiler
 * share: route_compile.c (the <route> element, <retry>, <dead-letter>, and
 * the helpers below) and route_compile_steps.c (the step table and each
 * step's compiler). Not for other modules, nor for route_run.c.
 *
 * A compilation runs on the thread loading the config and owns its
 * esb__cctx. Compilation goes on after an error, so one pass reports every
 * mistake: each helper that reports one adds it to c->d with file:line and
 * counts it in c->errors, and the route is returned only if there was none. */
#ifndef ESB_ROUTE_COMPILE_INTERNAL_H
#define ESB_ROUTE_COMPILE_INTERNAL_H

#include "connector.h"
#include "lua_host.h"
#include "route.h"
#include "util.h"

struct _xmlNode;
struct esb_attr_spec;
struct esb_config;
struct esb_diags;
struct esb_endpoint;
struct esb_route;
struct esb_template;
struct esb__steps;

/* The state of one route's compilation. */
struct esb__cctx {
    const char *file;
    const struct esb_config *cfg; /* borrowed; NULL in unit tests */
    struct esb_diags *d;
    struct esb_route *r; /* being built */
    int errors;
    int num;       /* steps numbered so far */
    char *lua_dir; /* Lua script directory (esb__route_lua_dir), owned */
    struct esb_lua_limits lua_limits;
};

/* ---- diagnostics (route_compile.c) ---- */

/* The source line of n, 0 if unknown. */
int esb__route_line(struct _xmlNode *n);
/* Report an error at n ("FILE:LINE: element <n>: message"); returns
 * ESB_EINVAL. */
int esb__route_diag(struct esb__cctx *c, struct _xmlNode *n, const char *fmt, ...) ESB_PRINTF(3, 4);
/* Parse n's attributes through specs into out (esb_attrs_parse); an error
 * is reported and ESB_EINVAL returned. out may be half-filled then. */
int esb__route_parse_attrs(struct esb__cctx *c, struct _xmlNode *n,
                           const struct esb_attr_spec *specs, void *out);
/* Compile src, the value of n's attribute attr, as a template into *out; 0,
 * or an error reported ("attribute 'ATTR': ...") and ESB_EINVAL. */
int esb__route_template(struct esb__cctx *c, struct _xmlNode *n, const char *attr, const char *src,
                        struct esb_template **out);
/* 1 if n has element children, else 0. */
int esb__route_has_children(struct _xmlNode *n);
/* 0, or an error reported ("takes no child elements") if n has element
 * children. */
int esb__route_leaf_only(struct esb__cctx *c, struct _xmlNode *n);

/* ---- helpers (route_compile.c) ---- */

/* A formatted string (at most 599 bytes), owned by the caller. */
char *esb__route_fmt(const char *fmt, ...) ESB_PRINTF(1, 2);
/* The Lua script directory: the config's <lua dir>, else "lua-scripts" next
 * to the file. Also sets c->lua_limits. Borrowed from c. */
const char *esb__route_lua_dir(struct esb__cctx *c);
/* Resolve uri, the value of attribute attr of n: "queue:X", "topic:X" or
 * "ELEMENT:ID" naming an endpoint of direction dir. Sets *kind, *name (in
 * uri) and *epp (the endpoint, NULL for a queue or topic); 0, or an error
 * reported and ESB_EINVAL. */
int esb__route_resolve_uri(struct esb__cctx *c, struct _xmlNode *n, const char *attr,
                           const char *uri, enum esb_connector_dir dir, enum esb_uri_kind *kind,
                           const char **name, const struct esb_endpoint **epp);

/* ---- steps (route_compile_steps.c) ---- */

/* Compile the element children of parent into out (appended). path is the
 * container path for reasons ("" at the top, else "choice/when/"); top
 * allows <retry> and <dead-letter> (skipped: esb_route_compile compiles
 * them). 0, or ESB_EINVAL after reporting every error. */
int esb__route_compile_steps(struct esb__cctx *c, struct _xmlNode *parent, const char *path,
                             int top, struct esb__steps *out);
/* Free the steps of s and empty it; s itself is the caller's. */
void esb__route_free_steps(struct esb__steps *s);
/* Emit the reference docs of every step element, then <when> and
 * <otherwise>, in the order of the step table. */
void esb__route_steps_doc(void (*emit)(void *ctx, const char *text), void *ctx);

#endif
