/* runtime.c - the running gateway: config generations, the worker pool,
 * inbound endpoint lifecycles and delivery with retry/dead-letter. See
 * runtime.h for the contract. */
#include "config.h"

#include "conf.h"

#include "runtime.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "log.h"
#include "msg.h"
#include "runtime_internal.h"

#define POLL_MS         100 /* workers re-check the generation this often */
#define BACKPRESSURE_MS 100 /* pause after a downstream queue refused */

const struct esb_retry_policy esb__default_retry = {
    .max_attempts = 5,
    .initial_delay_ms = 1000,
    .multiplier = 2.0,
    .max_delay_ms = 300000,
    .jitter = 0.2,
};

/* ---- generations ---- */

void esb__rt_gen_unref(struct generation *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    for (size_t i = 0; i < g->nhandlers; i++) free(g->handlers[i].owned);
    free(g->handlers);
    free(g->queues);
    for (size_t i = 0; i < g->ndispatchers; i++) esb__dispatcher_unref(g->dispatchers[i]);
    free(g->dispatchers);
    esb_config_unref(g->cfg);
    free(g);
}

struct generation *esb__rt_gen_get(struct esb_runtime *rt)
{
    pthread_mutex_lock(&rt->lock);
    struct generation *g = rt->gen;
    atomic_fetch_add(&g->refs, 1);
    pthread_mutex_unlock(&rt->lock);
    return g;
}

static void add_handler(struct generation *g, const char *queue, const struct esb_route *r,
                        struct esb_endpoint *ep, char *owned)
{
    for (size_t i = 0; i < g->nhandlers; i++) {
        if (strcmp(g->handlers[i].queue, queue) == 0) {
            free(owned);
            return; /* the config check rejects two routes on one queue */
        }
    }
    g->handlers = esb_realloc(g->handlers, (g->nhandlers + 1) * sizeof(*g->handlers));
    g->handlers[g->nhandlers++] = (struct handler){queue, r, ep, owned};
}

static struct generation *gen_build(struct esb_config *cfg)
{
    struct generation *g = esb_calloc(1, sizeof(*g));
    atomic_store(&g->refs, 1);
    g->cfg = esb_config_ref(cfg);
    for (size_t i = 0; i < cfg->nroutes; i++)
        add_handler(g, esb_route_input(cfg->routes[i]), cfg->routes[i], NULL, NULL);
    for (size_t i = 0; i < cfg->nendpoints; i++) {
        struct esb_endpoint *ep = cfg->endpoints[i];
        if (!(ep->ops->dir & ESB_OUTBOUND)) continue;
        if (ep->ops->deliver_async) continue; /* a dispatcher takes deliver:ID */
        size_t n = strlen(ep->id) + sizeof("deliver:");
        char *q = esb_malloc(n);
        snprintf(q, n, "deliver:%s", ep->id);
        add_handler(g, q, NULL, ep, q);
    }
    g->queues = esb_calloc(g->nhandlers ? g->nhandlers : 1, sizeof(*g->queues));
    for (size_t i = 0; i < g->nhandlers; i++) g->queues[i] = g->handlers[i].queue;
    return g;
}

static const struct handler *gen_handler(const struct generation *g, const char *queue)
{
    for (size_t i = 0; i < g->nhandlers; i++)
        if (strcmp(g->handlers[i].queue, queue) == 0) return &g->handlers[i];
    return NULL;
}

/* Strings equal, NULL counting as "". */
static int same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Entries waiting on the input queue of an inbound route that the new
 * config g no longer has (renamed or replaced: same endpoint and path,
 * another id) would wait forever, as no worker consumes that queue any
 * more. The route of g that now takes that source runs them (and any
 * message accepted under the old generation but appended after the
 * switch). Called before g is published. */
