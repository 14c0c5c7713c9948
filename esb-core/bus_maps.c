/* bus_maps.c - the containers of bus_index.h: u64 and string hash maps
 * and the indexed binary heap. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bus_index.h"
#include "util.h"

/* ---- u64 map ---- */

#define TOMB UINT64_MAX

static size_t hash64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

static void u64map_grow(struct esb__u64map *m)
{
    struct esb__u64map old = *m;
    size_t cap = old.cap ? old.cap : 16;
    if (old.n * 2 >= old.cap) cap = old.cap ? old.cap * 2 : 16;
    m->keys = esb_calloc(cap, sizeof(*m->keys));
    m->vals = esb_calloc(cap, sizeof(*m->vals));
    m->cap = cap;
    m->n = m->used = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.keys[i] && old.keys[i] != TOMB) esb__u64map_put(m, old.keys[i], old.vals[i]);
    free(old.keys);
    free(old.vals);
}

void *esb__u64map_get(const struct esb__u64map *m, uint64_t key)
{
    if (!m->cap) return NULL;
    for (size_t i = hash64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) return m->vals[i];
        if (m->keys[i] == 0) return NULL;
    }
}

void esb__u64map_put(struct esb__u64map *m, uint64_t key, void *val)
{
    /* Replacing never grows the table (callers replace while iterating). */
    for (size_t i = m->cap ? hash64(key) & (m->cap - 1) : 0; m->cap; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) {
            m->vals[i] = val;
            return;
        }
        if (m->keys[i] == 0) break;
    }
    if ((m->used + 1) * 4 >= m->cap * 3) u64map_grow(m);
    for (size_t i = hash64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == TOMB || m->keys[i] == 0) {
            if (m->keys[i] == 0) m->used++;
            m->keys[i] = key;
            m->vals[i] = val;
            m->n++;
            return;
        }
    }
}

void *esb__u64map_del(struct esb__u64map *m, uint64_t key)
{
    if (!m->cap) return NULL;
    for (size_t i = hash64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) {
            void *v = m->vals[i];
            m->keys[i] = TOMB;
            m->vals[i] = NULL;
            m->n--;
            return v;
        }
        if (m->keys[i] == 0) return NULL;
    }
}

size_t esb__u64map_next(const struct esb__u64map *m, size_t i, uint64_t *key, void **val)
{
    for (; i < m->cap; i++) {
        if (m->keys[i] && m->keys[i] != TOMB) {
            *key = m->keys[i];
            *val = m->vals[i];
            return i + 1;
        }
    }
    return 0;
}

void esb__u64map_free(struct esb__u64map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

/* ---- string map ---- */

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void strmap_insert(struct esb__strmap *m, char *key, void *val)
{
    size_t i = hash_str(key) & (m->cap - 1);
    while (m->keys[i]) i = (i + 1) & (m->cap - 1);
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
}

void *esb__strmap_get(const struct esb__strmap *m, const char *key)
{
    if (!m->cap) return NULL;
    for (size_t i = hash_str(key) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
        if (strcmp(m->keys[i], key) == 0) return m->vals[i];
    return NULL;
}

void esb__strmap_put(struct esb__strmap *m, const char *key, void *val)
{
    if (m->cap) {
        for (size_t i = hash_str(key) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
            if (strcmp(m->keys[i], key) == 0) {
                m->vals[i] = val;
                return;
            }
    }
    if ((m->n + 1) * 2 > m->cap) {
        struct esb__strmap old = *m;
        m->cap = old.cap ? old.cap * 2 : 16;
        m->keys = esb_calloc(m->cap, sizeof(*m->keys));
        m->vals = esb_calloc(m->cap, sizeof(*m->vals));
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.keys[i]) strmap_insert(m, old.keys[i], old.vals[i]);
        free(old.keys);
        free(old.vals);
    }
    strmap_insert(m, esb_strdup(key), val);
}

size_t esb__strmap_next(const struct esb__strmap *m, size_t i, const char **key, void **val)
{
    for (; i < m->cap; i++) {
        if (m->keys[i]) {
            *key = m->keys[i];
            *val = m->vals[i];
            return i + 1;
        }
    }
    return 0;
}

void esb__strmap_free(struct esb__strmap *m, void (*free_val)(void *))
{
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        free(m->keys[i]);
        if (free_val) free_val(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

/* ---- heap ---- */

static void heap_set(struct esb__heap *h, size_t i, void *item)
{
    h->items[i] = item;
    h->set_idx(item, i);
}

static void heap_up(struct esb__heap *h, size_t i)
{
    void *item = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!h->less(item, h->items[parent])) break;
        heap_set(h, i, h->items[parent]);
        i = parent;
    }
    heap_set(h, i, item);
}

static void heap_down(struct esb__heap *h, size_t i)
{
    void *item = h->items[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        void *best = item;
        if (l < h->n && h->less(h->items[l], best)) {
            m = l;
            best = h->items[l];
        }
        if (r < h->n && h->less(h->items[r], best)) m = r;
        if (m == i) break;
        heap_set(h, i, h->items[m]);
        i = m;
    }
    heap_set(h, i, item);
}

void esb__heap_push(struct esb__heap *h, void *item)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->items = esb_realloc(h->items, h->cap * sizeof(*h->items));
    }
    h->items[h->n++] = item;
    heap_up(h, h->n - 1);
}

void *esb__heap_top(const struct esb__heap *h)
{
    return h->n ? h->items[0] : NULL;
}

void esb__heap_remove(struct esb__heap *h, size_t idx)
{
    void *last = h->items[--h->n];
    if (idx == h->n) return;
    heap_set(h, idx, last);
    heap_down(h, idx);
    if (h->items[idx] == last) heap_up(h, idx);
}

void *esb__heap_pop(struct esb__heap *h)
{
    if (!h->n) return NULL;
    void *top = h->items[0];
    esb__heap_remove(h, 0);
    return top;
}

void esb__heap_free(struct esb__heap *h)
{
    free(h->items);
    h->items = NULL;
    h->n = h->cap = 0;
}

/* ---- ring ---- */

uint64_t esb__ring_push(struct esb__ring *r, void *item)
{
    if (r->tail - r->head == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        void **items = esb_malloc(cap * sizeof(*items));
        for (uint64_t p = r->head; p < r->tail; p++)
            items[p & (cap - 1)] = r->items[p & (r->cap - 1)];
        free(r->items);
        r->items = items;
        r->cap = cap;
    }
    r->items[r->tail & (r->cap - 1)] = item;
    r->n++;
    return r->tail++;
}

void *esb__ring_first(struct esb__ring *r)
{
    if (!r->n) {
        r->head = r->tail; /* only holes left */
        return NULL;
    }
    while (!r->items[r->head & (r->cap - 1)]) r->head++;
    return r->items[r->head & (r->cap - 1)];
}

void esb__ring_pop(struct esb__ring *r)
{
    r->items[r->head & (r->cap - 1)] = NULL;
    r->head++;
    r->n--;
}

void esb__ring_clear(struct esb__ring *r, uint64_t pos)
{
    r->items[pos & (r->cap - 1)] = NULL;
    r->n--;
}

void esb__ring_free(struct esb__ring *r)
{
    free(r->items);
    memset(r, 0, sizeof(*r));
}
