/* test-bus-history.c - the attempt history the bus keeps with an entry
 * (struct esb_try): recorded by retries and the dead-letter, bounded to the
 * last ESB_BUS_TRIES_MAX, the same after a restart and after compaction
 * copied the entries forward (and their first records were deleted); and
 * logs written before histories existed (record format 1) still read, a
 * dead letter's attempt then counted as the attempts made. */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../tap.h"
#include "bus.h"
#include "log.h"
#include "msg.h"
#include "wal.h"

static char dir[64];

static struct esb_bus *open_bus(struct esb_bus_opts *o)
{
    struct esb_bus *bus;
    struct esb_err err = {0};
    struct esb_bus_opts def = {0};
    if (!o) o = &def;
    o->dir = dir;
    if (esb_bus_open(o, &bus, &err) != 0) bail("open: %s", err.msg);
    return bus;
}

static void fresh_dir(void)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir %s", dir, dir);
    if (system(cmd) != 0) bail("rm");
}

static struct esb_msg *mk(const char *body)
{
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_body(m, body, strlen(body));
    esb_msg_set_content_type(m, "text/plain");
    return m;
}

static void append(struct esb_bus *bus, const char *q, const char *body)
{
    struct esb_msg *m = mk(body);
    struct esb_err err;
    if (esb_bus_append(bus, q, m, &err) != 0) bail("append: %s", err.msg);
    esb_msg_unref(m);
}

static struct esb_entry *take(struct esb_bus *bus, const char *q, int timeout_ms)
{
    struct esb_entry *e = NULL;
    int rc = esb_bus_consume(bus, q, timeout_ms, &e);
    if (rc != 0) bail("consume %s: %s", q, esb_strerror(rc));
    return e;
}

static void commit(struct esb_bus *bus, struct esb_txn *t)
{
    struct esb_err err;
    if (esb_bus_commit(bus, t, &err) != 0) bail("commit: %s", err.msg);
    esb_txn_free(t);
}

/* Fail entry e (attempt k, 1-based) with class "c" and text "tK", at
 * 1000 + k ms: retry it due at once, or dead-letter it to dlq. */
static void fail(struct esb_bus *bus, struct esb_entry *e, unsigned k, const char *dlq)
{
    char text[32];
    snprintf(text, sizeof(text), "t%u", k);
    struct esb_try f;
    esb_try_set(&f, 1000 + k, k % 2 ? "http-status" : "timeout", text);
    struct esb_txn *t = esb_txn_new();
    if (dlq)
        esb_txn_dead(t, e, dlq, "gave up", &f);
    else
        esb_txn_retry(t, e, esb_now_ms(), &f);
    commit(bus, t);
    esb_entry_free(e);
}

/* The history as "t5,t6,...", its times increasing by 1 ms and classes
 * alternating as fail() made them; "BAD" if not. */
static void history(const struct esb_entry *e, char *out, size_t cap)
{
    size_t k = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < e->ntries && k < cap; i++) {
        const struct esb_try *t = &e->tries[i];
        unsigned n = (unsigned)(t->at_ms - 1000);
        char want[32];
        snprintf(want, sizeof(want), "t%u", n);
        if (strcmp(t->text, want) != 0 || strcmp(t->cls, n % 2 ? "http-status" : "timeout") != 0 ||
            (i && t->at_ms != e->tries[i - 1].at_ms + 1)) {
            snprintf(out, cap, "BAD at %u: %s %s %llu", i, t->cls, t->text,
                     (unsigned long long)t->at_ms);
            return;
        }
        k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? "," : "", t->text);
    }
}

static int browse_one(void *ctx, const struct esb_entry *e)
{
    history(e, ctx, 512);
    return 1;
}

