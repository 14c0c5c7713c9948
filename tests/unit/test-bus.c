/* test-bus.c - the bus API: append/consume/ack, FIFO, competing consumers,
 * topics, retry and dead-letter state across restarts, limits, compaction,
 * the in-memory copy of appended messages for their first consumer. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../tap.h"
#include "bus.h"
#include "log.h"
#include "msg.h"

static char dir[64];

static struct esb_bus *open_bus(struct esb_bus_opts *o)
{
    struct esb_bus *bus;
    struct esb_err err = {0};
    struct esb_bus_opts def = {.dir = dir};
    if (!o) o = &def;
    o->dir = dir;
    if (esb_bus_open(o, &bus, &err) != 0) bail("open: %s", err.msg);
    return bus;
}

static struct esb_msg *mk(const char *body)
{
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_body(m, body, strlen(body));
    esb_msg_set_content_type(m, "text/plain");
    esb_msg_set_header(m, "x-test", body);
    return m;
}

static int append(struct esb_bus *bus, const char *q, const char *body)
{
    struct esb_msg *m = mk(body);
    struct esb_err err;
    int rc = esb_bus_append(bus, q, m, &err);
    esb_msg_unref(m);
    return rc;
}

static int body_is(const struct esb_entry *e, const char *s)
{
    return e && e->msg->body->len == strlen(s) && memcmp(e->msg->body->data, s, strlen(s)) == 0;
}

static void test_fifo_ack(void)
{
    struct esb_bus *bus = open_bus(NULL);
    struct esb_err err;
    ok(append(bus, "q1", "a") == 0 && append(bus, "q1", "b") == 0 && append(bus, "q1", "c") == 0,
       "append three");
    struct esb_entry *e = NULL;
    ok(esb_bus_consume(bus, "q1", 0, &e) == 0 && body_is(e, "a"), "first out is first in");
    ok(strcmp(esb_msg_header(e->msg, "X-Test"), "a") == 0 &&
           strcmp(e->msg->content_type, "text/plain") == 0,
       "headers and content type survive the log");
    ok(esb_bus_ack(bus, e, &err) == 0, "ack");
    ok(esb_bus_ack(bus, e, &err) == ESB_EINVAL, "a second ack of the same entry is refused");
    esb_entry_free(e);
    struct esb_entry *b = NULL, *c = NULL;
    ok(esb_bus_consume(bus, "q1", 0, &b) == 0 && body_is(b, "b"), "then b");
    ok(esb_bus_consume(bus, "q1", 0, &c) == 0 && body_is(c, "c"), "competing consumer gets c");
    struct esb_entry *none = NULL;
    ok(esb_bus_consume(bus, "q1", 0, &none) == ESB_ETIMEDOUT, "nothing else ready");
    esb_entry_free(c); /* released unresolved: ready again */
    ok(esb_bus_consume(bus, "q1", 50, &c) == 0 && body_is(c, "c"), "a released entry comes back");
    struct esb_queue_info qi;
    ok(esb_bus_queue_info(bus, "q1", &qi) == 0 && qi.entries == 2 && qi.inflight == 2,
       "queue info: 2 entries in flight");
    esb_entry_free(c);
    esb_entry_free(b); /* both in flight at close: must be redelivered */
    esb_bus_close(bus);

    bus = open_bus(NULL);
    ok(esb_bus_consume(bus, "q1", 0, &b) == 0 && body_is(b, "b"),
       "in-flight b redelivered after restart");
    ok(esb_bus_consume(bus, "q1", 0, &c) == 0 && body_is(c, "c"),
       "in-flight c redelivered after restart");
    ok(esb_bus_ack(bus, b, &err) == 0 && esb_bus_ack(bus, c, &err) == 0, "ack both");
    esb_entry_free(b);
    esb_entry_free(c);
    ok(esb_bus_queue_info(bus, "q1", &qi) == 0 && qi.entries == 0, "queue empty");
    esb_bus_close(bus);
    bus = open_bus(NULL);
    ok(esb_bus_consume(bus, "q1", 0, &e) == ESB_ETIMEDOUT,
       "acked entries stay acked after restart");
    esb_bus_close(bus);
}

