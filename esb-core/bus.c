/* bus.c - the durable bus: transactions, the group-commit writer thread,
 * consumers and maintenance (segment deletion, compaction). The meaning of
 * each record lives in bus_index.c; see bus.h for the contract. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bus_internal.h"
#include "crc32c.h"
#include "io.h"
#include "log.h"
#include "msg.h"

#define DEFAULT_INTERVAL_MS 100
#define DEFAULT_MAINT_MS    1000

/* ---- helpers ---- */

void esb__put_name(struct esb_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (n > ESB__MAX_QUEUE_NAME) n = ESB__MAX_QUEUE_NAME;
    uint8_t l[2];
    esb_put_u16(l, (uint16_t)n);
    if (esb_buf_add(b, l, 2) || esb_buf_add(b, s, n)) abort();
}

void esb__put_u32(struct esb_buf *b, uint32_t v)
{
    uint8_t x[4];
    esb_put_u32(x, v);
    if (esb_buf_add(b, x, 4)) abort();
}

void esb__put_u64(struct esb_buf *b, uint64_t v)
{
    uint8_t x[8];
    esb_put_u64(x, v);
    if (esb_buf_add(b, x, 8)) abort();
}

void esb__put_reason(struct esb_buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > ESB__MAX_REASON) n = ESB__MAX_REASON;
    uint8_t l[2];
    esb_put_u16(l, (uint16_t)n);
    if (esb_buf_add(b, l, 2) || (n && esb_buf_add(b, s, n))) abort();
}

int esb_fsync_parse(const char *s, enum esb_fsync_policy *policy, unsigned *interval_ms)
{
    if (strcmp(s, "always") == 0) {
        *policy = ESB_FSYNC_ALWAYS;
        return 0;
    }
    if (strcmp(s, "never") == 0) {
        *policy = ESB_FSYNC_NEVER;
        return 0;
    }
    if (strncmp(s, "interval:", 9) == 0) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s + 9, &end, 10);
        if (errno || end == s + 9 || (*end && strcmp(end, "ms") != 0) || v < 1 || v > 60000)
            return ESB_EINVAL;
        *policy = ESB_FSYNC_INTERVAL;
        *interval_ms = (unsigned)v;
        return 0;
    }
    return ESB_EINVAL;
}

/* ---- commit ---- */

/* Undo what commit reserved and marked for t (caller holds the lock). */
static void txn_unreserve(struct esb_bus *bus, struct esb_txn *t, size_t upto_ops)
{
    for (size_t i = 0; i < upto_ops; i++) {
        struct txn_op *op = &t->ops[i];
        if (op->kind == OP_RESOLVE) {
            if (op->e && op->e->ent) op->e->ent->pending = 0;
            continue;
        }
        if (op->kind == OP_UNIQUE) {
            esb__pending_key_drop(bus, op->key);
            continue;
        }
        for (size_t j = 0; j < op->nqueues; j++) {
            struct queue *q = esb__queue_get(bus, op->queues[j], 1);
            q->reserved_entries--;
            q->reserved_bytes -= op->bytes;
        }
    }
}

