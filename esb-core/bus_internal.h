/* bus_internal.h - structures shared by the files of the bus module
 * (bus.c: threads, commit, consume; bus_index.c: in-memory indexes and the
 * record codec). Not for use outside esb-core/bus*.c.
 *
 * Locking: everything here is protected by bus->lock, except the WAL, which
 * only the writer thread writes (readers use esb_wal_read). */
#ifndef ESB_BUS_INTERNAL_H
#define ESB_BUS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "bus.h"
#include "bus_index.h"
#include "wal.h"

/* Record flags (the header's flags byte, ESB_WAL_F_MORE aside). */
#define ESB__MSG_RELOC 0x01 /* MSG: a copy made by compaction: moves existing entries */
/* MSG, RETRY, DEAD: record format 2, with attempt histories ("tries
 * blocks", see bus_tries.c). A record without it is format 1: no history,
 * and a dead letter's attempt counted from 0 (read as attempt + 1). */
#define ESB__REC_TRIES 0x02
/* DEDUP: the mark belongs to a bounded mark set (bus_marks.c). */
#define ESB__MARK_SET 0x04

/* Limits of the record codec. */
#define ESB__MAX_QUEUE_NAME 255
#define ESB__MAX_REASON     4096

/* PARKED: waits behind an earlier entry of its ordering key (in no heap). */
enum ent_state { ENT_READY, ENT_INFLIGHT, ENT_WAITING, ENT_PARKED };

struct keylist;

/* One unresolved entry: message seq in one queue. */
struct ent {
    uint64_t seq;
    struct queue *q;
    struct esb_wal_pos pos;
    uint32_t rec_len; /* payload length of the MSG record (bytes accounting) */
    uint32_t attempt;
    uint64_t not_before;
    uint64_t enq_ms;
    char *reason;       /* dead-letter reason, owned */
    char *dead_from;    /* owned */
    uint8_t *tries;     /* attempt history: a tries block (bus_tries.c), owned, or NULL */
    char *key;          /* ordering key, or NULL */
    struct keylist *kl; /* the entries of that key, by seq */
    struct ent *knext, *kprev;
    struct esb_msg *msg; /* the appended message, kept for its first consumer (a
                            reference, counted in bus->cache_bytes), or NULL */
    uint8_t state;
    uint8_t pending; /* a committed-but-not-applied transaction resolves it */
    uint8_t in_ring; /* READY in its queue's ring (else in the ready heap) */
    /* Position in the ready or waiting heap, or in the ring (in_ring: only
     * its low bits are used, so size_t holds it on any platform). */
    size_t heap_idx;
};

/* The unresolved entries of one ordering key of a queue, by seq; only the
 * head is eligible for delivery. Chained: the map key is a hash. */
struct keylist {
    char *key;
    struct ent *head, *tail;
    struct keylist *chain;
};

struct queue {
    char *name;
    struct esb__u64map keys; /* hash(ordering key) -> struct keylist* chain */
    uint64_t parked;
    struct esb__u64map ents; /* seq -> struct ent* */
    /* READY entries: those put in seq order (new appends: nearly all) in
     * a ring, taken in O(1) however long the backlog; the others (retries
     * due, entries released again, recovery out of order) in a heap. The
     * smaller seq of the two heads goes first. */
    struct esb__ring fresh;
    uint64_t fresh_last;      /* seq of the last entry put in fresh */
    struct esb__heap ready;   /* by seq */
    struct esb__heap waiting; /* by not_before, seq */
    uint64_t entries, inflight, bytes;
    uint64_t reserved_entries, reserved_bytes; /* appends committed, not yet applied */
    uint64_t max_entries, max_bytes;
    int limits_set;
};

struct topic {
    char *name;
    char **subs;
    size_t nsubs;
};

struct markset;

/* An idempotency mark (DEDUP record). Chained: the map key is a hash. */
struct mark {
    char *key;
    uint64_t expires;
    struct esb_wal_pos pos;
    uint32_t rec_len;
    struct mark *next;
    struct markset *set; /* its bounded set, or NULL */
    uint64_t set_seq;    /* its place in the set */
    size_t heap_idx;     /* in the set's heap */
};

#define ESB__MAX_MARK_KEY 1024

struct seglive {
    uint64_t entries, bytes;
};

/* A transaction: encoded records plus what commit must check and mark. */
enum txn_op_kind { OP_APPEND, OP_RESOLVE, OP_UNIQUE };

#define ESB__CACHE_MAX (1024 * 1024)
/* An append is cached only while its queue holds at most this many entries. */
#define ESB__CACHE_QUEUE_DEPTH 256