static void gen_adopt(struct esb_bus *bus, struct generation *g, const struct generation *old)
{
    size_t before = g->nhandlers;
    for (size_t i = 0; i < old->nhandlers; i++) {
        const struct handler *h = &old->handlers[i];
        if (!h->route || gen_handler(g, h->queue)) continue;
        const struct esb_route_source *s = esb_route_source(h->route);
        if (s->kind != ESB_URI_INBOUND) continue;
        struct esb_queue_info qi = {0};
        int has = esb_bus_queue_info(bus, h->queue, &qi) == 0 && qi.entries > 0;
        if (h->owned && !has) continue; /* adopted earlier and now empty: done */
        const struct esb_route *r = NULL;
        for (size_t j = 0; j < g->cfg->nroutes && !r; j++) {
            const struct esb_route_source *t = esb_route_source(g->cfg->routes[j]);
            if (t->kind == ESB_URI_INBOUND && strcmp(t->name, s->name) == 0 &&
                same_str(t->path, s->path))
                r = g->cfg->routes[j];
        }
        if (!r) {
            if (has)
                esb_warn("reload: %llu entries on %s stay queued: no route takes %s%s%s any more",
                         (unsigned long long)qi.entries, h->queue, s->name, s->path ? " at " : "",
                         s->path ? s->path : "");
            continue;
        }
        char *q = esb_strdup(h->queue);
        add_handler(g, q, r, NULL, q);
        esb_info("reload: entries left on %s are routed by route %s", h->queue, esb_route_id(r));
    }
    if (g->nhandlers == before) return;
    free(g->queues);
    g->queues = esb_calloc(g->nhandlers, sizeof(*g->queues));
    for (size_t i = 0; i < g->nhandlers; i++) g->queues[i] = g->handlers[i].queue;
}

/* Subscribe the topic routes of g (and unsubscribe those of old not in g). */
static void gen_subscribe(struct esb_bus *bus, const struct generation *g,
                          const struct generation *old)
{
    for (size_t i = 0; i < g->cfg->nroutes; i++) {
        const struct esb_route_source *src = esb_route_source(g->cfg->routes[i]);
        if (src->kind != ESB_URI_TOPIC) continue;
        char topic[300];
        snprintf(topic, sizeof(topic), "topic:%s", src->name);
        esb_bus_subscribe(bus, topic, esb_route_input(g->cfg->routes[i]));
    }
    if (!old) return;
    for (size_t i = 0; i < old->cfg->nroutes; i++) {
        const struct esb_route_source *src = esb_route_source(old->cfg->routes[i]);
        if (src->kind != ESB_URI_TOPIC) continue;
        const char *q = esb_route_input(old->cfg->routes[i]);
        if (gen_handler(g, q)) continue;
        char topic[300];
        snprintf(topic, sizeof(topic), "topic:%s", src->name);
        esb_bus_unsubscribe(bus, topic, q);
    }
}

/* Start a dispatcher for every asynchronous outbound endpoint of g. */
static void gen_dispatch(struct esb_runtime *rt, struct generation *g)
{
    for (size_t i = 0; i < g->cfg->nendpoints; i++) {
        struct esb_endpoint *ep = g->cfg->endpoints[i];
        if (!(ep->ops->dir & ESB_OUTBOUND) || !ep->ops->deliver_async) continue;
        char q[300];
        snprintf(q, sizeof(q), "deliver:%s", ep->id);
        struct esb__dispatcher *d = esb__dispatcher_new(rt, g, ep, q);
        if (!d) continue;
        g->dispatchers =
            esb_realloc(g->dispatchers, (g->ndispatchers + 1) * sizeof(*g->dispatchers));
        g->dispatchers[g->ndispatchers++] = d;
    }
}

static void gen_retire(struct generation *g)
{
    for (size_t i = 0; i < g->ndispatchers; i++) esb__dispatcher_retire(g->dispatchers[i]);
}

struct stranded_ctx {
    const struct generation *g;
};

/* Is queue consumed by g (a worker handler, a dispatcher) or a DLQ? */
static int consumed_by(const struct generation *g, const char *queue)
{
    if (gen_handler(g, queue) || strncmp(queue, "dlq.", 4) == 0) return 1;
    for (size_t i = 0; i < g->cfg->nroutes; i++)
        if (strcmp(esb_route_dlq(g->cfg->routes[i]), queue) == 0) return 1;
    for (size_t i = 0; i < g->cfg->nendpoints; i++) {
        const struct esb_endpoint *ep = g->cfg->endpoints[i];
        if (ep->ops->deliver_async && strncmp(queue, "deliver:", 8) == 0 &&
            strcmp(queue + 8, ep->id) == 0)
            return 1;
    }
    return 0;
}

