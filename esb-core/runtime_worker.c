/* runtime_worker.c - the worker threads: take entries of every queue the
 * current config generation consumes, run routes (the hand-off of the
 * outputs and the ack of the input in one asynchronous transaction) and
 * synchronous deliveries (retry/dead-letter by the route's policy). See
 * runtime_internal.h. */
#include "config.h"

#include "conf.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"
#include "msg.h"
#include "runtime_internal.h"

#define POLL_MS         100 /* workers re-check the generation this often */
#define BACKPRESSURE_MS 100 /* pause after a downstream queue refused */

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
    struct esb_route_result res;
    struct esb_txn *t; /* the batch's transaction, on its first entry: the worker frees it */
    int rc;
    struct pending_commit *next;
};

/* The hand-offs of the entries a worker took back to back, gathered into
 * one transaction: one commit, one callback and one log write for all of
 * them instead of one each (each entry's outputs and ack are still in the
 * same transaction, so it is all or nothing for every entry). A batch is
 * committed when no further entry is ready at once, when it reaches
 * BATCH_MAX entries or BATCH_BYTES of records, before a delivery (which
 * may block) and at once while a request-reply client waits. */
struct commit_batch {
    struct worker *w;
    struct esb_txn *t;
    struct pending_commit *head, *tail;
    unsigned n;
    int dedupe; /* holds one entry with a <dedupe> key: committed alone */
};

#define WORKER_MAX_INFLIGHT 256 /* hand-offs a worker may have in the bus at once */
#define BATCH_MAX           64
#define BATCH_BYTES         (256 * 1024)

/* Bus writer thread: the hand-offs are durable (rc 0) or failed. Answer
 * waiting request-reply clients now; the rest is the worker's. */
static void batch_commit_done(void *ctx, int rc)
{
    struct commit_batch *b = ctx;
    struct worker *w = b->w;
    for (struct pending_commit *pc = b->head; pc; pc = pc->next) {
        pc->rc = rc;
        if (rc == 0) esb__rt_reply_route(w->rt, pc->route, pc->e, &pc->res, 0);
    }
    b->head->t = b->t; /* freed by the worker that made it (its allocator's cache) */
    pthread_mutex_lock(&w->lock);
    b->tail->next = w->done;
    w->done = b->head;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->lock);
    free(b);
}

static void pending_free(struct pending_commit *pc)
{
    esb_txn_free(pc->t);
    esb_entry_free(pc->e); /* unresolved unless committed: ready again */
    esb_route_result_clear(&pc->res);
    esb__rt_gen_unref(pc->g);
    free(pc);
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
        pending_free(pc);
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

/* Commit the worker's open batch, if any. */
static void batch_commit(struct worker *w)
{
    struct commit_batch *b = w->open;
    if (!b) return;
    w->open = NULL;
    struct esb_runtime *rt = w->rt;
    /* Nobody waits for these hand-offs unless a request-reply client does:
     * they may share a later fdatasync (bus.h, esb_txn_set_lazy). */
    if (!esb__rt_reply_waiting(rt)) esb_txn_set_lazy(b->t);
    struct esb_err err = {0};
    int rc = esb_bus_commit_async(rt->bus, b->t, batch_commit_done, b, &err);
    if (rc == 0) return;
    /* Refused before anything was written: done is never called. */
    struct pending_commit *one = b->head;
    if (rc == ESB_EEXIST && b->dedupe) {
        /* <dedupe>: seen before. Acknowledge it and send nothing. */
        esb_info("[route:%s] duplicate dropped id=%s key=%s", esb_route_id(one->route),
                 one->e->msg->id_text, one->res.dedupe_key);
        struct esb_txn *t = esb_txn_new();
        esb_txn_ack(t, one->e);
        if (commit_or_release(rt, t, one->e) == 0)
            esb__rt_reply_route(rt, one->route, one->e, &one->res, 1);
    } else if (rc == ESB_EFULL) {
        esb_warn("back-pressure queue=%s seq=%llu (%u entr%s): %s; will retry", one->e->queue,
                 (unsigned long long)one->e->seq, b->n, b->n == 1 ? "y" : "ies", err.msg);
        usleep(BACKPRESSURE_MS * 1000); /* released below: taken again */
    } else if (rc != ESB_ECLOSED) {
        esb_error("commit failed queue=%s seq=%llu (%u entr%s): %s", one->e->queue,
                  (unsigned long long)one->e->seq, b->n, b->n == 1 ? "y" : "ies", err.msg);
    }
    esb_txn_free(b->t);
    for (struct pending_commit *pc = b->head, *next; pc; pc = next) {
        next = pc->next;
        pending_free(pc);
    }
    pthread_mutex_lock(&w->lock);
    w->inflight -= b->n;
    pthread_mutex_unlock(&w->lock);
    free(b);
}

/* Run the route on e and add its hand-off to the worker's open batch,
 * which now owns e. */
static void run_route(struct worker *w, struct generation *g, const struct handler *h,
                      struct esb_route_scratch *scratch, struct esb_entry *e)
{
    struct esb_runtime *rt = w->rt;
    struct esb_route_result res = {0};
    uint64_t started = esb_now_ms();
    esb_route_run(h->route, scratch, e->msg, &res);
    /* A <dedupe> key may be refused (seen before): alone in its batch, so
     * that the refusal concerns only this entry. */
    if (res.dedupe_key && !res.error) batch_commit(w);
    struct commit_batch *b = w->open;
    if (!b) {
        b = w->open = esb_calloc(1, sizeof(*b));
        b->w = w;
        b->t = esb_txn_new();
    }
    struct esb_txn *t = b->t;
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
            b->dedupe = 1;
        }
        if (res.dropped)
            esb_debug("[route:%s] filtered id=%s", esb_route_id(h->route), e->msg->id_text);
        esb_txn_ack(t, e);
    }
    struct pending_commit *pc = esb_calloc(1, sizeof(*pc));
    pc->w = w;
    pc->g = g;
    pc->route = h->route;
    pc->e = e;
    pc->res = res; /* moved: the callback may read it */
    atomic_fetch_add(&g->refs, 1);
    if (b->tail)
        b->tail->next = pc;
    else
        b->head = pc;
    b->tail = pc;
    b->n++;
    pthread_mutex_lock(&w->lock);
    w->inflight++;
    pthread_mutex_unlock(&w->lock);
    if (b->dedupe || b->n >= BATCH_MAX || esb_txn_size(t) >= BATCH_BYTES ||
        esb__rt_reply_waiting(rt))
        batch_commit(w);
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

void *esb__rt_worker_main(void *arg)
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
            if (w->open) {
                batch_commit(w);
                continue;
            }
            if (!inflight) break;
        } else if (atomic_load(&rt->version) != seen) {
            batch_commit(w); /* its entries keep their generation alive */
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
            if (w->open) { /* nothing more at once: commit what was gathered */
                batch_commit(w);
                continue;
            }
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
        const struct handler *h = esb__rt_gen_handler(g, e->queue);
        if (h && h->route) {
            run_route(w, g, h, scratch, e); /* e is the batch's now */
            continue;
        }
        batch_commit(w); /* a delivery may block: do not hold hand-offs back */
        if (h) run_delivery(rt, g, h, e);
        /* else: the queue left the config while we waited: leave it queued */
        esb_entry_free(e);
    }
    esb_route_scratch_free(scratch);
    esb__rt_gen_unref(g);
    return NULL;
}