/* Check limits and resolutions, reserve and mark. Caller holds the lock. */
static int txn_admit(struct esb_bus *bus, struct esb_txn *t, struct esb_err *err)
{
    if (t->has_append) {
        uint64_t low = bus->opts.disk_low_water;
        if (low && bus->free_bytes >= 0 && (uint64_t)bus->free_bytes < low) {
            bus->stats.refused_full++;
            return esb_err_set(err, ESB_EFULL,
                               "bus full: %lld bytes free on the disk of %s, low-water mark %llu",
                               (long long)bus->free_bytes, bus->dir, (unsigned long long)low);
        }
        uint64_t max = bus->opts.max_disk;
        if (max && esb_wal_total_bytes(bus->wal) + bus->pending_bytes + t->buf.len > max) {
            bus->stats.refused_full++;
            return esb_err_set(err, ESB_EFULL, "bus full: log of %s at its max-disk of %llu bytes",
                               bus->dir, (unsigned long long)max);
        }
    }
    for (size_t i = 0; i < t->nops; i++) {
        struct txn_op *op = &t->ops[i];
        if (op->kind == OP_RESOLVE) {
            struct entry_impl *ei = op->e;
            if (!ei || ei->bus != bus || ei->resolved || !ei->ent || ei->ent->pending ||
                ei->ent->state != ENT_INFLIGHT) {
                txn_unreserve(bus, t, i);
                return esb_err_set(
                    err, ESB_EINVAL, "entry %llu of queue %s is not held or already resolved",
                    ei ? (unsigned long long)ei->pub.seq : 0ULL, ei ? ei->pub.queue : "?");
            }
            ei->ent->pending = 1;
            continue;
        }
        if (op->kind == OP_UNIQUE) {
            struct mark *m = esb__mark_find(bus, op->key);
            if ((m && m->expires > esb_now_ms()) || esb__pending_key_index(bus, op->key) >= 0) {
                txn_unreserve(bus, t, i);
                return esb_err_set(err, ESB_EEXIST, "key %s is already marked", op->key);
            }
            if (bus->npending_keys == bus->cap_pending_keys) {
                bus->cap_pending_keys = bus->cap_pending_keys ? bus->cap_pending_keys * 2 : 16;
                bus->pending_keys =
                    esb_realloc(bus->pending_keys, bus->cap_pending_keys * sizeof(char *));
            }
            bus->pending_keys[bus->npending_keys++] = op->key;
            continue;
        }
        for (size_t j = 0; j < op->nqueues; j++) {
            struct queue *q = esb__queue_get(bus, op->queues[j], 1);
            int over = (q->max_entries && q->entries + q->reserved_entries + 1 > q->max_entries) ||
                       (q->max_bytes && q->bytes + q->reserved_bytes + op->bytes > q->max_bytes);
            if (over) {
                for (size_t k = 0; k < j; k++) {
                    struct queue *r = esb__queue_get(bus, op->queues[k], 1);
                    r->reserved_entries--;
                    r->reserved_bytes -= op->bytes;
                }
                txn_unreserve(bus, t, i);
                bus->stats.refused_full++;
                return esb_err_set(
                    err, ESB_EFULL, "queue %s full: %llu entries, %llu bytes (limits %llu, %llu)",
                    q->name, (unsigned long long)q->entries, (unsigned long long)q->bytes,
                    (unsigned long long)q->max_entries, (unsigned long long)q->max_bytes);
            }
            q->reserved_entries++;
            q->reserved_bytes += op->bytes;
        }
    }
    return 0;
}

void esb__pending_push(struct esb_bus *bus, struct esb_txn *t, int at_head)
{
    t->next = NULL;
    t->batch = bus->next_batch;
    if (!bus->pending_n++) bus->pending_first_ns = esb_mono_ns();
    if (!t->lazy) bus->pending_eager++;
    if (at_head) {
        t->next = bus->pending_head;
        bus->pending_head = t;
        if (!bus->pending_tail) bus->pending_tail = t;
    } else {
        if (bus->pending_tail)
            bus->pending_tail->next = t;
        else
            bus->pending_head = t;
        bus->pending_tail = t;
    }
    bus->pending_bytes += t->buf.len;
    /* A lazy txn wakes the writer only when the writer has nothing yet
     * (to start its wait) or the batch is full; it wakes up by itself at
     * the deadline. */
    if (!t->lazy || bus->pending_n == 1 || bus->pending_n >= ESB_BUS_LAZY_TXNS)
        pthread_cond_signal(&bus->writer_cv);
}