int esb__rt_consumes(struct esb_runtime *rt, const char *queue)
{
    struct generation *g = esb__rt_gen_get(rt);
    int yes = strncmp(queue, "dlq.", 4) != 0 && consumed_by(g, queue);
    esb__rt_gen_unref(g);
    return yes;
}

static void warn_stranded_one(void *ctx, const struct esb_queue_info *q)
{
    const struct stranded_ctx *c = ctx;
    if (q->entries == 0 || consumed_by(c->g, q->name)) return;
    esb_warn("%llu entries on bus queue %s are not consumed by any route or endpoint of this "
             "config; they stay queued (see docs/esbd.md)",
             (unsigned long long)q->entries, q->name);
}

/* Say so when messages wait on queues nothing in g consumes (a route or an
 * endpoint renamed or removed): they are kept, never dropped. */
static void warn_stranded(struct esb_bus *bus, const struct generation *g)
{
    struct stranded_ctx c = {g};
    esb_bus_queues(bus, warn_stranded_one, &c);
}

/* ---- workers ---- */

uint64_t esb__rt_backoff_ms(const struct esb_retry_policy *p, uint32_t attempt)
{
    double d = (double)p->initial_delay_ms * pow(p->multiplier, (double)attempt);
    if (d > (double)p->max_delay_ms) d = (double)p->max_delay_ms;
    if (p->jitter > 0) {
        double r = (double)rand() / (double)RAND_MAX; /* spread, not security */
        d *= 1.0 + p->jitter * (2.0 * r - 1.0);
    }
    return d < 1 ? 1 : (uint64_t)d;
}

const struct esb_retry_policy *esb__rt_policy(const struct generation *g, const struct esb_msg *m,
                                              const char **dlq)
{
    const char *rid = esb_msg_header(m, "esb-route");
    const struct esb_route *r = rid ? esb_config_route(g->cfg, rid) : NULL;
    *dlq = r ? esb_route_dlq(r) : "dlq.unrouted";
    return r ? esb_route_retry(r) : &esb__default_retry;
}

void esb__rt_outcome(struct esb_txn *t, const struct generation *g, const struct esb_endpoint *ep,
                     const struct esb_entry *e, const struct esb_delivery *d, uint64_t started_ms)
{
    const char *dlq;
    const struct esb_retry_policy *p = esb__rt_policy(g, e->msg, &dlq);
    if (d->outcome == ESB_DONE) {
        esb_txn_ack(t, e);
        return;
    }
    struct esb_try failed;
    esb_try_set(&failed, started_ms, esb_fail_name(d->fail, d->err.code), d->err.msg);
    if (d->outcome == ESB_RETRY && e->attempt + 1 < p->max_attempts) {
        uint64_t delay = esb__rt_backoff_ms(p, e->attempt);
        if (d->retry_after_ms > delay) delay = d->retry_after_ms;
        esb_info("[endpoint:%s] delivery failed id=%s attempt=%u: %s; retry in %llums", ep->id,
                 e->msg->id_text, e->attempt + 1, d->err.msg, (unsigned long long)delay);
        esb_txn_retry(t, e, esb_now_ms() + delay, &failed);
    } else {
        char reason[600];
        snprintf(reason, sizeof(reason), "%s to %s after %u attempt%s: %s",
                 d->outcome == ESB_REJECT ? "rejected" : "delivery failed", ep->id, e->attempt + 1,
                 e->attempt ? "s" : "", d->err.msg);
        esb_warn("[endpoint:%s] dead-lettered id=%s to %s: %s", ep->id, e->msg->id_text, dlq,
                 reason);
        esb_txn_dead(t, e, dlq, reason, &failed);
    }
}

/* Commit t; on back-pressure or failure release the entry for later.
 * Returns the commit's result (0: committed). */
static int commit_or_release(struct esb_runtime *rt, struct esb_txn *t, struct esb_entry *e)
{
    struct esb_err err = {0};
    int rc = esb_bus_commit(rt->bus, t, &err);
    if (rc == ESB_EFULL) {
        esb_warn("back-pressure queue=%s seq=%llu: %s; will retry", e->queue,
                 (unsigned long long)e->seq, err.msg);
        usleep(BACKPRESSURE_MS * 1000);
    } else if (rc < 0 && rc != ESB_ECLOSED) {
        esb_error("commit failed queue=%s seq=%llu: %s", e->queue, (unsigned long long)e->seq,
                  err.msg);
    }
    esb_txn_free(t);
    return rc;
}

