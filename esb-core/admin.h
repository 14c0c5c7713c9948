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
struct esb_entry;
struct json_t;
struct esb_diags;
struct esb_runtime;

/* Ask the daemon to reload its config file; returns 0, or a negative code
 * with every problem in d (config errors as "FILE:LINE: element <x>: ...",
 * at least one). Runs on an admin thread, possibly on two at once: the
 * callback serializes with the daemon's other reloads (SIGHUP). */
typedef int (*esb_admin_reload_fn)(void *ctx, struct esb_diags *d);

/* Start the admin API of cfg (<admin>), or do nothing (*out NULL) if the
 * config has no <admin> element. Reads the token file (creating it when
 * missing) and binds cfg->admin.listen; on error nothing is left running.
 * rt must outlive the admin API: stop it before the runtime. */
int esb_admin_start(const struct esb_config *cfg, struct esb_runtime *rt,
                    esb_admin_reload_fn reload, void *reload_ctx, struct esb_admin **out,
                    struct esb_err *err) ESB_WUR;
/* Stop serving (waits for requests in progress) and free. NULL-safe. */
void esb_admin_stop(struct esb_admin *a);

/* An entry's attempt history as the API shows it (a new JSON array):
 * [{"time": "2026-11-23T16:49:39.123Z", "class": "http-status",
 * "error": "HTTP 503 from ..."}, ...], oldest first. */
struct json_t *esb_admin_history_json(const struct esb_entry *e);

#endif
