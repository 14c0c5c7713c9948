/* bus_index.c - the bus's in-memory indexes and the meaning of each record
 * type. The same esb__apply() runs for a record found during recovery and
 * for a record just made durable by the writer, so the state after a
 * restart is, by construction, the state before it (minus in-flight marks).
 *
 * Record payloads (little-endian; names are u16 length + bytes):
 *   MSG   u64 seq | u64 enq_ms | u16 n | n x target | message encoding
 *         target = name | u32 attempt | u64 not_before | u16 reason | u16 from
 *                  | u16 key (reason/from/key: lengths followed by bytes;
 *                  key is the ordering key, empty for none)
 *                  [| tries: the entry's attempt history]
 *   ACK   u64 seq | name
 *   RETRY u64 seq | name | u32 attempt | u64 not_before [| tries: the attempt
 *         that failed]
 *   DEAD  u64 seq | from name | dlq name | u32 attempt | u16 len | reason
 *         [| tries: the attempt that failed]
 *   DEDUP u64 expires_ms (0 = forget) | u16 len | key [| set: bus_marks.c]
 * The [| tries] parts (a tries block, bus_tries.c) are there when the record
 * has the flag ESB__REC_TRIES: format 2. Without it (format 1, written
 * before histories were kept) they are absent and a DEAD record's attempt
 * (or a dead letter's in a MSG relocation) counts from 0, so it is read as
 * attempt + 1: format 2 counts the attempts made. New records are always
 * format 2 (a MSG that is not a relocation has no history to carry, so it
 * stays format 1). */
#include "config.h"

#include <stdlib.h>

#include "bus_internal.h"
#include "log.h"
#include "msg.h"
#include "wal.h"

/* ---- queues ---- */

static int ready_less(const void *a, const void *b)
{
    return ((const struct ent *)a)->seq < ((const struct ent *)b)->seq;
}

static int waiting_less(const void *a, const void *b)
{
    const struct ent *x = a, *y = b;
    return x->not_before < y->not_before || (x->not_before == y->not_before && x->seq < y->seq);
}

static void ent_set_idx(void *item, size_t idx)
{
    ((struct ent *)item)->heap_idx = idx;
}

struct queue *esb__queue_get(struct esb_bus *bus, const char *name, int create)
{
    struct queue *q = esb__strmap_get(&bus->queues, name);
    if (q || !create) return q;
    q = esb_calloc(1, sizeof(*q));
    q->name = esb_strdup(name);
    q->ready.less = ready_less;
    q->ready.set_idx = ent_set_idx;
    q->waiting.less = waiting_less;
    q->waiting.set_idx = ent_set_idx;
    q->max_entries = bus->opts.queue_max_entries;
    q->max_bytes = bus->opts.queue_max_bytes;
    esb__strmap_put(&bus->queues, name, q);
    return q;
}

static void ent_free(struct ent *e)
{
    esb_msg_unref(e->msg);
    free(e->tries);
    free(e->reason);
    free(e->dead_from);
    free(e->key);
    free(e);
}

/* ---- ordering keys ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ? h : 1; /* 0 is the maps' empty key */
}

static struct keylist *keylist_get(struct queue *q, const char *key, int create)
{
    uint64_t h = hash_bytes(key, strlen(key));
    struct keylist *head = esb__u64map_get(&q->keys, h), *kl = head;
    while (kl && strcmp(kl->key, key) != 0) kl = kl->chain;
    if (kl || !create) return kl;
    kl = esb_calloc(1, sizeof(*kl));
    kl->key = esb_strdup(key);
    kl->chain = head;
    esb__u64map_put(&q->keys, h, kl);
    return kl;
}

static void keylist_free(struct queue *q, struct keylist *kl)
{
    uint64_t h = hash_bytes(kl->key, strlen(kl->key));
    struct keylist *head = esb__u64map_get(&q->keys, h), **pp = &head;
    while (*pp != kl) pp = &(*pp)->chain;
    *pp = kl->chain;
    if (head)
        esb__u64map_put(&q->keys, h, head);
    else
        esb__u64map_del(&q->keys, h);
    free(kl->key);
    free(kl);
}

