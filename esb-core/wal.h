/* wal.h - the write-ahead log: a directory of append-only segment files of
 * checksummed records. It knows records and segments, not streams; the bus
 * (bus.h) gives records their meaning.
 *
 * Record layout (all integers little-endian), 16-byte header then payload:
 *   0  u32 magic  ESB_WAL_MAGIC
 *   4  u32 crc    CRC-32C over bytes 8 .. 16+len (length, type, flags,
 *                 reserved and payload), so a damaged length is detected
 *   8  u32 len    payload length (<= ESB_WAL_MAX_PAYLOAD)
 *   12 u8  type   ESB_REC_*
 *   13 u8  flags  ESB_WAL_F_MORE: more records of this transaction follow;
 *                 the low bits belong to the record type
 *   14 u16 reserved (0)
 * Segments are named %020u.seg by increasing segment number.
 *
 * Recovery (in esb_wal_open) reads every segment in order and verifies
 * every record. A record that fails is skipped by resynchronising on the
 * next offset where a whole valid record starts. Damage with valid records
 * after it is corruption: it is reported loudly and its bytes are copied to
 * DIR/quarantine/ before being skipped. Damage with no valid record after it
 * in the newest segment is a torn tail from a crash: the segment is cut back
 * to the end of the last complete transaction (a transaction is a run of
 * records flagged ESB_WAL_F_MORE closed by one without it; it is applied
 * all or none, and damage inside it drops all of it).
 *
 * Threading: one thread appends/syncs/rolls/deletes (the bus writer); any
 * thread may esb_wal_read concurrently. */
#ifndef ESB_WAL_H
#define ESB_WAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util.h"

struct esb_io;
struct esb_wal;

#define ESB_WAL_MAGIC       0x31425345u /* bytes "ESB1" */
#define ESB_WAL_HDR         16
#define ESB_WAL_MAX_PAYLOAD (64u * 1024 * 1024)
/* Records of one transaction carry this flag, all but the last. Recovery
 * applies a transaction only when its last record is there and whole. */
#define ESB_WAL_F_MORE 0x80

enum esb_rec_type {
    ESB_REC_MSG = 1,   /* enqueue a message to one or more queues */
    ESB_REC_ACK = 2,   /* an entry of a queue is done */
    ESB_REC_RETRY = 3, /* an entry waits: attempt, not-before */
    ESB_REC_DEAD = 4,  /* an entry moved to a dead-letter queue, with reason */
    ESB_REC_AGG = 5,   /* reserved: aggregator group state */
    ESB_REC_DEDUP = 6, /* reserved: idempotency key with expiry */
};

struct esb_wal_pos {
    uint32_t seg;
    uint64_t off;
};

/* Called for every valid record during recovery, in log order. payload is
 * borrowed for the call. Return 0 to go on, negative to abort the open. */
typedef int (*esb_wal_visit_fn)(void *ctx, struct esb_wal_pos pos, uint8_t type, uint8_t flags,
                                const uint8_t *payload, uint32_t len);

struct esb_wal_opts {
    struct esb_io *io;     /* NULL: esb_io_posix() */
    uint64_t segment_size; /* roll after this many bytes; 0: 64 MiB */
    /* Nonzero: roll to segments zero-filled ahead by a background thread
     * (wal_spare.h), so that a sync need not write the file's size too.
     * Recovery then takes zeros up to a segment's end as free space. */
    int preallocate;
};

/* What recovery found; filled by esb_wal_open. */
struct esb_wal_stats {
    uint64_t records;         /* valid records visited */
    uint64_t segments;        /* segments scanned */
    uint64_t corrupt;         /* damaged regions skipped in the middle */
    uint64_t corrupt_bytes;   /* bytes in them */
    uint64_t truncated_bytes; /* torn tail cut from the newest segment */
};

/* Open (creating if needed) the log in dir, recover it calling visit for
 * every valid record, and get ready to append. On error returns negative
 * with err set and *out NULL. */
int esb_wal_open(const char *dir, const struct esb_wal_opts *opts, esb_wal_visit_fn visit,
                 void *ctx, struct esb_wal **out, struct esb_wal_stats *stats,
                 struct esb_err *err) ESB_WUR;
/* Close all segment files. Does not sync. NULL-safe. */
void esb_wal_close(struct esb_wal *w);

/* Fill hdr (ESB_WAL_HDR bytes) for a record whose payload is the
 * concatenation of the n iovecs. */
void esb_wal_header(uint8_t *hdr, uint8_t type, uint8_t flags, const struct iovec *payload, int n);

/* Append total bytes (whole records) from iov to the active segment, rolling
 * to a new segment first when it would exceed segment_size (the old one is
 * synced before the switch). *start gets the position of the first byte.
 * On a failed or short write the segment is cut back to where the batch
 * began and a negative errno returned (nothing of the batch remains); if
 * that cut fails too, the log is unusable and -EIO is returned. */
int esb_wal_append(struct esb_wal *w, const struct iovec *iov, int iovcnt, size_t total,
                   struct esb_wal_pos *start) ESB_WUR;
/* True once a failure left the log unusable (a failed cut-back or a failed
 * sync while rolling): the caller must treat it as fatal. */
int esb_wal_broken(const struct esb_wal *w);
/* fdatasync the active segment. A failure is fatal to the caller. */
int esb_wal_sync(struct esb_wal *w) ESB_WUR;

/* Read the record at pos: checks magic and CRC; on success the payload is
 * in out (replacing its contents) and *type set. */
int esb_wal_read(struct esb_wal *w, struct esb_wal_pos pos, struct esb_buf *out, uint8_t *type,
                 uint8_t *flags) ESB_WUR;

/* The segment new appends go to, and the oldest existing segment. */
uint32_t esb_wal_active(const struct esb_wal *w);
uint32_t esb_wal_oldest(const struct esb_wal *w);
/* Bytes in segment seg (0 if it does not exist); total bytes of all segments. */
uint64_t esb_wal_segment_bytes(const struct esb_wal *w, uint32_t seg);
uint64_t esb_wal_total_bytes(const struct esb_wal *w);
/* Delete the oldest segment (must not be the active one). */
int esb_wal_delete_oldest(struct esb_wal *w) ESB_WUR;
/* 0 while the active segment is still in the directory; -ENOENT once it
 * was unlinked (someone removed the bus directory or its files: appends
 * would still succeed, into a file no restart will find), or another
 * negative errno from fstat. */
int esb_wal_check(struct esb_wal *w);
/* Free bytes on the file system holding the log, or negative errno. */
int64_t esb_wal_free_bytes(struct esb_wal *w);

#endif
