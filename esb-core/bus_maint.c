/* bus_maint.c - bus maintenance on the writer thread: delete the resolved
 * prefix of segments and copy long-lived entries forward (compaction). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "bus_internal.h"
#include "log.h"
#include "msg.h"

#define COMPACT_MAX_BYTES (16u * 1024 * 1024) /* copied forward per pass */

/* ---- maintenance: delete resolved segments, compact the oldest ---- */

static int cmp_ent_seq(const void *a, const void *b)
{
    const struct ent *x = *(struct ent *const *)a, *y = *(struct ent *const *)b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Delete the longest prefix of closed segments with no live entry. Only a
 * prefix: a later segment may hold the acks of an earlier one's entries. */
static void delete_resolved(struct esb_bus *bus)
{
    for (;;) {
        uint32_t oldest = esb_wal_oldest(bus->wal);
        if (oldest == esb_wal_active(bus->wal)) return;
        struct seglive *s = oldest >= bus->seg_base && oldest - bus->seg_base < bus->nsegs
                                ? &bus->segs[oldest - bus->seg_base]
                                : NULL;
        if (s && s->entries) return;
        if (esb__sync_if_needed(bus) < 0) return;
        int rc = esb_wal_delete_oldest(bus->wal);
        if (rc < 0) {
            esb_error("bus cannot delete resolved segment %020u.seg in %s: %s", oldest, bus->dir,
                      esb_strerror(rc));
            return;
        }
        if (s) {
            memmove(bus->segs, bus->segs + 1, (bus->nsegs - 1) * sizeof(*bus->segs));
            bus->nsegs--;
            bus->seg_base++;
        }
        bus->stats.segments_deleted++;
        esb_debug("bus deleted resolved segment %020u.seg", oldest);
    }
}

/* Live entries of segment seg that no pending transaction touches, by seq. */
static struct ent **collect_segment(struct esb_bus *bus, uint32_t seg, size_t *count)
{
    struct ent **v = NULL;
    size_t n = 0, cap = 0;
    const char *name;
    void *qv;
    for (size_t i = 0; (i = esb__strmap_next(&bus->queues, i, &name, &qv)) != 0;) {
        struct queue *q = qv;
        uint64_t k;
        void *ev;
        for (size_t j = 0; (j = esb__u64map_next(&q->ents, j, &k, &ev)) != 0;) {
            struct ent *e = ev;
            if (e->pos.seg != seg || e->pending) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                v = esb_realloc(v, cap * sizeof(*v));
            }
            v[n++] = e;
        }
    }
    if (n) qsort(v, n, sizeof(*v), cmp_ent_seq);
    *count = n;
    return v;
}

/* Copy the live entries of the oldest closed segment forward, so that it
 * can be deleted, when less than half of it is still live. The copies are
 * queued at the head of the pending list: anything committed later lands
 * after them in the log. */
static void compact_oldest(struct esb_bus *bus)
{
    uint32_t oldest = esb_wal_oldest(bus->wal);
    if (oldest == esb_wal_active(bus->wal) || oldest < bus->seg_base) return;
    struct seglive *s = esb__seglive(bus, oldest);
    if (!s->entries || s->bytes * 2 >= esb_wal_segment_bytes(bus->wal, oldest)) return;

    size_t n;
    struct ent **v = collect_segment(bus, oldest, &n);
    struct esb_txn *t = esb_txn_new();
    t->detached = 1;
    struct esb_buf rec, p;
    esb_buf_init(&rec, ESB_WAL_MAX_PAYLOAD);
    esb_buf_init(&p, SIZE_MAX);
    for (size_t i = 0; i < n && t->buf.len < COMPACT_MAX_BYTES;) {
        size_t j = i;
        while (j < n && v[j]->seq == v[i]->seq) j++;
        uint8_t type, flags = 0;
        /* The writer is the only thread that applies records, so these
         * entries stay valid while we read with the lock held. */
        int rc = esb_wal_read(bus->wal, v[i]->pos, &rec, &type, &flags);
        size_t body = rc == 0 && type == ESB_REC_MSG
                          ? esb__msg_body_offset(rec.data, (uint32_t)rec.len, flags)
                          : 0;
        if (!body) {
            esb_error("bus compaction cannot read entry seq=%llu at %020u.seg+%llu: %s",
                      (unsigned long long)v[i]->seq, v[i]->pos.seg,
                      (unsigned long long)v[i]->pos.off, esb_strerror(rc < 0 ? rc : ESB_ECORRUPT));
            i = j;
            continue;
        }
        p.len = 0;
        esb__put_u64(&p, v[i]->seq);
        esb__put_u64(&p, v[i]->enq_ms);
        uint8_t l[2];
        esb_put_u16(l, (uint16_t)(j - i));
        if (esb_buf_add(&p, l, 2)) abort();
        for (size_t k = i; k < j; k++) {
            esb__put_name(&p, v[k]->q->name);
            esb__put_u32(&p, v[k]->attempt);
            esb__put_u64(&p, v[k]->not_before);
            esb__put_reason(&p, v[k]->reason);
            esb__put_reason(&p, v[k]->dead_from);
            esb__put_name(&p, v[k]->key ? v[k]->key : "");
            esb__tries_put(&p, v[k]->tries);
        }
        struct iovec parts[2] = {{p.data, p.len}, {rec.data + body, rec.len - body}};
        esb__rec_put(&t->buf, ESB_REC_MSG, ESB__MSG_RELOC | ESB__REC_TRIES, parts, 2);
        bus->stats.entries_relocated += j - i;
        i = j;
    }
    /* Unexpired marks in the segment move forward too. */
    uint64_t h;
    void *mv;
    for (size_t i = 0; (i = esb__u64map_next(&bus->marks, i, &h, &mv)) != 0;) {
        for (struct mark *m = mv; m; m = m->next) {
            if (m->pos.seg != oldest) continue;
            p.len = 0;
            uint8_t flags;
            esb__mark_copy(&p, m, &flags);
            struct iovec iov = {p.data, p.len};
            esb__rec_put(&t->buf, ESB_REC_DEDUP, flags, &iov, 1);
        }
    }
    esb_buf_free(&rec);
    esb_buf_free(&p);
    free(v);
    if (t->buf.len == 0) {
        esb_txn_free(t);
        return;
    }
    esb_debug("bus compaction copies %zu bytes forward from %020u.seg", t->buf.len, oldest);
    esb__pending_push(bus, t, 1);
}

void esb__maintain_locked(struct esb_bus *bus)
{
    int rc = esb_wal_check(bus->wal);
    if (rc < 0) {
        /* Whatever was acknowledged since is in a file no restart finds:
         * stop acknowledging at once. */
        esb__fail_fatal(bus, rc,
                        rc == -ENOENT ? "the active log segment was removed from the bus directory"
                                      : "checking the active log segment");
        return;
    }
    bus->free_bytes = esb_wal_free_bytes(bus->wal);
    esb__marks_sweep(bus, esb_now_ms());
    esb__marksets_report(bus, esb_now_ms());
    delete_resolved(bus);
    if (!bus->failed) compact_oldest(bus);
}

void esb_bus_maintain(struct esb_bus *bus)
{
    pthread_mutex_lock(&bus->lock);
    bus->last_maint_ns = 0; /* due now */
    pthread_cond_signal(&bus->writer_cv);
    pthread_mutex_unlock(&bus->lock);
}
