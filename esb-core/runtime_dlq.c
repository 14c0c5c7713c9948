/* runtime_dlq.c - replaying and purging dead letters (see runtime.h).
 * Each entry is taken from the dead-letter queue (so two concurrent
 * replays of one entry cannot both get it) and resolved in one
 * transaction with its re-append: all or nothing. */
#include "config.h"

#include "conf.h"

#include <stdio.h>
#include <stdlib.h>

#include "bus.h"
#include "log.h"
#include "msg.h"
#include "runtime.h"
#include "runtime_internal.h"

struct selection {
    const char *filter;
    uint64_t *seqs;
    size_t n, cap;
};

static int collect(void *ctx, const struct esb_entry *e)
{
    struct selection *s = ctx;
    if (s->filter && (!e->reason || !strstr(e->reason, s->filter))) return 0;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->seqs = esb_realloc(s->seqs, s->cap * sizeof(*s->seqs));
    }
    s->seqs[s->n++] = e->seq;
    return 0;
}

/* Resolve one taken entry: replay (to != NULL or its origin) or purge. */
static int finish_one(struct esb_bus *bus, struct esb_entry *e, int replay, const char *to,
                      struct esb_err *err)
{
    struct esb_txn *t = esb_txn_new();
    int rc = 0;
    if (replay) {
        const char *dest = to ? to : e->dead_from;
        if (!dest) {
            rc = esb_err_set(err, ESB_EINVAL,
                             "entry %llu of %s has no origin queue; name one with 'to'",
                             (unsigned long long)e->seq, e->queue);
            goto out;
        }
        struct esb_msg *m = esb_msg_clone(e->msg);
        const char *prev = esb_msg_header(m, "esb-replays");
        char n[24];
        snprintf(n, sizeof(n), "%ld", (prev ? strtol(prev, NULL, 10) : 0) + 1);
        esb_msg_set_header(m, "esb-replays", n);
        esb_txn_append(t, &dest, 1, m);
        esb_msg_unref(m);
        esb_info("dlq replay queue=%s seq=%llu id=%s to=%s replays=%s", e->queue,
                 (unsigned long long)e->seq, e->msg->id_text, dest, n);
    } else {
        esb_info("dlq purge queue=%s seq=%llu id=%s", e->queue, (unsigned long long)e->seq,
                 e->msg->id_text);
    }
    esb_txn_ack(t, e);
    rc = esb_bus_commit(bus, t, err);
out:
    esb_txn_free(t);
    return rc;
}

static int resolve(struct esb_runtime *rt, const char *dlq, uint64_t seq, const char *filter,
                   int replay, const char *to, struct esb_err *err)
{
    struct esb_bus *bus = esb_runtime_bus(rt);
    if (replay && to && !esb__rt_consumes(rt, to))
        return esb_err_set(err, ESB_EINVAL,
                           "nothing consumes %s in the running config (a queue:NAME with a route "
                           "from it, route:ID, or deliver:ENDPOINT)",
                           to);
    struct selection s = {.filter = filter};
    if (seq) {
        collect(&s, &(struct esb_entry){.seq = seq});
        s.filter = NULL;
    } else {
        int rc = esb_bus_browse(bus, dlq, collect, &s);
        if (rc < 0) {
            free(s.seqs);
            return esb_err_set(err, rc, "no queue %s", dlq);
        }
    }
    int done = 0, rc = 0;
    for (size_t i = 0; i < s.n; i++) {
        struct esb_entry *e = NULL;
        rc = esb_bus_take(bus, dlq, s.seqs[i], &e);
        if (rc == ESB_ENOTFOUND || rc == ESB_EBUSY) {
            if (seq)
                esb_err_set(err, rc, "entry %llu of %s is %s", (unsigned long long)seq, dlq,
                            rc == ESB_EBUSY ? "held right now" : "not there");
            continue; /* gone or taken by a concurrent replay: not ours */
        }
        if (rc < 0) {
            esb_err_set(err, rc, "taking entry %llu of %s: %s", (unsigned long long)s.seqs[i], dlq,
                        esb_strerror(rc));
            break;
        }
        rc = finish_one(bus, e, replay, to, err);
        esb_entry_free(e);
        if (rc < 0) break;
        done++;
    }
    free(s.seqs);
    if (rc < 0 && (done == 0 || (rc != ESB_ENOTFOUND && rc != ESB_EBUSY))) return rc;
    return done;
}

int esb_runtime_replay(struct esb_runtime *rt, const char *dlq, uint64_t seq, const char *filter,
                       const char *to, struct esb_err *err)
{
    return resolve(rt, dlq, seq, filter, 1, to, err);
}

int esb_runtime_purge(struct esb_runtime *rt, const char *dlq, uint64_t seq, const char *filter,
                      struct esb_err *err)
{
    return resolve(rt, dlq, seq, filter, 0, NULL, err);
}
