/* io.c - the real POSIX struct esb_io (see io.h): thin wrappers that add
 * O_CLOEXEC | O_NOFOLLOW to every open, retry on EINTR, and turn the -1/errno
 * convention into a returned -errno. Stateless, so one static instance serves
 * every thread. */
#include "config.h"

#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static int px_open(struct esb_io *io, int dirfd, const char *name, int flags, mode_t mode)
{
    int fd;
    do fd = openat(dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW, mode);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

static int px_close(struct esb_io *io, int fd)
{
    /* Linux releases the fd even when close fails with EINTR: never retry. */
    if (close(fd) < 0 && errno != EINTR) return -errno;
    return 0;
}

static ssize_t px_pwritev(struct esb_io *io, int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    ssize_t n;
    do n = pwritev(fd, iov, iovcnt, off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static ssize_t px_pread(struct esb_io *io, int fd, void *buf, size_t n, off_t off)
{
    ssize_t r;
    do r = pread(fd, buf, n, off);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

static int px_fdatasync(struct esb_io *io, int fd)
{
    int r;
    do r = fdatasync(fd);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static int px_fsync(struct esb_io *io, int fd)
{
    int r;
    do r = fsync(fd);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static int px_ftruncate(struct esb_io *io, int fd, off_t len)
{
    int r;
    do r = ftruncate(fd, len);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static off_t px_size(struct esb_io *io, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    return st.st_size;
}

static int px_unlinkat(struct esb_io *io, int dirfd, const char *name)
{
    return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
}

static int px_renameat(struct esb_io *io, int dirfd, const char *from, const char *to)
{
    return renameat(dirfd, from, dirfd, to) < 0 ? -errno : 0;
}

static int64_t px_free_bytes(struct esb_io *io, int fd)
{
    struct statvfs sv;
    int r;
    do r = fstatvfs(fd, &sv);
    while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    uint64_t bytes = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    return bytes > INT64_MAX ? INT64_MAX : (int64_t)bytes;
}

static struct esb_io posix_io = {
    .open = px_open,
    .close = px_close,
    .pwritev = px_pwritev,
    .pread = px_pread,
    .fdatasync = px_fdatasync,
    .fsync = px_fsync,
    .ftruncate = px_ftruncate,
    .size = px_size,
    .unlinkat = px_unlinkat,
    .renameat = px_renameat,
    .free_bytes = px_free_bytes,
    .destroy = NULL,
};

struct esb_io *esb_io_posix(void)
{
    return &posix_io;
}
