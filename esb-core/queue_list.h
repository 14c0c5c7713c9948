/* queue_list.h - a copy of the bus's queue list sorted by name, for the
 * views that print or serve it: the admin API (/v1/queues, /metrics) and
 * esbctl queues --data. The copy is the caller's (names owned, nothing
 * points into the bus), taken in one esb_bus_queues call, so it is one
 * consistent moment. Any thread that may call esb_bus_queues. */
#ifndef ESB_QUEUE_LIST_H
#define ESB_QUEUE_LIST_H

#include <stddef.h>

#include "bus.h"

struct esb_queue_list {
    struct esb_queue_info *v; /* sorted by name (strcmp); names owned */
    size_t n, cap;
};

/* Fill l, which must be zeroed, with every queue of bus. */
void esb_queue_list_get(struct esb_bus *bus, struct esb_queue_list *l);
/* Free what l holds and zero it. */
void esb_queue_list_free(struct esb_queue_list *l);

#endif