/* Insert e into its key's list in seq order (usually at the tail). */
static void keylist_insert(struct queue *q, struct ent *e, const char *key)
{
    struct keylist *kl = keylist_get(q, key, 1);
    e->kl = kl;
    struct ent *after = kl->tail;
    while (after && after->seq > e->seq) after = after->kprev;
    e->kprev = after;
    e->knext = after ? after->knext : kl->head;
    if (e->knext)
        e->knext->kprev = e;
    else
        kl->tail = e;
    if (after)
        after->knext = e;
    else
        kl->head = e;
}

/* Take e out of its key's list; returns the new head if e was the head. */
static struct ent *keylist_remove(struct queue *q, struct ent *e)
{
    struct keylist *kl = e->kl;
    if (!kl) return NULL;
    int was_head = kl->head == e;
    if (e->kprev)
        e->kprev->knext = e->knext;
    else
        kl->head = e->knext;
    if (e->knext)
        e->knext->kprev = e->kprev;
    else
        kl->tail = e->kprev;
    e->kl = NULL;
    e->knext = e->kprev = NULL;
    struct ent *next = kl->head;
    if (!next) keylist_free(q, kl);
    return was_head ? next : NULL;
}

void esb__queue_free(struct queue *q)
{
    if (!q) return;
    uint64_t k;
    void *v;
    for (size_t i = 0; (i = esb__u64map_next(&q->ents, i, &k, &v)) != 0;) ent_free(v);
    esb__u64map_free(&q->ents);
    uint64_t h;
    void *kv;
    for (size_t i = 0; (i = esb__u64map_next(&q->keys, i, &h, &kv)) != 0;) {
        for (struct keylist *kl = kv, *next; kl; kl = next) {
            next = kl->chain;
            free(kl->key);
            free(kl);
        }
    }
    esb__u64map_free(&q->keys);
    esb__ring_free(&q->fresh);
    esb__heap_free(&q->ready);
    esb__heap_free(&q->waiting);
    free(q->name);
    free(q);
}

void esb__queue_push_ready(struct queue *q, struct ent *e)
{
    e->state = ENT_READY;
    if (e->seq > q->fresh_last) {
        e->in_ring = 1;
        e->heap_idx = (size_t)esb__ring_push(&q->fresh, e);
        q->fresh_last = e->seq;
    } else {
        e->in_ring = 0;
        esb__heap_push(&q->ready, e);
    }
}

void esb__queue_push_waiting(struct queue *q, struct ent *e)
{
    e->state = ENT_WAITING;
    esb__heap_push(&q->waiting, e);
}

struct ent *esb__queue_pop(struct queue *q, uint64_t now_ms)
{
    struct ent *w = esb__heap_top(&q->waiting);
    struct ent *e = NULL;
    if (w && w->not_before <= now_ms) {
        e = esb__heap_pop(&q->waiting);
    } else {
        struct ent *f = esb__ring_first(&q->fresh), *h = esb__heap_top(&q->ready);
        if (f && (!h || f->seq < h->seq)) {
            esb__ring_pop(&q->fresh);
            f->in_ring = 0;
            e = f;
        } else {
            e = esb__heap_pop(&q->ready);
        }
    }
    if (e) {
        e->state = ENT_INFLIGHT;
        q->inflight++;
    }
    return e;
}

uint64_t esb__queue_next_due(const struct queue *q)
{
    const struct ent *w = esb__heap_top(&q->waiting);
    return w ? w->not_before : UINT64_MAX;
}

void esb__queue_unlist(struct queue *q, struct ent *e)
{
    if (e->state == ENT_READY && e->in_ring) {
        esb__ring_clear(&q->fresh, e->heap_idx);
        e->in_ring = 0;
    } else if (e->state == ENT_READY) {
        esb__heap_remove(&q->ready, e->heap_idx);
    } else if (e->state == ENT_WAITING) {
        esb__heap_remove(&q->waiting, e->heap_idx);
    }
}

size_t esb__queue_ready(const struct queue *q)
{
    return q->fresh.n + q->ready.n;
}

/* Take e out of whatever structure holds it (not the map). */
static void ent_unlink(struct ent *e)
{
    struct queue *q = e->q;
    if (e->state == ENT_READY || e->state == ENT_WAITING)
        esb__queue_unlist(q, e);
    else if (e->state == ENT_PARKED)
        q->parked--;
    else
        q->inflight--;
}

/* ---- segment liveness ---- */

