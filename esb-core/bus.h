/* bus.h - the durable internal bus: named queues over the write-ahead log.
 *
 * A queue holds entries (a message plus delivery state). Many consumers may
 * consume one queue; each entry goes to exactly one of them at a time
 * (competing consumers). A topic is a name with subscriptions; publishing to
 * it appends ONE record that enqueues the message to every subscribed queue
 * (each subscriber has its own copy of the state, sharing the bytes).
 *
 * Everything that changes state is a transaction (esb_txn): appends, acks,
 * retries, dead-letters. A transaction becomes one log batch, written with
 * one pwritev and made durable by the group commit of the writer thread: the
 * writer takes every pending transaction, writes them all, fdatasyncs once
 * and wakes their callers. A commit returns only when its transaction is
 * durable (fsync=always), and only then do consumers see its effects. With
 * fsync=interval:N a commit returns after the write and the log is synced at
 * least every N ms; with fsync=never only on segment roll and close.
 *
 * An fdatasync error is fatal: the bus enters the failed state, every
 * waiting and later commit fails with ESB_EFAILED, and on_fatal is called.
 *
 * Entries a consumer held when the process stopped are ready again after
 * the next open (at-least-once). Retry state, dead-letter reasons and the
 * attempt histories are rebuilt from the log.
 *
 * Threads: all functions are thread-safe. Callbacks run on bus threads. */
#ifndef ESB_BUS_H
#define ESB_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct esb_io;
struct esb_msg;
struct esb_bus;
struct esb_txn;

enum esb_fsync_policy { ESB_FSYNC_ALWAYS, ESB_FSYNC_INTERVAL, ESB_FSYNC_NEVER };

struct esb_bus_opts {
    const char *dir;              /* required; created if missing */
    enum esb_fsync_policy fsync;  /* default ALWAYS */
    unsigned fsync_interval_ms;   /* for INTERVAL; default 100 */
    uint64_t segment_size;        /* default 64 MiB */
    int preallocate;              /* roll to zero-filled segments (wal_spare.h); default off */
    uint64_t max_disk;            /* total log bytes; 0 = no limit */
    uint64_t disk_low_water;      /* refuse appends when the fs has less free; 0 = off */
    uint64_t queue_max_entries;   /* default per-queue entry limit; 0 = none */
    uint64_t queue_max_bytes;     /* default per-queue byte limit; 0 = none */
    unsigned compact_interval_ms; /* maintenance period; default 1000 */
    struct esb_io *io;            /* NULL: esb_io_posix() */
    /* Called once, from the writer thread, when the bus fails fatally. */
    void (*on_fatal)(void *ctx, const char *why);
    void *fatal_ctx;
};

/* Parse "always", "never" or "interval:N" (N in ms, 1..60000). */
int esb_fsync_parse(const char *s, enum esb_fsync_policy *policy, unsigned *interval_ms);

/* What the bus did, for metrics, tests and benchmarks. */
struct esb_bus_stats {
    uint64_t commits;      /* transactions made durable */
    uint64_t records;      /* records written */
    uint64_t batches;      /* group-commit batches written */
    uint64_t syncs;        /* fdatasync calls */
    uint64_t bytes;        /* bytes written */
    uint64_t refused_full; /* appends refused by a limit */
    uint64_t segments_deleted;
    uint64_t entries_relocated; /* copied forward by compaction */
    uint64_t marks;             /* idempotency marks held now */
    uint64_t cache_hits;        /* consumed without reading the log (message kept in memory) */
    uint64_t marks_forgotten;   /* marks a bounded set forgot to stay in its bound */
    /* from recovery */
    uint64_t recovered_records, recovered_entries, recovered_corrupt, recovered_truncated_bytes;
};

/* Open the bus in opts->dir, recovering state from the log. */
int esb_bus_open(const struct esb_bus_opts *opts, struct esb_bus **out,
                 struct esb_err *err) ESB_WUR;