/* Admit t and queue it for the writer (lock taken and released here). */
static int commit_start(struct esb_bus *bus, struct esb_txn *t, struct esb_err *err)
{
    pthread_mutex_lock(&bus->lock);
    int rc = 0;
    if (bus->failed)
        rc = esb_err_set(err, ESB_EFAILED, "bus failed: %s", bus->fail_why);
    else if (bus->closing)
        rc = esb_err_set(err, ESB_ECLOSED, "bus is closing");
    else
        rc = txn_admit(bus, t, err);
    if (rc == 0) {
        esb__txn_seal(bus, t);
        esb__pending_push(bus, t, 0);
    }
    pthread_mutex_unlock(&bus->lock);
    return rc;
}

int esb_bus_commit(struct esb_bus *bus, struct esb_txn *t, struct esb_err *err)
{
    if (t->nrecs == 0) return 0;
    t->cb = NULL;
    int rc = commit_start(bus, t, err);
    if (rc < 0) return rc;
    uint32_t b = t->batch, d;
    while ((int32_t)((d = atomic_load_explicit(&bus->done_batch, memory_order_acquire)) - b) < 0)
        (void)syscall(SYS_futex, &bus->done_batch, FUTEX_WAIT_BITSET_PRIVATE, d, NULL, NULL,
                      1u << (b & 31));
    rc = t->rc;
    if (rc == ESB_EFAILED) {
        pthread_mutex_lock(&bus->lock);
        esb_err_set(err, rc, "bus failed: %s", bus->fail_why);
        pthread_mutex_unlock(&bus->lock);
    } else if (rc < 0) {
        esb_err_set(err, rc, "writing to the bus log in %s failed: %s", bus->dir, esb_strerror(rc));
    }
    return rc;
}

int esb_bus_commit_async(struct esb_bus *bus, struct esb_txn *t, void (*done)(void *ctx, int rc),
                         void *ctx, struct esb_err *err)
{
    if (t->nrecs == 0) {
        done(ctx, 0);
        return 0;
    }
    t->cb = done;
    t->cb_ctx = ctx;
    return commit_start(bus, t, err);
}

static int commit_one(struct esb_bus *bus, struct esb_txn *t, struct esb_err *err)
{
    int rc = esb_bus_commit(bus, t, err);
    esb_txn_free(t);
    return rc;
}

int esb_bus_append(struct esb_bus *bus, const char *queue, const struct esb_msg *m,
                   struct esb_err *err)
{
    struct esb_txn *t = esb_txn_new();
    esb_txn_append(t, &queue, 1, m);
    return commit_one(bus, t, err);
}

int esb_bus_publish(struct esb_bus *bus, const char *topic, const struct esb_msg *m,
                    struct esb_err *err)
{
    struct esb_txn *t = esb_txn_new();
    esb_txn_publish(t, bus, topic, m);
    return commit_one(bus, t, err);
}

int esb_bus_ack(struct esb_bus *bus, const struct esb_entry *e, struct esb_err *err)
{
    struct esb_txn *t = esb_txn_new();
    esb_txn_ack(t, e);
    return commit_one(bus, t, err);
}

/* ---- the writer thread ---- */

void esb__fail_fatal(struct esb_bus *bus, int rc, const char *what)
{
    if (bus->failed) return;
    bus->failed = 1;
    snprintf(bus->fail_why, sizeof(bus->fail_why), "%s in %s: %s", what, bus->dir,
             esb_strerror(rc));
    esb_error("bus FATAL %s; no further writes are acknowledged", bus->fail_why);
}

/* Finish every txn of list with rc (caller holds the lock). */
/* Finish every txn of list with rc (caller holds the lock). Returns the
 * committers to wake: the caller posts them with wake() AFTER unlocking,
 * so that a woken committer never blocks on the lock the writer holds, and
 * only the committers of this batch are woken (not every waiter). */