struct txn_op {
    enum txn_op_kind kind;
    struct entry_impl *e; /* OP_RESOLVE */
    char **queues;        /* OP_APPEND: target names */
    size_t nqueues;
    uint32_t bytes;      /* OP_APPEND: record payload length */
    struct esb_msg *msg; /* OP_APPEND: a reference to the message appended */
    size_t rec_off;      /* OP_APPEND: offset of its record in txn buf */
    char *key;           /* OP_UNIQUE: the mark that must not exist yet */
};

struct esb_txn {
    struct esb_buf buf; /* whole records, back to back */
    size_t *recs;       /* offset of each record in buf */
    size_t nrecs, cap_recs;
    struct txn_op *ops;
    size_t nops, cap;
    int has_append;
    int detached; /* written by the bus itself (compaction); freed after apply */
    /* commit state, under bus->lock */
    struct esb_txn *next;
    uint32_t batch;                /* the writer batch it goes out in (esb_bus_commit waits) */
    int lazy;                      /* esb_txn_set_lazy */
    int quick;                     /* esb_txn_set_quick: callback on the writer */
    void (*cb)(void *ctx, int rc); /* or called (esb_bus_commit_async) */
    void *cb_ctx;
    int rc;
    struct esb_wal_pos pos;
};

struct entry_impl {
    struct esb_entry pub;
    struct esb_bus *bus;
    struct ent *ent;
    int resolved;
};

struct esb_bus {
    struct esb_bus_opts opts;
    char *dir;
    struct esb_wal *wal;
    pthread_mutex_t lock;
    pthread_cond_t writer_cv, commit_cv, ready_cv;
    pthread_t writer;
    int writer_started, closing, failed;
    /* The completer thread calls the callbacks of written batches
     * (esb_bus_commit_async) while the writer already writes and syncs the
     * next batch. Its own lock: never held with bus->lock. */
    pthread_t completer;
    pthread_mutex_t done_lock;
    pthread_cond_t done_cv;
    struct esb_txn *done_head, *done_tail;
    int completer_started, completer_stop;
    /* Batch numbers: a txn queued now goes out in next_batch (under
     * lock; the writer moves it on when it takes the pending list). The
     * writer publishes the last batch whose committers may return in
     * done_batch, a futex word: esb_bus_commit waits on it with the bit
     * (batch % 32), so one FUTEX_WAKE_BITSET wakes a batch's committers
     * and not those of the batch being written. */
    uint32_t next_batch;
    _Atomic uint32_t done_batch;
    char fail_why[256];
    _Atomic uint64_t next_seq;

    struct esb_txn *pending_head, *pending_tail;
    unsigned pending_n, pending_eager; /* txns pending, and how many are not lazy */
    uint64_t pending_first_ns;         /* when the first of them was queued */
    uint64_t pending_bytes;
    /* Messages of entries not yet consumed, kept in memory so that the
     * first consumer does not read and decode what was just written; at
     * most ESB__CACHE_MAX bytes (record sizes), beyond that entries are
     * read from the log as always. Under lock. */
    uint64_t cache_bytes;

    struct esb__strmap queues;   /* name -> struct queue* */
    struct esb__strmap topics;   /* name -> struct topic* */
    struct esb__u64map marks;    /* hash(key) -> struct mark* chain */
    struct esb__strmap marksets; /* name -> struct markset* (bus_marks.c) */
    char **pending_keys;         /* unique marks of admitted, unapplied txns */
    size_t npending_keys, cap_pending_keys;
    uint64_t nmarks;

    struct seglive *segs; /* indexed by segment no - seg_base */
    uint32_t seg_base;
    size_t nsegs;

    int64_t free_bytes; /* last measured free space of the fs */
    uint64_t last_maint_ns, last_sync_ns;
    int unsynced;
    int recovering;
    unsigned consumers; /* threads inside consume */
    unsigned batches_since_df;
    struct esb_bus_stats stats;
};

/* bus_index.c: queues and entries (caller holds bus->lock). */
struct queue *esb__queue_get(struct esb_bus *bus, const char *name, int create);
void esb__queue_free(struct queue *q);
void esb__queue_push_ready(struct queue *q, struct ent *e);
void esb__queue_push_waiting(struct queue *q, struct ent *e);
/* Pop a due waiting entry, else the oldest ready one; NULL if none. */
struct ent *esb__queue_pop(struct queue *q, uint64_t now_ms);
/* Take a READY or WAITING entry out of its ring or heap (state unchanged). */
void esb__queue_unlist(struct queue *q, struct ent *e);
/* READY entries of q. */
size_t esb__queue_ready(const struct queue *q);
/* Earliest not_before among waiting entries, or UINT64_MAX. */
uint64_t esb__queue_next_due(const struct queue *q);
void esb__seglive_add(struct esb_bus *bus, uint32_t seg, int64_t entries, int64_t bytes);
struct seglive *esb__seglive(struct esb_bus *bus, uint32_t seg);

