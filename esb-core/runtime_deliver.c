/* runtime_deliver.c - dispatchers for asynchronous outbound endpoints
 * (http-out). One thread per endpoint per config generation:
 *
 *   take entries of deliver:ID while fewer than max_in_flight are started
 *   and the circuit breaker allows; start each with ops->deliver_async;
 *   the connector's thread reports each outcome through a callback that
 *   only queues it; the dispatcher commits all queued outcomes in ONE bus
 *   transaction (acks, retries, dead-letters), so group commit works for
 *   deliveries as for ingest. That commit is asynchronous: the dispatcher
 *   starts the next deliveries while the bus makes the outcomes durable
 *   (max-in-flight counts requests to the endpoint, not commits), and the
 *   entries are released from the bus's completion callback.
 *
 * Circuit breaker (ops->breaker, e.g. http-out's breaker-failures and
 * breaker-cooldown): after `failures` consecutive retryable failures the
 * endpoint is "open" for `cooldown_ms`: nothing new is taken (messages
 * wait on the bus, not in memory); then one probe is let through
 * ("half-open"); its success closes the breaker, its failure opens it
 * again. failures 0: no breaker. Every change is logged. */
#include "config.h"

#include "conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bus.h"
#include "log.h"
#include "msg.h"
#include "runtime_internal.h"

#define IDLE_WAIT_MS        100 /* consume timeout with nothing in flight */
#define BUSY_WAIT_MS        5   /* wait for outcomes while deliveries run */

enum breaker { CLOSED, OPEN, HALF_OPEN };

struct outcome {
    struct esb__dispatcher *d;
    struct esb_entry *e;
    uint64_t started_ms; /* wall */
    struct esb_delivery result;
    struct outcome *next;
};

struct esb__dispatcher {
    _Atomic unsigned refs; /* the thread's and the generation's */
    struct esb_runtime *rt;
    struct generation *g; /* a reference: keeps ep alive */
    struct esb_endpoint *ep;
    char *queue;
    unsigned limit;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct outcome *done; /* finished deliveries, not yet committed */
    unsigned inflight;    /* requests started, not yet answered */
    _Atomic int retired;
    _Atomic int aborted; /* shutting down: outcomes are not committed */
    struct esb_breaker_conf bconf;
    enum breaker breaker;
    unsigned failures;
    uint64_t open_until;
};

/* Connector thread: queue the outcome for the dispatcher. */
static void on_done(void *ctx, const struct esb_delivery *result)
{
    struct outcome *o = ctx;
    struct esb__dispatcher *d = o->d;
    o->result = *result;
    pthread_mutex_lock(&d->lock);
    o->next = d->done;
    d->done = o;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->lock);
}

static void breaker_note(struct esb__dispatcher *d, const struct esb_delivery *r)
{
    if (r->outcome == ESB_RETRY) {
        d->failures++;
        if (d->bconf.failures == 0) return; /* no breaker */
        if (d->breaker == HALF_OPEN || (d->breaker == CLOSED && d->failures >= d->bconf.failures)) {
            d->breaker = OPEN;
            d->open_until = esb_now_ms() + d->bconf.cooldown_ms;
            esb_warn("[endpoint:%s] circuit breaker OPEN after %u consecutive failures (%s); "
                     "pausing deliveries for %llums",
                     d->ep->id, d->failures, r->err.msg, (unsigned long long)d->bconf.cooldown_ms);
        }
        return;
    }
    /* a success or a permanent rejection: the endpoint answers */
    if (d->breaker != CLOSED)
        esb_warn("[endpoint:%s] circuit breaker CLOSED: the endpoint answers again", d->ep->id);
    d->breaker = CLOSED;
    d->failures = 0;
}

/* May a new delivery start now? */
static int breaker_allows(struct esb__dispatcher *d)
{
    if (d->breaker == CLOSED) return 1;
    if (d->breaker == OPEN) {
        if (esb_now_ms() < d->open_until) return 0;
        d->breaker = HALF_OPEN;
        esb_info("[endpoint:%s] circuit breaker HALF-OPEN: sending one probe", d->ep->id);
    }
    return d->inflight == 0; /* half-open: one probe at a time */
}