/* A route hand-off committed asynchronously: the worker goes on with the
 * next entry while the bus makes this one durable, so one fdatasync covers
 * many entries of one worker (not only one per worker). */
struct pending_commit {
    struct worker *w;
    struct generation *g; /* keeps the route (and res) alive */
    const struct esb_route *route;
    struct esb_entry *e;
    struct esb_txn *t;
    struct esb_route_result res;
    int rc;
    struct pending_commit *next;
};

struct worker {
    struct esb_runtime *rt;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct pending_commit *done; /* durable (or failed), to be finished */
    unsigned inflight;
    unsigned no; /* 0-based, for the thread's name */
};

#define WORKER_MAX_INFLIGHT 256 /* hand-offs a worker may have in the bus at once */

/* Bus writer thread: the hand-off is durable (rc 0) or failed. Answer a
 * waiting request-reply client now; the rest is the worker's. */
static void route_commit_done(void *ctx, int rc)
{
    struct pending_commit *pc = ctx;
    pc->rc = rc;
    if (rc == 0) esb__rt_reply_route(pc->w->rt, pc->route, pc->e, &pc->res, 0);
    struct worker *w = pc->w;
    pthread_mutex_lock(&w->lock);
    pc->next = w->done;
    w->done = pc;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->lock);
}

/* Worker thread: finish every hand-off the bus is done with. */
static void finish_commits(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    struct pending_commit *list = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&w->lock);
    unsigned n = 0, failed = 0;
    while (list) {
        struct pending_commit *pc = list;
        list = pc->next;
        if (pc->rc < 0 && pc->rc != ESB_ECLOSED) {
            esb_error("commit failed queue=%s seq=%llu: %s; it will be processed again",
                      pc->e->queue, (unsigned long long)pc->e->seq, esb_strerror(pc->rc));
            failed++;
        }
        esb_entry_free(pc->e); /* unresolved after a failure: ready again */
        esb_route_result_clear(&pc->res);
        esb_txn_free(pc->t);
        esb__rt_gen_unref(pc->g);
        free(pc);
        n++;
    }
    if (n) {
        pthread_mutex_lock(&w->lock);
        w->inflight -= n;
        pthread_mutex_unlock(&w->lock);
    }
    /* The bus could not write: the entries are ready again, and taking
     * them at once would only spin on the same error. */
    if (failed) usleep(BACKPRESSURE_MS * 1000);
}

/* Run the route on e. Returns 1 if e was handed to an asynchronous commit
 * (finish_commits frees it), 0 if the caller still owns it. */