static void test_retry_dead(void)
{
    struct esb_bus *bus = open_bus(NULL);
    struct esb_err err;
    ok(append(bus, "r", "x") == 0 && append(bus, "r", "y") == 0, "append x y");
    struct esb_entry *e;
    ok(esb_bus_consume(bus, "r", 0, &e) == 0 && body_is(e, "x") && e->attempt == 0, "x attempt 0");
    struct esb_txn *t = esb_txn_new();
    esb_txn_retry(t, e, esb_now_ms() + 200, NULL);
    ok(esb_bus_commit(bus, t, &err) == 0, "retry x in 200ms");
    esb_txn_free(t);
    esb_entry_free(e);
    ok(esb_bus_consume(bus, "r", 0, &e) == 0 && body_is(e, "y"), "y is not held back by x's retry");
    t = esb_txn_new();
    esb_txn_dead(t, e, "dlq.r", "HTTP 400: bad order", NULL);
    ok(esb_bus_commit(bus, t, &err) == 0, "dead-letter y");
    esb_txn_free(t);
    esb_entry_free(e);
    ok(esb_bus_consume(bus, "r", 0, &e) == ESB_ETIMEDOUT, "x not due yet");
    esb_bus_close(bus);

    bus = open_bus(NULL);
    struct esb_queue_info qi;
    ok(esb_bus_queue_info(bus, "r", &qi) == 0 && qi.waiting == 1, "retry index rebuilt: x waiting");
    ok(esb_bus_consume(bus, "r", 2000, &e) == 0 && body_is(e, "x") && e->attempt == 1,
       "x comes back when due with attempt 1");
    ok(esb_bus_ack(bus, e, &err) == 0, "ack x");
    esb_entry_free(e);
    ok(esb_bus_consume(bus, "dlq.r", 0, &e) == 0 && body_is(e, "y") && e->reason &&
           strcmp(e->reason, "HTTP 400: bad order") == 0 && strcmp(e->dead_from, "r") == 0,
       "dead letter rebuilt with reason and origin");
    esb_entry_free(e);
    esb_bus_close(bus);
}

static void test_topic(void)
{
    struct esb_bus *bus = open_bus(NULL);
    struct esb_err err;
    struct esb_msg *m = mk("evt");
    ok(esb_bus_publish(bus, "topic:t", m, &err) == 0, "publish with no subscriber is fine");
    esb_bus_subscribe(bus, "topic:t", "sub-a");
    esb_bus_subscribe(bus, "topic:t", "sub-b");
    ok(esb_bus_publish(bus, "topic:t", m, &err) == 0, "publish to two subscribers");
    esb_msg_unref(m);
    struct esb_entry *a, *b;
    ok(esb_bus_consume(bus, "sub-a", 0, &a) == 0 && body_is(a, "evt"), "sub-a has its copy");
    ok(esb_bus_consume(bus, "sub-b", 0, &b) == 0 && body_is(b, "evt"), "sub-b has its copy");
    ok(a->seq == b->seq, "one record, shared seq");
    ok(esb_bus_ack(bus, a, &err) == 0, "sub-a acks");
    esb_entry_free(a);
    esb_entry_free(b);
    esb_bus_close(bus);
    bus = open_bus(NULL);
    ok(esb_bus_consume(bus, "sub-a", 0, &a) == ESB_ETIMEDOUT, "sub-a done after restart");
    ok(esb_bus_consume(bus, "sub-b", 0, &b) == 0 && body_is(b, "evt"), "sub-b still has it");
    ok(esb_bus_ack(bus, b, &err) == 0, "sub-b acks");
    esb_entry_free(b);
    esb_bus_close(bus);
}