static void test_bounded_history(void)
{
    fresh_dir();
    struct esb_bus *bus = open_bus(NULL);
    append(bus, "q", "a");
    struct esb_entry *e = take(bus, "q", 0);
    ok(e->attempt == 0 && e->ntries == 0 && e->tries == NULL, "a new entry: attempt 0, no history");
    fail(bus, e, 1, NULL);
    e = take(bus, "q", 1000);
    char h[512];
    history(e, h, sizeof(h));
    ok(e->attempt == 1 && e->ntries == 1 && strcmp(h, "t1") == 0 &&
           strcmp(e->tries[0].cls, "http-status") == 0 && e->tries[0].at_ms == 1001,
       "after one failed attempt: attempt 1, its time, class and text (%s)", h);
    for (unsigned k = 2; k <= 19; k++) {
        fail(bus, e, k, NULL);
        e = take(bus, "q", 1000);
    }
    history(e, h, sizeof(h));
    ok(e->attempt == 19 && e->ntries == ESB_BUS_TRIES_MAX &&
           strcmp(h, "t4,t5,t6,t7,t8,t9,t10,t11,t12,t13,t14,t15,t16,t17,t18,t19") == 0,
       "after 19 failed attempts: attempt 19, the last %d kept, oldest first (%s)",
       ESB_BUS_TRIES_MAX, h);
    fail(bus, e, 20, "dlq.q");
    e = take(bus, "dlq.q", 0);
    history(e, h, sizeof(h));
    ok(e->attempt == 20 && e->ntries == ESB_BUS_TRIES_MAX &&
           strcmp(h, "t5,t6,t7,t8,t9,t10,t11,t12,t13,t14,t15,t16,t17,t18,t19,t20") == 0 &&
           strcmp(e->reason, "gave up") == 0,
       "dead-lettered after its 20th attempt: attempt 20 (attempts made), the history ends "
       "with the last attempt (%s)",
       h);
    esb_entry_free(e);
    esb_bus_close(bus);

    bus = open_bus(NULL);
    e = take(bus, "dlq.q", 0);
    char h2[512];
    history(e, h2, sizeof(h2));
    ok(e->attempt == 20 && strcmp(h, h2) == 0, "the same after a restart (%s)", h2);
    esb_entry_free(e);
    char b[512] = "";
    ok(esb_bus_browse(bus, "dlq.q", browse_one, b) == 1 && strcmp(b, h) == 0,
       "browse shows the same history");
    esb_bus_close(bus);
}

static void test_try_set(void)
{
    struct esb_try t;
    char text[400];
    memset(text, 'x', sizeof(text));
    memcpy(text + ESB_TRY_TEXT_MAX - 1, "\xc3\xa9", 2); /* é across the cut */
    text[sizeof(text) - 1] = '\0';
    esb_try_set(&t, 7, "a-class-name-longer-than-thirty-one-bytes", text);
    ok(strlen(t.cls) == ESB_TRY_CLASS_MAX && strlen(t.text) == ESB_TRY_TEXT_MAX - 1 &&
           t.text[ESB_TRY_TEXT_MAX - 2] == 'x',
       "esb_try_set cuts class and text to their sizes, not inside a UTF-8 character "
       "(%zu, %zu bytes)",
       strlen(t.cls), strlen(t.text));
    esb_try_set(&t, 7, NULL, NULL);
    ok(t.cls[0] == '\0' && t.text[0] == '\0', "NULL class and text are empty");
}

/* Entries with histories copied forward by compaction, their first
 * segments deleted: after a restart they are whole. */
