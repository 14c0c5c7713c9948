/* http_in_internal.h - what the two halves of http-in share: the
 * endpoint's state, the per-request state, the responses, and the waits of
 * requests suspended while the bus (one-way) or the route (request-reply)
 * works (http_in_wait.c). Not for other modules. */
#ifndef ESB_HTTP_IN_INTERNAL_H
#define ESB_HTTP_IN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "connector.h"
#include "http_in.h"
#include "http_server.h"
#include "msg.h"
#include "util.h"

#define CONF(ep) ((const struct esb_http_in_conf *)(ep)->conf)

/* request-reply: how long stop() lets answers to waiting requests go out. */
#define HTTP_IN_STOP_DRAIN_MS 1000

struct reply_wait;

struct http_in_state {
    struct esb_http_server *srv; /* NULL while stopped */
    _Atomic int stopping;        /* stop() began: answer 503 without calling the runtime */
    struct esb_runtime *rt;
    /* request-reply: the waits of live connections (stop resumes the
     * suspended ones). Lock order: waits_lock, then a wait's lock. */
    pthread_mutex_t waits_lock;
    struct reply_wait *waits;
};

/* Per-request state, the server's per-request pointer. */
struct http_req {
    char *url;         /* the decoded path */
    struct esb_msg *m; /* built from the head; the body joins it at the end */
    int structured;    /* Content-Type application/cloudevents+json */
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
    struct esb_http_conn *conn; /* valid while suspended */
    int suspended;              /* parked, not yet resumed */
    int answered;               /* status (and final/error) are set */
    int oneway;                 /* a one-way accept: 202 {"id"} once durable */
    int gone;                   /* the connection ended: a reply is only dropped */
    int status;
    struct esb_msg *final; /* a reference, or NULL */
    char *error;           /* owned, or NULL */
    char id[ESB_UUID_STRLEN + 1];
    struct reply_wait *prev, *next; /* in http_in_state.waits */
    struct reply_wait *pass_next;   /* one-way: the next of its loop pass's batch */
};

/* ---- responses (http_in.c) ---- */

/* s as JSON string content (without quotes) into out. */
void esb__hin_json_escape(char *out, size_t outsize, const char *s);
/* Answer with body text (application/json) and an optional extra header. */
void esb__hin_respond(struct esb_http_conn *c, unsigned status, const char *body, const char *hname,
                      const char *hvalue);
/* Answer {"error":"<text>"} with status. */
void esb__hin_respond_error(struct esb_http_conn *c, unsigned status, const char *text,
                            const char *hname, const char *hvalue);
/* The answer when the runtime refused a message (rc, err): 503, 404, ... */
void esb__hin_respond_not_accepted(struct esb_endpoint *ep, struct esb_http_conn *c,
                                   const char *url, int rc, const struct esb_err *err);

/* ---- suspended requests (http_in_wait.c) ---- */

/* The body is complete: register m (takes it) and park the request until
 * the bus made it durable (oneway: then 202) or the route answered
 * (request-reply); answers at once if it already can. */
void esb__hin_request_reply(struct esb_endpoint *ep, struct http_in_state *st,
                            struct esb_http_conn *c, const char *url, struct http_req *req,
                            struct esb_msg *m, int oneway);
/* The loop's pass is over: commit the one-way accepts it gathered, as one
 * transaction (one fdatasync share, one callback). */
void esb__hin_pass_end(void);
/* A parked request was resumed: answer it. */
void esb__hin_request_reply_again(struct esb_http_conn *c, struct reply_wait *rw);
/* The connection of rw ended. */
void esb__hin_request_reply_done(struct http_in_state *st, struct reply_wait *rw);
/* Stopping: let one-way accepts finish, answer every other parked
 * request with 503, and give the answers a moment to go out. */
void esb__hin_request_reply_stop(struct http_in_state *st);

#endif
