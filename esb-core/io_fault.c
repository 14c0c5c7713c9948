/* io_fault.c - a fault-injecting struct esb_io that wraps another (see io.h).
 *
 * Each counted operation (open, pwritev, pread, fdatasync + fsync, ftruncate,
 * unlinkat, renameat) bumps a per-kind call counter; close, size and
 * free_bytes pass straight through uncounted. One rule per kind counts down
 * from when it was armed and fires on its nth call, then disarms itself:
 *   ESB_IO_FAIL  - return -err without calling the base.
 *   ESB_IO_SHORT - (writes) pass the first half of the bytes (at least 1 when
 *                  there are 2 or more) to the base and return its count, then
 *                  fail every later write with -err until esb_io_fault_clear.
 *                  A write of 0 or 1 byte cannot be shortened: it fails with
 *                  -err instead, and the sticky failure starts all the same.
 *                  On other kinds SHORT behaves as FAIL.
 * esb_io_fault_fired counts rules that fired, not the sticky failures after.
 * Counters and rules sit under one mutex, taken only to decide; the base is
 * called outside it, so slow syncs on one thread do not serialise the others. */
#include "config.h"

#include "io.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct fault_rule {
    int armed;
    unsigned left; /* calls until it fires; fires when it reaches 0 */
    enum esb_io_fault_kind kind;
    int err;
};

struct fault_io {
    struct esb_io io; /* first: a struct esb_io * is a struct fault_io * */
    struct esb_io *base;
    pthread_mutex_t mu;
    unsigned long count[ESB_IO_NOPS];
    struct fault_rule rule[ESB_IO_NOPS];
    int sticky_err; /* > 0: every write fails with -sticky_err */
    unsigned long fired;
};

static void fault_destroy(struct esb_io *io);

static struct fault_io *to_fault(struct esb_io *io)
{
    if (!io || io->destroy != fault_destroy) {
        fprintf(stderr, "esb: esb_io_fault_* called on an io that is not a fault wrapper\n");
        abort();
    }
    return (struct fault_io *)io;
}

enum verdict { PASS, FAIL, SHORT };

/* Count one call of op and decide its fate; *err gets the errno to inject. */
static enum verdict decide(struct fault_io *f, enum esb_io_op op, int *err)
{
    enum verdict v = PASS;
    pthread_mutex_lock(&f->mu);
    f->count[op]++;
    struct fault_rule *r = &f->rule[op];
    if (r->armed && --r->left == 0) {
        r->armed = 0;
        f->fired++;
        *err = r->err;
        v = FAIL;
        if (r->kind == ESB_IO_SHORT && op == ESB_IO_WRITE) {
            f->sticky_err = r->err;
            v = SHORT;
        }
    } else if (op == ESB_IO_WRITE && f->sticky_err) {
        *err = f->sticky_err;
        v = FAIL;
    }
    pthread_mutex_unlock(&f->mu);
    return v;
}

static int f_open(struct esb_io *io, int dirfd, const char *name, int flags, mode_t mode)
{
    struct fault_io *f = (struct fault_io *)io;
    int err = 0;
    if (decide(f, ESB_IO_OPEN, &err) != PASS) return -err;
    return f->base->open(f->base, dirfd, name, flags, mode);
}

static int f_close(struct esb_io *io, int fd)
{
    struct fault_io *f = (struct fault_io *)io;
    return f->base->close(f->base, fd);
}

/* Write the first half of the iovec's bytes through the base. */
static ssize_t short_write(struct fault_io *f, int fd, const struct iovec *iov, int iovcnt,
                           off_t off, int err)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    if (total < 2) return -err;
    size_t want = total / 2;
    struct iovec *cut = esb_malloc((size_t)iovcnt * sizeof(*cut));
    int n = 0;
    for (int i = 0; i < iovcnt && want; i++) {
        cut[n] = iov[i];
        if (cut[n].iov_len > want) cut[n].iov_len = want;
        want -= cut[n].iov_len;
        n++;
    }
    ssize_t r = f->base->pwritev(f->base, fd, cut, n, off);
    free(cut);
    return r;
}

static ssize_t f_pwritev(struct esb_io *io, int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    struct fault_io *f = (struct fault_io *)io;
    int err = 0;
    switch (decide(f, ESB_IO_WRITE, &err)) {
    case FAIL:
        return -err;
    case SHORT:
        return short_write(f, fd, iov, iovcnt, off, err);
    case PASS:
        break;
    }
    return f->base->pwritev(f->base, fd, iov, iovcnt, off);
}