static struct esb_txn *finish_list(struct esb_bus *bus, struct esb_txn *list, int rc)
{
    struct esb_txn *wake_list = NULL;
    while (list) {
        struct esb_txn *next = list->next;
        bus->pending_bytes -= list->buf.len;
        if (rc < 0) {
            txn_unreserve(bus, list, list->nops);
        } else {
            for (size_t i = 0; i < list->nops; i++) {
                struct txn_op *op = &list->ops[i];
                if (op->kind == OP_UNIQUE) esb__pending_key_drop(bus, op->key);
                if (op->kind == OP_RESOLVE) {
                    op->e->resolved = 1; /* applied: the entry is gone or moved */
                    op->e->ent = NULL;
                }
            }
        }
        if (list->detached) {
            esb_txn_free(list);
        } else {
            list->rc = rc;
            list->next = wake_list;
            wake_list = list;
        }
        list = next;
    }
    return wake_list;
}

/* Wake the committers of finished txns (without the lock): call the
 * callbacks, then publish the last batch and wake its waiting committers
 * with one futex call. A callback may free its txn, and a committer its
 * own once woken: read what is needed first. */
static void wake(struct esb_txn *w)
{
    while (w) {
        struct esb_txn *next = w->next;
        w->cb(w->cb_ctx, w->rc); /* may free w */
        w = next;
    }
}

/* Release the committers of the finished txns w (writer, lock held, taken
 * and given back here). Callbacks go to the completer thread, in batch
 * order. Committers waiting in esb_bus_commit are released right here:
 * done_batch is published and one futex call (after unlocking) wakes a
 * whole batch, cheap enough for the writer, and a lone committer is spared
 * the hop through the completer. Only the writer stores done_batch, so it
 * never goes back. */
static void complete(struct esb_bus *bus, struct esb_txn *w)
{
    struct esb_txn *head = NULL, *tail = NULL, *quick = NULL, **qtail = &quick;
    uint32_t bits = 0;
    while (w) {
        struct esb_txn *next = w->next; /* a released committer may free w */
        if (w->cb && w->quick) {
            w->next = NULL;
            *qtail = w;
            qtail = &w->next;
        } else if (w->cb) {
            w->next = NULL;
            if (tail)
                tail->next = w;
            else
                head = w;
            tail = w;
        } else {
            bits |= 1u << (w->batch & 31);
            atomic_store_explicit(&bus->done_batch, w->batch, memory_order_release);
        }
        w = next;
    }
    if (head) {
        pthread_mutex_lock(&bus->done_lock);
        if (bus->done_tail)
            bus->done_tail->next = head;
        else
            bus->done_head = head;
        bus->done_tail = tail;
        pthread_cond_signal(&bus->done_cv);
        pthread_mutex_unlock(&bus->done_lock);
    }
    if (bits || quick) {
        pthread_mutex_unlock(&bus->lock);
        if (bits)
            (void)syscall(SYS_futex, &bus->done_batch, FUTEX_WAKE_BITSET_PRIVATE, INT_MAX, NULL,
                          NULL, bits);
        wake(quick);
        pthread_mutex_lock(&bus->lock);
    }
}

static void *completer_main(void *arg)
{
    esb_thread_name("esb-bus-done");
    struct esb_bus *bus = arg;
    pthread_mutex_lock(&bus->done_lock);
    for (;;) {
        struct esb_txn *w = bus->done_head;
        if (!w) {
            if (bus->completer_stop) break;
            pthread_cond_wait(&bus->done_cv, &bus->done_lock);
            continue;
        }
        bus->done_head = bus->done_tail = NULL;
        pthread_mutex_unlock(&bus->done_lock);
        wake(w);
        pthread_mutex_lock(&bus->done_lock);
    }
    pthread_mutex_unlock(&bus->done_lock);
    return NULL;
}

