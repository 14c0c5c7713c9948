/* runtime.c - the running gateway: config generations, starting and
 * stopping the worker pool (the workers are in runtime_worker.c), inbound
 * endpoint lifecycles, reload and the accept calls connectors make. See
 * runtime.h for the contract. */
#include "config.h"

#include "conf.h"

#include "runtime.h"

#include <errno.h>
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

const struct handler *esb__rt_gen_handler(const struct generation *g, const char *queue)
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
        if (!h->route || esb__rt_gen_handler(g, h->queue)) continue;
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
        if (esb__rt_gen_handler(g, q)) continue;
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
    if (esb__rt_gen_handler(g, queue) || strncmp(queue, "dlq.", 4) == 0) return 1;
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
        if (pthread_create(&rt->workers[i], NULL, esb__rt_worker_main, &rt->wstate[i]) != 0) {
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

struct esb_accept_batch {
    struct esb_runtime *rt;
    struct generation *g;
    struct esb_txn *t;
    size_t n;
    void (*done)(void *ctx, int rc);
    void *ctx;
};

struct esb_accept_batch *esb_runtime_batch_new(struct esb_runtime *rt)
{
    struct esb_accept_batch *b = esb_calloc(1, sizeof(*b));
    b->rt = rt;
    b->g = esb__rt_gen_get(rt);
    b->t = esb_txn_new();
    return b;
}

int esb_runtime_batch_add(struct esb_accept_batch *b, const struct esb_endpoint *ep,
                          const char *path, const struct esb_msg *m, struct esb_err *err)
{
    if (atomic_load(&b->rt->stopping)) return esb_err_set(err, ESB_ECLOSED, "shutting down");
    const struct esb_route *r = inbound_route(b->g, ep, path);
    if (!r)
        return esb_err_set(err, ESB_ENOTFOUND, "no route takes %s%s%s", ep->id, path ? " at " : "",
                           path ? path : "");
    const char *q = esb_route_input(r);
    esb_txn_append(b->t, &q, 1, m);
    b->n++;
    return 0;
}

static void batch_free(struct esb_accept_batch *b)
{
    esb_txn_free(b->t);
    free(b);
}

static void batch_done(void *ctx, int rc)
{
    struct esb_accept_batch *b = ctx;
    void (*done)(void *, int) = b->done;
    void *dctx = b->ctx;
    batch_free(b);
    done(dctx, rc);
}

int esb_runtime_batch_commit(struct esb_accept_batch *b, void (*done)(void *ctx, int rc), void *ctx,
                             int quick, struct esb_err *err)
{
    esb__rt_gen_unref(b->g); /* the routes were resolved when the messages were added */
    b->g = NULL;
    if (b->n == 0) {
        batch_free(b);
        return esb_err_set(err, ESB_EINVAL, "empty batch");
    }
    b->done = done;
    b->ctx = ctx;
    if (quick) esb_txn_set_quick(b->t);
    int rc = esb_bus_commit_async(b->rt->bus, b->t, batch_done, b, err);
    if (rc < 0) batch_free(b);
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