static void test_handoff(void)
{
    struct esb_bus *bus = open_bus(NULL);
    struct esb_err err;
    ok(append(bus, "in", "order") == 0, "append to in");
    struct esb_entry *e;
    ok(esb_bus_consume(bus, "in", 0, &e) == 0, "consume in");
    struct esb_txn *t = esb_txn_new();
    const char *outs[] = {"out1", "out2"};
    esb_txn_append(t, outs, 2, e->msg);
    esb_txn_ack(t, e);
    ok(esb_bus_commit(bus, t, &err) == 0, "hand-off: children + ack in one batch");
    esb_txn_free(t);
    esb_entry_free(e);
    esb_bus_close(bus);
    bus = open_bus(NULL);
    struct esb_queue_info qi;
    ok(esb_bus_queue_info(bus, "in", &qi) == 0 && qi.entries == 0, "input resolved");
    ok(esb_bus_queue_info(bus, "out1", &qi) == 0 && qi.entries == 1, "out1 has the child");
    ok(esb_bus_queue_info(bus, "out2", &qi) == 0 && qi.entries == 1, "out2 has the child");
    esb_bus_close(bus);
}

static void test_limits(void)
{
    struct esb_bus_opts o = {.queue_max_entries = 3};
    struct esb_bus *bus = open_bus(&o);
    int rcs[4];
    for (int i = 0; i < 4; i++) rcs[i] = append(bus, "lim", "z");
    ok(rcs[0] == 0 && rcs[1] == 0 && rcs[2] == 0 && rcs[3] == ESB_EFULL,
       "4th append over max entries 3 refused with EFULL");
    esb_bus_set_limits(bus, "lim2", 0, 200);
    ok(append(bus, "lim2", "small") == 0, "under byte limit");
    char big[300];
    memset(big, 'b', sizeof(big) - 1);
    big[299] = 0;
    ok(append(bus, "lim2", big) == ESB_EFULL, "over byte limit refused");
    struct esb_bus_stats st;
    esb_bus_get_stats(bus, &st);
    ok(st.refused_full == 2, "refusals counted (%llu)", (unsigned long long)st.refused_full);
    esb_bus_close(bus);
    struct esb_bus_opts o2 = {.disk_low_water = UINT64_MAX / 2};
    bus = open_bus(&o2);
    ok(append(bus, "lim3", "x") == ESB_EFULL, "disk low-water refuses appends");
    esb_bus_close(bus);
}

static void test_compaction(void)
{
    char cmd[400];
    struct esb_bus_opts o = {.segment_size = 4096, .compact_interval_ms = 20};
    struct esb_bus *bus = open_bus(&o);
    struct esb_err err;
    char body[200];
    memset(body, 'k', sizeof(body) - 1);
    body[199] = 0;
    /* one long-lived entry, then many that are acked */
    ok(append(bus, "keep", "long-lived") == 0, "long-lived entry");
    for (int i = 0; i < 200; i++) {
        if (append(bus, "churn", body) != 0) break;
        struct esb_entry *e;
        if (esb_bus_consume(bus, "churn", 0, &e) != 0) break;
        if (esb_bus_ack(bus, e, &err) != 0) break;
        esb_entry_free(e);
    }
    usleep(300000);
    struct esb_bus_stats st;
    esb_bus_get_stats(bus, &st);
    ok(st.segments_deleted > 0, "resolved segments deleted (%llu)",
       (unsigned long long)st.segments_deleted);
    ok(st.entries_relocated >= 1, "long-lived entry copied forward (%llu)",
       (unsigned long long)st.entries_relocated);
    snprintf(cmd, sizeof(cmd), "test $(ls %s/*.seg | wc -l) -le 4", dir);
    ok(system(cmd) == 0, "few segments remain");
    esb_bus_close(bus);
    bus = open_bus(&o);
    struct esb_entry *e;
    ok(esb_bus_consume(bus, "keep", 0, &e) == 0 && body_is(e, "long-lived"),
       "long-lived entry survives compaction and restart");
    esb_entry_free(e);
    ok(esb_bus_consume(bus, "churn", 0, &e) == ESB_ETIMEDOUT, "no acked entry came back");
    esb_bus_close(bus);
}