/* Stop the threads, sync, close. Consumers blocked in consume get
 * ESB_ECLOSED. Entries still held by consumers stay durable and are ready on
 * the next open, but every esb_entry must be freed (esb_entry_free) BEFORE
 * close: an entry freed after close touches freed memory. NULL-safe. */
void esb_bus_close(struct esb_bus *bus);
void esb_bus_get_stats(struct esb_bus *bus, struct esb_bus_stats *out);
/* True once the bus has failed fatally. */
int esb_bus_failed(struct esb_bus *bus);

/* Per-queue limits (override the defaults; 0 = none). */
void esb_bus_set_limits(struct esb_bus *bus, const char *queue, uint64_t max_entries,
                        uint64_t max_bytes);

/* Topics: subscribe queue to topic (idempotent) / unsubscribe. Subscriptions
 * are configuration, held in memory: a new subscriber sees messages
 * published after it subscribed. */
void esb_bus_subscribe(struct esb_bus *bus, const char *topic, const char *queue);
void esb_bus_unsubscribe(struct esb_bus *bus, const char *topic, const char *queue);

/* ---- transactions ---- */

struct esb_txn *esb_txn_new(void);
void esb_txn_free(struct esb_txn *t); /* NULL-safe; also after commit */
/* Enqueue m to each of the n queues (one record; m is borrowed and encoded now). */
void esb_txn_append(struct esb_txn *t, const char *const *queues, size_t n,
                    const struct esb_msg *m);
/* The same with an ordering key: within each queue, entries with the same
 * non-empty key are delivered one at a time in seq order — an entry waits
 * (parked) until every earlier entry of its key is resolved, even while one
 * of them waits for a retry; entries of other keys are not held back. A
 * dead-letter releases the next entry of the key. */
void esb_txn_append_keyed(struct esb_txn *t, const char *const *queues, size_t n,
                          const struct esb_msg *m, const char *key);
/* Enqueue m to every queue subscribed to topic now (none: nothing is written). */
void esb_txn_publish(struct esb_txn *t, struct esb_bus *bus, const char *topic,
                     const struct esb_msg *m);

/* One failed attempt at an entry. The bus keeps the last ESB_BUS_TRIES_MAX
 * of them with the entry, oldest first, through retries, the move to a
 * dead-letter queue, compaction and restarts. */
#define ESB_BUS_TRIES_MAX 16
#define ESB_TRY_CLASS_MAX 31  /* bytes of cls */
#define ESB_TRY_TEXT_MAX  255 /* bytes of text */
struct esb_try {
    uint64_t at_ms;                  /* wall ms the attempt started */
    char cls[ESB_TRY_CLASS_MAX + 1]; /* failure class: "http-status", "timeout", ... */
    char text[ESB_TRY_TEXT_MAX + 1]; /* what went wrong, cut to ESB_TRY_TEXT_MAX bytes */
};
/* Fill t, cutting cls and text to their sizes (at a UTF-8 boundary). */
void esb_try_set(struct esb_try *t, uint64_t at_ms, const char *cls, const char *text);

/* A consumed entry, owned by the consumer until esb_entry_free. */
struct esb_entry {
    uint64_t seq;        /* unique per message on this bus */
    const char *queue;   /* borrowed: valid until esb_entry_free */
    struct esb_msg *msg; /* a reference owned by the entry */
    /* Attempts made so far: 0 on first delivery, +1 per retry. A dead
     * letter counts every attempt, the one that killed it included (3
     * tries: 3). */
    uint32_t attempt;
    uint64_t enqueued_ms;        /* wall time of the first append */
    const char *reason;          /* dead-letter reason, or NULL */
    const char *dead_from;       /* queue it was dead-lettered from, or NULL */
    const struct esb_try *tries; /* the last failed attempts, oldest first, or NULL */
    uint32_t ntries;             /* <= ESB_BUS_TRIES_MAX, <= attempt */
    void *internal__;
};

