/* bus_consume.c - taking entries from queues, releasing them, and
 * inspecting queues without consuming. */
#include "config.h"

#include <stdlib.h>
#include <time.h>

#include "bus_internal.h"
#include "log.h"
#include "msg.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- consuming ---- */

static _Atomic unsigned rr_counter;

/* Earliest due time of the waiting entries of the queues, in wall ms. */
static int wait_ready(struct esb_bus *bus, uint64_t next_due_ms, int timeout_ms,
                      const struct timespec *deadline)
{
    struct timespec ts;
    if (next_due_ms != UINT64_MAX) {
        uint64_t now = esb_now_ms();
        esb_abstime_mono_ms(&ts, next_due_ms > now ? next_due_ms - now : 0);
        if (timeout_ms >= 0 && (deadline->tv_sec < ts.tv_sec ||
                                (deadline->tv_sec == ts.tv_sec && deadline->tv_nsec < ts.tv_nsec)))
            ts = *deadline;
    } else if (timeout_ms >= 0) {
        ts = *deadline;
    } else {
        return pthread_cond_wait(&bus->ready_cv, &bus->lock);
    }
    return pthread_cond_timedwait(&bus->ready_cv, &bus->lock, &ts);
}

static int deadline_passed(const struct timespec *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > d->tv_sec || (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

/* Each consuming thread reads records into one buffer it keeps (a message
 * not in the cache costs a read, not also an 8 KiB malloc and free); one
 * that grew past READ_KEEP for a big message is freed after use. */
#define READ_KEEP (64 * 1024)

static pthread_key_t read_key;
static pthread_once_t read_once = PTHREAD_ONCE_INIT;

static void read_buf_free(void *p)
{
    esb_buf_free(p);
    free(p);
}

static void read_key_make(void)
{
    (void)pthread_key_create(&read_key, read_buf_free);
}

static struct esb_buf *read_buf(void)
{
    (void)pthread_once(&read_once, read_key_make);
    struct esb_buf *b = pthread_getspecific(read_key);
    if (!b) {
        b = esb_malloc(sizeof(*b));
        if (pthread_setspecific(read_key, b) != 0) {
            free(b);
            return NULL;
        }
        esb_buf_init(b, ESB_WAL_MAX_PAYLOAD + ESB_WAL_HDR + 4096);
    }
    return b;
}

/* Read and decode the message of entry seq of q; the lock is not held.
 * The position is looked up for every try: compaction may move it. */
static struct esb_msg *load_msg(struct esb_bus *bus, struct queue *q, uint64_t seq,
                                struct esb_err *err)
{
    struct esb_buf own, *kept = read_buf(), *rec = kept ? kept : &own;
    if (!kept) esb_buf_init(&own, ESB_WAL_MAX_PAYLOAD + ESB_WAL_HDR + 4096);
    struct esb_msg *m = NULL;
    for (int tries = 0; tries < 3 && !m; tries++) {
        pthread_mutex_lock(&bus->lock);
        struct ent *e = esb__u64map_get(&q->ents, seq);
        struct esb_wal_pos pos = e ? e->pos : (struct esb_wal_pos){0, 0};
        pthread_mutex_unlock(&bus->lock);
        if (!e) {
            esb_err_set(err, ESB_ENOTFOUND, "entry %llu of %s resolved meanwhile",
                        (unsigned long long)seq, q->name);
            break;
        }
        uint8_t type, flags = 0;
        int rc = esb_wal_read(bus->wal, pos, rec, &type, &flags);
        if (rc < 0) {
            esb_err_set(err, rc, "reading %020u.seg+%llu: %s", pos.seg, (unsigned long long)pos.off,
                        esb_strerror(rc));
            continue;
        }
        size_t body =
            type == ESB_REC_MSG ? esb__msg_body_offset(rec->data, (uint32_t)rec->len, flags) : 0;
        if (!body) {
            esb_err_set(err, ESB_ECORRUPT, "record at %020u.seg+%llu is not a message", pos.seg,
                        (unsigned long long)pos.off);
            continue;
        }
        m = esb_msg_decode(rec->data + body, rec->len - body, err);
    }
    if (!kept || rec->cap > READ_KEEP) esb_buf_free(rec);
    return m;
}

/* Fill pub from e (lock held): seq, queue, attempt, times, reason, origin
 * and history, copied (pub.msg is not loaded here). */
static void entry_fill(struct esb_entry *pub, const struct ent *e)
{
    pub->seq = e->seq;
    pub->queue = e->q->name;
    pub->attempt = e->attempt;
    pub->enqueued_ms = e->enq_ms;
    pub->reason = e->reason ? esb_strdup(e->reason) : NULL;
    pub->dead_from = e->dead_from ? esb_strdup(e->dead_from) : NULL;
    pub->tries = esb__tries_decode(e->tries, &pub->ntries);
}

/* What entry_fill copied. */
static void entry_clear(struct esb_entry *pub)
{
    free((char *)pub->reason);
    free((char *)pub->dead_from);
    free((struct esb_try *)pub->tries);
}

/* e was just taken (in flight) with the lock held: build the consumer's
 * entry, release the lock and load the message. */
static int finish_take(struct esb_bus *bus, struct ent *e, struct esb_entry **out)
{
    struct entry_impl *ei = esb_calloc(1, sizeof(*ei));
    ei->bus = bus;
    ei->ent = e;
    entry_fill(&ei->pub, e);
    ei->pub.internal__ = ei;
    struct esb_msg *cached = e->msg; /* the first consumer takes it */
    if (cached) {
        e->msg = NULL;
        bus->cache_bytes -= e->rec_len;
        bus->stats.cache_hits++;
    }
    pthread_mutex_unlock(&bus->lock);

    struct esb_err err = {0};
    ei->pub.msg = cached ? cached : load_msg(bus, e->q, e->seq, &err);
    if (!ei->pub.msg) {
        /* Never drop it: park it for a minute and say so loudly. */
        esb_error("bus cannot read entry queue=%s seq=%llu: %s; parked for 60s", ei->pub.queue,
                  (unsigned long long)ei->pub.seq, err.msg);
        pthread_mutex_lock(&bus->lock);
        e->q->inflight--;
        e->not_before = esb_now_ms() + 60000;
        esb__queue_push_waiting(e->q, e);
        pthread_mutex_unlock(&bus->lock);
        ei->resolved = 1;
        esb_entry_free(&ei->pub);
        return ESB_ECORRUPT;
    }
    *out = &ei->pub;
    return 0;
}

int esb_bus_consume_any(struct esb_bus *bus, const char *const *queues, size_t n, int timeout_ms,
                        struct esb_entry **out)
{
    struct timespec deadline;
    if (timeout_ms >= 0) esb_abstime_mono_ms(&deadline, (uint64_t)timeout_ms);
    size_t start = n ? atomic_fetch_add(&rr_counter, 1) % n : 0;
    struct ent *e = NULL;
    int rc = 0;
    *out = NULL;
    pthread_mutex_lock(&bus->lock);
    bus->consumers++;
    for (;;) {
        if (bus->closing) {
            rc = ESB_ECLOSED;
            break;
        }
        if (bus->failed) {
            rc = ESB_EFAILED;
            break;
        }
        uint64_t now = esb_now_ms(), next_due = UINT64_MAX;
        for (size_t k = 0; k < n && !e; k++) {
            struct queue *q = esb__queue_get(bus, queues[(start + k) % n], 1);
            e = esb__queue_pop(q, now);
            uint64_t d = esb__queue_next_due(q);
            if (d < next_due) next_due = d;
        }
        if (e) break;
        if (timeout_ms == 0 || (timeout_ms > 0 && deadline_passed(&deadline))) {
            rc = ESB_ETIMEDOUT;
            break;
        }
        wait_ready(bus, next_due, timeout_ms, &deadline);
    }
    bus->consumers--;
    if (bus->closing) pthread_cond_broadcast(&bus->commit_cv);
    if (!e) {
        pthread_mutex_unlock(&bus->lock);
        return rc;
    }
    return finish_take(bus, e, out);
}

int esb_bus_take(struct esb_bus *bus, const char *queue, uint64_t seq, struct esb_entry **out)
{
    *out = NULL;
    pthread_mutex_lock(&bus->lock);
    struct queue *q = esb__queue_get(bus, queue, 0);
    struct ent *e = q ? esb__u64map_get(&q->ents, seq) : NULL;
    int rc = !e                                                                 ? ESB_ENOTFOUND
             : e->state == ENT_INFLIGHT || e->state == ENT_PARKED || e->pending ? ESB_EBUSY
                                                                                : 0;
    if (rc == 0 && bus->failed) rc = ESB_EFAILED;
    if (rc < 0) {
        pthread_mutex_unlock(&bus->lock);
        return rc;
    }
    esb__queue_unlist(q, e);
    e->state = ENT_INFLIGHT;
    q->inflight++;
    return finish_take(bus, e, out);
}

int esb_bus_consume(struct esb_bus *bus, const char *queue, int timeout_ms, struct esb_entry **out)
{
    return esb_bus_consume_any(bus, &queue, 1, timeout_ms, out);
}

void esb_entry_free(struct esb_entry *pub)
{
    if (!pub) return;
    struct entry_impl *ei = (struct entry_impl *)pub;
    if (!ei->resolved && ei->ent) {
        struct esb_bus *bus = ei->bus;
        pthread_mutex_lock(&bus->lock);
        struct ent *e = ei->ent;
        if (e->state == ENT_INFLIGHT && !e->pending) {
            e->q->inflight--;
            if (e->not_before > esb_now_ms())
                esb__queue_push_waiting(e->q, e);
            else
                esb__queue_push_ready(e->q, e);
            pthread_cond_broadcast(&bus->ready_cv);
        }
        pthread_mutex_unlock(&bus->lock);
    }
    esb_msg_unref(pub->msg);
    entry_clear(pub);
    free(ei);
}

/* ---- inspection ---- */

static void queue_info(const struct queue *q, struct esb_queue_info *out)
{
    out->name = q->name;
    out->entries = q->entries;
    out->inflight = q->inflight;
    /* "waiting" is a retry not yet due; a due one counts as ready. */
    uint64_t now = esb_now_ms(), due = 0;
    for (size_t i = 0; i < q->waiting.n; i++)
        if (((const struct ent *)q->waiting.items[i])->not_before <= now) due++;
    out->waiting = q->waiting.n - due + q->parked;
    out->ready = esb__queue_ready(q) + due;
    out->bytes = q->bytes;
}

void esb_bus_queues(struct esb_bus *bus, void (*fn)(void *ctx, const struct esb_queue_info *q),
                    void *ctx)
{
    pthread_mutex_lock(&bus->lock);
    const char *name;
    void *v;
    for (size_t i = 0; (i = esb__strmap_next(&bus->queues, i, &name, &v)) != 0;) {
        struct esb_queue_info info;
        queue_info(v, &info);
        fn(ctx, &info);
    }
    pthread_mutex_unlock(&bus->lock);
}

int esb_bus_queue_info(struct esb_bus *bus, const char *queue, struct esb_queue_info *out)
{
    pthread_mutex_lock(&bus->lock);
    struct queue *q = esb__queue_get(bus, queue, 0);
    if (q) queue_info(q, out);
    pthread_mutex_unlock(&bus->lock);
    return q ? 0 : ESB_ENOTFOUND;
}

int esb_bus_browse(struct esb_bus *bus, const char *queue,
                   int (*fn)(void *ctx, const struct esb_entry *e), void *ctx)
{
    pthread_mutex_lock(&bus->lock);
    struct queue *q = esb__queue_get(bus, queue, 0);
    if (!q) {
        pthread_mutex_unlock(&bus->lock);
        return ESB_ENOTFOUND;
    }
    size_t n = 0;
    uint64_t k;
    void *v;
    uint64_t *seqs = esb_malloc((q->entries ? q->entries : 1) * sizeof(*seqs));
    for (size_t i = 0; (i = esb__u64map_next(&q->ents, i, &k, &v)) != 0;) seqs[n++] = k;
    pthread_mutex_unlock(&bus->lock);
    if (n) qsort(seqs, n, sizeof(*seqs), cmp_u64);
    int visited = 0;
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&bus->lock);
        struct ent *e = esb__u64map_get(&q->ents, seqs[i]);
        struct esb_entry pub = {0};
        if (e) entry_fill(&pub, e);
        pthread_mutex_unlock(&bus->lock);
        if (!e) continue; /* resolved meanwhile */
        struct esb_err err;
        pub.msg = load_msg(bus, q, seqs[i], &err);
        int stop = 0;
        if (pub.msg) {
            stop = fn(ctx, &pub);
            visited++;
        }
        esb_msg_unref(pub.msg);
        entry_clear(&pub);
        if (stop) break;
    }
    free(seqs);
    return visited;
}