static void test_compaction(void)
{
    fresh_dir();
    struct esb_bus_opts o = {.segment_size = 4096, .compact_interval_ms = 20};
    struct esb_bus *bus = open_bus(&o);
    append(bus, "keep", "dead");
    struct esb_entry *d = take(bus, "keep", 0);
    fail(bus, d, 1, NULL);
    d = take(bus, "keep", 1000);
    fail(bus, d, 2, "dlq.keep");
    append(bus, "keep", "waiting");
    struct esb_entry *w = take(bus, "keep", 0);
    fail(bus, w, 1, NULL);
    w = take(bus, "keep", 1000);
    fail(bus, w, 2, NULL);
    w = take(bus, "keep", 1000);
    struct esb_txn *t = esb_txn_new();
    struct esb_try f;
    esb_try_set(&f, 1003, "http-status", "t3");
    esb_txn_retry(t, w, esb_now_ms() + 3600000, &f); /* waits an hour */
    commit(bus, t);
    esb_entry_free(w);
    char body[200];
    memset(body, 'k', sizeof(body) - 1);
    body[199] = 0;
    for (int i = 0; i < 200; i++) {
        append(bus, "churn", body);
        struct esb_entry *e = take(bus, "churn", 0);
        struct esb_err err;
        if (esb_bus_ack(bus, e, &err) != 0) bail("ack: %s", err.msg);
        esb_entry_free(e);
    }
    usleep(300000);
    struct esb_bus_stats st;
    esb_bus_get_stats(bus, &st);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "test -e %s/00000000000000000001.seg", dir);
    ok(st.entries_relocated >= 2 && st.segments_deleted > 0 && system(cmd) != 0,
       "both entries copied forward (%llu relocations), the first segment deleted",
       (unsigned long long)st.entries_relocated);
    esb_bus_close(bus);
    bus = open_bus(&o);
    struct esb_queue_info qi;
    char h[512] = "";
    ok(esb_bus_queue_info(bus, "keep", &qi) == 0 && qi.waiting == 1 &&
           esb_bus_browse(bus, "keep", browse_one, h) == 1 && strcmp(h, "t1,t2,t3") == 0,
       "after a restart the waiting entry has its 3 attempts (%s)", h);
    struct esb_entry *e = take(bus, "dlq.keep", 0);
    history(e, h, sizeof(h));
    ok(e->attempt == 2 && strcmp(h, "t1,t2") == 0 && strcmp(e->dead_from, "keep") == 0,
       "and the dead letter its 2 (%s), attempt 2", h);
    esb_entry_free(e);
    esb_bus_close(bus);
}

/* ---- a log written before histories (record format 1) ---- */

static void put_u16(struct esb_buf *b, uint16_t v)
{
    uint8_t x[2];
    esb_put_u16(x, v);
    if (esb_buf_add(b, x, 2)) abort();
}

static void put_u32(struct esb_buf *b, uint32_t v)
{
    uint8_t x[4];
    esb_put_u32(x, v);
    if (esb_buf_add(b, x, 4)) abort();
}

static void put_u64(struct esb_buf *b, uint64_t v)
{
    uint8_t x[8];
    esb_put_u64(x, v);
    if (esb_buf_add(b, x, 8)) abort();
}

static void put_str(struct esb_buf *b, const char *s)
{
    put_u16(b, (uint16_t)strlen(s));
    if (esb_buf_add(b, s, strlen(s))) abort();
}

static void put_msg(struct esb_buf *b, const char *body)
{
    struct esb_msg *m = mk(body);
    size_t n = esb_msg_encoded_size(m);
    if (esb_buf_reserve(b, b->len + n)) abort();
    b->len += esb_msg_encode(m, b->data + b->len);
    esb_msg_unref(m);
}

/* A MSG payload with one target (format 1). */
static void msg_payload(struct esb_buf *p, uint64_t seq, const char *queue, uint32_t attempt,
                        const char *reason, const char *from, const char *body)
{
    put_u64(p, seq);
    put_u64(p, 1700000000000ULL);
    put_u16(p, 1);
    put_str(p, queue);
    put_u32(p, attempt);
    put_u64(p, 0);
    put_str(p, reason);
    put_str(p, from);
    put_str(p, "");
    put_msg(p, body);
}

static void rec(struct esb_buf *seg, uint8_t type, uint8_t flags, struct esb_buf *p)
{
    uint8_t hdr[ESB_WAL_HDR];
    struct iovec iov = {p->data, p->len};
    esb_wal_header(hdr, type, flags, &iov, 1);
    if (esb_buf_add(seg, hdr, sizeof(hdr)) || esb_buf_add(seg, p->data, p->len)) abort();
    p->len = 0;
}