/* Idempotency marks (DEDUP records): remember key until expires_ms (wall
 * ms), durably, in the same batch as the rest of t; expires_ms 0 forgets
 * it. Marks survive restarts and compaction until they expire. Keys are at
 * most 1024 bytes. */
void esb_txn_mark(struct esb_txn *t, const char *key, uint64_t expires_ms);

/* The entry is done. */
void esb_txn_ack(struct esb_txn *t, const struct esb_entry *e);
/* Deliver the entry again (attempt + 1) not before not_before_ms (wall ms).
 * failed (NULL: none) is the attempt that just failed, added to the
 * entry's history. */
void esb_txn_retry(struct esb_txn *t, const struct esb_entry *e, uint64_t not_before_ms,
                   const struct esb_try *failed);
/* Move the entry to dead-letter queue dlq with a reason, after the attempt
 * failed (NULL: none) that made it give up: the dead letter's attempt is
 * e->attempt + 1, its history the entry's plus failed. */
void esb_txn_dead(struct esb_txn *t, const struct esb_entry *e, const char *dlq, const char *reason,
                  const struct esb_try *failed);

/* Make t durable (per the fsync policy) and apply it, atomically: all of it
 * or none. Blocks until then. Returns 0; ESB_EFULL when an append would pass
 * a queue or disk limit (nothing written); ESB_EFAILED after a fatal error;
 * ESB_ECLOSED when closing; a negative errno when the write failed (nothing
 * of t is in the log). An entry may be resolved (ack/retry/dead) only once. */
int esb_bus_commit(struct esb_bus *bus, struct esb_txn *t, struct esb_err *err) ESB_WUR;

/* The same without blocking: admission errors (ESB_EFULL, ESB_EINVAL,
 * ESB_EFAILED, ESB_ECLOSED) are returned at once and done is never called;
 * otherwise it returns 0 and done(ctx, rc) is called exactly once, from the
 * bus's completion thread with no bus lock held, when t is durable (rc 0)
 * or failed. t must stay alive until then; done may free it. done must be
 * quick and must not call esb_bus_commit (it would wait for the thread it
 * runs on); esb_bus_commit_async is fine. Resolving held entries this way
 * is allowed; their esb_entry is marked resolved before done runs. */
int esb_bus_commit_async(struct esb_bus *bus, struct esb_txn *t, void (*done)(void *ctx, int rc),
                         void *ctx, struct esb_err *err) ESB_WUR;

/* Mark t "lazy": nobody waits for it to become durable (a worker's hand-off
 * with no request-reply client behind it), so with fsync=always the writer
 * may hold a batch of only lazy transactions up to ESB_BUS_LAZY_US (or
 * until ESB_BUS_LAZY_TXNS of them, or an eager one, arrive) to share one
 * fdatasync among more of them. Fewer, larger batches cost the writer less
 * CPU when the workers are busy; an eager commit is never delayed. */
#define ESB_BUS_LAZY_US   1000
#define ESB_BUS_LAZY_TXNS 256
void esb_txn_set_lazy(struct esb_txn *t);

/* Mark t's callback (esb_bus_commit_async) "quick": it runs on the writer
 * itself, right after the batch is durable and before the next batch is
 * written, instead of on the completer thread: one thread hop less between
 * durable and the callback. For a few microseconds of work only (a queue
 * push, an eventfd write): the next batch waits for it. The same rules as
 * any callback otherwise (no bus lock held; no esb_bus_commit). A quick
 * callback may run before the completer's callbacks of earlier
 * transactions of the same batch: order holds among quick ones only. */
void esb_txn_set_quick(struct esb_txn *t);

/* Bytes of log records t holds so far. */
size_t esb_txn_size(const struct esb_txn *t);

/* Convenience: one-operation transactions. */
int esb_bus_append(struct esb_bus *bus, const char *queue, const struct esb_msg *m,
                   struct esb_err *err) ESB_WUR;