/* Apply a durable txn's records to the indexes (caller holds the lock). */
static void txn_apply(struct esb_bus *bus, struct esb_txn *t)
{
    size_t off = 0;
    while (off < t->buf.len) {
        const uint8_t *rec = t->buf.data + off;
        uint32_t len = esb_get_u32(rec + 8);
        struct esb_wal_pos pos = {t->pos.seg, t->pos.off + off};
        int rc = esb__apply(bus, pos, rec[12], rec[13], rec + ESB_WAL_HDR, len);
        if (rc < 0) esb_error("bus apply failed (a bug): %s", esb_strerror(rc));
        off += ESB_WAL_HDR + len;
        bus->stats.records++;
    }
    for (size_t i = 0; i < t->nops; i++) {
        struct txn_op *op = &t->ops[i];
        if (op->kind != OP_APPEND) continue;
        uint64_t seq = esb_get_u64(t->buf.data + op->rec_off + ESB_WAL_HDR);
        for (size_t j = 0; j < op->nqueues; j++) {
            struct queue *q = esb__queue_get(bus, op->queues[j], 1);
            q->reserved_entries--;
            q->reserved_bytes -= op->bytes;
            struct ent *e = esb__u64map_get(&q->ents, seq);
            /* Not behind a backlog: an entry that waits behind many would
             * hold cache room for long, and a slow queue's backlog (a
             * delivery queue whose endpoint lags) would fill the cache and
             * leave the queues that keep up to read from the log. */
            if (e && !e->msg && op->msg && q->entries <= ESB__CACHE_QUEUE_DEPTH &&
                bus->cache_bytes + e->rec_len <= ESB__CACHE_MAX) {
                e->msg = esb_msg_ref(op->msg);
                bus->cache_bytes += e->rec_len;
            }
        }
    }
}

#define FATAL_RC INT32_MIN

/* Write (and per policy sync) the txns of list as one batch. Returns 0, a
 * negative errno for a failed write (nothing kept), or FATAL_RC. Runs
 * without the lock. */
static int write_batch(struct esb_bus *bus, struct esb_txn *list, int *err_out)
{
    struct iovec stack[64] = {{0}}, *iov = stack;
    size_t n = 0, total = 0;
    for (struct esb_txn *t = list; t; t = t->next) n++;
    if (n > ESB_ARRAY_LEN(stack)) iov = esb_malloc(n * sizeof(*iov));
    n = 0;
    for (struct esb_txn *t = list; t; t = t->next) {
        iov[n].iov_base = t->buf.data;
        iov[n].iov_len = t->buf.len;
        total += t->buf.len;
        n++;
    }
    struct esb_wal_pos start;
    int rc = esb_wal_append(bus->wal, iov, (int)n, total, &start);
    if (iov != stack) free(iov);
    if (rc < 0) {
        *err_out = rc;
        return esb_wal_broken(bus->wal) ? FATAL_RC : rc;
    }
    uint64_t off = start.off;
    for (struct esb_txn *t = list; t; t = t->next) {
        t->pos.seg = start.seg;
        t->pos.off = off;
        off += t->buf.len;
    }
    if (bus->opts.fsync == ESB_FSYNC_ALWAYS) {
        rc = esb_wal_sync(bus->wal);
        if (rc < 0) {
            *err_out = rc;
            return FATAL_RC;
        }
        bus->stats.syncs++;
    } else {
        bus->unsynced = 1;
    }
    bus->stats.batches++;
    bus->stats.bytes += total;
    return 0;
}

static void call_fatal(struct esb_bus *bus)
{
    char why[sizeof(bus->fail_why)];
    memcpy(why, bus->fail_why, sizeof(why));
    pthread_mutex_unlock(&bus->lock);
    if (bus->opts.on_fatal) bus->opts.on_fatal(bus->opts.fatal_ctx, why);
    pthread_mutex_lock(&bus->lock);
}

/* Sync if a write is not yet durable (interval/never policies). Lock held. */
int esb__sync_if_needed(struct esb_bus *bus)
{
    if (!bus->unsynced) return 0;
    int rc = esb_wal_sync(bus->wal);
    bus->last_sync_ns = esb_mono_ns();
    if (rc < 0) {
        esb__fail_fatal(bus, rc, "fdatasync of the log");
        return rc;
    }
    bus->unsynced = 0;
    bus->stats.syncs++;
    return 0;
}