static void test_format1(void)
{
    fresh_dir();
    struct esb_buf seg, p;
    esb_buf_init(&seg, SIZE_MAX);
    esb_buf_init(&p, SIZE_MAX);
    /* seq 1: appended, retried twice (attempt 2), dead-lettered: the old
     * DEAD record counted attempts from 0, so 2 means 3 attempts. */
    msg_payload(&p, 1, "old", 0, "", "", "one");
    rec(&seg, ESB_REC_MSG, 0, &p);
    for (uint32_t a = 1; a <= 2; a++) {
        put_u64(&p, 1);
        put_str(&p, "old");
        put_u32(&p, a);
        put_u64(&p, 1);
        rec(&seg, ESB_REC_RETRY, 0, &p);
    }
    put_u64(&p, 1);
    put_str(&p, "old");
    put_str(&p, "dlq.old");
    put_u32(&p, 2);
    put_str(&p, "HTTP 503");
    rec(&seg, ESB_REC_DEAD, 0, &p);
    /* seq 2: a dead letter copied forward by an old compaction (attempt 0:
     * it died at its first attempt). */
    msg_payload(&p, 2, "dlq.old", 0, "HTTP 400", "old", "two");
    rec(&seg, ESB_REC_MSG, 0x01 /* RELOC */, &p);
    /* seq 3: waiting for its second attempt. */
    msg_payload(&p, 3, "old", 0, "", "", "three");
    rec(&seg, ESB_REC_MSG, 0, &p);
    put_u64(&p, 3);
    put_str(&p, "old");
    put_u32(&p, 1);
    put_u64(&p, 1);
    rec(&seg, ESB_REC_RETRY, 0, &p);
    char path[128];
    snprintf(path, sizeof(path), "%s/00000000000000000001.seg", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, seg.data, seg.len) != (ssize_t)seg.len || close(fd) != 0)
        bail("writing %s", path);
    esb_buf_free(&seg);
    esb_buf_free(&p);

    struct esb_bus_stats st;
    struct esb_bus *bus = open_bus(NULL);
    esb_bus_get_stats(bus, &st);
    struct esb_entry *a = take(bus, "dlq.old", 0), *b = take(bus, "dlq.old", 0);
    struct esb_entry *c = take(bus, "old", 0);
    ok(st.recovered_corrupt == 0 && a->seq == 1 && a->attempt == 3 && a->ntries == 0 &&
           strcmp(a->reason, "HTTP 503") == 0 && strcmp(a->dead_from, "old") == 0,
       "a format-1 DEAD record reads: attempt 2 counted from 0 is 3 attempts, no history");
    ok(b->seq == 2 && b->attempt == 1 && strcmp(b->reason, "HTTP 400") == 0 &&
           b->msg->body->len == 3 && memcmp(b->msg->body->data, "two", 3) == 0,
       "a format-1 relocated dead letter reads: attempt 0 is 1 attempt, body intact");
    ok(c->seq == 3 && c->attempt == 1 && c->ntries == 0,
       "a format-1 RETRY reads: attempt 1, no history");
    /* New records on top of the old ones. */
    struct esb_try f;
    esb_try_set(&f, 2000, "timeout", "late");
    struct esb_txn *t = esb_txn_new();
    esb_txn_dead(t, c, "dlq.old", "gave up", &f);
    commit(bus, t);
    esb_entry_free(a);
    esb_entry_free(b);
    esb_entry_free(c);
    esb_bus_close(bus);
    bus = open_bus(NULL);
    a = take(bus, "dlq.old", 0); /* seq 1 and 2 held, so that c is seq 3 */
    b = take(bus, "dlq.old", 0);
    c = take(bus, "dlq.old", 0);
    esb_entry_free(a);
    esb_entry_free(b);
    ok(c->seq == 3 && c->attempt == 2 && c->ntries == 1 && strcmp(c->tries[0].text, "late") == 0,
       "a format-2 DEAD on a format-1 entry: attempt 2, the one attempt it recorded (attempt "
       "%u, %u tries)",
       c->attempt, c->ntries);
    esb_entry_free(c);
    esb_bus_close(bus);
}

int main(void)
{
    esb_log_set_level(ESB_LOG_WARN);
    snprintf(dir, sizeof(dir), "/tmp/esb-test-hist-XXXXXX");
    if (!mkdtemp(dir)) bail("mkdtemp");
    test_try_set();
    test_bounded_history();
    test_compaction();
    test_format1();
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) bail("rm");
    return tap_done();
}
