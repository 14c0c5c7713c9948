/* bus_txn.c - building transactions: appends (records encoded now, their
 * seq and CRC sealed at commit), acks, retries, dead-letters and marks.
 * See bus.h; the commit path is in bus.c. */
#include "config.h"

#include <stdlib.h>

#include "bus_internal.h"
#include "crc32c.h"
#include "msg.h"

/* ---- transactions ---- */

struct esb_txn *esb_txn_new(void)
{
    struct esb_txn *t = esb_calloc(1, sizeof(*t));
    esb_buf_init(&t->buf, SIZE_MAX);
    return t;
}

void esb_txn_set_lazy(struct esb_txn *t)
{
    t->lazy = 1;
}

void esb_txn_set_quick(struct esb_txn *t)
{
    t->quick = 1;
}

size_t esb_txn_size(const struct esb_txn *t)
{
    return t->buf.len;
}

void esb_txn_free(struct esb_txn *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->nops; i++) {
        for (size_t j = 0; j < t->ops[i].nqueues; j++) free(t->ops[i].queues[j]);
        free(t->ops[i].queues);
        free(t->ops[i].key);
        esb_msg_unref(t->ops[i].msg);
    }
    free(t->ops);
    free(t->recs);
    esb_buf_free(&t->buf);
    free(t);
}

static struct txn_op *txn_op(struct esb_txn *t, enum txn_op_kind kind)
{
    if (t->nops == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 4;
        t->ops = esb_realloc(t->ops, t->cap * sizeof(*t->ops));
    }
    struct txn_op *op = &t->ops[t->nops++];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    return op;
}

/* Add a record to t; its header (ESB_WAL_F_MORE, CRC) is finished by
 * txn_seal. Returns the record's offset in t->buf. */
static size_t txn_rec(struct esb_txn *t, uint8_t type, uint8_t flags, const void *payload,
                      size_t len)
{
    uint8_t hdr[ESB_WAL_HDR] = {0};
    size_t off = t->buf.len;
    esb_put_u32(hdr, ESB_WAL_MAGIC);
    esb_put_u32(hdr + 8, (uint32_t)len);
    hdr[12] = type;
    hdr[13] = flags;
    if (esb_buf_add(&t->buf, hdr, sizeof(hdr)) || esb_buf_add(&t->buf, payload, len)) abort();
    if (t->nrecs == t->cap_recs) {
        t->cap_recs = t->cap_recs ? t->cap_recs * 2 : 4;
        t->recs = esb_realloc(t->recs, t->cap_recs * sizeof(*t->recs));
    }
    t->recs[t->nrecs++] = off;
    return off;
}

/* The bus a transaction's appends draw seqs from is only known at commit,
 * so appends are encoded with seq 0 and sealed (seq + CRC) in commit. */
void esb_txn_append(struct esb_txn *t, const char *const *queues, size_t n, const struct esb_msg *m)
{
    esb_txn_append_keyed(t, queues, n, m, NULL);
}

void esb_txn_append_keyed(struct esb_txn *t, const char *const *queues, size_t n,
                          const struct esb_msg *m, const char *key)
{
    if (n == 0) return;
    struct esb_buf p;
    esb_buf_init(&p, SIZE_MAX);
    esb__put_u64(&p, 0); /* seq, patched at commit */
    esb__put_u64(&p, esb_now_ms());
    uint8_t l[2];
    esb_put_u16(l, (uint16_t)n);
    if (esb_buf_add(&p, l, 2)) abort();
    struct txn_op *op = txn_op(t, OP_APPEND);
    op->msg = esb_msg_ref((struct esb_msg *)m); /* shared now: immutable (msg.h) */
    op->queues = esb_calloc(n, sizeof(char *));
    op->nqueues = n;
    for (size_t i = 0; i < n; i++) {
        op->queues[i] = esb_strdup(queues[i]);
        esb__put_name(&p, queues[i]);
        esb__put_u32(&p, 0);
        esb__put_u64(&p, 0);
        esb__put_reason(&p, NULL);
        esb__put_reason(&p, NULL);
        esb__put_name(&p, key ? key : "");
    }
    size_t hdr = p.len, sz = esb_msg_encoded_size(m);
    if (esb_buf_reserve(&p, hdr + sz)) abort();
    p.len += esb_msg_encode(m, p.data + hdr);
    op->bytes = (uint32_t)p.len;
    /* The seq and the CRC are filled in at commit (txn_seal). */
    op->rec_off = txn_rec(t, ESB_REC_MSG, 0, p.data, p.len);
    esb_buf_free(&p);
    t->has_append = 1;
}

void esb_txn_publish(struct esb_txn *t, struct esb_bus *bus, const char *topic,
                     const struct esb_msg *m)
{
    pthread_mutex_lock(&bus->lock);
    struct topic *tp = esb__strmap_get(&bus->topics, topic);
    size_t n = tp ? tp->nsubs : 0;
    char **subs = esb_calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) subs[i] = esb_strdup(tp->subs[i]);
    pthread_mutex_unlock(&bus->lock);
    esb_txn_append(t, (const char *const *)subs, n, m);
    for (size_t i = 0; i < n; i++) free(subs[i]);
    free(subs);
}