static void *writer_main(void *arg)
{
    esb_thread_name("esb-bus-write");
    struct esb_bus *bus = arg;
    pthread_mutex_lock(&bus->lock);
    for (;;) {
        uint64_t now = esb_mono_ns();
        uint64_t maint_due =
            bus->last_maint_ns + (uint64_t)bus->opts.compact_interval_ms * 1000000u;
        if (!bus->failed && now >= maint_due) {
            esb__maintain_locked(bus);
            bus->last_maint_ns = esb_mono_ns();
            if (bus->failed) call_fatal(bus);
            continue;
        }
        if (bus->opts.fsync == ESB_FSYNC_INTERVAL && bus->unsynced && !bus->failed) {
            uint64_t due = bus->last_sync_ns + (uint64_t)bus->opts.fsync_interval_ms * 1000000u;
            if (now >= due) {
                if (esb__sync_if_needed(bus) < 0) call_fatal(bus);
                continue;
            }
            if (due < maint_due) maint_due = due;
        }
        if (!bus->pending_head) {
            if (bus->closing) break;
            struct timespec ts;
            uint64_t wait_ms = (maint_due - now) / 1000000u + 1;
            esb_abstime_mono_ms(&ts, wait_ms);
            pthread_cond_timedwait(&bus->writer_cv, &bus->lock, &ts);
            continue;
        }
        if (bus->opts.fsync == ESB_FSYNC_ALWAYS && !bus->pending_eager && !bus->closing &&
            !bus->failed && bus->pending_n < ESB_BUS_LAZY_TXNS) {
            /* only lazy commits: let more join this batch's fdatasync */
            uint64_t due = bus->pending_first_ns + ESB_BUS_LAZY_US * 1000u;
            if (now < due) {
                struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
                                      .tv_nsec = (long)(due % 1000000000u)};
                pthread_cond_timedwait(&bus->writer_cv, &bus->lock, &ts);
                continue;
            }
        }
        struct esb_txn *list = bus->pending_head;
        bus->pending_head = bus->pending_tail = NULL;
        bus->pending_n = bus->pending_eager = 0;
        bus->next_batch++;
        if (bus->failed) {
            complete(bus, finish_list(bus, list, ESB_EFAILED));
            continue;
        }
        pthread_mutex_unlock(&bus->lock);
        int err = 0;
        int rc = write_batch(bus, list, &err);
        pthread_mutex_lock(&bus->lock);
        struct esb_txn *w = NULL;
        if (rc == 0) {
            for (struct esb_txn *t = list; t; t = t->next) {
                txn_apply(bus, t);
                if (!t->detached) bus->stats.commits++;
            }
            w = finish_list(bus, list, 0);
            pthread_cond_broadcast(&bus->ready_cv);
            if (++bus->batches_since_df >= 256) {
                bus->batches_since_df = 0;
                bus->free_bytes = esb_wal_free_bytes(bus->wal);
            }
        } else if (rc == FATAL_RC) {
            esb__fail_fatal(bus, err, "fdatasync or write of the log");
            w = finish_list(bus, list, ESB_EFAILED);
            struct esb_txn *w2 = finish_list(bus, bus->pending_head, ESB_EFAILED);
            bus->pending_head = bus->pending_tail = NULL;
            bus->pending_n = bus->pending_eager = 0;
            bus->next_batch++;
            pthread_cond_broadcast(&bus->ready_cv);
            complete(bus, w);
            complete(bus, w2);
            call_fatal(bus);
            continue;
        } else {
            esb_error("bus write failed dir=%s error=\"%s\"; batch not acknowledged", bus->dir,
                      esb_strerror(rc));
            w = finish_list(bus, list, rc);
        }
        complete(bus, w);
    }
    if (!bus->failed && esb__sync_if_needed(bus) < 0) call_fatal(bus);
    pthread_mutex_unlock(&bus->lock);
    return NULL;
}

/* ---- open / close ---- */