static int run_route(struct worker *w, struct generation *g, const struct handler *h,
                     struct esb_route_scratch *scratch, struct esb_entry *e)
{
    struct esb_runtime *rt = w->rt;
    struct esb_route_result res = {0};
    uint64_t started = esb_now_ms();
    esb_route_run(h->route, scratch, e->msg, &res);
    struct esb_txn *t = esb_txn_new();
    if (res.error) {
        esb_warn("[route:%s] routing error id=%s: %s; dead-lettered to %s", esb_route_id(h->route),
                 e->msg->id_text, res.reason, esb_route_dlq(h->route));
        struct esb_try failed;
        esb_try_set(&failed, started, esb_fail_name(ESB_FAIL_ROUTE, 0), res.reason);
        esb_txn_dead(t, e, esb_route_dlq(h->route), res.reason, &failed);
    } else {
        for (size_t i = 0; i < res.nout; i++) {
            struct esb_route_output *o = &res.out[i];
            /* Deliveries already carry esb-route (set by the router), which
             * names the retry policy and dead-letter queue to use. */
            if (o->kind == ESB_URI_TOPIC)
                esb_txn_publish(t, rt->bus, o->bus_name, o->msg);
            else
                esb_txn_append_keyed(t, &o->bus_name, 1, o->msg, o->key);
        }
        if (res.dedupe_key) { /* "dedupe:ROUTE:KEY"; the route's keys are one set */
            char key[1100];
            snprintf(key, sizeof(key), "dedupe:%s", res.dedupe_key);
            esb_txn_mark_unique_bounded(t, key, strlen("dedupe:") + strlen(esb_route_id(h->route)),
                                        res.dedupe_max_keys, esb_now_ms() + res.dedupe_window_ms);
        }
        if (res.dropped)
            esb_debug("[route:%s] filtered id=%s", esb_route_id(h->route), e->msg->id_text);
        esb_txn_ack(t, e);
    }
    /* Nobody waits for this hand-off unless a request-reply client does:
     * it may share a later fdatasync (bus.h, esb_txn_set_lazy). */
    if (!esb__rt_reply_waiting(rt)) esb_txn_set_lazy(t);
    struct pending_commit *pc = esb_calloc(1, sizeof(*pc));
    pc->w = w;
    pc->g = g;
    pc->route = h->route;
    pc->e = e;
    pc->t = t;
    pc->res = res; /* moved: the callback may read it */
    atomic_fetch_add(&g->refs, 1);
    pthread_mutex_lock(&w->lock);
    w->inflight++;
    pthread_mutex_unlock(&w->lock);
    struct esb_err err = {0};
    int rc = esb_bus_commit_async(rt->bus, t, route_commit_done, pc, &err);
    if (rc == 0) return 1;
    /* Refused before anything was written: done is never called. */
    pthread_mutex_lock(&w->lock);
    w->inflight--;
    pthread_mutex_unlock(&w->lock);
    esb__rt_gen_unref(g);
    free(pc);
    esb_txn_free(t);
    if (rc == ESB_EEXIST) {
        /* <dedupe>: seen before. Acknowledge it and send nothing. */
        esb_info("[route:%s] duplicate dropped id=%s key=%s", esb_route_id(h->route),
                 e->msg->id_text, res.dedupe_key);
        t = esb_txn_new();
        esb_txn_ack(t, e);
        if (commit_or_release(rt, t, e) == 0) esb__rt_reply_route(rt, h->route, e, &res, 1);
    } else if (rc == ESB_EFULL) {
        esb_warn("back-pressure queue=%s seq=%llu: %s; will retry", e->queue,
                 (unsigned long long)e->seq, err.msg);
        usleep(BACKPRESSURE_MS * 1000); /* released by the caller: taken again */
    } else if (rc != ESB_ECLOSED) {
        esb_error("commit failed queue=%s seq=%llu: %s", e->queue, (unsigned long long)e->seq,
                  err.msg);
    }
    esb_route_result_clear(&res);
    return 0;
}

static void run_delivery(struct esb_runtime *rt, const struct generation *g,
                         const struct handler *h, struct esb_entry *e)
{
    struct esb_delivery d = {0};
    uint64_t started = esb_now_ms();
    d.outcome = h->ep->ops->deliver(h->ep, e->msg, &d.err);
    struct esb_txn *t = esb_txn_new();
    esb__rt_outcome(t, g, h->ep, e, &d, started);
    commit_or_release(rt, t, e);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct esb_runtime *rt = w->rt;
    struct generation *g = NULL;
    struct esb_route_scratch *scratch = NULL;
    unsigned seen = ~0u;
    esb_thread_name("esb-worker-%u", w->no);
    for (;;) {
        finish_commits(w);
        pthread_mutex_lock(&w->lock);
        unsigned inflight = w->inflight;
        pthread_mutex_unlock(&w->lock);
        if (atomic_load(&rt->workers_stop)) {
            if (!inflight) break;
        } else if (atomic_load(&rt->version) != seen) {
            esb__rt_gen_unref(g);
            esb_route_scratch_free(scratch);
            seen = atomic_load(&rt->version);
            g = esb__rt_gen_get(rt);
            scratch = esb_route_scratch_new();
        }
        struct esb_entry *e = NULL;
        int rc = ESB_ETIMEDOUT;
        if (!atomic_load(&rt->workers_stop) && inflight < WORKER_MAX_INFLIGHT)
            rc = esb_bus_consume_any(rt->bus, g->queues, g->nhandlers, inflight ? 0 : POLL_MS, &e);
        if (rc == ESB_ETIMEDOUT || rc == ESB_ECORRUPT) {
            if (inflight) { /* wait for the bus to finish a hand-off */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 5 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_mutex_lock(&w->lock);
                if (!w->done) pthread_cond_timedwait(&w->cv, &w->lock, &ts);
                pthread_mutex_unlock(&w->lock);
            }
            continue;
        }
        if (rc < 0) { /* closed or failed: wait for what is in flight, then leave */
            atomic_store(&rt->workers_stop, 1);
            continue;
        }
        const struct handler *h = gen_handler(g, e->queue);
        if (h && h->route) {
            if (run_route(w, g, h, scratch, e)) continue; /* e is the commit's now */
        } else if (h) {
            run_delivery(rt, g, h, e);
        } /* else: the queue left the config while we waited: leave it queued */
        esb_entry_free(e);
    }
    esb_route_scratch_free(scratch);
    esb__rt_gen_unref(g);
    return NULL;
}

