/* admin.h - the admin API: HTTP+JSON on loopback (by default), every
 * request authenticated with a bearer token read from a file (created with
 * a random token, mode 0600, when missing: there are no default
 * credentials). Serves queue listings, dead-letter browse/replay/purge,
 * reload and metrics for `esbctl` and monitoring. See docs/admin-api.md.
 * Runs on libmicrohttpd's own thread(s); start/stop from the main thread. */
#ifndef ESB_ADMIN_H
#define ESB_ADMIN_H

#include "util.h"

struct esb_admin;
struct esb_config;
struct esb_runtime;

/* Ask the daemon to reload its config file; returns 0 or fills err with
 * the diagnostics (one per line). Runs on the admin thread. */
typedef int (*esb_admin_reload_fn)(void *ctx, struct esb_err *err);

/* Start the admin API of cfg (<admin>), or do nothing (*out NULL) if the
 * config has no <admin> element. */
int esb_admin_start(const struct esb_config *cfg, struct esb_runtime *rt,
                    esb_admin_reload_fn reload, void *reload_ctx, struct esb_admin **out,
                    struct esb_err *err) ESB_WUR;
void esb_admin_stop(struct esb_admin *a); /* NULL-safe */

#endif
