/* queue_list.c - a sorted copy of the bus's queue list (see queue_list.h). */
#include "config.h"

#include "queue_list.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Runs under the bus lock: copy, do not call the bus. */
static void collect(void *ctx, const struct esb_queue_info *q)
{
    struct esb_queue_list *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = esb_realloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n] = *q;
    l->v[l->n++].name = esb_strdup(q->name);
}

static int cmp_name(const void *x, const void *y)
{
    return strcmp(((const struct esb_queue_info *)x)->name,
                  ((const struct esb_queue_info *)y)->name);
}

void esb_queue_list_get(struct esb_bus *bus, struct esb_queue_list *l)
{
    esb_bus_queues(bus, collect, l);
    if (l->n > 1) qsort(l->v, l->n, sizeof(*l->v), cmp_name);
}

void esb_queue_list_free(struct esb_queue_list *l)
{
    for (size_t i = 0; i < l->n; i++) free((char *)l->v[i].name);
    free(l->v);
    memset(l, 0, sizeof(*l));
}
