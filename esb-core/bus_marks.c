/* bus_marks.c - idempotency marks (DEDUP records) in memory: finding,
 * applying, expiring them, and bounded mark sets.
 *
 * DEDUP payload: u64 expires_ms (0 = forget) | u16 len | key, and with the
 * record flag ESB__MARK_SET: | u16 set_len | u64 set_seq | u32 max_keys.
 *
 * A bounded set is the marks whose keys begin with the same set_len bytes
 * (e.g. "dedupe:ROUTE", for <dedupe max-keys>); it keeps the max_keys most
 * recent. Each of its marks gets the set's next sequence number when its
 * transaction is sealed (esb__mark_seal, in log order). Applying a mark
 * with seq s and bound N raises the set's floor to s - N and forgets every
 * mark of the set at or below the floor; a mark at or below the floor is
 * never added. The floor is a maximum over the records, so it does not
 * depend on the order they are applied in: recovery (records in log order,
 * compaction copies after newer records, records of forgotten marks still
 * in older segments) rebuilds the same set. Forgetting writes nothing.
 *
 * The caller holds bus->lock for everything here. */
#include "config.h"

#include <stdlib.h>

#include "bus_internal.h"
#include "log.h"

#define REPORT_EVERY_MS 60000 /* a set that forgets logs at most this often */

struct markset {
    char *name;
    uint64_t next_seq;      /* the seq the next mark of the set gets */
    uint64_t floor;         /* marks with a seq <= floor are forgotten */
    uint32_t max_keys;      /* the bound of the latest mark applied */
    struct esb__heap marks; /* by seq: the oldest on top */
    uint64_t unreported;    /* forgotten since the last log line */
    uint64_t reported_ms;   /* when that line was written (0: never) */
};

static uint64_t hash_key(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ? h : 1; /* 0 is the map's empty key */
}

static int seq_less(const void *a, const void *b)
{
    return ((const struct mark *)a)->set_seq < ((const struct mark *)b)->set_seq;
}

static void mark_set_idx(void *item, size_t idx)
{
    ((struct mark *)item)->heap_idx = idx;
}

/* The set named by the first n bytes of key; created if asked. */
static struct markset *set_get(struct esb_bus *bus, const char *key, size_t n, int create)
{
    char name[ESB__MAX_MARK_KEY + 1];
    memcpy(name, key, n);
    name[n] = '\0';
    struct markset *s = esb__strmap_get(&bus->marksets, name);
    if (s || !create) return s;
    s = esb_calloc(1, sizeof(*s));
    s->name = esb_strdup(name);
    s->next_seq = 1;
    s->marks.less = seq_less;
    s->marks.set_idx = mark_set_idx;
    esb__strmap_put(&bus->marksets, name, s);
    return s;
}

static void set_free(void *v)
{
    struct markset *s = v;
    esb__heap_free(&s->marks);
    free(s->name);
    free(s);
}

struct mark *esb__mark_find(struct esb_bus *bus, const char *key)
{
    struct mark *m = esb__u64map_get(&bus->marks, hash_key(key, strlen(key)));
    while (m && strcmp(m->key, key) != 0) m = m->next;
    return m;
}

static void mark_remove(struct esb_bus *bus, struct mark *m)
{
    uint64_t h = hash_key(m->key, strlen(m->key));
    struct mark *head = esb__u64map_get(&bus->marks, h), **pp = &head;
    while (*pp != m) pp = &(*pp)->next;
    *pp = m->next;
    if (head)
        esb__u64map_put(&bus->marks, h, head);
    else
        esb__u64map_del(&bus->marks, h);
    if (m->set) esb__heap_remove(&m->set->marks, m->heap_idx);
    esb__seglive_add(bus, m->pos.seg, -1, -(int64_t)m->rec_len);
    bus->nmarks--;
    free(m->key);
    free(m);
}

uint8_t esb__mark_payload(struct esb_buf *b, const char *key, uint64_t expires, size_t set_len,
                          uint64_t set_seq, uint32_t max_keys)
{
    size_t n = strnlen(key, ESB__MAX_MARK_KEY);
    uint8_t x[14];
    esb_put_u64(x, expires);
    esb_put_u16(x + 8, (uint16_t)n);
    if (esb_buf_add(b, x, 10) || esb_buf_add(b, key, n)) abort();
    if (set_len == 0 || max_keys == 0) return 0;
    esb_put_u16(x, (uint16_t)(set_len < n ? set_len : n));
    esb_put_u64(x + 2, set_seq);
    esb_put_u32(x + 10, max_keys);
    if (esb_buf_add(b, x, 14)) abort();
    return ESB__MARK_SET;
}

/* A DEDUP payload, parsed. */
struct dedup {
    uint64_t expires;
    char key[ESB__MAX_MARK_KEY + 1];
    size_t klen;
    size_t set_len; /* 0: not in a bounded set */
    uint64_t set_seq;
    uint32_t max_keys;
    size_t seq_off; /* offset of set_seq in the payload */
};

