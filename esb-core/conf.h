/* conf.h - loading the XML configuration into an immutable, refcounted
 * esb_config ("a cycle" in nginx terms): built whole, checked, then handed
 * to the runtime; a reload builds a new one and swaps it, so a broken file
 * never disturbs the running config.
 *
 * Loading: parse with libxml2 (XML_PARSE_NONET, no entity expansion, no DTD
 * loading), expand <include href="..."/> (relative to the including file;
 * cycles and depth > 8 are errors), substitute ${NAME} and ${NAME:-default}
 * from the environment in attribute values (an unset variable without a
 * default is an error), validate against the RelaxNG schema
 * (routes/esb-config.rng; installed to $(pkgdatadir)), then parse typed
 * structs through attribute tables (conf_attr.h), compile every route
 * (routes/route.h) and run the semantic checks: duplicate ids, unknown
 * endpoint/connector in from/to, to= an inbound connector or from= an
 * outbound one, queue:NAME sent to but consumed by no route, two routes on
 * one http-in path, invalid durations/sizes/regexes/XPath.
 * Every diagnostic names file:line and the element.
 *
 * Thread-safety: a loaded config is immutable; ref/unref from any thread. */
#ifndef ESB_CONF_H
#define ESB_CONF_H


#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "util.h"

struct esb_endpoint;
struct esb_route;

/* A list of diagnostics, each "FILE:LINE: element <x>: message". */
struct esb_diags {
    char **msgs;
    size_t n;
};
void esb_diag_add(struct esb_diags *d, const char *file, int line, const char *element,
                  const char *fmt, ...) ESB_PRINTF(5, 6);
void esb_diags_free(struct esb_diags *d);

struct esb_config_bus {
    char *dir;            /* default "var/bus" (relative to the working directory) */
    int fsync;            /* enum esb_fsync_policy */
    uint64_t fsync_interval_ms;
    uint64_t segment_size, max_disk, disk_low_water;
    uint64_t queue_max_entries, queue_max_bytes;
    int preallocate; /* default 1 */
};

/* <admin listen="127.0.0.1:9090" token-file="var/admin.token"/>: the admin
 * API (admin.h). enabled is 0 when the element is absent (no admin API). */
struct esb_config_admin {
    int enabled;
    char *listen;     /* IP:PORT ([v6]:PORT, localhost:PORT) */
    char *token_file; /* relative to the working directory */
};

/* <lua dir memory instructions max-output/>: where Lua scripts live and the
 * limits of every Lua call (lua_host.h). */
struct esb_config_lua {
    char *dir; /* the script directory: dir= resolved against the directory of the
                * file that has <lua>; default "lua-scripts" next to the top file */
    uint64_t memory, instructions, max_output;
};

struct esb_config {
    _Atomic unsigned refs;
    char *path;                     /* the top-level file as given */
    struct esb_config_bus bus;
    uint64_t workers;               /* <workers count="N"/>; default = online CPUs */
    char *log_level;                /* <log level="info"/> */
    struct esb_config_lua lua;      /* <lua .../>; defaults when absent */
    struct esb_config_admin admin;  /* <admin>; admin.enabled 0 if absent */
    struct esb_endpoint **endpoints; /* every connector element, in file order */
    size_t nendpoints;
    struct esb_route **routes;      /* compiled routes, in file order */
    size_t nroutes;
};

/* Load and check path. On success returns 0 and *out (refs 1). On failure
 * returns ESB_EINVAL with every diagnostic in d (at least one) and *out NULL. */
int esb_config_load(const char *path, struct esb_config **out, struct esb_diags *d) ESB_WUR;
struct esb_config *esb_config_ref(struct esb_config *c);
void esb_config_unref(struct esb_config *c); /* NULL-safe; frees at 0 */

struct esb_endpoint *esb_config_endpoint(const struct esb_config *c, const char *id);
const struct esb_route *esb_config_route(const struct esb_config *c, const char *id);

/* Fill bus options (dir etc.) from the config; strings borrowed from c. */
void esb_config_bus_opts(const struct esb_config *c, struct esb_bus_opts *o);

/* Print the whole config reference (every element and attribute, defaults,
 * ranges) as markdown; docs/config.md is checked against it by a test. */
void esb_config_doc(void (*emit)(void *ctx, const char *text), void *ctx);

#endif