static void test_marks(void)
{
    struct esb_bus_opts o = {.segment_size = 4096, .compact_interval_ms = 20};
    struct esb_bus *bus = open_bus(&o);
    struct esb_err err;
    struct esb_txn *t = esb_txn_new();
    esb_txn_mark(t, "file-in:x:claim-1", esb_now_ms() + 3600000);
    esb_txn_mark(t, "short-lived", esb_now_ms() + 100);
    esb_txn_mark(t, "forgotten", esb_now_ms() + 3600000);
    ok(esb_bus_commit(bus, t, &err) == 0, "commit three marks");
    esb_txn_free(t);
    ok(esb_bus_marked(bus, "file-in:x:claim-1") && esb_bus_marked(bus, "forgotten") &&
           !esb_bus_marked(bus, "never"),
       "marked keys are seen, others not");
    t = esb_txn_new();
    esb_txn_mark(t, "forgotten", 0);
    ok(esb_bus_commit(bus, t, &err) == 0 && !esb_bus_marked(bus, "forgotten"),
       "expires 0 forgets a mark");
    esb_txn_free(t);
    /* churn so the segment holding the marks gets compacted away */
    for (int i = 0; i < 100; i++) {
        if (append(bus, "churn",
                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx") != 0)
            break;
        struct esb_entry *e;
        if (esb_bus_consume(bus, "churn", 0, &e) != 0) break;
        if (esb_bus_ack(bus, e, &err) != 0) break;
        esb_entry_free(e);
    }
    usleep(300000);
    struct esb_bus_stats st;
    esb_bus_get_stats(bus, &st);
    ok(st.segments_deleted > 0 && st.marks == 1, "segments deleted (%llu), 1 mark left (%llu)",
       (unsigned long long)st.segments_deleted, (unsigned long long)st.marks);
    esb_bus_close(bus);
    bus = open_bus(&o);
    ok(esb_bus_marked(bus, "file-in:x:claim-1"), "mark survives compaction and restart");
    ok(!esb_bus_marked(bus, "short-lived") && !esb_bus_marked(bus, "forgotten"),
       "expired and forgotten marks stay gone after restart");
    esb_bus_close(bus);
}

static int append_keyed(struct esb_bus *bus, const char *q, const char *body, const char *key)
{
    struct esb_msg *m = mk(body);
    struct esb_err err;
    struct esb_txn *t = esb_txn_new();
    esb_txn_append_keyed(t, &q, 1, m, key);
    int rc = esb_bus_commit(bus, t, &err);
    esb_txn_free(t);
    esb_msg_unref(m);
    return rc;
}

static void test_ordering_keys(void)
{
    struct esb_bus *bus = open_bus(NULL);
    struct esb_err err;
    ok(append_keyed(bus, "ok", "a1", "A") == 0 && append_keyed(bus, "ok", "b1", "B") == 0 &&
           append_keyed(bus, "ok", "a2", "A") == 0 && append_keyed(bus, "ok", "a3", "A") == 0 &&
           append_keyed(bus, "ok", "n1", NULL) == 0,
       "append keyed entries a1 b1 a2 a3 and unkeyed n1");
    struct esb_entry *a1, *b1, *x, *y;
    ok(esb_bus_consume(bus, "ok", 0, &a1) == 0 && body_is(a1, "a1"), "a1 first");
    ok(esb_bus_consume(bus, "ok", 0, &b1) == 0 && body_is(b1, "b1"),
       "b1 next: other keys are not held back");
    ok(esb_bus_consume(bus, "ok", 0, &x) == 0 && body_is(x, "n1"),
       "n1 next: a2 waits behind a1 in flight");
    ok(esb_bus_consume(bus, "ok", 0, &y) == ESB_ETIMEDOUT, "nothing else: a2, a3 parked");
    struct esb_txn *t = esb_txn_new();
    esb_txn_retry(t, a1, esb_now_ms() + 300, NULL);
    ok(esb_bus_commit(bus, t, &err) == 0, "a1 goes to retry");
    esb_txn_free(t);
    esb_entry_free(a1);
    ok(esb_bus_consume(bus, "ok", 0, &y) == ESB_ETIMEDOUT, "a2 still waits while a1 is in retry");
    esb_entry_free(x);
    esb_entry_free(b1);
    esb_bus_close(bus);
    bus = open_bus(NULL);
    ok(esb_bus_consume(bus, "ok", 0, &b1) == 0 && body_is(b1, "b1"),
       "after restart: b1 ready, a-chain still blocked by a1's retry");
    ok(esb_bus_consume(bus, "ok", 0, &x) == 0 && body_is(x, "n1"), "n1 ready");
    ok(esb_bus_consume(bus, "ok", 0, &y) == ESB_ETIMEDOUT, "a2 parked after recovery");
    ok(esb_bus_ack(bus, b1, &err) == 0 && esb_bus_ack(bus, x, &err) == 0, "ack b1 n1");
    esb_entry_free(b1);
    esb_entry_free(x);
    ok(esb_bus_consume(bus, "ok", 2000, &a1) == 0 && body_is(a1, "a1") && a1->attempt == 1,
       "a1 comes back from retry");
    ok(esb_bus_ack(bus, a1, &err) == 0, "ack a1");
    esb_entry_free(a1);
    ok(esb_bus_consume(bus, "ok", 0, &x) == 0 && body_is(x, "a2"), "then a2");
    t = esb_txn_new();
    esb_txn_dead(t, x, "dlq.ok", "poison", NULL);
    ok(esb_bus_commit(bus, t, &err) == 0, "a2 dead-lettered");
    esb_txn_free(t);
    esb_entry_free(x);
    ok(esb_bus_consume(bus, "ok", 0, &x) == 0 && body_is(x, "a3"), "a dead letter releases a3");
    ok(esb_bus_ack(bus, x, &err) == 0, "ack a3");
    esb_entry_free(x);
    /* take by seq */
    struct esb_entry *d;
    ok(esb_bus_consume(bus, "dlq.ok", 0, &d) == 0 && body_is(d, "a2"), "a2 in the DLQ");
    uint64_t seq = d->seq;
    struct esb_entry *d2;
    ok(esb_bus_take(bus, "dlq.ok", seq, &d2) == ESB_EBUSY, "take of a held entry: EBUSY");
    esb_entry_free(d);
    ok(esb_bus_take(bus, "dlq.ok", seq, &d2) == 0 && body_is(d2, "a2"), "take by seq");
    ok(esb_bus_take(bus, "dlq.ok", 12345678, &d) == ESB_ENOTFOUND, "take unknown: ENOTFOUND");
    ok(esb_bus_ack(bus, d2, &err) == 0, "ack the taken entry");
    esb_entry_free(d2);
    esb_bus_close(bus);
}

static void test_unique_marks(void)
{
    struct esb_bus *bus = open_bus(NULL);
    struct esb_err err;
    struct esb_txn *t = esb_txn_new();
    esb_txn_mark_unique(t, "idem-1", esb_now_ms() + 60000);
    ok(esb_bus_commit(bus, t, &err) == 0, "first unique mark commits");
    esb_txn_free(t);
    t = esb_txn_new();
    struct esb_msg *m = mk("dup");
    const char *q = "uq";
    esb_txn_append(t, &q, 1, m);
    esb_txn_mark_unique(t, "idem-1", esb_now_ms() + 60000);
    ok(esb_bus_commit(bus, t, &err) == ESB_EEXIST, "second one fails with EEXIST");
    esb_txn_free(t);
    esb_msg_unref(m);
    struct esb_queue_info qi;
    ok(esb_bus_queue_info(bus, "uq", &qi) != 0 || qi.entries == 0,
       "and nothing of that transaction was written");
    esb_bus_close(bus);
}

struct async_count {
    pthread_mutex_t lock;
    int done, failed;
};

static void async_done(void *ctx, int rc)
{
    struct async_count *c = ctx;
    pthread_mutex_lock(&c->lock);
    if (rc == 0)
        c->done++;
    else
        c->failed++;
    pthread_mutex_unlock(&c->lock);
}

static struct esb_bus_stats stats(struct esb_bus *bus)
{
    struct esb_bus_stats st;
    esb_bus_get_stats(bus, &st);
    return st;
}
#define batches(bus)    (stats(bus).batches)
#define cache_hits(bus) (stats(bus).cache_hits)

/* Wait (up to 5 s) until n async commits of c have called done. */
static void wait_async(struct async_count *c, int n)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&c->lock);
        int k = c->done + c->failed;
        pthread_mutex_unlock(&c->lock);
        if (k == n) return;
        usleep(10000);
    }
}