int esb_bus_publish(struct esb_bus *bus, const char *topic, const struct esb_msg *m,
                    struct esb_err *err) ESB_WUR;
int esb_bus_ack(struct esb_bus *bus, const struct esb_entry *e, struct esb_err *err) ESB_WUR;

/* Mark key, but only if it is not marked (or being marked by a transaction
 * in flight): otherwise the whole commit fails with ESB_EEXIST and nothing
 * is written. An atomic check-and-set for idempotent consumers. */
void esb_txn_mark_unique(struct esb_txn *t, const char *key, uint64_t expires_ms);
/* The same for a mark of a bounded set: the marks whose keys begin with the
 * same set_len bytes (the set's name, e.g. "dedupe:ROUTE") keep only the
 * max_keys most recently committed; a new one makes the set forget its
 * oldest beyond that, at once and durably (a restart rebuilds the same
 * set). Forgetting is counted (stats.marks_forgotten) and logged at most
 * once a minute per set. max_keys 0 or set_len 0: an unbounded mark. */
void esb_txn_mark_unique_bounded(struct esb_txn *t, const char *key, size_t set_len,
                                 uint32_t max_keys, uint64_t expires_ms);

/* 1 if key is marked (committed) and not expired, else 0. */
int esb_bus_marked(struct esb_bus *bus, const char *key);

/* ---- consuming ---- */

/* Take the next ready entry of queue (FIFO; due retries first), waiting up
 * to timeout_ms (-1 forever, 0 poll). Returns 0 with *out set, ESB_ETIMEDOUT,
 * ESB_ECLOSED, ESB_EFAILED, or ESB_ECORRUPT if the record could not be read
 * (reported and quarantined). */
int esb_bus_consume(struct esb_bus *bus, const char *queue, int timeout_ms,
                    struct esb_entry **out) ESB_WUR;
/* The same over several queues, taking from the first (round robin) that has one. */
int esb_bus_consume_any(struct esb_bus *bus, const char *const *queues, size_t n, int timeout_ms,
                        struct esb_entry **out) ESB_WUR;
/* Take entry seq of queue (e.g. one dead letter to replay) if it is ready
 * or waiting: it is then held like a consumed entry. Returns 0, ESB_ENOTFOUND,
 * or ESB_EBUSY (held by a consumer, or parked behind its ordering key). */
int esb_bus_take(struct esb_bus *bus, const char *queue, uint64_t seq,
                 struct esb_entry **out) ESB_WUR;
/* Release an entry. If no committed transaction resolved it, it is ready
 * again at once (same attempt). NULL-safe. */
void esb_entry_free(struct esb_entry *e);

/* ---- inspection ---- */

struct esb_queue_info {
    const char *name;                  /* borrowed for the callback */
    uint64_t entries;                  /* all unresolved entries */
    uint64_t ready, inflight, waiting; /* waiting = retry not yet due, or parked
                                          behind its ordering key */
    uint64_t bytes;
};
/* Call fn for every queue (under the bus lock: fn must not call the bus). */
void esb_bus_queues(struct esb_bus *bus, void (*fn)(void *ctx, const struct esb_queue_info *q),
                    void *ctx);
/* Info for one queue; returns ESB_ENOTFOUND if it has never existed. */
int esb_bus_queue_info(struct esb_bus *bus, const char *queue, struct esb_queue_info *out);

/* Browse: call fn for each unresolved entry of queue in seq order, without
 * consuming (msg decoded from the log; borrowed for the call). Stops when fn
 * returns non-zero. Returns the count visited or a negative error. */
int esb_bus_browse(struct esb_bus *bus, const char *queue,
                   int (*fn)(void *ctx, const struct esb_entry *e), void *ctx);

/* Run one maintenance pass now (delete resolved segments, compact); the
 * maintenance thread does this every compact_interval_ms. */
void esb_bus_maintain(struct esb_bus *bus);

#endif
