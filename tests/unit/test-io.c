/* test-io.c - the POSIX esb_io against a real temporary directory, and the
 * fault-injecting wrapper: FAIL, SHORT + sticky failure, sync faults, counters,
 * clear and re-arm, and exact counting from several threads. */
#include "config.h"

#include "io.h"
#include "util.h"
#include "../tap.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
static int dirfd_;

static struct iovec iov_of(const char *s)
{
    return (struct iovec){(void *)(uintptr_t)s, strlen(s)};
}

/* Read the whole file name into buf (NUL-terminated); returns its size or -1. */
static ssize_t slurp(const char *name, char *buf, size_t cap)
{
    int fd = openat(dirfd_, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = pread(fd, buf, cap - 1, 0);
    close(fd);
    if (n >= 0) buf[n] = '\0';
    return n;
}

static int exists(const char *name)
{
    struct stat st;
    return fstatat(dirfd_, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void test_posix(void)
{
    struct esb_io *io = esb_io_posix();
    ok(io == esb_io_posix() && io->destroy == NULL, "esb_io_posix is one static instance");

    int fd = io->open(io, dirfd_, "a", O_RDWR | O_CREAT | O_EXCL, 0644);
    ok(fd >= 0, "open creates a file (fd %d)", fd);
    ok((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, "the fd has FD_CLOEXEC");
    ok(io->open(io, dirfd_, "a", O_RDWR | O_CREAT | O_EXCL, 0644) == -EEXIST,
       "O_EXCL on an existing file returns -EEXIST");

    struct iovec v[3] = {iov_of("hello "), iov_of("wide "), iov_of("world")};
    ok(io->pwritev(io, fd, v, 3, 0) == 16, "pwritev of 3 iovecs writes 16 bytes");
    struct iovec t = iov_of("tail");
    ok(io->pwritev(io, fd, &t, 1, 100) == 4, "pwritev at offset 100");
    ok(io->size(io, fd) == 104, "size is 104");

    char buf[128] = {0};
    ok(io->pread(io, fd, buf, 16, 0) == 16 && memcmp(buf, "hello wide world", 16) == 0,
       "pread reads back the gathered write");
    ok(io->pread(io, fd, buf, sizeof(buf), 102) == 2 && memcmp(buf, "il", 2) == 0,
       "pread near the end is short");
    ok(io->pread(io, fd, buf, sizeof(buf), 104) == 0, "pread at EOF returns 0");
    ok(io->pread(io, fd, buf, 4, 50) == 4 && memcmp(buf, "\0\0\0\0", 4) == 0,
       "the hole reads as zeros");

    ok(io->ftruncate(io, fd, 5) == 0 && io->size(io, fd) == 5, "ftruncate to 5");
    ok(io->pread(io, fd, buf, sizeof(buf), 0) == 5 && memcmp(buf, "hello", 5) == 0,
       "truncated content is \"hello\"");
    ok(io->fdatasync(io, fd) == 0, "fdatasync");
    ok(io->fsync(io, fd) == 0, "fsync of a file");
    ok(io->fsync(io, dirfd_) == 0, "fsync of the directory fd");
    ok(io->close(io, fd) == 0, "close");

    ok(io->renameat(io, dirfd_, "a", "b") == 0 && !exists("a") && exists("b"), "renameat a -> b");
    ok(slurp("b", buf, sizeof(buf)) == 5 && strcmp(buf, "hello") == 0, "b holds the data");
    ok(io->open(io, dirfd_, "a", O_RDONLY, 0) == -ENOENT, "opening the old name: -ENOENT");
    ok(io->renameat(io, dirfd_, "a", "c") == -ENOENT, "renameat of a missing file: -ENOENT");
    ok(io->unlinkat(io, dirfd_, "b") == 0 && !exists("b"), "unlinkat b");
    ok(io->unlinkat(io, dirfd_, "b") == -ENOENT, "unlinkat again: -ENOENT");

    int64_t fb = io->free_bytes(io, dirfd_);
    ok(fb > 0, "free_bytes > 0 (%lld)", (long long)fb);

    fd = io->open(io, dirfd_, "target", O_RDWR | O_CREAT, 0644);
    io->close(io, fd);
    if (symlinkat("target", dirfd_, "link") != 0) bail("symlinkat: %s", strerror(errno));
    ok(io->open(io, dirfd_, "link", O_RDONLY, 0) == -ELOOP, "O_NOFOLLOW refuses a symlink: -ELOOP");
    ok(io->unlinkat(io, dirfd_, "link") == 0 && io->unlinkat(io, dirfd_, "target") == 0,
       "clean up link and target");

    /* Failures are -errno, never -1. */
    ok(io->pread(io, -1, buf, 1, 0) == -EBADF, "pread on a bad fd: -EBADF");
    ok(io->pwritev(io, -1, &t, 1, 0) == -EBADF, "pwritev on a bad fd: -EBADF");
    ok(io->size(io, -1) == -EBADF, "size on a bad fd: -EBADF");
    ok(io->free_bytes(io, -1) == -EBADF, "free_bytes on a bad fd: -EBADF");
    ok(io->fdatasync(io, -1) == -EBADF && io->fsync(io, -1) == -EBADF, "syncs on a bad fd: -EBADF");
    ok(io->ftruncate(io, -1, 0) == -EBADF, "ftruncate on a bad fd: -EBADF");
    ok(io->close(io, -1) == -EBADF, "close of a bad fd: -EBADF");
    fd = io->open(io, dirfd_, "ro", O_RDONLY | O_CREAT, 0644);
    ok(io->pwritev(io, fd, &t, 1, 0) == -EBADF, "pwritev on a read-only fd: -EBADF");
    io->close(io, fd);
    io->unlinkat(io, dirfd_, "ro");
}

static ssize_t write_str(struct esb_io *io, int fd, const char *s, off_t off)
{
    struct iovec v = iov_of(s);
    return io->pwritev(io, fd, &v, 1, off);
}

static void test_fault_write(void)
{
    struct esb_io *f = esb_io_fault_new(esb_io_posix());
    int fd = f->open(f, dirfd_, "w", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) bail("open w: %d", fd);
    char buf[64];

    esb_io_fault_arm(f, ESB_IO_WRITE, 2, ESB_IO_FAIL, ENOSPC);
    ok(write_str(f, fd, "AAAA", 0) == 4, "nth=2 FAIL: first write ok");
    ok(write_str(f, fd, "BBBB", 4) == -ENOSPC, "second write: -ENOSPC");
    ok(write_str(f, fd, "CCCC", 8) == 4, "third write ok (the rule fired once)");
    ok(slurp("w", buf, sizeof(buf)) == 12 && memcmp(buf, "AAAA\0\0\0\0CCCC", 12) == 0,
       "the failed write never reached the file");
    ok(esb_io_fault_count(f, ESB_IO_WRITE) == 3 && esb_io_fault_fired(f) == 1,
       "3 writes counted, 1 fault fired");

    /* SHORT: half of a gathered write, then every write fails until clear */
    esb_io_fault_arm(f, ESB_IO_WRITE, 1, ESB_IO_SHORT, EIO);
    struct iovec v[3] = {iov_of("ab"), iov_of("cdefg"), iov_of("hij")}; /* 10 bytes */
    ok(f->pwritev(f, fd, v, 3, 20) == 5, "SHORT writes 5 of 10 bytes across iovecs");
    ok(slurp("w", buf, sizeof(buf)) == 25 && memcmp(buf + 20, "abcde", 5) == 0,
       "exactly the first half reached the file");
    ok(write_str(f, fd, "X", 40) == -EIO && write_str(f, fd, "YY", 41) == -EIO,
       "later writes fail with -EIO (sticky)");
    ok(esb_io_fault_fired(f) == 2, "sticky failures do not count as new firings");
    ok(f->fdatasync(f, fd) == 0 && f->pread(f, fd, buf, 1, 0) == 1,
       "other kinds still work while writes are stuck");
    esb_io_fault_clear(f);
    ok(write_str(f, fd, "Z", 40) == 1, "after clear writes work again");

    esb_io_fault_arm(f, ESB_IO_WRITE, 1, ESB_IO_SHORT, EIO);
    ok(write_str(f, fd, "Q", 50) == -EIO, "SHORT on a 1-byte write fails outright");
    ok(write_str(f, fd, "QQ", 50) == -EIO, "... and starts the sticky failure");
    esb_io_fault_clear(f);
    esb_io_fault_arm(f, ESB_IO_WRITE, 1, ESB_IO_SHORT, ENOSPC);
    ok(write_str(f, fd, "0123456789abcdefghi", 60) == 9, "SHORT of 19 bytes writes 9");
    ok(write_str(f, fd, "x", 0) == -ENOSPC, "sticky error uses the armed errno");
    esb_io_fault_clear(f);

    /* nth counts from arming; re-arming replaces; clear disarms */
    unsigned long before = esb_io_fault_count(f, ESB_IO_WRITE);
    esb_io_fault_arm(f, ESB_IO_WRITE, 1, ESB_IO_FAIL, EIO);
    esb_io_fault_arm(f, ESB_IO_WRITE, 3, ESB_IO_FAIL, EROFS);
    int r1 = (int)write_str(f, fd, "1", 0), r2 = (int)write_str(f, fd, "2", 0);
    int r3 = (int)write_str(f, fd, "3", 0), r4 = (int)write_str(f, fd, "4", 0);
    ok(r1 == 1 && r2 == 1 && r3 == -EROFS && r4 == 1, "re-arming replaced nth=1 with nth=3");
    ok(esb_io_fault_count(f, ESB_IO_WRITE) == before + 4, "counter kept counting (+4)");
    esb_io_fault_arm(f, ESB_IO_WRITE, 1, ESB_IO_FAIL, EIO);
    esb_io_fault_clear(f);
    ok(write_str(f, fd, "5", 0) == 1, "clear disarms a pending rule");

    f->close(f, fd);
    f->unlinkat(f, dirfd_, "w");
    f->destroy(f);
}

static void test_fault_other(void)
{
    struct esb_io *f = esb_io_fault_new(esb_io_posix());
    char buf[8];

    esb_io_fault_arm(f, ESB_IO_OPEN, 1, ESB_IO_FAIL, EACCES);
    ok(f->open(f, dirfd_, "o", O_RDWR | O_CREAT, 0644) == -EACCES && !exists("o"),
       "OPEN FAIL: -EACCES and nothing created");
    int fd = f->open(f, dirfd_, "o", O_RDWR | O_CREAT, 0644);
    ok(fd >= 0 && esb_io_fault_count(f, ESB_IO_OPEN) == 2, "next open works; 2 opens counted");
    ok(write_str(f, fd, "data", 0) == 4, "write through the wrapper");

    esb_io_fault_arm(f, ESB_IO_DATASYNC, 2, ESB_IO_FAIL, EIO);
    ok(f->fdatasync(f, fd) == 0, "DATASYNC nth=2: fdatasync ok");
    ok(f->fsync(f, dirfd_) == -EIO, "then fsync fails with -EIO (both kinds count)");
    ok(f->fdatasync(f, fd) == 0, "then fdatasync ok again");
    ok(esb_io_fault_count(f, ESB_IO_DATASYNC) == 3, "3 syncs counted");

    esb_io_fault_arm(f, ESB_IO_READ, 1, ESB_IO_FAIL, EIO);
    ok(f->pread(f, fd, buf, 4, 0) == -EIO, "READ FAIL: -EIO");
    ok(f->pread(f, fd, buf, 4, 0) == 4 && memcmp(buf, "data", 4) == 0, "next read ok");

    esb_io_fault_arm(f, ESB_IO_TRUNCATE, 1, ESB_IO_SHORT, EIO);
    ok(f->ftruncate(f, fd, 0) == -EIO && f->size(f, fd) == 4,
       "TRUNCATE (SHORT acts as FAIL): -EIO and size unchanged");
    f->close(f, fd);

    esb_io_fault_arm(f, ESB_IO_RENAME, 1, ESB_IO_FAIL, EXDEV);
    ok(f->renameat(f, dirfd_, "o", "p") == -EXDEV && exists("o") && !exists("p"),
       "RENAME FAIL: -EXDEV and nothing moved");
    esb_io_fault_arm(f, ESB_IO_UNLINK, 1, ESB_IO_FAIL, EBUSY);
    ok(f->unlinkat(f, dirfd_, "o") == -EBUSY && exists("o"), "UNLINK FAIL: -EBUSY, file kept");
    ok(f->unlinkat(f, dirfd_, "o") == 0 && !exists("o"), "next unlink works");
    ok(f->free_bytes(f, dirfd_) > 0, "free_bytes passes through");
    ok(esb_io_fault_count(f, ESB_IO_UNLINK) == 2 && esb_io_fault_count(f, ESB_IO_RENAME) == 1 &&
           esb_io_fault_count(f, ESB_IO_TRUNCATE) == 1 && esb_io_fault_count(f, ESB_IO_READ) == 2,
       "per-kind counters");
    ok(esb_io_fault_fired(f) == 6, "6 faults fired in all");
    f->destroy(f);
}

struct worker {
    struct esb_io *io;
    int fd, failures;
};

static void *write_loop(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 1000; i++)
        if (write_str(w->io, w->fd, "t", i) < 0) w->failures++;
    return NULL;
}

static void test_fault_threads(void)
{
    struct esb_io *f = esb_io_fault_new(esb_io_posix());
    int fd = f->open(f, dirfd_, "th", O_RDWR | O_CREAT, 0644);
    esb_io_fault_arm(f, ESB_IO_WRITE, 2500, ESB_IO_FAIL, EIO);
    struct worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){f, fd, 0};
        if (pthread_create(&t[i], NULL, write_loop, &w[i])) bail("pthread_create");
    }
    int failures = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        failures += w[i].failures;
    }
    ok(esb_io_fault_count(f, ESB_IO_WRITE) == 4000, "4 threads x 1000 writes: 4000 counted");
    ok(failures == 1 && esb_io_fault_fired(f) == 1, "nth=2500 fired exactly once (%d failures)",
       failures);
    f->close(f, fd);
    f->unlinkat(f, dirfd_, "th");
    f->destroy(f);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/esb-test-io-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) bail("mkdtemp %s: %s", dir, strerror(errno));
    dirfd_ = esb_io_posix()->open(esb_io_posix(), AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0);
    if (dirfd_ < 0) bail("open %s: %s", dir, strerror(-dirfd_));

    test_posix();
    test_fault_write();
    test_fault_other();
    test_fault_threads();

    close(dirfd_);
    ok(rmdir(dir) == 0, "the temporary directory is empty at the end");
    return tap_done();
}
