/* http_server.h - the HTTP/1.1 server under http-in: event loops on epoll,
 * one per thread, each on its own SO_REUSEPORT listening socket of the same
 * address; keep-alive, pipelining, chunked request bodies, Expect:
 * 100-continue, connection limits (whole server and per client address),
 * idle timeouts, and lingering close after an early error answer.
 *
 * A request can be parked: its connection keeps its place, costs no system
 * call while parked and is not timed out, and any thread resumes it with
 * esb_http_resume() (one queue push per request and at most one eventfd
 * write per batch of resumes of a loop). http-in parks each request while
 * the bus makes it durable and answers when the commit callback resumes
 * it: this is why esb has its own server (libmicrohttpd's suspend/resume
 * costs two epoll_ctl calls, a recv and two extra loop passes per request;
 * see docs/ARCHITECTURE.md).
 *
 * Every callback runs on the connection's loop thread; a connection is
 * only ever touched by that thread, except for esb_http_resume(). */
#ifndef ESB_HTTP_SERVER_H
#define ESB_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "http_parse.h"
#include "util.h"

struct esb_http_server;
struct esb_http_conn;

/* A response header field; name and value must not contain CR or LF (a
 * field that does is not sent). */
struct esb_http_hdr {
    const char *name;
    const char *value;
};

/* The application's side. Each request that reached head() ends with
 * exactly one done(). A callback answers with esb_http_respond(); an
 * answer given before the body was read whole closes the connection
 * afterwards (the rest of the body is read and thrown away for a moment
 * first, so that the client sees the answer and not a reset). */
struct esb_http_server_ops {
    /* The head is complete (h and its fields valid during the call only).
     * Answer now, or return and the body is read. */
    void (*head)(void *app, struct esb_http_conn *c, const struct esb_http_head *h);
    /* Body bytes as they arrive. Non-zero: stop reading (the callback has
     * answered, e.g. 413). */
    int (*body)(void *app, struct esb_http_conn *c, const char *data, size_t n);
    /* The body is complete: answer, or esb_http_park(). Neither: 500. */
    void (*complete)(void *app, struct esb_http_conn *c);
    /* A parked request was resumed: answer now (or park again). */
    void (*resumed)(void *app, struct esb_http_conn *c);
    /* The request is over: answered, or its connection closed. */
    void (*done)(void *app, struct esb_http_conn *c);
    /* Optional: the loop served what was ready (one pass of its event loop);
     * work gathered during the pass can be handed on together now. */
    void (*pass_end)(void *app);
};

struct esb_http_server_conf {
    const char *name; /* for log lines: the endpoint id */
    const struct sockaddr *addr;
    socklen_t addr_len;
    unsigned threads;            /* event loops, >= 1 */
    int nice;                    /* added to the loop threads' niceness */
    unsigned max_connections;    /* whole server; more are closed at accept */
    unsigned per_ip_connections; /* per client address */
    uint64_t idle_timeout_ms;    /* a connection with no progress for this long is closed */
    size_t head_max;             /* request line + header fields, bytes (more: 431) */
    const struct esb_http_server_ops *ops;
    void *app;
};

/* Listen and start the loops. -ESB_EFAILED (address in use, ...) with err. */
int esb_http_server_start(const struct esb_http_server_conf *conf, struct esb_http_server **out,
                          struct esb_err *err) ESB_WUR;

/* Stop accepting, give answers already given up to 1 s to be written,
 * close every connection (done() for each request still open), join the
 * loops and free the server. No esb_http_resume() may follow. */
void esb_http_server_stop(struct esb_http_server *s);

/* The application's per-request pointer (NULL at head()). */
void **esb_http_ctx(struct esb_http_conn *c);

/* Answer the current request (loop thread, from a callback). Content-Length,
 * Date and Connection are added here; hdrs are sent as given. The body is
 * copied if it cannot be written at once. Not sent for HEAD, 204 and 304. */
void esb_http_respond(struct esb_http_conn *c, unsigned status, const struct esb_http_hdr *hdrs,
                      size_t nhdrs, const void *body, size_t len);

/* Hold the request (from complete() or resumed()) until esb_http_resume(). */
void esb_http_park(struct esb_http_conn *c);

/* Let a parked request's loop call resumed(). Any thread; once per park. */
void esb_http_resume(struct esb_http_conn *c);

#endif