static void test_commit_async(void)
{
    struct esb_bus_opts o = {.queue_max_entries = 150};
    struct esb_bus *bus = open_bus(&o);
    struct esb_err err;
    struct async_count c = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    struct esb_txn *ts[200];
    int started = 0, refused = 0;
    const char *q = "aq";
    for (int i = 0; i < 200; i++) {
        char body[32];
        snprintf(body, sizeof(body), "async-%d", i);
        struct esb_msg *m = mk(body);
        ts[i] = esb_txn_new();
        esb_txn_append(ts[i], &q, 1, m);
        esb_msg_unref(m);
        int rc = esb_bus_commit_async(bus, ts[i], async_done, &c, &err);
        if (rc == 0)
            started++;
        else if (rc == ESB_EFULL)
            refused++;
    }
    ok(started == 150 && refused == 50,
       "async commits: 150 admitted, 50 refused at once by the queue limit (%d, %d)", started,
       refused);
    wait_async(&c, started);
    ok(c.done == 150 && c.failed == 0, "every admitted one calls done once with 0 (%d)", c.done);
    for (int i = 0; i < 200; i++) esb_txn_free(ts[i]);
    struct esb_queue_info qi;
    ok(esb_bus_queue_info(bus, "aq", &qi) == 0 && qi.entries == 150, "150 entries durable");
    esb_bus_close(bus);
}

