/* admin_internal.h - shared by admin.c (the server: auth, dispatch, token
 * file, lifecycle, responses) and admin_views.c (the endpoints that read
 * the bus or change dead letters). Not part of the public API. */
#ifndef ESB_ADMIN_INTERNAL_H
#define ESB_ADMIN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "admin.h"
#include "util.h"

#define ESB__ADMIN_MAX_BODY (64 * 1024) /* request bodies (JSON selections) */
#define ESB__ADMIN_ARG_MAX  1024        /* a decoded path segment or query value */
#define ESB__ADMIN_SEGS_MAX 6           /* path segments */

struct esb_admin {
    struct MHD_Daemon *daemon;
    struct esb_runtime *rt;
    esb_admin_reload_fn reload;
    void *reload_ctx;
    char *token;
    size_t token_len;
    char *listen;
};

/* Per-request state (MHD's con_cls). */
struct esb__admin_request {
    struct esb_buf body; /* capped at ESB__ADMIN_MAX_BODY */
    size_t discarded;
    int too_large, answered;
};

/* One dispatched request: args are the '*' segments of the matched route,
 * percent-decoded (borrowed for the call). */
struct esb__admin_call {
    struct esb_admin *a;
    struct MHD_Connection *c;
    struct esb__admin_request *req;
    char *args[ESB__ADMIN_SEGS_MAX];
};

/* Responses: each queues one response on c and returns MHD's result. */
/* o (reference taken) as compact JSON plus a newline. */
enum MHD_Result esb__admin_send_json(struct MHD_Connection *c, unsigned status, json_t *o);
/* text (taken; malloc'd) with the given content type. */
enum MHD_Result esb__admin_send_text(struct MHD_Connection *c, unsigned status, char *text,
                                     const char *ctype);
/* {"error":"..."}; with one extra response header when hname is not NULL. */
enum MHD_Result esb__admin_send_error_h(struct MHD_Connection *c, unsigned status,
                                        const char *hname, const char *hvalue, const char *fmt, ...)
    ESB_PRINTF(5, 6);
#define esb__admin_send_error(c, status, ...)                                                      \
    esb__admin_send_error_h(c, status, NULL, NULL, __VA_ARGS__)
/* The HTTP status for a negative ESB_E* code (ENOTFOUND 404, EBUSY 409, ...). */
unsigned esb__admin_status_of(int rc);

/* Text helpers. */
int esb__admin_pct_decode(char *s, int plus); /* in place; -1 malformed or %00 */
int esb__admin_utf8_valid(const uint8_t *p, size_t n);
json_t *esb__admin_string(const char *s); /* as is if UTF-8, else non-printables as '.' */
int esb__admin_parse_u64(const char *s, uint64_t max, uint64_t *out); /* 1..max */

/* Endpoints in admin_views.c (see docs/admin-api.md). */
enum MHD_Result esb__admin_queues(struct esb__admin_call *k);
enum MHD_Result esb__admin_entries(struct esb__admin_call *k);
enum MHD_Result esb__admin_entry(struct esb__admin_call *k);
enum MHD_Result esb__admin_replay(struct esb__admin_call *k);
enum MHD_Result esb__admin_purge(struct esb__admin_call *k);
enum MHD_Result esb__admin_metrics(struct esb__admin_call *k);

#endif
