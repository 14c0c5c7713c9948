/* io.h - the one I/O interface every byte of bus file I/O goes through
 * (SQLite's VFS idea). esb_io_posix() is the real one; tests wrap it with
 * esb_io_fault_new() to fail the N-th call of a kind deterministically.
 *
 * All functions return >= 0 on success and a negative errno on failure
 * (never -1 with errno). Implementations must be thread-safe. */
#ifndef ESB_IO_H
#define ESB_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct esb_io {
    /* openat(dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW, mode): an fd or -errno. */
    int (*open)(struct esb_io *io, int dirfd, const char *name, int flags, mode_t mode);
    int (*close)(struct esb_io *io, int fd);
    /* pwritev at off: bytes written (may be short) or -errno. */
    ssize_t (*pwritev)(struct esb_io *io, int fd, const struct iovec *iov, int iovcnt,
                       off_t off);
    /* pread at off: bytes read (0 at EOF) or -errno. */
    ssize_t (*pread)(struct esb_io *io, int fd, void *buf, size_t n, off_t off);
    int (*fdatasync)(struct esb_io *io, int fd);
    int (*fsync)(struct esb_io *io, int fd); /* also used on directory fds */
    int (*ftruncate)(struct esb_io *io, int fd, off_t len);
    /* size of the file, or -errno */
    off_t (*size)(struct esb_io *io, int fd);
    int (*unlinkat)(struct esb_io *io, int dirfd, const char *name);
    int (*renameat)(struct esb_io *io, int dirfd, const char *from, const char *to);
    /* free bytes available to us on the file system holding fd, or -errno */
    int64_t (*free_bytes)(struct esb_io *io, int fd);
    void (*destroy)(struct esb_io *io); /* NULL for the static posix instance */
};

/* The real POSIX implementation (a shared static instance; never destroy it). */
struct esb_io *esb_io_posix(void);

/* Fault injection. Each operation kind has a call counter; a rule fails the
 * N-th call (1-based, counted from when the rule is armed) of one kind. */
enum esb_io_op {
    ESB_IO_OPEN,
    ESB_IO_WRITE,
    ESB_IO_READ,
    ESB_IO_DATASYNC, /* fdatasync and fsync */
    ESB_IO_TRUNCATE,
    ESB_IO_UNLINK,
    ESB_IO_RENAME,
    ESB_IO_NOPS
};

enum esb_io_fault_kind {
    ESB_IO_FAIL,  /* return -err without doing anything */
    ESB_IO_SHORT, /* write: write only half the bytes (at least 1 if n > 1) and
                     return the short count; every later write fails with -err */
};

/* A fault-injecting wrapper around base (borrowed). Free with io->destroy(io). */
struct esb_io *esb_io_fault_new(struct esb_io *base);
/* Arm: fail the nth next call of op (1 = the very next one) with kind/err.
 * err is a positive errno (EIO, ENOSPC, ...). One rule per op; re-arming replaces. */
void esb_io_fault_arm(struct esb_io *io, enum esb_io_op op, unsigned nth,
                      enum esb_io_fault_kind kind, int err);
/* Disarm all rules (sticky short-write failure included). */
void esb_io_fault_clear(struct esb_io *io);
/* How many calls of op have been made through the wrapper so far. */
unsigned long esb_io_fault_count(struct esb_io *io, enum esb_io_op op);
/* How many faults have fired so far. */
unsigned long esb_io_fault_fired(struct esb_io *io);

#endif