/* Lazy commits (esb_txn_set_lazy): they complete, alone too; a burst of
 * them shares few fdatasyncs; an eager commit is not held back by them. */
static void test_lazy(void)
{
    struct esb_bus *bus = open_bus(NULL);
    struct esb_err err;
    struct async_count c = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    const char *q = "lazy";
    enum { N = 300 };
    struct esb_txn *ts[N + 1];
    uint64_t b0 = batches(bus);
    int started = 0;
    for (int i = 0; i < N; i++) {
        char body[32];
        snprintf(body, sizeof(body), "lazy-%d", i);
        struct esb_msg *m = mk(body);
        ts[i] = esb_txn_new();
        esb_txn_append(ts[i], &q, 1, m);
        esb_txn_set_lazy(ts[i]);
        esb_msg_unref(m);
        started += esb_bus_commit_async(bus, ts[i], async_done, &c, &err) == 0;
    }
    wait_async(&c, started);
    uint64_t used = batches(bus) - b0;
    ok(started == N && c.done == N && c.failed == 0, "lazy: %d commits, each done once with 0",
       c.done);
    ok(used <= N / 20, "lazy: they shared fdatasyncs (%llu batches for %d commits)",
       (unsigned long long)used, N);

    /* one lazy commit alone completes (at its deadline), and an eager
     * append right behind it takes it along */
    c.done = 0;
    struct esb_msg *m = mk("alone");
    ts[N] = esb_txn_new();
    esb_txn_append(ts[N], &q, 1, m);
    esb_txn_set_lazy(ts[N]);
    int rc = esb_bus_commit_async(bus, ts[N], async_done, &c, &err);
    uint64_t t0 = esb_mono_ns();
    int arc = esb_bus_append(bus, q, m, &err);
    double ms = (double)(esb_mono_ns() - t0) / 1e6;
    ok(rc == 0 && arc == 0, "lazy: an eager append behind a waiting lazy commit returns (%.2f ms)",
       ms);
    for (int i = 0; i < 100 && !c.done; i++) usleep(10000);
    ok(c.done == 1, "lazy: the lone lazy commit completed");
    esb_msg_unref(m);
    for (int i = 0; i <= N; i++) esb_txn_free(ts[i]);
    esb_bus_close(bus);
}

/* An appended message is handed to its first consumer from memory (no log
 * read); everything else - a released entry, one beyond the memory
 * budget, anything after a restart - is read from the log. Both give the
 * same message. */
