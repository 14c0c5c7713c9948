/* runtime_reply.c - request-reply: the table of requests waiting for the
 * route that consumes them to finish (see esb_runtime_request in
 * runtime.h).
 *
 * A waiter is keyed by the message id. It is registered before the message
 * is appended (so a fast worker cannot finish before it exists) and armed
 * with its deadline only once the append is durable (so a timeout can
 * never answer a request whose append then failed: on failure the waiter
 * is simply removed and the callback is never called). Whoever takes the
 * waiter out of the table under the lock answers it - the worker that ran
 * the route, the timeout thread, or esb_runtime_stop - and calls the
 * callback after dropping the lock; so each request is answered exactly
 * once, and nothing waits for a reply that a reload, a crash or a timeout
 * made impossible: a message processed after its waiter left the table is
 * processed as usual and answers no one.
 *
 * Armed waiters are also on a list ordered by deadline (timeouts are
 * usually one value per endpoint, so inserting from the tail is O(1));
 * the timeout thread starts with the first request and sleeps until the
 * earliest deadline. Workers look a message up only while some request
 * waits (an atomic count), so one-way traffic never takes the lock. */
#include "config.h"

#include "conf.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "msg.h"
#include "runtime.h"
#include "runtime_internal.h"

#define NBUCKETS 4096 /* power of two; waiters are bounded by HTTP connections */

struct waiter {
    char id[ESB_UUID_STRLEN + 1];
    esb_reply_fn reply;
    void *ctx;
    uint64_t timeout_ms;
    uint64_t deadline_ns;         /* monotonic; 0 while not armed */
    struct waiter *next;          /* bucket chain */
    struct waiter *dprev, *dnext; /* deadline list, when armed */
};

struct esb__replies {
    pthread_mutex_t lock;
    pthread_cond_t cv; /* the timeout thread waits on it (CLOCK_MONOTONIC) */
    struct waiter *buckets[NBUCKETS];
    struct waiter *dhead, *dtail; /* armed waiters, earliest deadline first */
    _Atomic size_t count;         /* waiters in the table */
    int closed;                   /* esb__replies_free began: refuse new waiters */
    int thread_started, thread_stop;
    pthread_t thread;
};

static size_t bucket_of(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *id; id++) h = (h ^ (unsigned char)*id) * 16777619u;
    return h & (NBUCKETS - 1);
}

/* Unlink the waiter for id from the table (and the deadline list); NULL if
 * none. Lock held. */
static struct waiter *take_locked(struct esb__replies *w, const char *id)
{
    struct waiter **pp = &w->buckets[bucket_of(id)];
    for (; *pp; pp = &(*pp)->next) {
        struct waiter *x = *pp;
        if (strcmp(x->id, id) != 0) continue;
        *pp = x->next;
        if (x->deadline_ns) {
            if (x->dprev)
                x->dprev->dnext = x->dnext;
            else
                w->dhead = x->dnext;
            if (x->dnext)
                x->dnext->dprev = x->dprev;
            else
                w->dtail = x->dprev;
        }
        atomic_fetch_sub(&w->count, 1);
        return x;
    }
    return NULL;
}

