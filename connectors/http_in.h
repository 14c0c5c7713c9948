/* http_in.h - the http-in connector: an HTTP server (libmicrohttpd, its own
 * epoll thread pool) that turns each POST to a routed path into a message
 * and answers 202 only once the message is durable on the bus - or, with
 * mode="request-reply", holds the request until the route has run and
 * answers with its result. See docs/connectors.md for status codes and
 * limits. */
#ifndef ESB_HTTP_IN_H
#define ESB_HTTP_IN_H

#include <stdint.h>

#include "connector.h"

/* ep->conf of an http-in endpoint (filled by the attribute table). */
struct esb_http_in_conf {
    char *id;                    /* the id attribute (ep->id is the one used) */
    char *listen;                /* "host:port" */
    uint64_t max_body;           /* bytes */
    uint64_t max_connections;    /* whole server */
    uint64_t per_ip_connections; /* per client address */
    uint64_t timeout;            /* ms of inactivity before a connection is closed */
    uint64_t threads;            /* event loops (one libmicrohttpd daemon each) */
    uint64_t nice;               /* niceness of those threads, 0..19 */
    int mode;                    /* ESB_HTTP_IN_ONE_WAY or ESB_HTTP_IN_REQUEST_REPLY */
    uint64_t reply_timeout;      /* request-reply: ms to wait for the route */
};

/* mode=: answer 202 once durable, or wait for the route's result. */
enum { ESB_HTTP_IN_ONE_WAY = 0, ESB_HTTP_IN_REQUEST_REPLY = 1 };

extern const struct esb_connector_ops esb_http_in_ops;

#endif
