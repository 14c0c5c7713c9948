/* connector.h - the interface every connector implements, and the table
 * that registers them. Adding a connector = one file pair + one line in
 * connectors/registry.c; the router never changes.
 *
 * Lifetimes: the runtime owns endpoints. For each configured connector
 * element the config loader calls ops->parse (once per config generation)
 * to build ep->conf. Inbound endpoints are started with ops->start and
 * stopped with ops->stop; an inbound endpoint whose definition did not
 * change across a reload is kept running (ops->same decides). Outbound
 * endpoints get ops->deliver calls from worker threads, concurrently.
 *
 * Inbound connectors hand messages to the runtime with esb_runtime_accept()
 * (runtime.h), which makes them durable and only then returns 0: the
 * connector acknowledges its source (HTTP 202, file moved to done-dir) only
 * after that. */
#ifndef ESB_CONNECTOR_H
#define ESB_CONNECTOR_H

#include <stdint.h>

#include "conf_attr.h"
#include "util.h"

struct esb_msg;
struct esb_runtime;
struct esb_endpoint;

/* Outcome of a delivery. */
enum esb_outcome {
    ESB_DONE = 0, /* confirmed by the destination: ack */
    ESB_RETRY,    /* transient: try again later (backoff) */
    ESB_REJECT,   /* permanent: dead-letter with err->msg as the reason */
};

enum esb_connector_dir { ESB_INBOUND = 1, ESB_OUTBOUND = 2 };

/* What kind of failure a RETRY or REJECT was: the class an entry's attempt
 * history (struct esb_try) and a dead letter show. Names: esb_fail_name. */
enum esb_fail {
    ESB_FAIL_UNSET = 0, /* not said: the runtime derives it from err.code */
    ESB_FAIL_STATUS,    /* "http-status": the destination answered with an error status */
    ESB_FAIL_TIMEOUT,   /* "timeout": no (whole) answer in time */
    ESB_FAIL_CONNECT,   /* "connect": no connection, or it broke (DNS, refused, reset) */
    ESB_FAIL_TLS,       /* "tls": handshake or certificate */
    ESB_FAIL_IO,        /* "io": the file system failed */
    ESB_FAIL_INVALID,   /* "invalid": cannot be sent as configured (URL, name, protocol) */
    ESB_FAIL_ROUTE,     /* "route": a route step failed (predicate, transform, template) */
    ESB_FAIL_ERROR,     /* "error": anything else */
};
/* The class's name; f ESB_FAIL_UNSET is classified by code (an esb_err
 * code: ESB_ETIMEDOUT "timeout", ESB_EINVAL "invalid", an errno "io", else
 * "error"). */
const char *esb_fail_name(enum esb_fail f, int code);

/* What an asynchronous delivery found out. */
struct esb_delivery {
    enum esb_outcome outcome;
    uint64_t retry_after_ms; /* RETRY: the destination asked to wait this long (0: policy) */
    int status;              /* HTTP status, or 0 */
    struct esb_err err;      /* RETRY/REJECT: what went wrong, for logs and the DLQ reason */
    enum esb_fail fail;      /* RETRY/REJECT: the kind of failure (UNSET: by err.code) */
};
/* Called exactly once per started delivery, from the connector's thread. */
typedef void (*esb_delivery_done_fn)(void *ctx, const struct esb_delivery *result);

/* The circuit breaker the runtime keeps per asynchronous outbound endpoint:
 * after `failures` consecutive retryable failures nothing new is sent for
 * `cooldown_ms`, then one probe. */
struct esb_breaker_conf {
    unsigned failures;    /* 0: no breaker */
    uint64_t cooldown_ms; /* >= 1 */
};
#define ESB_BREAKER_FAILURES    5 /* defaults, for endpoints that do not say */
#define ESB_BREAKER_COOLDOWN_MS 30000

struct esb_connector_ops {
    const char *element; /* config element and URI scheme: "http-in", "file-out", ... */
    enum esb_connector_dir dir;
    const char *summary;               /* one line for the reference docs */
    const struct esb_attr_spec *attrs; /* the element's attributes */
    size_t conf_size;                  /* size of the struct attrs fill */
    /* Validate ep->conf beyond the table (cross-field checks, dirs exist);
     * may fill derived fields. NULL = nothing more. Errors name file:line. */
    int (*check)(struct esb_endpoint *ep, struct esb_err *err);
    /* Inbound: start serving (threads, sockets); rt outlives the endpoint. */
    int (*start)(struct esb_endpoint *ep, struct esb_runtime *rt, struct esb_err *err);
    /* Inbound: stop accepting, finish or abandon (unacknowledged) in-flight
     * work, join threads. Idempotent; NULL-safe on a never-started ep. */
    void (*stop)(struct esb_endpoint *ep);
    /* Inbound: non-zero if a running endpoint a may keep serving in place of b. */
    int (*same)(const struct esb_endpoint *a, const struct esb_endpoint *b);
    /* Outbound: deliver m (borrowed); called from any worker thread. */
    enum esb_outcome (*deliver)(struct esb_endpoint *ep, const struct esb_msg *m,
                                struct esb_err *err);
    /* Outbound, asynchronous (instead of deliver): start delivering m and
     * return 0, taking over the caller's reference to m; done(ctx, result)
     * is then called exactly once, later, from the connector's own thread
     * (result is valid during the call only). If it returns an error, the
     * caller keeps its reference and done is never called. The runtime
     * keeps at most max_in_flight(ep) deliveries started per endpoint.
     * destroy reports every delivery still open through done (RETRY) before
     * it returns; it must not be called from done. */
    int (*deliver_async)(struct esb_endpoint *ep, struct esb_msg *m, esb_delivery_done_fn done,
                         void *ctx, struct esb_err *err);
    unsigned (*max_in_flight)(const struct esb_endpoint *ep);
    /* Outbound, asynchronous: the endpoint's circuit breaker (NULL: the
     * defaults ESB_BREAKER_FAILURES, ESB_BREAKER_COOLDOWN_MS). */
    void (*breaker)(const struct esb_endpoint *ep, struct esb_breaker_conf *out);
    /* Free ep->state (and anything start/deliver made). NULL-safe. */
    void (*destroy)(struct esb_endpoint *ep);
};

struct esb_endpoint {
    char *id; /* the element's id attribute */
    const struct esb_connector_ops *ops;
    char *file; /* config file and line of the element */
    int line;
    void *conf;  /* ops->conf_size bytes filled by attrs */
    void *state; /* the connector's own runtime state */
};

/* State an outbound connector makes on first use, from any worker thread:
 * esb_endpoint_state reads ep->state (NULL: not made yet); after making one,
 * esb_endpoint_state_install puts st in place unless another thread did
 * first. It returns the state in place: st, or the winner's (the caller then
 * frees st). */
static inline void *esb_endpoint_state(struct esb_endpoint *ep)
{
    return __atomic_load_n(&ep->state, __ATOMIC_ACQUIRE);
}
static inline void *esb_endpoint_state_install(struct esb_endpoint *ep, void *st)
{
    void *expected = NULL;
    if (__atomic_compare_exchange_n(&ep->state, &expected, st, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        return st;
    return expected;
}

/* All registered connectors, NULL-terminated. */
extern const struct esb_connector_ops *const esb_connectors[];
/* Find a connector by element/scheme name, or NULL. */
const struct esb_connector_ops *esb_connector_find(const char *element);

#endif