static void *timeout_main(void *arg)
{
    struct esb__replies *w = arg;
    esb_thread_name("esb-reply-tmo");
    pthread_mutex_lock(&w->lock);
    while (!w->thread_stop) {
        uint64_t now = esb_mono_ns();
        struct waiter *x = w->dhead;
        if (x && x->deadline_ns <= now) {
            x = take_locked(w, x->id);
            pthread_mutex_unlock(&w->lock);
            char why[128];
            snprintf(why, sizeof(why), "no reply within reply-timeout (%llums)",
                     (unsigned long long)x->timeout_ms);
            esb_info("request-reply timeout id=%s after %llums; the message is still processed",
                     x->id, (unsigned long long)x->timeout_ms);
            x->reply(x->ctx, NULL, 504, why);
            free(x);
            pthread_mutex_lock(&w->lock);
            continue;
        }
        if (!x) {
            pthread_cond_wait(&w->cv, &w->lock);
            continue;
        }
        struct timespec ts;
        ts.tv_sec = (time_t)(x->deadline_ns / 1000000000u);
        ts.tv_nsec = (long)(x->deadline_ns % 1000000000u);
        pthread_cond_timedwait(&w->cv, &w->lock, &ts);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

struct esb__replies *esb__replies_new(void)
{
    struct esb__replies *w = esb_calloc(1, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    esb_cond_init_mono(&w->cv);
    return w;
}

void esb__replies_free(struct esb__replies *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->closed = 1;
    w->thread_stop = 1;
    pthread_cond_signal(&w->cv);
    int started = w->thread_started;
    pthread_mutex_unlock(&w->lock);
    if (started) pthread_join(w->thread, NULL);
    /* Requests still waiting: their messages stay queued (or were
     * processed after the endpoint went away); answer them now. */
    for (size_t b = 0; b < NBUCKETS; b++) {
        while (w->buckets[b]) {
            struct waiter *x = take_locked(w, w->buckets[b]->id);
            x->reply(x->ctx, NULL, 503, "esbd stopped before the reply");
            free(x);
        }
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* Register a waiter for id (not armed). 0, ESB_EEXIST or ESB_ECLOSED. */
static int add(struct esb__replies *w, const char *id, esb_reply_fn reply, void *ctx,
               uint64_t timeout_ms)
{
    struct waiter *x = esb_calloc(1, sizeof(*x));
    snprintf(x->id, sizeof(x->id), "%s", id);
    x->reply = reply;
    x->ctx = ctx;
    x->timeout_ms = timeout_ms;
    int rc = 0;
    pthread_mutex_lock(&w->lock);
    size_t b = bucket_of(x->id);
    for (struct waiter *y = w->buckets[b]; y && !rc; y = y->next)
        if (strcmp(y->id, x->id) == 0) rc = ESB_EEXIST;
    if (w->closed) rc = ESB_ECLOSED;
    if (rc == 0) {
        x->next = w->buckets[b];
        w->buckets[b] = x;
        atomic_fetch_add(&w->count, 1);
        x = NULL;
    }
    pthread_mutex_unlock(&w->lock);
    free(x);
    return rc;
}

/* Start the waiter's reply-timeout clock, if it still waits (a fast worker
 * may have answered it already). */
static void arm(struct esb__replies *w, const char *id)
{
    pthread_mutex_lock(&w->lock);
    struct waiter *x = w->buckets[bucket_of(id)];
    while (x && strcmp(x->id, id) != 0) x = x->next;
    if (x && !w->closed) {
        x->deadline_ns = esb_mono_ns() + x->timeout_ms * 1000000u;
        struct waiter *after = w->dtail; /* insert after the last earlier deadline */
        while (after && after->deadline_ns > x->deadline_ns) after = after->dprev;
        x->dprev = after;
        x->dnext = after ? after->dnext : w->dhead;
        if (x->dnext)
            x->dnext->dprev = x;
        else
            w->dtail = x;
        if (after)
            after->dnext = x;
        else
            w->dhead = x;
        if (!w->thread_started) {
            if (pthread_create(&w->thread, NULL, timeout_main, w) == 0)
                w->thread_started = 1;
            else
                esb_error("request-reply: cannot start the reply-timeout thread");
        } else if (w->dhead == x) {
            pthread_cond_signal(&w->cv); /* a new earliest deadline */
        }
    }
    pthread_mutex_unlock(&w->lock);
}

int esb_runtime_request(struct esb_runtime *rt, const struct esb_endpoint *ep, const char *path,
                        const struct esb_msg *m, uint64_t timeout_ms, esb_reply_fn reply, void *ctx,
                        struct esb_err *err)
{
    struct esb__replies *w = rt->replies;
    int rc = add(w, m->id_text, reply, ctx, timeout_ms ? timeout_ms : 1);
    if (rc == ESB_ECLOSED) return esb_err_set(err, rc, "shutting down");
    if (rc < 0) return esb_err_set(err, rc, "message id %s is already waiting", m->id_text);
    rc = esb_runtime_accept(rt, ep, path, m, err);
    if (rc < 0) {
        /* Nothing was appended, so no worker has seen it, and it was not
         * armed, so no timeout either: the waiter is still there. */
        pthread_mutex_lock(&w->lock);
        free(take_locked(w, m->id_text));
        pthread_mutex_unlock(&w->lock);
        return rc;
    }
    arm(w, m->id_text);
    return 0;
}

/* Status of a final message: its esb-reply-status header if that is a
 * number 200..599 (a 1xx is no final answer), else 200. */
static int reply_status(const struct esb_msg *m, const char *route)
{
    const char *s = esb_msg_header(m, "esb-reply-status");
    if (!s) return 200;
    int v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9' && i < 3; i++) v = v * 10 + (s[i] - '0');
    if (i == 3 && !s[i] && v >= 200 && v <= 599) return v;
    esb_warn("[route:%s] request-reply id=%s: esb-reply-status '%.40s' is not a status "
             "200..599; answering 200",
             route, m->id_text, s);
    return 200;
}

int esb__rt_reply_waiting(struct esb_runtime *rt)
{
    return atomic_load(&rt->replies->count) != 0;
}

void esb__rt_reply_route(struct esb_runtime *rt, const struct esb_route *r,
                         const struct esb_entry *e, const struct esb_route_result *res,
                         int duplicate)
{
    struct esb__replies *w = rt->replies;
    /* Only the route fed by the connector answers: an output on queue: or
     * topic: keeps the id, and its route must not answer in its place. */
    if (atomic_load(&w->count) == 0 || strncmp(e->queue, "route:", 6) != 0) return;
    pthread_mutex_lock(&w->lock);
    struct waiter *x = take_locked(w, e->msg->id_text);
    pthread_mutex_unlock(&w->lock);
    if (!x) return;
    const char *rid = esb_route_id(r);
    if (res->error) {
        x->reply(x->ctx, NULL, 502, res->reason);
    } else if (!res->final) {
        x->reply(x->ctx, NULL, 204, NULL);
    } else if (duplicate) {
        struct esb_msg *m = esb_msg_clone(res->final);
        esb_msg_set_header(m, "esb-reply-header-esb-duplicate", "true");
        x->reply(x->ctx, m, reply_status(m, rid), NULL);
        esb_msg_unref(m);
    } else {
        x->reply(x->ctx, res->final, reply_status(res->final, rid), NULL);
    }
    esb_debug("[route:%s] request-reply answered id=%s", rid, e->msg->id_text);
    free(x);
}
