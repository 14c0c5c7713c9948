/* http_out.h - the http-out connector: delivers each message as one HTTP
 * request (POST by default) on the libcurl multi interface, with one
 * delivery thread per endpoint, keep-alive connection reuse and at most
 * max-in-flight requests on the wire at once. The response is classified
 * into DONE (2xx), RETRY (408/425/429/5xx by default, timeouts, connection
 * errors; Retry-After honoured) or REJECT (any other status).
 *
 * The runtime's per-endpoint dispatcher uses ops->deliver_async; the
 * blocking ops->deliver wraps it for callers that want one answer per call.
 * Contract of deliver_async / done / destroy: see http_out.c and
 * docs/connectors.md ("http-out"). */
#ifndef ESB_HTTP_OUT_H
#define ESB_HTTP_OUT_H

#include <stdint.h>

#include "connector.h"

/* ep->conf of an http-out endpoint (filled by the attribute table). */
struct esb_http_out_conf {
    char *id;                  /* the id attribute (ep->id is the one used) */
    char *url;                 /* URL template: http(s)://host[:port]/path?{id}... */
    int method;                /* index into "POST", "PUT", "PATCH" */
    char *headers;             /* "Name: value; Name2: value" sent with every request */
    char *forward_headers;     /* comma-separated globs of message headers to forward */
    int propagate_traceparent; /* copy traceparent/tracestate from the message */
    char *idempotency_header;  /* header carrying the message id; "" = none */
    uint64_t connect_timeout;  /* ms */
    uint64_t timeout;          /* ms, whole request */
    uint64_t low_speed_limit;  /* bytes/s; 0 = no low-speed check */
    uint64_t low_speed_time;   /* ms (rounded up to whole seconds) */
    uint64_t max_in_flight;    /* requests on the wire at once */
    int tls_verify;            /* verify the server's certificate and name */
    char *ca_file;             /* CA bundle (PEM) instead of the system's */
    char *client_cert;         /* client certificate (PEM) */
    char *client_key;          /* its private key (PEM) */
    int follow_redirects;      /* follow 3xx (http/https targets only) */
    char *retry_status;        /* "408,425,429,500-599": statuses that mean RETRY */
    uint64_t breaker_failures; /* consecutive retryable failures that open the breaker; 0 none */
    uint64_t breaker_cooldown; /* ms the open breaker waits before a probe */
};

extern const struct esb_connector_ops esb_http_out_ops;

#endif