/* ---- inbound endpoints ---- */

static void stop_running(struct running *r)
{
    if (r->ep->ops->stop) r->ep->ops->stop(r->ep);
    esb_config_unref(r->owner);
}

/* Switch the set of running inbound endpoints to those of cfg: keep those
 * that are the same, stop the others, start the new ones. On failure the
 * old set is restored and an error returned. switch_lock held by the caller. */
static int switch_endpoints(struct esb_runtime *rt, struct esb_config *cfg, struct esb_err *err)
{
    size_t cap = cfg->nendpoints, n = 0;
    struct running *next = esb_calloc(cap ? cap : 1, sizeof(*next));
    int *kept = esb_calloc(rt->nrunning ? rt->nrunning : 1, sizeof(int));
    int rc = 0;
    for (size_t i = 0; i < cfg->nendpoints; i++) {
        struct esb_endpoint *ep = cfg->endpoints[i];
        if (!(ep->ops->dir & ESB_INBOUND)) continue;
        for (size_t j = 0; j < rt->nrunning; j++) {
            struct esb_endpoint *old = rt->running[j].ep;
            if (!kept[j] && old->ops == ep->ops && strcmp(old->id, ep->id) == 0 && ep->ops->same &&
                ep->ops->same(old, ep)) {
                kept[j] = 1;
                next[n++] = rt->running[j];
                goto next_ep;
            }
        }
        next[n++] = (struct running){ep, NULL}; /* to start */
    next_ep:;
    }
    for (size_t j = 0; j < rt->nrunning; j++)
        if (!kept[j] && rt->running[j].ep->ops->stop)
            rt->running[j].ep->ops->stop(rt->running[j].ep);
    for (size_t i = 0; i < n; i++) {
        if (next[i].owner) continue;
        rc = next[i].ep->ops->start(next[i].ep, rt, err);
        if (rc < 0) {
            esb_error("endpoint %s (%s:%d) failed to start: %s", next[i].ep->id, next[i].ep->file,
                      next[i].ep->line, err->msg);
            for (size_t k = 0; k < i; k++)
                if (!next[k].owner && next[k].ep->ops->stop) next[k].ep->ops->stop(next[k].ep);
            for (size_t j = 0; j < rt->nrunning; j++) {
                if (kept[j]) continue;
                struct esb_err e2;
                if (rt->running[j].ep->ops->start(rt->running[j].ep, rt, &e2) < 0)
                    esb_error("endpoint %s could not be restarted: %s", rt->running[j].ep->id,
                              e2.msg);
            }
            goto out;
        }
        next[i].owner = esb_config_ref(cfg);
    }
    for (size_t j = 0; j < rt->nrunning; j++)
        if (!kept[j]) esb_config_unref(rt->running[j].owner);
    free(rt->running);
    rt->running = next;
    rt->nrunning = n;
    next = NULL;
out:
    free(next);
    free(kept);
    return rc;
}

/* ---- public ---- */