static void txn_resolve(struct esb_txn *t, const struct esb_entry *pub, uint8_t type, uint8_t flags,
                        struct esb_buf *payload)
{
    struct txn_op *op = txn_op(t, OP_RESOLVE);
    op->e = (struct entry_impl *)pub;
    txn_rec(t, type, flags, payload->data, payload->len);
    esb_buf_free(payload);
}

void esb_txn_ack(struct esb_txn *t, const struct esb_entry *e)
{
    struct esb_buf p;
    esb_buf_init(&p, SIZE_MAX);
    esb__put_u64(&p, e->seq);
    esb__put_name(&p, e->queue);
    txn_resolve(t, e, ESB_REC_ACK, 0, &p);
}

void esb_txn_retry(struct esb_txn *t, const struct esb_entry *e, uint64_t not_before_ms,
                   const struct esb_try *failed)
{
    struct esb_buf p;
    esb_buf_init(&p, SIZE_MAX);
    esb__put_u64(&p, e->seq);
    esb__put_name(&p, e->queue);
    esb__put_u32(&p, e->attempt + 1);
    esb__put_u64(&p, not_before_ms ? not_before_ms : 1);
    esb__tries_put_one(&p, failed);
    txn_resolve(t, e, ESB_REC_RETRY, ESB__REC_TRIES, &p);
}

void esb_txn_dead(struct esb_txn *t, const struct esb_entry *e, const char *dlq, const char *reason,
                  const struct esb_try *failed)
{
    struct esb_buf p;
    esb_buf_init(&p, SIZE_MAX);
    esb__put_u64(&p, e->seq);
    esb__put_name(&p, e->queue);
    esb__put_name(&p, dlq);
    esb__put_u32(&p, e->attempt + 1); /* format 2: the attempts made, this one included */
    esb__put_reason(&p, reason);
    esb__tries_put_one(&p, failed);
    txn_resolve(t, e, ESB_REC_DEAD, ESB__REC_TRIES, &p);
}

static void txn_mark(struct esb_txn *t, const char *key, uint64_t expires_ms, size_t set_len,
                     uint32_t max_keys)
{
    struct esb_buf p;
    esb_buf_init(&p, SIZE_MAX);
    uint8_t flags = esb__mark_payload(&p, key, expires_ms, set_len, 0, max_keys);
    txn_rec(t, ESB_REC_DEDUP, flags, p.data, p.len);
    esb_buf_free(&p);
}

void esb_txn_mark(struct esb_txn *t, const char *key, uint64_t expires_ms)
{
    txn_mark(t, key, expires_ms, 0, 0);
}

void esb_txn_mark_unique_bounded(struct esb_txn *t, const char *key, size_t set_len,
                                 uint32_t max_keys, uint64_t expires_ms)
{
    struct txn_op *op = txn_op(t, OP_UNIQUE);
    op->key = esb_strndup(key, strnlen(key, ESB__MAX_MARK_KEY));
    txn_mark(t, key, expires_ms, set_len, max_keys);
}

void esb_txn_mark_unique(struct esb_txn *t, const char *key, uint64_t expires_ms)
{
    esb_txn_mark_unique_bounded(t, key, 0, 0, expires_ms);
}

int esb__pending_key_index(const struct esb_bus *bus, const char *key)
{
    for (size_t i = 0; i < bus->npending_keys; i++)
        if (strcmp(bus->pending_keys[i], key) == 0) return (int)i;
    return -1;
}

void esb__pending_key_drop(struct esb_bus *bus, const char *key)
{
    int i = esb__pending_key_index(bus, key);
    if (i >= 0) bus->pending_keys[i] = bus->pending_keys[--bus->npending_keys];
}

int esb_bus_marked(struct esb_bus *bus, const char *key)
{
    pthread_mutex_lock(&bus->lock);
    struct mark *m = esb__mark_find(bus, key);
    int marked = m && m->expires > esb_now_ms();
    pthread_mutex_unlock(&bus->lock);
    return marked;
}

/* Give each append record its seq and each mark of a bounded set its
 * place in the set, flag every record but the last as "more of this
 * transaction follows" (keeping the record's own flags), and finish the
 * headers (CRC). */
void esb__txn_seal(struct esb_bus *bus, struct esb_txn *t)
{
    for (size_t i = 0; i < t->nops; i++) {
        struct txn_op *op = &t->ops[i];
        if (op->kind == OP_APPEND)
            esb_put_u64(t->buf.data + op->rec_off + ESB_WAL_HDR,
                        atomic_fetch_add(&bus->next_seq, 1));
    }
    for (size_t i = 0; i < t->nrecs; i++) {
        uint8_t *rec = t->buf.data + t->recs[i];
        if (rec[12] == ESB_REC_DEDUP)
            esb__mark_seal(bus, rec[13], rec + ESB_WAL_HDR, esb_get_u32(rec + 8));
        rec[13] = (uint8_t)((rec[13] & ~ESB_WAL_F_MORE) | (i + 1 < t->nrecs ? ESB_WAL_F_MORE : 0));
        esb_put_u32(rec + 4, esb_crc32c(0, rec + 8, 8 + (size_t)esb_get_u32(rec + 8)));
    }
}
