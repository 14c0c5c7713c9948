/* http_in_internal.h - what the two halves of http-in share: the
 * endpoint's state, the per-request state, the responses, and the waits of
 * requests suspended while the bus (one-way) or the route (request-reply)
 * works (http_in_wait.c). Not for other modules. */
#ifndef ESB_HTTP_IN_INTERNAL_H
#define ESB_HTTP_IN_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "connector.h"
#include "http_in.h"
#include "msg.h"
#include "util.h"

#define CONF(ep) ((const struct esb_http_in_conf *)(ep)->conf)

/* request-reply: how long stop() lets answers to waiting requests go out. */
#define HTTP_IN_STOP_DRAIN_MS 1000

struct reply_wait;

struct http_in_state {
    /* One single-threaded libmicrohttpd daemon per server thread, each on
     * its own SO_REUSEPORT socket of the same address: the kernel spreads
     * new connections over them (MHD's own thread pool lets whichever
     * thread wakes first accept them all, so under a burst of connects one
     * thread served everything). */
    struct MHD_Daemon **daemons;
    unsigned ndaemons;
    _Atomic int stopping; /* stop() began: answer 503 without calling the runtime */
    struct esb_runtime *rt;
    /* request-reply: the waits of live connections (stop resumes the
     * suspended ones). Lock order: waits_lock, then a wait's lock. */
    pthread_mutex_t waits_lock;
    struct reply_wait *waits;
};

/* Per-request state, kept in MHD's con_cls. */
struct http_req {
    int too_large;    /* the body passed max-body: discard the rest, then 413 */
    size_t discarded; /* bytes thrown away since */
    /* The body as it arrives, grown in place: it becomes the message's
     * body without a copy. NULL until the first byte (or a known length). */
    struct esb_body *body;
    size_t cap;
    struct reply_wait *rw; /* request-reply: set once the request is registered */
};

/* A request waiting for its route's result. Two references: the
 * connection's (dropped in request_done) and the runtime's (dropped by
 * the reply callback, which is called exactly once). */
struct reply_wait {
    pthread_mutex_t lock;
    _Atomic int refs;
    struct MHD_Connection *conn; /* valid while suspended */
    int suspended;               /* MHD_suspend_connection was called, not yet resumed */
    int answered;                /* status (and final/error) are set */
    int oneway;                  /* a one-way accept: 202 {"id"} once durable */
    int gone;                    /* the connection ended: a reply is only dropped */
    int status;
    struct esb_msg *final; /* a reference, or NULL */
    char *error;           /* owned, or NULL */
    char id[ESB_UUID_STRLEN + 1];
    struct reply_wait *prev, *next; /* in http_in_state.waits */
};

/* ---- responses (http_in.c) ---- */

/* s as JSON string content (without quotes) into out. */
void esb__hin_json_escape(char *out, size_t outsize, const char *s);
/* Queue a response with body text (copied) and an optional extra header. */
enum MHD_Result esb__hin_respond(struct MHD_Connection *c, unsigned status, const char *body,
                                 const char *hname, const char *hvalue);
/* Queue {"error":"<text>"} with status. */
enum MHD_Result esb__hin_respond_error(struct MHD_Connection *c, unsigned status, const char *text,
                                       const char *hname, const char *hvalue);
/* The answer when the runtime refused a message (rc, err): 503, 404, ... */
enum MHD_Result esb__hin_respond_not_accepted(struct esb_endpoint *ep, struct MHD_Connection *c,
                                              const char *url, int rc, const struct esb_err *err);

/* ---- suspended requests (http_in_wait.c) ---- */

/* The last call of a request: register m (takes it) and suspend the
 * connection until the bus made it durable (oneway: then 202) or the
 * route answered (request-reply); answers at once if it already can. */
enum MHD_Result esb__hin_request_reply(struct esb_endpoint *ep, struct http_in_state *st,
                                       struct MHD_Connection *c, const char *url,
                                       struct http_req *req, struct esb_msg *m, int oneway);
/* handle() called again for a registered request: answer it. */
enum MHD_Result esb__hin_request_reply_again(struct MHD_Connection *c, struct reply_wait *rw);
/* The connection of rw ended. */
void esb__hin_request_reply_done(struct http_in_state *st, struct reply_wait *rw);
/* Stopping: let one-way accepts finish, answer every other suspended
 * request with 503, and give the answers a moment to go out. */
void esb__hin_request_reply_stop(struct http_in_state *st);

#endif