struct seglive *esb__seglive(struct esb_bus *bus, uint32_t seg)
{
    if (bus->nsegs == 0) {
        bus->seg_base = seg;
    } else if (seg < bus->seg_base) {
        size_t grow = bus->seg_base - seg;
        bus->segs = esb_realloc(bus->segs, (bus->nsegs + grow) * sizeof(*bus->segs));
        memmove(bus->segs + grow, bus->segs, bus->nsegs * sizeof(*bus->segs));
        memset(bus->segs, 0, grow * sizeof(*bus->segs));
        bus->nsegs += grow;
        bus->seg_base = seg;
    }
    size_t i = seg - bus->seg_base;
    if (i >= bus->nsegs) {
        bus->segs = esb_realloc(bus->segs, (i + 1) * sizeof(*bus->segs));
        memset(bus->segs + bus->nsegs, 0, (i + 1 - bus->nsegs) * sizeof(*bus->segs));
        bus->nsegs = i + 1;
    }
    return &bus->segs[i];
}

void esb__seglive_add(struct esb_bus *bus, uint32_t seg, int64_t entries, int64_t bytes)
{
    struct seglive *s = esb__seglive(bus, seg);
    if (!s) return;
    s->entries = (uint64_t)((int64_t)s->entries + entries);
    s->bytes = (uint64_t)((int64_t)s->bytes + bytes);
}

/* ---- record codec ---- */

void esb__rec_put(struct esb_buf *buf, uint8_t type, uint8_t flags, const struct iovec *parts,
                  int n)
{
    uint8_t hdr[ESB_WAL_HDR];
    esb_wal_header(hdr, type, flags, parts, n);
    if (esb_buf_add(buf, hdr, sizeof(hdr)) != 0) abort();
    for (int i = 0; i < n; i++)
        if (esb_buf_add(buf, parts[i].iov_base, parts[i].iov_len) != 0) abort();
}

/* A bounds-checked reader over a payload. */
struct rd {
    const uint8_t *p;
    size_t len, off;
    int bad;
};