static int recover_visit(void *ctx, struct esb_wal_pos pos, uint8_t type, uint8_t flags,
                         const uint8_t *payload, uint32_t len)
{
    int rc = esb__apply(ctx, pos, type, flags, payload, len);
    if (rc < 0)
        esb_error("bus recovery skipped a malformed record type=%u at %020u.seg+%llu", type,
                  pos.seg, (unsigned long long)pos.off);
    return 0;
}

static void free_topic(void *v)
{
    struct topic *t = v;
    for (size_t i = 0; i < t->nsubs; i++) free(t->subs[i]);
    free(t->subs);
    free(t);
}

static void free_queue(void *v)
{
    esb__queue_free(v);
}

static void bus_free(struct esb_bus *bus)
{
    if (bus->completer_started) { /* after the writer: it drains what is left */
        pthread_mutex_lock(&bus->done_lock);
        bus->completer_stop = 1;
        pthread_cond_signal(&bus->done_cv);
        pthread_mutex_unlock(&bus->done_lock);
        pthread_join(bus->completer, NULL);
    }
    esb_wal_close(bus->wal);
    esb__strmap_free(&bus->queues, free_queue);
    esb__strmap_free(&bus->topics, free_topic);
    esb__marks_free(bus);
    free(bus->pending_keys);
    free(bus->segs);
    pthread_mutex_destroy(&bus->lock);
    pthread_cond_destroy(&bus->writer_cv);
    pthread_cond_destroy(&bus->commit_cv);
    pthread_cond_destroy(&bus->ready_cv);
    pthread_mutex_destroy(&bus->done_lock);
    pthread_cond_destroy(&bus->done_cv);
    free(bus->dir);
    free(bus);
}

int esb_bus_open(const struct esb_bus_opts *opts, struct esb_bus **out, struct esb_err *err)
{
    *out = NULL;
    if (!opts || !opts->dir || !*opts->dir)
        return esb_err_set(err, ESB_EINVAL, "bus: no directory given");
    struct esb_bus *bus = esb_calloc(1, sizeof(*bus));
    bus->opts = *opts;
    bus->dir = esb_strdup(opts->dir);
    bus->opts.dir = bus->dir;
    if (!bus->opts.fsync_interval_ms) bus->opts.fsync_interval_ms = DEFAULT_INTERVAL_MS;
    if (!bus->opts.compact_interval_ms) bus->opts.compact_interval_ms = DEFAULT_MAINT_MS;
    if (!bus->opts.io) bus->opts.io = esb_io_posix();
    atomic_store(&bus->next_seq, 1);
    bus->next_batch = 1;
    atomic_store(&bus->done_batch, 0);
    pthread_mutex_init(&bus->lock, NULL);
    esb_cond_init_mono(&bus->writer_cv);
    esb_cond_init_mono(&bus->commit_cv);
    esb_cond_init_mono(&bus->ready_cv);
    pthread_mutex_init(&bus->done_lock, NULL);
    pthread_cond_init(&bus->done_cv, NULL);

    struct esb_wal_opts wo = {.io = bus->opts.io,
                              .segment_size = bus->opts.segment_size,
                              .preallocate = bus->opts.preallocate};
    struct esb_wal_stats ws;
    bus->recovering = 1;
    int rc = esb_wal_open(bus->dir, &wo, recover_visit, bus, &bus->wal, &ws, err);
    bus->recovering = 0;
    if (rc < 0) {
        bus_free(bus);
        return rc;
    }
    esb__index_finish_recovery(bus);
    bus->stats.recovered_records = ws.records;
    bus->stats.recovered_corrupt = ws.corrupt;
    bus->stats.recovered_truncated_bytes = ws.truncated_bytes;
    const char *name;
    void *qv;
    for (size_t i = 0; (i = esb__strmap_next(&bus->queues, i, &name, &qv)) != 0;)
        bus->stats.recovered_entries += ((struct queue *)qv)->entries;
    bus->free_bytes = esb_wal_free_bytes(bus->wal);
    bus->last_maint_ns = bus->last_sync_ns = esb_mono_ns();
    if (ws.corrupt)
        esb_error("bus recovered WITH CORRUPTION dir=%s corrupt_regions=%llu corrupt_bytes=%llu "
                  "(see %s/quarantine)",
                  bus->dir, (unsigned long long)ws.corrupt, (unsigned long long)ws.corrupt_bytes,
                  bus->dir);
    rc = pthread_create(&bus->completer, NULL, completer_main, bus);
    if (rc != 0) {
        bus_free(bus);
        return esb_err_set(err, -rc, "bus: cannot start the completer thread: %s", strerror(rc));
    }
    bus->completer_started = 1;
    rc = pthread_create(&bus->writer, NULL, writer_main, bus);
    if (rc != 0) {
        bus_free(bus);
        return esb_err_set(err, -rc, "bus: cannot start the writer thread: %s", strerror(rc));
    }
    bus->writer_started = 1;
    *out = bus;
    return 0;
}

