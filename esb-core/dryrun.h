/* dryrun.h - run messages through one route of a loaded config without the
 * bus or any endpoint (esbctl test): the route's steps, predicates and Lua
 * transforms run as in a worker, and the outputs are reported instead of
 * being appended or delivered.
 *
 * Two uses:
 *  - esb_dryrun_message: one message, printed step by step (each step, the
 *    branch a choice took, a filter's verdict, every message a transform
 *    returned with its headers and body, where each output would go), then
 *    the outputs;
 *  - esb_dryrun_dir: golden files. Every DIR/NAME.in is a message body
 *    (DIR/NAME.headers, optional, "name: value" lines; content-type sets
 *    the content type); its outputs are rendered as text and compared
 *    with DIR/NAME.expected, or written there with update.
 *
 * Rendering (esb_dryrun_render), one block per output, blocks separated by
 * an empty line:
 *     to: URI              (queue:NAME, topic:NAME or ELEMENT:ID as in the config)
 *     content-type: TYPE
 *     NAME: VALUE          (the headers, sorted by name, then value)
 *                          (an empty line)
 *     BODY                 (then a newline)
 * then "dropped" if a filter or transform stopped the message, or only
 * "error: REASON" for a routing error (which dead-letters the message; in
 * golden runs without the Lua traceback).
 * Golden runs are made repeatable: the input's id is ESB_DRYRUN_ID, other
 * UUIDs in headers and bodies print as <uuid>, and RFC 3339 times that lie
 * within the run (a transform's "now") print as <now>.
 *
 * Not thread-safe: one dryrun per thread. */
#ifndef ESB_DRYRUN_H
#define ESB_DRYRUN_H

#include <stdio.h>

#include "util.h"

struct esb_buf;
struct esb_config;
struct esb_msg;
struct esb_route_result;
struct esb_dryrun;

/* The id of every golden-run input message. */
#define ESB_DRYRUN_ID "00000000-0000-7000-8000-000000000001"

/* Largest message body (file) a dry run reads. */
#define ESB_DRYRUN_MAX_BODY (64u * 1024 * 1024)

/* Prepare a dry run of route route_id of cfg (a ref is taken). Errors: no
 * such route (the error lists the route ids). */
int esb_dryrun_new(struct esb_config *cfg, const char *route_id, struct esb_dryrun **out,
                   struct esb_err *err) ESB_WUR;
void esb_dryrun_free(struct esb_dryrun *d); /* NULL-safe */

/* The input message for body file path: its bytes as the body, content type
 * ct (NULL: guessed from the file name: .xml application/xml, .json
 * application/json, .csv text/csv, .txt text/plain, else
 * application/octet-stream), and the headers the route's inbound connector
 * would set (esb-source; esb-file-name for file-in). Errors: unreadable
 * file, larger than ESB_DRYRUN_MAX_BODY. */
int esb_dryrun_input(const struct esb_dryrun *d, const char *path, const char *ct,
                     struct esb_msg **out, struct esb_err *err) ESB_WUR;

/* Run in (borrowed) through the route; with trace non-NULL, print every
 * step to it. res is zeroed first; the caller clears it
 * (esb_route_result_clear). */
void esb_dryrun_run(struct esb_dryrun *d, const struct esb_msg *in, FILE *trace,
                    struct esb_route_result *res);

/* Append the rendering of res (format above) to out. mask: golden-run
 * masking (other UUIDs, times in [from_ms, to_ms]) with in_id kept. */
struct esb_dryrun_mask {
    const char *in_id;
    uint64_t from_ms, to_ms;
};
int esb_dryrun_render(const struct esb_dryrun *d, const struct esb_route_result *res,
                      const struct esb_dryrun_mask *mask, struct esb_buf *out) ESB_WUR;

/* esbctl test CONFIG --route ID --message FILE: build the input (extra
 * headers "name=value"; ct as for esb_dryrun_input), print the trace and
 * the outputs to out. Returns 0, 1 for a routing error (reason printed),
 * or negative with err for a bad argument or file. */
int esb_dryrun_message(struct esb_dryrun *d, const char *path, const char *ct, char *const *headers,
                       size_t nheaders, FILE *out, struct esb_err *err) ESB_WUR;

/* esbctl test CONFIG --route ID --dir DIR [--update]: run every DIR/NAME.in in
 * name order, print "PASS NAME" / "FAIL NAME" (with a line diff) / "UPDATED
 * NAME" and a summary line to out. Returns the number of failed cases, or
 * negative with err (no such directory, no .in files, unreadable files). */
int esb_dryrun_dir(struct esb_dryrun *d, const char *dir, const char *ct, int update, FILE *out,
                   struct esb_err *err) ESB_WUR;

#endif