static void test_msg_cache(void)
{
    struct esb_bus *bus = open_bus(NULL);
    ok(append(bus, "mc", "first") == 0, "cache: append");
    uint64_t h0 = cache_hits(bus);
    struct esb_entry *e = NULL;
    ok(esb_bus_consume(bus, "mc", 0, &e) == 0 && body_is(e, "first") &&
           strcmp(esb_msg_header(e->msg, "x-test"), "first") == 0 &&
           strcmp(e->msg->content_type, "text/plain") == 0,
       "cache: the first consumer gets the whole message");
    ok(cache_hits(bus) == h0 + 1, "cache: ... from memory (hits %llu -> %llu)",
       (unsigned long long)h0, (unsigned long long)cache_hits(bus));
    esb_entry_free(e); /* released: the next take reads the log */
    ok(esb_bus_consume(bus, "mc", 0, &e) == 0 && body_is(e, "first") &&
           strcmp(esb_msg_header(e->msg, "x-test"), "first") == 0 && cache_hits(bus) == h0 + 1,
       "cache: a released entry comes back from the log, the same");
    struct esb_err err;
    ok(esb_bus_ack(bus, e, &err) == 0, "cache: ack");
    esb_entry_free(e);

    /* 2000 messages of 1 KiB: more than the 1 MiB budget */
    char body[1025];
    int okall = 1;
    for (int i = 0; i < 2000; i++) {
        snprintf(body, sizeof(body), "%04d%01020d", i, 0);
        okall &= append(bus, "mc", body) == 0;
    }
    ok(okall, "cache: 2000 appends of 1 KiB");
    h0 = cache_hits(bus);
    int inorder = 1;
    for (int i = 0; i < 2000 && inorder; i++) {
        snprintf(body, sizeof(body), "%04d%01020d", i, 0);
        inorder = esb_bus_consume(bus, "mc", 0, &e) == 0 && body_is(e, body) &&
                  esb_bus_ack(bus, e, &err) == 0;
        esb_entry_free(e);
    }
    uint64_t hits = cache_hits(bus) - h0;
    ok(inorder, "cache: all 2000 consumed in order with their bodies");
    ok(hits == 256,
       "cache: %llu of them from memory: the first 256 (an append behind a deeper backlog is "
       "not cached), the rest read",
       (unsigned long long)hits);

    /* A deep backlog on one queue leaves the cache to the queues that keep up. */
    okall = 1;
    for (int i = 0; i < 1000; i++) okall &= append(bus, "deep", body) == 0;
    h0 = cache_hits(bus);
    for (int i = 0; i < 20; i++) {
        okall &= append(bus, "mc", "fresh") == 0;
        okall &= esb_bus_consume(bus, "mc", 0, &e) == 0 && body_is(e, "fresh") &&
                 esb_bus_ack(bus, e, &err) == 0;
        esb_entry_free(e);
    }
    ok(okall && cache_hits(bus) - h0 == 20,
       "cache: with 1000 entries waiting on another queue, 20 appended and consumed at once all "
       "come from memory (%llu)",
       (unsigned long long)(cache_hits(bus) - h0));
    for (int i = 0; i < 1000 && okall; i++) {
        okall = esb_bus_consume(bus, "deep", 0, &e) == 0 && esb_bus_ack(bus, e, &err) == 0;
        esb_entry_free(e);
    }
    ok(okall, "cache: the deep backlog drains from the log");
    ok(append(bus, "mc", "kept") == 0, "cache: append one more, not consumed");
    esb_bus_close(bus);
    bus = open_bus(NULL);
    h0 = cache_hits(bus);
    ok(esb_bus_consume(bus, "mc", 0, &e) == 0 && body_is(e, "kept") && cache_hits(bus) == h0,
       "cache: after a restart the entry is read from the log");
    esb_entry_free(e);
    esb_bus_close(bus);
}

/* A backlog longer than the ready ring's first size, taken in seq order
 * while entries are released out of order, one taken from the middle by
 * seq, and the queue restarted. */