static int parse(uint8_t flags, const uint8_t *p, uint32_t len, struct dedup *d)
{
    if (len < 10) return ESB_ECORRUPT;
    d->expires = esb_get_u64(p);
    d->klen = esb_get_u16(p + 8);
    if (d->klen > ESB__MAX_MARK_KEY || len - 10 < d->klen) return ESB_ECORRUPT;
    memcpy(d->key, p + 10, d->klen);
    d->key[d->klen] = '\0';
    d->set_len = 0;
    if (!(flags & ESB__MARK_SET)) return 0;
    size_t off = 10 + d->klen;
    if (len - off < 14) return ESB_ECORRUPT;
    d->set_len = esb_get_u16(p + off);
    d->seq_off = off + 2;
    d->set_seq = esb_get_u64(p + off + 2);
    d->max_keys = esb_get_u32(p + off + 10);
    if (d->set_len == 0 || d->set_len > d->klen || d->max_keys == 0) return ESB_ECORRUPT;
    return 0;
}

void esb__mark_seal(struct esb_bus *bus, uint8_t flags, uint8_t *p, uint32_t len)
{
    struct dedup d;
    if (!(flags & ESB__MARK_SET) || parse(flags, p, len, &d) != 0) return;
    struct markset *s = set_get(bus, d.key, d.set_len, 1);
    esb_put_u64(p + d.seq_off, s->next_seq++);
}

/* Raise s's floor for a mark (seq, bound) and forget what falls below. */
static void set_bound(struct esb_bus *bus, struct markset *s, uint64_t seq, uint32_t max_keys)
{
    if (seq >= s->next_seq) s->next_seq = seq + 1;
    s->max_keys = max_keys;
    if (seq > max_keys && seq - max_keys > s->floor) s->floor = seq - max_keys;
    struct mark *m;
    while ((m = esb__heap_top(&s->marks)) != NULL && m->set_seq <= s->floor) {
        mark_remove(bus, m);
        if (bus->recovering) continue; /* forgotten before; counted then */
        s->unreported++;
        bus->stats.marks_forgotten++;
    }
}

int esb__apply_mark(struct esb_bus *bus, struct esb_wal_pos pos, uint8_t flags, const uint8_t *p,
                    uint32_t len)
{
    struct dedup d;
    int rc = parse(flags, p, len, &d);
    if (rc) return rc;
    struct mark *m = esb__mark_find(bus, d.key);
    if (m) mark_remove(bus, m);
    struct markset *s = d.set_len ? set_get(bus, d.key, d.set_len, 1) : NULL;
    if (s) set_bound(bus, s, d.set_seq, d.max_keys);
    if (d.expires == 0 || d.expires <= esb_now_ms()) return 0;
    if (s && d.set_seq <= s->floor) return 0; /* forgotten already */
    uint64_t h = hash_key(d.key, d.klen);
    m = esb_calloc(1, sizeof(*m));
    m->key = esb_strdup(d.key);
    m->expires = d.expires;
    m->pos = pos;
    m->rec_len = len;
    m->next = esb__u64map_get(&bus->marks, h);
    esb__u64map_put(&bus->marks, h, m);
    if (s) {
        m->set = s;
        m->set_seq = d.set_seq;
        esb__heap_push(&s->marks, m);
    }
    esb__seglive_add(bus, pos.seg, 1, len);
    bus->nmarks++;
    return 0;
}

void esb__mark_copy(struct esb_buf *b, const struct mark *m, uint8_t *flags)
{
    *flags = esb__mark_payload(b, m->key, m->expires, m->set ? strlen(m->set->name) : 0, m->set_seq,
                               m->set ? m->set->max_keys : 0);
}

size_t esb__marks_sweep(struct esb_bus *bus, uint64_t now_ms)
{
    size_t dropped = 0;
    uint64_t h;
    void *v;
    for (size_t i = 0; (i = esb__u64map_next(&bus->marks, i, &h, &v)) != 0;) {
        for (struct mark *m = v, *next; m; m = next) {
            next = m->next;
            if (m->expires > now_ms) continue;
            mark_remove(bus, m); /* leaves a tombstone: iteration stays valid */
            dropped++;
        }
    }
    return dropped;
}

void esb__marksets_report(struct esb_bus *bus, uint64_t now_ms)
{
    const char *name;
    void *v;
    for (size_t i = 0; (i = esb__strmap_next(&bus->marksets, i, &name, &v)) != 0;) {
        struct markset *s = v;
        if (!s->unreported || (s->reported_ms && now_ms - s->reported_ms < REPORT_EVERY_MS))
            continue;
        esb_info("marks %s are bounded to the %u most recent keys: %llu older keys forgotten%s "
                 "(oldest first); a repeat of a forgotten key is not recognised as one",
                 s->name, s->max_keys, (unsigned long long)s->unreported,
                 s->reported_ms ? " in the last minute" : "");
        s->unreported = 0;
        s->reported_ms = now_ms;
    }
}

void esb__marks_free(struct esb_bus *bus)
{
    uint64_t h;
    void *v;
    for (size_t i = 0; (i = esb__u64map_next(&bus->marks, i, &h, &v)) != 0;) {
        for (struct mark *m = v, *next; m; m = next) {
            next = m->next;
            free(m->key);
            free(m);
        }
    }
    esb__u64map_free(&bus->marks);
    esb__strmap_free(&bus->marksets, set_free);
}
