/* wal_spare.c - the zero-filled spare segment. See wal_spare.h. */
#include "config.h"

#include "wal_spare.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "io.h"
#include "log.h"
#include "util.h"

#define SPARE_NAME  "spare.seg.tmp"
#define ZERO_CHUNK  (1024 * 1024)
#define ZERO_PAUSE  4000000L /* ns between chunks: at most ~250 MB/s of zeros */
#define RETRY_AFTER 10       /* s before trying again after a failed fill */

struct esb_wal_spare {
    struct esb_io *io;
    int dirfd;
    char *dir;
    uint64_t size;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int stop;
    int want;     /* a new spare is wanted (none ready, none being filled) */
    int ready_fd; /* >= 0: the spare is whole and synced */
};

int esb_all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zero[256];
    while (n >= sizeof(zero)) {
        if (memcmp(p, zero, sizeof(zero)) != 0) return 0;
        p += sizeof(zero);
        n -= sizeof(zero);
    }
    return n == 0 || memcmp(p, zero, n) == 0;
}

/* Pause between chunks; returns nonzero if asked to stop. */
static int pause_or_stop(struct esb_wal_spare *sp, long ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ns;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&sp->lock);
    if (!sp->stop) pthread_cond_timedwait(&sp->cv, &sp->lock, &ts);
    int stop = sp->stop;
    pthread_mutex_unlock(&sp->lock);
    return stop;
}

/* Create and fill one spare. Returns its fd, or a negative errno (the
 * partial file is removed), or -ECANCELED when stopped. */
static int fill(struct esb_wal_spare *sp, const uint8_t *zeros)
{
    struct esb_io *io = sp->io;
    int fd = io->open(io, sp->dirfd, SPARE_NAME, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return fd;
    int rc = 0;
    for (uint64_t off = 0; off < sp->size && rc == 0;) {
        size_t n = sp->size - off < ZERO_CHUNK ? (size_t)(sp->size - off) : ZERO_CHUNK;
        struct iovec iov = {.iov_base = (void *)zeros, .iov_len = n};
        ssize_t w = io->pwritev(io, fd, &iov, 1, (off_t)off);
        if (w <= 0) {
            rc = w < 0 ? (int)w : -EIO;
            break;
        }
        /* Write this chunk out now (no cache flush): left in the page
         * cache until the final fdatasync, 64 MiB of zeros went to the
         * device at once, and the writer's fdatasyncs queued behind them
         * (tens of ms of stall). */
        (void)sync_file_range(fd, (off_t)off, (off_t)w,
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
        off += (uint64_t)w;
        if (off < sp->size && pause_or_stop(sp, ZERO_PAUSE)) rc = -ECANCELED;
    }
    if (rc == 0) rc = io->fdatasync(io, fd);
    if (rc == 0) return fd;
    io->close(io, fd);
    (void)io->unlinkat(io, sp->dirfd, SPARE_NAME);
    return rc;
}

static void *filler_main(void *arg)
{
    esb_thread_name("esb-bus-spare");
    struct esb_wal_spare *sp = arg;
    uint8_t *zeros = esb_calloc(1, ZERO_CHUNK);
    pthread_mutex_lock(&sp->lock);
    while (!sp->stop) {
        if (!sp->want) {
            pthread_cond_wait(&sp->cv, &sp->lock);
            continue;
        }
        pthread_mutex_unlock(&sp->lock);
        int fd = fill(sp, zeros);
        if (fd < 0 && fd != -ECANCELED) {
            esb_warn("wal spare segment not prepared dir=%s error=\"%s\"; segments grow as "
                     "they are written until the next try in %d s",
                     sp->dir, esb_strerror(fd), RETRY_AFTER);
            (void)pause_or_stop(sp, RETRY_AFTER * 1000000000L);
        }
        pthread_mutex_lock(&sp->lock);
        if (fd >= 0) {
            if (sp->stop) {
                sp->io->close(sp->io, fd);
            } else {
                sp->ready_fd = fd;
                sp->want = 0;
            }
        }
    }
    pthread_mutex_unlock(&sp->lock);
    free(zeros);
    return NULL;
}

struct esb_wal_spare *esb_wal_spare_start(struct esb_io *io, int dirfd, const char *dir,
                                          uint64_t size)
{
    struct esb_wal_spare *sp = esb_calloc(1, sizeof(*sp));
    sp->io = io;
    sp->dirfd = dirfd;
    sp->dir = esb_strdup(dir);
    sp->size = size;
    sp->want = 1;
    sp->ready_fd = -1;
    pthread_mutex_init(&sp->lock, NULL);
    pthread_cond_init(&sp->cv, NULL);
    (void)io->unlinkat(io, dirfd, SPARE_NAME); /* a leftover may be partial */
    if (pthread_create(&sp->thread, NULL, filler_main, sp) != 0) {
        esb_warn("wal spare thread not started dir=%s; segments grow as they are written", dir);
        pthread_mutex_destroy(&sp->lock);
        pthread_cond_destroy(&sp->cv);
        free(sp->dir);
        free(sp);
        return NULL;
    }
    return sp;
}

int esb_wal_spare_take(struct esb_wal_spare *sp, const char *name)
{
    pthread_mutex_lock(&sp->lock);
    int fd = sp->ready_fd;
    sp->ready_fd = -1;
    pthread_mutex_unlock(&sp->lock);
    if (fd < 0) return -EAGAIN;
    struct esb_io *io = sp->io;
    int rc = io->renameat(io, sp->dirfd, SPARE_NAME, name);
    if (rc == 0) {
        rc = io->fsync(io, sp->dirfd);
        /* The caller will not use name: take it away again, so that it can
         * create the segment itself. */
        if (rc < 0) (void)io->unlinkat(io, sp->dirfd, name);
    } else {
        (void)io->unlinkat(io, sp->dirfd, SPARE_NAME);
    }
    if (rc < 0) {
        io->close(io, fd);
        fd = rc;
    }
    pthread_mutex_lock(&sp->lock);
    sp->want = 1;
    pthread_cond_signal(&sp->cv);
    pthread_mutex_unlock(&sp->lock);
    return fd;
}

void esb_wal_spare_stop(struct esb_wal_spare *sp)
{
    if (!sp) return;
    pthread_mutex_lock(&sp->lock);
    sp->stop = 1;
    pthread_cond_signal(&sp->cv);
    pthread_mutex_unlock(&sp->lock);
    pthread_join(sp->thread, NULL);
    if (sp->ready_fd >= 0) sp->io->close(sp->io, sp->ready_fd);
    (void)sp->io->unlinkat(sp->io, sp->dirfd, SPARE_NAME);
    pthread_mutex_destroy(&sp->lock);
    pthread_cond_destroy(&sp->cv);
    free(sp->dir);
    free(sp);
}