static void test_ready_order(void)
{
    struct esb_bus *bus = open_bus(NULL);
    struct esb_err err;
    char body[16];
    int okall = 1;
    for (int i = 0; i < 300; i++) {
        snprintf(body, sizeof(body), "m%03d", i);
        okall &= append(bus, "ro", body) == 0;
    }
    ok(okall, "ready order: 300 appends");
    struct esb_entry *held[10];
    okall = 1;
    for (int i = 0; i < 10; i++) {
        snprintf(body, sizeof(body), "m%03d", i);
        okall &= esb_bus_consume(bus, "ro", 0, &held[i]) == 0 && body_is(held[i], body);
    }
    ok(okall, "ready order: the first 10 in order");
    /* released in the order 7, 2, 5: they come back before m010, by seq */
    esb_entry_free(held[7]);
    esb_entry_free(held[2]);
    esb_entry_free(held[5]);
    struct esb_entry *mid = NULL;
    uint64_t mid_seq = held[9]->seq + 141; /* m150 */
    ok(esb_bus_take(bus, "ro", mid_seq, &mid) == 0 && body_is(mid, "m150"),
       "ready order: m150 taken by seq from the middle");
    struct esb_queue_info qi;
    int info = esb_bus_queue_info(bus, "ro", &qi);
    ok(info == 0 && qi.ready == 292 && qi.inflight == 8,
       "ready order: 292 ready (3 released + 289 never taken), 8 in flight (ready %llu)",
       (unsigned long long)qi.ready);
    int want[300], n = 0;
    want[n++] = 2;
    want[n++] = 5;
    want[n++] = 7;
    for (int i = 10; i < 300; i++)
        if (i != 150) want[n++] = i;
    okall = 1;
    for (int i = 0; i < n && okall; i++) {
        struct esb_entry *e = NULL;
        snprintf(body, sizeof(body), "m%03d", want[i]);
        okall = esb_bus_consume(bus, "ro", 0, &e) == 0 && body_is(e, body);
        if (!okall) diag("expected %s", body);
        if (okall && want[i] == 20) {
            esb_entry_free(e); /* released while later ones wait: comes next again */
            okall = esb_bus_consume(bus, "ro", 0, &e) == 0 && body_is(e, body);
        }
        okall = okall && esb_bus_ack(bus, e, &err) == 0;
        esb_entry_free(e);
    }
    ok(okall, "ready order: the other 292 by seq, released ones first, m150 skipped");
    struct esb_entry *none = NULL;
    ok(esb_bus_consume(bus, "ro", 0, &none) == ESB_ETIMEDOUT, "ready order: nothing else ready");
    esb_entry_free(mid); /* m150 released */
    for (int i = 0; i < 10; i++)
        if (i != 2 && i != 5 && i != 7) esb_entry_free(held[i]);
    esb_bus_close(bus);
    bus = open_bus(NULL); /* recovery: 8 entries, 0 1 3 4 6 8 9 and 150, in seq order */
    const int after[] = {0, 1, 3, 4, 6, 8, 9, 150};
    okall = 1;
    for (size_t i = 0; i < sizeof(after) / sizeof(after[0]) && okall; i++) {
        struct esb_entry *e = NULL;
        snprintf(body, sizeof(body), "m%03d", after[i]);
        okall = esb_bus_consume(bus, "ro", 0, &e) == 0 && body_is(e, body) &&
                esb_bus_ack(bus, e, &err) == 0;
        esb_entry_free(e);
    }
    info = esb_bus_queue_info(bus, "ro", &qi);
    ok(okall && info == 0 && qi.entries == 0,
       "ready order: after a restart the 8 unresolved ones in seq order");
    esb_bus_close(bus);
}

int main(void)
{
    esb_log_set_level(ESB_LOG_WARN);
    snprintf(dir, sizeof(dir), "/tmp/esb-test-bus-XXXXXX");
    if (!mkdtemp(dir)) bail("mkdtemp");
    test_fifo_ack();
    test_retry_dead();
    test_topic();
    test_handoff();
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir %s", dir, dir);
    if (system(cmd) != 0) bail("rm");
    test_limits();
    if (system(cmd) != 0) bail("rm");
    test_compaction();
    if (system(cmd) != 0) bail("rm");
    test_marks();
    if (system(cmd) != 0) bail("rm");
    test_ordering_keys();
    test_unique_marks();
    if (system(cmd) != 0) bail("rm");
    test_commit_async();
    if (system(cmd) != 0) bail("rm");
    test_msg_cache();
    if (system(cmd) != 0) bail("rm");
    test_ready_order();
    if (system(cmd) != 0) bail("rm");
    test_lazy();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) bail("rm");
    return tap_done();
}