int esb_runtime_start(struct esb_config *cfg, void (*on_fatal)(void *ctx, const char *why),
                      void *fatal_ctx, struct esb_runtime **out, struct esb_err *err)
{
    *out = NULL;
    struct esb_runtime *rt = esb_calloc(1, sizeof(*rt));
    pthread_mutex_init(&rt->lock, NULL);
    pthread_mutex_init(&rt->switch_lock, NULL);
    pthread_mutex_init(&rt->disp_lock, NULL);
    pthread_cond_init(&rt->disp_cv, NULL);
    rt->replies = esb__replies_new(); /* request-reply waiters */
    struct esb_bus_opts bo = {0};
    esb_config_bus_opts(cfg, &bo);
    bo.on_fatal = on_fatal;
    bo.fatal_ctx = fatal_ctx;
    int rc = esb_bus_open(&bo, &rt->bus, err);
    if (rc < 0) goto fail;
    rt->gen = gen_build(cfg);
    gen_subscribe(rt->bus, rt->gen, NULL);
    gen_dispatch(rt, rt->gen);
    warn_stranded(rt->bus, rt->gen);
    size_t nw = cfg->workers;
    if (!nw) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        nw = cpus > 0 ? (size_t)cpus : 2;
    }
    rt->workers = esb_calloc(nw, sizeof(*rt->workers));
    rt->wstate = esb_calloc(nw, sizeof(*rt->wstate));
    for (size_t i = 0; i < nw; i++) {
        rt->wstate[i].rt = rt;
        rt->wstate[i].no = (unsigned)i;
        pthread_mutex_init(&rt->wstate[i].lock, NULL);
        pthread_cond_init(&rt->wstate[i].cv, NULL);
    }
    for (size_t i = 0; i < nw; i++) {
        if (pthread_create(&rt->workers[i], NULL, worker_main, &rt->wstate[i]) != 0) {
            rc = esb_err_set(err, -EAGAIN, "cannot start worker thread %zu", i);
            goto fail;
        }
        rt->nworkers++;
    }
    pthread_mutex_lock(&rt->switch_lock);
    rc = switch_endpoints(rt, cfg, err);
    pthread_mutex_unlock(&rt->switch_lock);
    if (rc < 0) goto fail;
    esb_info("runtime started routes=%zu endpoints=%zu workers=%zu", cfg->nroutes, cfg->nendpoints,
             nw);
    *out = rt;
    return 0;
fail:
    esb_runtime_stop(rt);
    return rc;
}

int esb_runtime_reload(struct esb_runtime *rt, struct esb_config *cfg, struct esb_err *err)
{
    struct generation *g = gen_build(cfg);
    pthread_mutex_lock(&rt->switch_lock);
    if (strcmp(cfg->bus.dir, rt->gen->cfg->bus.dir) != 0)
        esb_warn("reload: bus dir changed (%s -> %s); bus settings apply at the next start",
                 rt->gen->cfg->bus.dir, cfg->bus.dir);
    /* Subscribe new topic routes before anything can publish under g. */
    gen_subscribe(rt->bus, g, NULL);
    int rc = switch_endpoints(rt, cfg, err);
    if (rc < 0) {
        pthread_mutex_unlock(&rt->switch_lock);
        esb__rt_gen_unref(g);
        return rc;
    }
    struct generation *old = rt->gen;
    gen_adopt(rt->bus, g, old);
    gen_subscribe(rt->bus, g, old);
    gen_dispatch(rt, g);
    pthread_mutex_lock(&rt->lock);
    rt->gen = g;
    atomic_fetch_add(&rt->version, 1);
    pthread_mutex_unlock(&rt->lock);
    gen_retire(old);
    warn_stranded(rt->bus, g);
    pthread_mutex_unlock(&rt->switch_lock);
    esb_info("reloaded config=%s routes=%zu endpoints=%zu", cfg->path, cfg->nroutes,
             cfg->nendpoints);
    esb__rt_gen_unref(old);
    return 0;
}

void esb_runtime_stop(struct esb_runtime *rt)
{
    if (!rt) return;
    /* Refuse new input first (accept answers ECLOSED), then stop the
     * endpoints without holding the lock their threads may need. */
    atomic_store(&rt->stopping, 1);
    pthread_mutex_lock(&rt->switch_lock);
    for (size_t i = 0; i < rt->nrunning; i++) stop_running(&rt->running[i]);
    free(rt->running);
    rt->running = NULL;
    rt->nrunning = 0;
    pthread_mutex_unlock(&rt->switch_lock);
    atomic_store(&rt->workers_stop, 1);
    for (size_t i = 0; i < rt->nworkers; i++) pthread_join(rt->workers[i], NULL);
    esb__replies_free(rt->replies); /* requests still waiting: 503 */
    if (rt->gen)
        for (size_t i = 0; i < rt->gen->ndispatchers; i++)
            esb__dispatcher_abort(rt->gen->dispatchers[i]);
    esb__dispatchers_wait(rt);
    free(rt->workers);
    for (size_t i = 0; rt->wstate && i < rt->nworkers; i++) {
        pthread_mutex_destroy(&rt->wstate[i].lock);
        pthread_cond_destroy(&rt->wstate[i].cv);
    }
    free(rt->wstate);
    esb_bus_close(rt->bus);
    esb__rt_gen_unref(rt->gen);
    pthread_mutex_destroy(&rt->lock);
    pthread_mutex_destroy(&rt->switch_lock);
    pthread_mutex_destroy(&rt->disp_lock);
    pthread_cond_destroy(&rt->disp_cv);
    free(rt);
}

