/* bus_index.h - the small containers the bus indexes are built from: a
 * u64 -> pointer hash map, a string -> pointer hash map, an indexed
 * binary heap and a FIFO ring. Not thread-safe: the bus serialises access
 * with its lock. */
#ifndef ESB_BUS_INDEX_H
#define ESB_BUS_INDEX_H

#include <stddef.h>
#include <stdint.h>

/* Open addressing, linear probing. Key 0 is reserved (never stored). */
struct esb__u64map {
    uint64_t *keys;
    void **vals;
    size_t cap, n, used; /* used counts live keys and tombstones */
};
void *esb__u64map_get(const struct esb__u64map *m, uint64_t key);
/* Insert or replace. */
void esb__u64map_put(struct esb__u64map *m, uint64_t key, void *val);
/* Remove; returns the old value or NULL. */
void *esb__u64map_del(struct esb__u64map *m, uint64_t key);
void esb__u64map_free(struct esb__u64map *m);
/* Iterate: for (size_t i = 0; (i = esb__u64map_next(m, i, &k, &v)) != 0;) */
size_t esb__u64map_next(const struct esb__u64map *m, size_t i, uint64_t *key, void **val);

/* String keys are copied and owned by the map; no deletion. */
struct esb__strmap {
    char **keys;
    void **vals;
    size_t cap, n;
};
void *esb__strmap_get(const struct esb__strmap *m, const char *key);
void esb__strmap_put(struct esb__strmap *m, const char *key, void *val);
void esb__strmap_free(struct esb__strmap *m, void (*free_val)(void *));
size_t esb__strmap_next(const struct esb__strmap *m, size_t i, const char **key, void **val);

/* A min-heap of pointers; each item's slot index is reported via set_idx
 * so that it can be removed from the middle. */
struct esb__heap {
    void **items;
    size_t n, cap;
    int (*less)(const void *a, const void *b);
    void (*set_idx)(void *item, size_t idx);
};
void esb__heap_push(struct esb__heap *h, void *item);
void *esb__heap_top(const struct esb__heap *h);
void *esb__heap_pop(struct esb__heap *h);
void esb__heap_remove(struct esb__heap *h, size_t idx);
void esb__heap_free(struct esb__heap *h);

/* A FIFO of pointers at absolute positions: push at the tail, take at the
 * head, and clear an item anywhere by its position (it becomes a hole the
 * head skips). Items live in [head, tail); n counts those not cleared. */
struct esb__ring {
    void **items;
    size_t cap; /* a power of two, or 0 */
    uint64_t head, tail;
    size_t n;
};
/* Append item (not NULL); returns its position. */
uint64_t esb__ring_push(struct esb__ring *r, void *item);
/* The first item (holes before it are dropped), or NULL when empty. */
void *esb__ring_first(struct esb__ring *r);
/* Remove the item esb__ring_first returned. */
void esb__ring_pop(struct esb__ring *r);
/* Clear the item at pos (pushed, not yet taken or cleared). */
void esb__ring_clear(struct esb__ring *r, uint64_t pos);
void esb__ring_free(struct esb__ring *r);

#endif