/* The outcomes of one transaction, freed when the bus is done with it. */
struct committing {
    struct esb_txn *t;
    struct outcome *list;
    size_t n;
    char *ep; /* endpoint id, for the log */
};

static void free_outcomes(struct outcome *list)
{
    while (list) {
        struct outcome *next = list->next;
        esb_entry_free(list->e); /* unresolved after a failed commit: ready again */
        free(list);
        list = next;
    }
}

/* Bus completion thread: the outcomes are durable (rc 0) or not. */
static void outcomes_committed(void *ctx, int rc)
{
    struct committing *c = ctx;
    if (rc < 0 && rc != ESB_ECLOSED)
        esb_error("[endpoint:%s] committing %zu delivery outcomes failed: %s; they will be "
                  "delivered again",
                  c->ep, c->n, esb_strerror(rc));
    esb_txn_free(c->t);
    free_outcomes(c->list);
    free(c->ep);
    free(c);
}

/* Commit every queued outcome in one transaction. */
static void commit_outcomes(struct esb__dispatcher *d, struct outcome *list)
{
    if (atomic_load(&d->aborted)) {
        /* Shutting down: the connector cut these short. Commit nothing, so
         * they are delivered again after the restart with the same attempt. */
        size_t n = 0;
        while (list) {
            struct outcome *next = list->next;
            esb_entry_free(list->e);
            free(list);
            list = next;
            n++;
        }
        pthread_mutex_lock(&d->lock);
        d->inflight -= (unsigned)n;
        pthread_mutex_unlock(&d->lock);
        return;
    }
    struct committing *c = esb_calloc(1, sizeof(*c));
    c->t = esb_txn_new();
    c->list = list;
    c->ep = esb_strdup(d->ep->id);
    for (struct outcome *o = list; o; o = o->next, c->n++) {
        esb__rt_outcome(c->t, d->g, d->ep, o->e, &o->result, o->started_ms);
        breaker_note(d, &o->result);
    }
    /* The requests are answered: their slots are free for new ones. */
    pthread_mutex_lock(&d->lock);
    d->inflight -= (unsigned)c->n;
    pthread_mutex_unlock(&d->lock);
    struct esb_err err = {0};
    struct esb_bus *bus = esb_runtime_bus(d->rt);
    if (esb_bus_commit_async(bus, c->t, outcomes_committed, c, &err) < 0) {
        /* Refused before anything was written: the callback is not called. */
        if (err.code != ESB_ECLOSED)
            esb_error("[endpoint:%s] committing %zu delivery outcomes failed: %s; they will be "
                      "delivered again",
                      c->ep, c->n, err.msg);
        outcomes_committed(c, ESB_ECLOSED);
    }
}

/* Start delivering e; a connector that refuses to start counts as RETRY. */
static void start_one(struct esb__dispatcher *d, struct esb_entry *e)
{
    struct outcome *o = esb_calloc(1, sizeof(*o));
    o->d = d;
    o->e = e;
    o->started_ms = esb_now_ms();
    struct esb_err err = {0};
    /* Under the lock: esb__dispatcher_abort destroys the connector only
     * after it saw us stop starting deliveries. */
    pthread_mutex_lock(&d->lock);
    if (atomic_load(&d->retired)) {
        pthread_mutex_unlock(&d->lock);
        esb_entry_free(e); /* not started: it stays on the bus as it was */
        free(o);
        return;
    }
    d->inflight++;
    int rc = d->ep->ops->deliver_async(d->ep, esb_msg_ref(e->msg), on_done, o, &err);
    pthread_mutex_unlock(&d->lock);
    if (rc != 0) {
        esb_msg_unref(e->msg); /* the connector did not take it */
        struct esb_delivery r = {.outcome = ESB_RETRY};
        r.err = err;
        on_done(o, &r);
    }
}