/* Apply one record (at runtime after it is durable, or during recovery). */
int esb__apply(struct esb_bus *bus, struct esb_wal_pos pos, uint8_t type, uint8_t flags,
               const uint8_t *p, uint32_t len);
/* Marks (bus_marks.c). */
struct mark *esb__mark_find(struct esb_bus *bus, const char *key);
/* Apply a DEDUP record. */
int esb__apply_mark(struct esb_bus *bus, struct esb_wal_pos pos, uint8_t flags, const uint8_t *p,
                    uint32_t len);
/* Drop expired marks; returns how many. */
size_t esb__marks_sweep(struct esb_bus *bus, uint64_t now_ms);
/* Log, at most once a minute per set, how many marks bounded sets forgot. */
void esb__marksets_report(struct esb_bus *bus, uint64_t now_ms);
void esb__marks_free(struct esb_bus *bus);
/* Encode a DEDUP record payload: key until expires, in the bounded set
 * named by the first set_len bytes of key (0: none) with max_keys, its
 * seq set_seq (patched by esb__mark_seal). Returns the record's flags. */
uint8_t esb__mark_payload(struct esb_buf *b, const char *key, uint64_t expires, size_t set_len,
                          uint64_t set_seq, uint32_t max_keys);
/* The payload of a copy of m (compaction), and its flags. */
void esb__mark_copy(struct esb_buf *b, const struct mark *m, uint8_t *flags);
/* Sealing a DEDUP record (payload p) of a bounded set: give it the set's
 * next seq. */
void esb__mark_seal(struct esb_bus *bus, uint8_t flags, uint8_t *p, uint32_t len);
/* After recovery: put every entry in its heap. */
void esb__index_finish_recovery(struct esb_bus *bus);

/* bus.c: shared helpers. */
void esb__put_name(struct esb_buf *b, const char *s);
void esb__put_u32(struct esb_buf *b, uint32_t v);
void esb__put_u64(struct esb_buf *b, uint64_t v);
void esb__put_reason(struct esb_buf *b, const char *s);
/* Sync if a write is not yet durable; a failure marks the bus failed. */
int esb__sync_if_needed(struct esb_bus *bus);
/* Queue t for the writer (at the head: before everything pending). */
void esb__pending_push(struct esb_bus *bus, struct esb_txn *t, int at_head);
/* bus_txn.c (bus->lock held): give appends their seq and finish every
 * record header; the pending unique marks of admitted transactions. */
void esb__txn_seal(struct esb_bus *bus, struct esb_txn *t);
int esb__pending_key_index(const struct esb_bus *bus, const char *key);
void esb__pending_key_drop(struct esb_bus *bus, const char *key);
/* bus_maint.c: one maintenance pass (writer thread, lock held). */
void esb__maintain_locked(struct esb_bus *bus);
/* bus.c: enter the failed state (lock held): log "bus FATAL <what> in DIR:
 * <error>"; every commit fails from now on. The writer calls on_fatal. */
void esb__fail_fatal(struct esb_bus *bus, int rc, const char *what);

/* Record codec. */
/* Parse the target list of a MSG payload (flags: the record's); returns
 * offset of the message encoding or 0 if malformed. */
size_t esb__msg_body_offset(const uint8_t *p, uint32_t len, uint8_t flags);

/* bus_tries.c: attempt histories. A tries block is u8 n, then n items
 * (u64 at_ms | u8 len + class | u16 len + text), oldest first, n <=
 * ESB_BUS_TRIES_MAX. An entry keeps its history as one such block. */
/* Append the block of one attempt (or of none, failed NULL) to b. */
void esb__tries_put_one(struct esb_buf *b, const struct esb_try *failed);
/* Append the block blk (an entry's history, NULL: empty) to b. */
void esb__tries_put(struct esb_buf *b, const uint8_t *blk);
/* Length of the valid block at p (at most avail bytes), or 0. */
size_t esb__tries_len(const uint8_t *p, size_t avail);
/* Add the items of block add (valid, of len bytes) to the history *blk,
 * keeping the last ESB_BUS_TRIES_MAX; *blk stays NULL if there are none. */
void esb__tries_add(uint8_t **blk, const uint8_t *add, size_t len);
/* Decode the history blk (NULL: none) into an array (NULL if none). */
struct esb_try *esb__tries_decode(const uint8_t *blk, uint32_t *n);
/* Append a whole record (header + payload parts) to buf. */
void esb__rec_put(struct esb_buf *buf, uint8_t type, uint8_t flags, const struct iovec *parts,
                  int n);

#endif