static ssize_t f_pread(struct esb_io *io, int fd, void *buf, size_t n, off_t off)
{
    struct fault_io *f = (struct fault_io *)io;
    int err = 0;
    if (decide(f, ESB_IO_READ, &err) != PASS) return -err;
    return f->base->pread(f->base, fd, buf, n, off);
}

static int f_fdatasync(struct esb_io *io, int fd)
{
    struct fault_io *f = (struct fault_io *)io;
    int err = 0;
    if (decide(f, ESB_IO_DATASYNC, &err) != PASS) return -err;
    return f->base->fdatasync(f->base, fd);
}

static int f_fsync(struct esb_io *io, int fd)
{
    struct fault_io *f = (struct fault_io *)io;
    int err = 0;
    if (decide(f, ESB_IO_DATASYNC, &err) != PASS) return -err;
    return f->base->fsync(f->base, fd);
}

static int f_ftruncate(struct esb_io *io, int fd, off_t len)
{
    struct fault_io *f = (struct fault_io *)io;
    int err = 0;
    if (decide(f, ESB_IO_TRUNCATE, &err) != PASS) return -err;
    return f->base->ftruncate(f->base, fd, len);
}

static off_t f_size(struct esb_io *io, int fd)
{
    struct fault_io *f = (struct fault_io *)io;
    return f->base->size(f->base, fd);
}

static int f_unlinkat(struct esb_io *io, int dirfd, const char *name)
{
    struct fault_io *f = (struct fault_io *)io;
    int err = 0;
    if (decide(f, ESB_IO_UNLINK, &err) != PASS) return -err;
    return f->base->unlinkat(f->base, dirfd, name);
}

static int f_renameat(struct esb_io *io, int dirfd, const char *from, const char *to)
{
    struct fault_io *f = (struct fault_io *)io;
    int err = 0;
    if (decide(f, ESB_IO_RENAME, &err) != PASS) return -err;
    return f->base->renameat(f->base, dirfd, from, to);
}

static int64_t f_free_bytes(struct esb_io *io, int fd)
{
    struct fault_io *f = (struct fault_io *)io;
    return f->base->free_bytes(f->base, fd);
}

static void fault_destroy(struct esb_io *io)
{
    struct fault_io *f = (struct fault_io *)io;
    pthread_mutex_destroy(&f->mu);
    free(f);
}

struct esb_io *esb_io_fault_new(struct esb_io *base)
{
    struct fault_io *f = esb_calloc(1, sizeof(*f));
    f->io = (struct esb_io){
        .open = f_open,
        .close = f_close,
        .pwritev = f_pwritev,
        .pread = f_pread,
        .fdatasync = f_fdatasync,
        .fsync = f_fsync,
        .ftruncate = f_ftruncate,
        .size = f_size,
        .unlinkat = f_unlinkat,
        .renameat = f_renameat,
        .free_bytes = f_free_bytes,
        .destroy = fault_destroy,
    };
    f->base = base;
    pthread_mutex_init(&f->mu, NULL);
    return &f->io;
}

void esb_io_fault_arm(struct esb_io *io, enum esb_io_op op, unsigned nth,
                      enum esb_io_fault_kind kind, int err)
{
    struct fault_io *f = to_fault(io);
    if ((unsigned)op >= ESB_IO_NOPS) return;
    pthread_mutex_lock(&f->mu);
    f->rule[op] = (struct fault_rule){1, nth ? nth : 1, kind, err > 0 ? err : EIO};
    pthread_mutex_unlock(&f->mu);
}

void esb_io_fault_clear(struct esb_io *io)
{
    struct fault_io *f = to_fault(io);
    pthread_mutex_lock(&f->mu);
    memset(f->rule, 0, sizeof(f->rule));
    f->sticky_err = 0;
    pthread_mutex_unlock(&f->mu);
}

unsigned long esb_io_fault_count(struct esb_io *io, enum esb_io_op op)
{
    struct fault_io *f = to_fault(io);
    if ((unsigned)op >= ESB_IO_NOPS) return 0;
    pthread_mutex_lock(&f->mu);
    unsigned long n = f->count[op];
    pthread_mutex_unlock(&f->mu);
    return n;
}

unsigned long esb_io_fault_fired(struct esb_io *io)
{
    struct fault_io *f = to_fault(io);
    pthread_mutex_lock(&f->mu);
    unsigned long n = f->fired;
    pthread_mutex_unlock(&f->mu);
    return n;
}