void esb_bus_close(struct esb_bus *bus)
{
    if (!bus) return;
    pthread_mutex_lock(&bus->lock);
    bus->closing = 1;
    pthread_cond_broadcast(&bus->writer_cv);
    pthread_cond_broadcast(&bus->ready_cv);
    while (bus->consumers > 0) {
        struct timespec ts;
        esb_abstime_mono_ms(&ts, 10);
        pthread_cond_broadcast(&bus->ready_cv);
        pthread_cond_timedwait(&bus->commit_cv, &bus->lock, &ts);
    }
    pthread_mutex_unlock(&bus->lock);
    if (bus->writer_started) pthread_join(bus->writer, NULL);
    bus_free(bus);
}

void esb_bus_get_stats(struct esb_bus *bus, struct esb_bus_stats *out)
{
    pthread_mutex_lock(&bus->lock);
    *out = bus->stats;
    out->marks = bus->nmarks;
    pthread_mutex_unlock(&bus->lock);
}

int esb_bus_failed(struct esb_bus *bus)
{
    pthread_mutex_lock(&bus->lock);
    int f = bus->failed;
    pthread_mutex_unlock(&bus->lock);
    return f;
}

void esb_bus_set_limits(struct esb_bus *bus, const char *queue, uint64_t max_entries,
                        uint64_t max_bytes)
{
    pthread_mutex_lock(&bus->lock);
    struct queue *q = esb__queue_get(bus, queue, 1);
    q->max_entries = max_entries;
    q->max_bytes = max_bytes;
    q->limits_set = 1;
    pthread_mutex_unlock(&bus->lock);
}

void esb_bus_subscribe(struct esb_bus *bus, const char *topic, const char *queue)
{
    pthread_mutex_lock(&bus->lock);
    struct topic *t = esb__strmap_get(&bus->topics, topic);
    if (!t) {
        t = esb_calloc(1, sizeof(*t));
        t->name = NULL;
        esb__strmap_put(&bus->topics, topic, t);
    }
    size_t i;
    for (i = 0; i < t->nsubs && strcmp(t->subs[i], queue) != 0; i++) {
    }
    if (i == t->nsubs) {
        t->subs = esb_realloc(t->subs, (t->nsubs + 1) * sizeof(*t->subs));
        t->subs[t->nsubs++] = esb_strdup(queue);
    }
    esb__queue_get(bus, queue, 1);
    pthread_mutex_unlock(&bus->lock);
}

void esb_bus_unsubscribe(struct esb_bus *bus, const char *topic, const char *queue)
{
    pthread_mutex_lock(&bus->lock);
    struct topic *t = esb__strmap_get(&bus->topics, topic);
    for (size_t i = 0; t && i < t->nsubs; i++) {
        if (strcmp(t->subs[i], queue) != 0) continue;
        free(t->subs[i]);
        t->subs[i] = t->subs[--t->nsubs];
        break;
    }
    pthread_mutex_unlock(&bus->lock);
}