static const uint8_t *rd_take(struct rd *r, size_t n)
{
    if (r->bad || n > r->len - r->off) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

static uint16_t rd_u16(struct rd *r)
{
    const uint8_t *p = rd_take(r, 2);
    return p ? esb_get_u16(p) : 0;
}

static uint32_t rd_u32(struct rd *r)
{
    const uint8_t *p = rd_take(r, 4);
    return p ? esb_get_u32(p) : 0;
}

static uint64_t rd_u64(struct rd *r)
{
    const uint8_t *p = rd_take(r, 8);
    return p ? esb_get_u64(p) : 0;
}

/* A length-prefixed string copied into out[outsz] (truncated if needed). */
static void rd_str(struct rd *r, size_t width, char *out, size_t outsz)
{
    size_t n = width == 2 ? rd_u16(r) : rd_u32(r);
    const uint8_t *p = rd_take(r, n);
    if (!p) {
        out[0] = '\0';
        return;
    }
    if (n >= outsz) n = outsz - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* A tries block (format 2 records): its start, and its length in *n. */
static const uint8_t *rd_tries(struct rd *r, size_t *n)
{
    *n = r->bad ? 0 : esb__tries_len(r->p + r->off, r->len - r->off);
    if (!*n) r->bad = 1;
    return rd_take(r, *n);
}

size_t esb__msg_body_offset(const uint8_t *p, uint32_t len, uint8_t flags)
{
    struct rd r = {.p = p, .len = len};
    rd_u64(&r);
    rd_u64(&r);
    uint16_t n = rd_u16(&r);
    for (uint16_t i = 0; i < n && !r.bad; i++) {
        rd_take(&r, rd_u16(&r));
        rd_u32(&r);
        rd_u64(&r);
        rd_take(&r, rd_u16(&r));
        rd_take(&r, rd_u16(&r));
        rd_take(&r, rd_u16(&r));
        size_t tn;
        if (flags & ESB__REC_TRIES) rd_tries(&r, &tn);
    }
    return r.bad ? 0 : r.off;
}

static struct ent *ent_new(struct esb_bus *bus, struct queue *q, uint64_t seq,
                           struct esb_wal_pos pos, uint32_t rec_len)
{
    struct ent *e = esb_calloc(1, sizeof(*e));
    e->seq = seq;
    e->q = q;
    e->pos = pos;
    e->rec_len = rec_len;
    esb__u64map_put(&q->ents, seq, e);
    q->entries++;
    q->bytes += rec_len;
    esb__seglive_add(bus, pos.seg, 1, rec_len);
    return e;
}

static void ent_place(struct esb_bus *bus, struct ent *e);

static void ent_drop(struct esb_bus *bus, struct ent *e)
{
    struct queue *q = e->q;
    struct ent *next = keylist_remove(q, e);
    if (next && next->state == ENT_PARKED && !bus->recovering) {
        q->parked--;
        ent_place(bus, next); /* the key's next entry may go now */
    }
    if (e->msg) bus->cache_bytes -= e->rec_len;
    esb__u64map_del(&q->ents, e->seq);
    q->entries--;
    q->bytes -= e->rec_len;
    esb__seglive_add(bus, e->pos.seg, -1, -(int64_t)e->rec_len);
    ent_free(e);
}

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = s && *s ? esb_strdup(s) : NULL;
}

/* Place an entry that is not in any structure according to its state. */
static void ent_place(struct esb_bus *bus, struct ent *e)
{
    if (bus->recovering) return; /* heaps are built once at the end */
    if (e->kl && e->kl->head != e) {
        e->state = ENT_PARKED; /* behind an earlier entry of its key */
        e->q->parked++;
        return;
    }
    if (e->not_before > 0)
        esb__queue_push_waiting(e->q, e);
    else
        esb__queue_push_ready(e->q, e);
}

static int apply_msg(struct esb_bus *bus, struct esb_wal_pos pos, uint8_t flags, const uint8_t *p,
                     uint32_t len)
{
    struct rd r = {.p = p, .len = len};
    uint64_t seq = rd_u64(&r), enq = rd_u64(&r);
    uint16_t n = rd_u16(&r);
    char name[ESB__MAX_QUEUE_NAME + 1], reason[ESB__MAX_REASON + 1], from[ESB__MAX_QUEUE_NAME + 1];
    char key[ESB__MAX_QUEUE_NAME + 1];
    uint64_t cur = atomic_load(&bus->next_seq);
    while (seq >= cur && !atomic_compare_exchange_weak(&bus->next_seq, &cur, seq + 1)) {
    }
    for (uint16_t i = 0; i < n; i++) {
        rd_str(&r, 2, name, sizeof(name));
        uint32_t attempt = rd_u32(&r);
        uint64_t not_before = rd_u64(&r);
        rd_str(&r, 2, reason, sizeof(reason));
        rd_str(&r, 2, from, sizeof(from));
        rd_str(&r, 2, key, sizeof(key));
        const uint8_t *tries = NULL;
        size_t tn = 0;
        if (flags & ESB__REC_TRIES)
            tries = rd_tries(&r, &tn);
        else if (from[0])
            attempt++; /* format 1: a dead letter's attempt counted from 0 */
        if (r.bad) return ESB_ECORRUPT;
        struct queue *q = esb__queue_get(bus, name, 1);
        struct ent *e = esb__u64map_get(&q->ents, seq);
        if (e) {
            /* A relocation: same entry, new place. State in memory is current. */
            if (!(flags & ESB__MSG_RELOC)) continue;
            esb__seglive_add(bus, e->pos.seg, -1, -(int64_t)e->rec_len);
            e->pos = pos;
            q->bytes = q->bytes - e->rec_len + len;
            e->rec_len = len;
            esb__seglive_add(bus, pos.seg, 1, len);
            continue;
        }
        if ((flags & ESB__MSG_RELOC) && !bus->recovering) continue;
        e = ent_new(bus, q, seq, pos, len);
        e->attempt = attempt;
        e->not_before = not_before;
        e->enq_ms = enq;
        set_str(&e->reason, reason);
        set_str(&e->dead_from, from);
        if (tries) esb__tries_add(&e->tries, tries, tn);
        if (key[0]) {
            set_str(&e->key, key);
            keylist_insert(q, e, key);
        }
        e->state = not_before ? ENT_WAITING : ENT_READY;
        ent_place(bus, e);
    }
    return 0;
}

static struct ent *find_ent(struct esb_bus *bus, const char *queue, uint64_t seq)
{
    struct queue *q = esb__queue_get(bus, queue, 0);
    return q ? esb__u64map_get(&q->ents, seq) : NULL;
}

int esb__apply(struct esb_bus *bus, struct esb_wal_pos pos, uint8_t type, uint8_t flags,
               const uint8_t *p, uint32_t len)
{
    struct rd r = {.p = p, .len = len};
    char name[ESB__MAX_QUEUE_NAME + 1], dlq[ESB__MAX_QUEUE_NAME + 1];
    char reason[ESB__MAX_REASON + 1];
    struct ent *e;
    uint64_t seq;

    switch (type) {
    case ESB_REC_MSG:
        return apply_msg(bus, pos, flags, p, len);
    case ESB_REC_ACK:
        seq = rd_u64(&r);
        rd_str(&r, 2, name, sizeof(name));
        if (r.bad) return ESB_ECORRUPT;
        if ((e = find_ent(bus, name, seq)) != NULL) {
            if (!bus->recovering) ent_unlink(e);
            ent_drop(bus, e);
        }
        return 0;
    case ESB_REC_RETRY: {
        seq = rd_u64(&r);
        rd_str(&r, 2, name, sizeof(name));
        uint32_t attempt = rd_u32(&r);
        uint64_t not_before = rd_u64(&r);
        const uint8_t *tries = NULL;
        size_t tn = 0;
        if (flags & ESB__REC_TRIES) tries = rd_tries(&r, &tn);
        if (r.bad) return ESB_ECORRUPT;
        if ((e = find_ent(bus, name, seq)) != NULL) {
            if (!bus->recovering) ent_unlink(e);
            e->attempt = attempt;
            if (tries) esb__tries_add(&e->tries, tries, tn);
            e->pending = 0;
            e->not_before = not_before ? not_before : 1;
            e->state = ENT_WAITING;
            ent_place(bus, e);
        }
        return 0;
    }
    case ESB_REC_DEAD: {
        seq = rd_u64(&r);
        rd_str(&r, 2, name, sizeof(name));
        rd_str(&r, 2, dlq, sizeof(dlq));
        uint32_t attempt = rd_u32(&r);
        rd_str(&r, 2, reason, sizeof(reason));
        const uint8_t *tries = NULL;
        size_t tn = 0;
        if (flags & ESB__REC_TRIES)
            tries = rd_tries(&r, &tn);
        else
            attempt++; /* format 1: counted from 0 */
        if (r.bad) return ESB_ECORRUPT;
        if ((e = find_ent(bus, name, seq)) == NULL) return 0;
        if (!bus->recovering) ent_unlink(e);
        struct esb_wal_pos at = e->pos;
        uint32_t rec_len = e->rec_len;
        uint64_t enq = e->enq_ms;
        uint8_t *history = e->tries; /* moves with the entry */
        e->tries = NULL;
        ent_drop(bus, e);
        struct queue *q = esb__queue_get(bus, dlq, 1);
        if (esb__u64map_get(&q->ents, seq)) {
            free(history);
            return 0;
        }
        e = ent_new(bus, q, seq, at, rec_len);
        e->attempt = attempt;
        e->enq_ms = enq;
        e->tries = history;
        if (tries) esb__tries_add(&e->tries, tries, tn);
        set_str(&e->reason, reason);
        set_str(&e->dead_from, name);
        e->state = ENT_READY;
        ent_place(bus, e);
        return 0;
    }
    case ESB_REC_DEDUP:
        return esb__apply_mark(bus, pos, flags, p, len);
    case ESB_REC_AGG:
        return 0; /* reserved for the aggregator */
    default:
        return ESB_ECORRUPT;
    }
}

void esb__index_finish_recovery(struct esb_bus *bus)
{
    const char *name;
    void *v;
    for (size_t i = 0; (i = esb__strmap_next(&bus->queues, i, &name, &v)) != 0;) {
        struct queue *q = v;
        uint64_t k;
        void *ev;
        for (size_t j = 0; (j = esb__u64map_next(&q->ents, j, &k, &ev)) != 0;) {
            struct ent *e = ev;
            if (e->kl && e->kl->head != e) {
                e->state = ENT_PARKED;
                q->parked++;
            } else if (e->not_before)
                esb__queue_push_waiting(q, e);
            else
                esb__queue_push_ready(q, e);
        }
    }
}