static void *dispatcher_main(void *arg)
{
    struct esb__dispatcher *d = arg;
    struct esb_bus *bus = esb_runtime_bus(d->rt);
    esb_thread_name("esb-out-%s", d->ep->id);
    for (;;) {
        pthread_mutex_lock(&d->lock);
        struct outcome *list = d->done;
        d->done = NULL;
        unsigned inflight = d->inflight;
        pthread_mutex_unlock(&d->lock);
        if (list) {
            commit_outcomes(d, list);
            continue;
        }
        int retired = atomic_load(&d->retired);
        if (retired && inflight == 0) break;
        if (!retired && inflight < d->limit && breaker_allows(d)) {
            struct esb_entry *e = NULL;
            int rc = esb_bus_consume(bus, d->queue, inflight ? 0 : IDLE_WAIT_MS, &e);
            if (rc == 0) {
                start_one(d, e);
                continue;
            }
            if (rc != ESB_ETIMEDOUT && rc != ESB_ECORRUPT) atomic_store(&d->retired, 1);
            if (!inflight) continue;
        }
        /* wait for an outcome (or the breaker's cool-down, or retirement) */
        pthread_mutex_lock(&d->lock);
        if (!d->done) {
            struct timespec ts;
            esb_abstime_mono_ms(&ts, inflight ? BUSY_WAIT_MS : IDLE_WAIT_MS);
            pthread_cond_timedwait(&d->cv, &d->lock, &ts);
        }
        pthread_mutex_unlock(&d->lock);
    }
    struct esb_runtime *rt = d->rt;
    struct generation *g = d->g;
    d->g = NULL;
    esb__dispatcher_unref(d);
    esb__rt_gen_unref(g); /* may free the generation, and with it d */
    pthread_mutex_lock(&rt->disp_lock);
    rt->ndisp_running--;
    pthread_cond_broadcast(&rt->disp_cv);
    pthread_mutex_unlock(&rt->disp_lock);
    return NULL;
}

void esb__dispatcher_unref(struct esb__dispatcher *d)
{
    if (!d || atomic_fetch_sub(&d->refs, 1) != 1) return;
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cv);
    free(d->queue);
    free(d);
}

struct esb__dispatcher *esb__dispatcher_new(struct esb_runtime *rt, struct generation *g,
                                            struct esb_endpoint *ep, const char *queue)
{
    struct esb__dispatcher *d = esb_calloc(1, sizeof(*d));
    d->rt = rt;
    d->g = g;
    atomic_fetch_add(&g->refs, 1);
    d->ep = ep;
    d->queue = esb_strdup(queue);
    d->limit = ep->ops->max_in_flight ? ep->ops->max_in_flight(ep) : 1;
    if (d->limit == 0) d->limit = 1;
    d->bconf = (struct esb_breaker_conf){ESB_BREAKER_FAILURES, ESB_BREAKER_COOLDOWN_MS};
    if (ep->ops->breaker) ep->ops->breaker(ep, &d->bconf);
    if (d->bconf.cooldown_ms == 0) d->bconf.cooldown_ms = 1;
    atomic_store(&d->refs, 2);
    pthread_mutex_init(&d->lock, NULL);
    esb_cond_init_mono(&d->cv);
    pthread_mutex_lock(&rt->disp_lock);
    rt->ndisp_running++;
    pthread_mutex_unlock(&rt->disp_lock);
    if (pthread_create(&d->thread, NULL, dispatcher_main, d) != 0) {
        esb_error("[endpoint:%s] cannot start its dispatcher thread", ep->id);
        pthread_mutex_lock(&rt->disp_lock);
        rt->ndisp_running--;
        pthread_mutex_unlock(&rt->disp_lock);
        esb__rt_gen_unref(g);
        atomic_store(&d->refs, 1);
        esb__dispatcher_unref(d);
        return NULL;
    }
    pthread_detach(d->thread);
    return d;
}

void esb__dispatcher_retire(struct esb__dispatcher *d)
{
    atomic_store(&d->retired, 1);
    pthread_mutex_lock(&d->lock);
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->lock);
}

void esb__dispatcher_abort(struct esb__dispatcher *d)
{
    pthread_mutex_lock(&d->lock);
    atomic_store(&d->aborted, 1);
    atomic_store(&d->retired, 1); /* no deliver_async after this */
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->lock);
    /* Every open delivery comes back through done (RETRY "shutting down")
     * at once instead of after the endpoint's timeout. */
    if (d->ep->ops->destroy) d->ep->ops->destroy(d->ep);
}

void esb__dispatchers_wait(struct esb_runtime *rt)
{
    pthread_mutex_lock(&rt->disp_lock);
    while (rt->ndisp_running > 0) pthread_cond_wait(&rt->disp_cv, &rt->disp_lock);
    pthread_mutex_unlock(&rt->disp_lock);
}
