/* runtime_internal.h - structures shared by the files of the runtime
 * (runtime.c: generations, workers, endpoints; runtime_deliver.c:
 * asynchronous delivery dispatchers; runtime_dlq.c: replay/purge).
 * Not for other modules. */
#ifndef ESB_RUNTIME_INTERNAL_H
#define ESB_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "../connectors/connector.h"
#include "../routes/route.h"
#include "bus.h"
#include "runtime.h"

struct esb__dispatcher;
struct worker;
struct pending_commit;
struct commit_batch;
struct esb__replies;

/* What a worker does with entries of one bus queue. */
struct handler {
    const char *queue;             /* borrowed from the route or owned (deliver:) */
    const struct esb_route *route; /* run this route, or */
    struct esb_endpoint *ep;       /* deliver to this outbound endpoint */
    char *owned;
};

/* A worker thread (runtime_worker.c). */
struct worker {
    struct esb_runtime *rt;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct pending_commit *done; /* durable (or failed), to be finished */
    unsigned inflight;
    struct commit_batch *open; /* hand-offs gathered, not yet committed (worker's own) */
    unsigned no;               /* 0-based, for the thread's name */
};

/* One config generation: immutable once published. */
struct generation {
    _Atomic unsigned refs;
    struct esb_config *cfg;
    struct handler *handlers;
    size_t nhandlers;
    const char **queues; /* the queues workers consume: handlers[i].queue */
    size_t nqueues;
    struct esb__dispatcher **dispatchers; /* one per asynchronous outbound endpoint */
    size_t ndispatchers;
};

/* An inbound endpoint that is running, and the config that owns it. */
struct running {
    struct esb_endpoint *ep;
    struct esb_config *owner;
};

struct esb_runtime {
    struct esb_bus *bus;
    /* lock guards only the gen pointer (held for a moment; connector threads
     * take it). switch_lock serialises reloads and guards running; it may be
     * held while endpoints stop, which waits for their threads, so those
     * threads must never need it. */
    pthread_mutex_t lock, switch_lock;
    struct generation *gen;
    _Atomic unsigned version;
    struct running *running;
    size_t nrunning;
    pthread_t *workers;
    struct worker *wstate; /* one per worker thread */
    size_t nworkers;
    _Atomic int stopping;     /* no new input */
    _Atomic int workers_stop; /* workers exit */
    /* dispatcher threads still running (they outlive their generation
     * until their deliveries in flight are finished) */
    pthread_mutex_t disp_lock;
    pthread_cond_t disp_cv;
    unsigned ndisp_running;
    /* request-reply waiters (runtime_reply.c); made at start */
    struct esb__replies *replies;
};

extern const struct esb_retry_policy esb__default_retry;

/* runtime.c */
struct generation *esb__rt_gen_get(struct esb_runtime *rt);
void esb__rt_gen_unref(struct generation *g);
/* Delay before attempt+1 under policy p (exponential, capped, jittered). */
uint64_t esb__rt_backoff_ms(const struct esb_retry_policy *p, uint32_t attempt);
/* The retry policy and dead-letter queue for a delivery of m (by its
 * esb-route header in g; defaults when the route is gone). */
const struct esb_retry_policy *esb__rt_policy(const struct generation *g, const struct esb_msg *m,
                                              const char **dlq);

/* 1 if a route or endpoint of the current generation consumes queue
 * (dead-letter queues do not count). */
int esb__rt_consumes(struct esb_runtime *rt, const char *queue);

/* Add to t what outcome d of delivering e to ep (an attempt started at
 * started_ms, wall) means: ack; retry after max(backoff, Retry-After)
 * while attempts remain; else dead-letter with the reason. A failed
 * attempt goes into the entry's history. */
void esb__rt_outcome(struct esb_txn *t, const struct generation *g, const struct esb_endpoint *ep,
                     const struct esb_entry *e, const struct esb_delivery *d, uint64_t started_ms);

/* runtime_deliver.c: a dispatcher per endpoint with deliver_async. It
 * consumes deliver:ID, keeps up to max_in_flight deliveries started,
 * commits outcomes in batches (ack / retry with backoff or Retry-After /
 * dead-letter), and holds a circuit breaker. */
struct esb__dispatcher *esb__dispatcher_new(struct esb_runtime *rt, struct generation *g,
                                            struct esb_endpoint *ep, const char *queue);
/* Drop a reference (the generation holds one, the thread another). */
void esb__dispatcher_unref(struct esb__dispatcher *d);
/* Stop taking new entries; the thread exits once its deliveries finished. */
void esb__dispatcher_retire(struct esb__dispatcher *d);
/* Shutting down: stop taking entries and cut deliveries in flight short
 * (the connector is destroyed; their entries are released, not committed,
 * so they are delivered again after the restart with the same attempt). */
void esb__dispatcher_abort(struct esb__dispatcher *d);
/* Wait until every dispatcher thread of rt has exited. */
void esb__dispatchers_wait(struct esb_runtime *rt);

/* runtime_reply.c: requests waiting for their route (esb_runtime_request). */
struct esb__replies *esb__replies_new(void);
/* Stop the timeout thread and answer every request still waiting (503).
 * Call once no worker runs any more. NULL-safe. */
void esb__replies_free(struct esb__replies *w);
/* Route r's hand-off of entry e committed: answer the request waiting for
 * e's message, if any (only for the input of a connector-fed route), from
 * res (error: 502, no final: 204, else the final message; duplicate: a
 * <dedupe> found it was seen before, answered with the final message and
 * the response header esb-duplicate: true). */
/* True while some request-reply client waits for a route's result. */
int esb__rt_reply_waiting(struct esb_runtime *rt);
void esb__rt_reply_route(struct esb_runtime *rt, const struct esb_route *r,
                         const struct esb_entry *e, const struct esb_route_result *res,
                         int duplicate);

/* runtime.c: the handler of queue in g, or NULL. */
const struct handler *esb__rt_gen_handler(const struct generation *g, const char *queue);
/* runtime_worker.c: the worker thread (arg: its struct worker). */
void *esb__rt_worker_main(void *arg);

#endif