/* The route of g that takes ep (at path), or NULL. */
static const struct esb_route *inbound_route(const struct generation *g,
                                             const struct esb_endpoint *ep, const char *path)
{
    for (size_t i = 0; i < g->cfg->nroutes; i++) {
        const struct esb_route_source *s = esb_route_source(g->cfg->routes[i]);
        if (s->kind != ESB_URI_INBOUND || strcmp(s->name, ep->id) != 0) continue;
        if (path && (!s->path || strcmp(s->path, path) != 0)) continue;
        return g->cfg->routes[i];
    }
    return NULL;
}

int esb_runtime_accept(struct esb_runtime *rt, const struct esb_endpoint *ep, const char *path,
                       const struct esb_msg *m, struct esb_err *err)
{
    return esb_runtime_accept_marked(rt, ep, path, m, NULL, 0, err);
}

int esb_runtime_accept_marked(struct esb_runtime *rt, const struct esb_endpoint *ep,
                              const char *path, const struct esb_msg *m, const char *key,
                              uint64_t expires_ms, struct esb_err *err)
{
    if (atomic_load(&rt->stopping)) return esb_err_set(err, ESB_ECLOSED, "shutting down");
    struct generation *g = esb__rt_gen_get(rt);
    const struct esb_route *r = inbound_route(g, ep, path);
    int rc;
    if (!r)
        rc = esb_err_set(err, ESB_ENOTFOUND, "no route takes %s%s%s", ep->id, path ? " at " : "",
                         path ? path : "");
    else {
        struct esb_txn *t = esb_txn_new();
        const char *q = esb_route_input(r);
        esb_txn_append(t, &q, 1, m);
        if (key) esb_txn_mark(t, key, expires_ms);
        rc = esb_bus_commit(rt->bus, t, err);
        esb_txn_free(t);
    }
    esb__rt_gen_unref(g);
    return rc;
}

struct accept_async {
    struct esb_txn *t;
    void (*done)(void *ctx, int rc);
    void *ctx;
};

static void accept_async_done(void *ctx, int rc)
{
    struct accept_async *a = ctx;
    esb_txn_free(a->t);
    a->done(a->ctx, rc);
    free(a);
}

int esb_runtime_accept_async(struct esb_runtime *rt, const struct esb_endpoint *ep,
                             const char *path, const struct esb_msg *m,
                             void (*done)(void *ctx, int rc), void *ctx, struct esb_err *err)
{
    if (atomic_load(&rt->stopping)) return esb_err_set(err, ESB_ECLOSED, "shutting down");
    struct generation *g = esb__rt_gen_get(rt);
    const struct esb_route *r = inbound_route(g, ep, path);
    int rc;
    if (!r) {
        rc = esb_err_set(err, ESB_ENOTFOUND, "no route takes %s%s%s", ep->id, path ? " at " : "",
                         path ? path : "");
    } else {
        struct accept_async *a = esb_malloc(sizeof(*a));
        a->t = esb_txn_new();
        a->done = done;
        a->ctx = ctx;
        const char *q = esb_route_input(r);
        esb_txn_append(a->t, &q, 1, m);
        rc = esb_bus_commit_async(rt->bus, a->t, accept_async_done, a, err);
        if (rc < 0) {
            esb_txn_free(a->t);
            free(a);
        }
    }
    esb__rt_gen_unref(g);
    return rc;
}

int esb_runtime_marked(struct esb_runtime *rt, const char *key)
{
    return esb_bus_marked(rt->bus, key);
}

int esb_runtime_has_route(struct esb_runtime *rt, const struct esb_endpoint *ep, const char *path)
{
    struct generation *g = esb__rt_gen_get(rt);
    int found = inbound_route(g, ep, path) != NULL;
    esb__rt_gen_unref(g);
    return found;
}

struct esb_bus *esb_runtime_bus(struct esb_runtime *rt)
{
    return rt->bus;
}
