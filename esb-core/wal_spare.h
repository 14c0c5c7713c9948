/* wal_spare.h - keeps one zero-filled segment file ready for the log.
 *
 * Why: an append that grows a file changes its size, so on ext4 (and most
 * file systems) every fdatasync must also write the inode, a second
 * synchronous write per commit. Overwriting blocks that were written
 * before (zeros) changes no metadata, and the fdatasync only flushes the
 * data: measured here 0.25 ms instead of 0.37 ms for 64 KiB. fallocate
 * does not help: its unwritten extents need a metadata change on first
 * write too. So a background thread writes a spare file full of zeros,
 * paced (ZERO_CHUNK at a time, with a pause) so that it does not swamp
 * the device the commits sync on, and syncs it; when the log rolls it
 * renames the spare to the new segment's name.
 *
 * The spare is DIR/spare.seg.tmp; a leftover one (a crash while it was
 * being filled) is removed at start. All I/O goes through the io seam.
 *
 * Threading: esb_wal_spare_take and _stop are called by the log's writer
 * thread only; the filler thread is internal. */
#ifndef ESB_WAL_SPARE_H
#define ESB_WAL_SPARE_H

#include <stddef.h>
#include <stdint.h>

struct esb_io;
struct esb_wal_spare;

/* Start filling a spare of size bytes in the directory dirfd (dir is for
 * messages). Returns NULL if the thread cannot be started (the log then
 * simply grows its segments). */
struct esb_wal_spare *esb_wal_spare_start(struct esb_io *io, int dirfd, const char *dir,
                                          uint64_t size);

/* If a spare is ready, rename it to name in the directory, sync the
 * directory and return its open fd (read-write); the next spare is then
 * prepared. Returns -EAGAIN when none is ready yet, another negative errno
 * if the rename or sync failed (the spare is then dropped). */
int esb_wal_spare_take(struct esb_wal_spare *sp, const char *name);

/* Stop the filler, remove an unused spare, free. NULL-safe. */
void esb_wal_spare_stop(struct esb_wal_spare *sp);

/* True if the n bytes at p are all zero. */
int esb_all_zero(const uint8_t *p, size_t n);

#endif
