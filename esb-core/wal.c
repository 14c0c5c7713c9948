/* wal.c - segmented, checksummed append-only log. See wal.h for the format
 * and the recovery rules. */
#include "config.h"

#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "io.h"
#include "log.h"
#include "wal_spare.h"

#define DEFAULT_SEGMENT_SIZE (64ull * 1024 * 1024)
#define READ_AHEAD           4096
#define WAL_IOV_MAX          1024

struct segment {
    uint32_t no;
    int fd;
    uint64_t size; /* bytes of records */
    uint64_t phys; /* bytes in the file: more than size when zero-filled ahead */
};

struct esb_wal {
    struct esb_io *io;
    int dirfd;
    int lockfd; /* flock on DIR/LOCK: one process per bus directory */
    char *dir;
    uint64_t segment_size;
    struct esb_wal_spare *spare; /* preallocate: the next segment, zero-filled */
    int preallocate;
    int broken; /* a failed cut-back left garbage we could not remove */
    /* segs is read by any thread (esb_wal_read) and changed only by the
     * writer (roll, delete) under the write lock. */
    pthread_rwlock_t lock;
    struct segment *segs; /* ascending by no; the last is active */
    size_t nsegs, cap;
    uint64_t total;
};

static void seg_name(char *out, size_t n, uint32_t no)
{
    snprintf(out, n, "%020u.seg", no);
}

/* Parse a segment file name; returns 1 and sets *no if it is one. */
static int parse_seg_name(const char *name, uint32_t *no)
{
    size_t len = strlen(name);
    if (len != 24 || strcmp(name + 20, ".seg") != 0) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
        if (v > UINT32_MAX) return 0;
    }
    *no = (uint32_t)v;
    return 1;
}

static int cmp_seg(const void *a, const void *b)
{
    uint32_t x = ((const struct segment *)a)->no, y = ((const struct segment *)b)->no;
    return x < y ? -1 : x > y;
}

void esb_wal_header(uint8_t *hdr, uint8_t type, uint8_t flags, const struct iovec *payload, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) len += payload[i].iov_len;
    esb_put_u32(hdr, ESB_WAL_MAGIC);
    esb_put_u32(hdr + 8, (uint32_t)len);
    hdr[12] = type;
    hdr[13] = flags;
    esb_put_u16(hdr + 14, 0);
    uint32_t crc = esb_crc32c(0, hdr + 8, 8);
    for (int i = 0; i < n; i++) crc = esb_crc32c(crc, payload[i].iov_base, payload[i].iov_len);
    esb_put_u32(hdr + 4, crc);
}

/* If a whole valid record starts at p (avail bytes readable), return its
 * total length; else 0. */
static size_t valid_record(const uint8_t *p, size_t avail)
{
    if (avail < ESB_WAL_HDR) return 0;
    if (esb_get_u32(p) != ESB_WAL_MAGIC) return 0;
    uint32_t len = esb_get_u32(p + 8);
    if (len > ESB_WAL_MAX_PAYLOAD || (size_t)len > avail - ESB_WAL_HDR) return 0;
    if (p[12] < ESB_REC_MSG || p[12] > ESB_REC_DEDUP || esb_get_u16(p + 14) != 0) return 0;
    if (esb_crc32c(0, p + 8, 8 + (size_t)len) != esb_get_u32(p + 4)) return 0;
    return ESB_WAL_HDR + (size_t)len;
}

/* The first offset > from where a valid record starts, or size if none. */
static size_t resync(const uint8_t *buf, size_t from, size_t size)
{
    static const uint8_t magic[4] = {'E', 'S', 'B', '1'};
    size_t q = from;
    while (q + ESB_WAL_HDR <= size) {
        const uint8_t *hit = memmem(buf + q, size - q, magic, sizeof(magic));
        if (!hit) break;
        q = (size_t)(hit - buf);
        if (valid_record(buf + q, size - q)) return q;
        q++;
    }
    return size;
}

/* Copy damaged bytes to DIR/quarantine/SEG-OFF.bad for later inspection. */
static void quarantine(struct esb_wal *w, uint32_t seg, uint64_t off, const uint8_t *p, size_t n)
{
    if (mkdirat(w->dirfd, "quarantine", 0755) != 0 && errno != EEXIST) {
        esb_error("wal quarantine mkdir failed dir=%s error=\"%s\"", w->dir, strerror(errno));
        return;
    }
    char name[96];
    snprintf(name, sizeof(name), "quarantine/%020u-%020llu.bad", seg, (unsigned long long)off);
    int fd = w->io->open(w->io, w->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        esb_error("wal quarantine open failed file=%s/%s error=\"%s\"", w->dir, name,
                  esb_strerror(fd));
        return;
    }
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    ssize_t r = w->io->pwritev(w->io, fd, &iov, 1, 0);
    if (r != (ssize_t)n)
        esb_error("wal quarantine write failed file=%s/%s", w->dir, name);
    else
        esb_error("wal quarantined file=%s/%s bytes=%zu", w->dir, name, n);
    w->io->close(w->io, fd);
}

static int read_all(struct esb_io *io, int fd, uint8_t *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = io->pread(io, fd, buf + done, n - done, (off_t)done);
        if (r < 0) return (int)r;
        if (r == 0) return -EIO;
        done += (size_t)r;
    }
    return 0;
}

/* Visit the whole valid records in buf[from, to). */
static int visit_range(struct esb_wal *w, struct segment *s, const uint8_t *buf, size_t from,
                       size_t to, esb_wal_visit_fn visit, void *ctx, struct esb_wal_stats *st,
                       struct esb_err *err)
{
    while (from < to) {
        uint32_t len = esb_get_u32(buf + from + 8);
        struct esb_wal_pos at = {s->no, from};
        int rc = visit(ctx, at, buf[from + 12], buf[from + 13], buf + from + ESB_WAL_HDR, len);
        if (rc < 0)
            return esb_err_set(err, rc, "recovery stopped at %s/%020u.seg offset %zu: %s", w->dir,
                               s->no, from, esb_strerror(rc));
        st->records++;
        from += ESB_WAL_HDR + len;
    }
    return 0;
}

/* Scan one segment, visiting its valid records. Cuts a torn tail when last. */
static int scan_segment(struct esb_wal *w, struct segment *s, int last, esb_wal_visit_fn visit,
                        void *ctx, struct esb_wal_stats *st, struct esb_err *err)
{
    int rc = 0;
    uint8_t *buf = NULL;
    if (s->size > 0) {
        buf = esb_malloc(s->size);
        rc = read_all(w->io, s->fd, buf, s->size);
        if (rc < 0) {
            esb_err_set(err, rc, "reading log segment %s/%020u.seg: %s", w->dir, s->no,
                        esb_strerror(rc));
            goto out;
        }
    }
    /* Records of one transaction are applied all or none: txn is the
     * offset of the first record of a transaction still open (its records
     * carry ESB_WAL_F_MORE until the last one). */
    size_t pos = 0, size = (size_t)s->size, txn = SIZE_MAX;
    while (pos < size) {
        size_t n = valid_record(buf + pos, size - pos);
        if (n) {
            if (txn == SIZE_MAX) txn = pos;
            pos += n;
            if (buf[pos - n + 13] & ESB_WAL_F_MORE) continue;
            rc = visit_range(w, s, buf, txn, pos, visit, ctx, st, err);
            if (rc < 0) goto out;
            txn = SIZE_MAX;
            continue;
        }
        if (txn == SIZE_MAX && (w->preallocate || !last) && esb_all_zero(buf + pos, size - pos)) {
            /* Zeros to the end: space filled ahead for records to come (a
             * segment taken from the spare; a crash while rolling can
             * leave it on one that is no longer the newest). Not data. */
            size = pos;
            break;
        }
        size_t next = resync(buf, pos + 1, size);
        if (next == size && last) break; /* a torn tail: cut below */
        size_t from = txn != SIZE_MAX ? txn : pos;
        esb_error("wal CORRUPT record skipped segment=%s/%020u.seg offset=%zu bytes=%zu%s "
                  "(valid records after it are kept)",
                  w->dir, s->no, pos, next - pos,
                  txn != SIZE_MAX ? " with the rest of its transaction" : "");
        quarantine(w, s->no, from, buf + from, next - from);
        st->corrupt++;
        st->corrupt_bytes += next - from;
        pos = next;
        txn = SIZE_MAX;
    }
    s->size = size; /* the records; s->phys stays the file's size */
    size_t cut = txn != SIZE_MAX ? txn : pos;
    if (cut < size && last) {
        esb_warn("wal torn tail cut segment=%s/%020u.seg offset=%zu bytes=%zu", w->dir, s->no, cut,
                 size - cut);
        rc = w->io->ftruncate(w->io, s->fd, (off_t)cut);
        if (rc == 0) rc = w->io->fdatasync(w->io, s->fd);
        if (rc < 0) {
            esb_err_set(err, rc, "cutting torn tail of %s/%020u.seg: %s", w->dir, s->no,
                        esb_strerror(rc));
            goto out;
        }
        st->truncated_bytes += size - cut;
        s->size = s->phys = cut;
    } else if (cut < size) {
        esb_error("wal CORRUPT unfinished transaction skipped segment=%s/%020u.seg offset=%zu "
                  "bytes=%zu",
                  w->dir, s->no, cut, size - cut);
        quarantine(w, s->no, cut, buf + cut, size - cut);
        st->corrupt++;
        st->corrupt_bytes += size - cut;
    }
out:
    free(buf);
    return rc;
}

static int mkdir_p(const char *dir)
{
    char *p = esb_strdup(dir);
    int rc = 0;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) rc = -errno;
        *s = '/';
        if (rc) break;
    }
    if (!rc && mkdir(p, 0755) != 0 && errno != EEXIST) rc = -errno;
    free(p);
    return rc;
}

static void add_segment(struct esb_wal *w, struct segment s)
{
    if (w->nsegs == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 16;
        w->segs = esb_realloc(w->segs, w->cap * sizeof(*w->segs));
    }
    w->segs[w->nsegs++] = s;
}

static int create_segment(struct esb_wal *w, uint32_t no, struct esb_err *err)
{
    char name[32];
    seg_name(name, sizeof(name), no);
    int fd = w->io->open(w->io, w->dirfd, name, O_RDWR | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return esb_err_set(err, fd, "creating log segment %s/%s: %s", w->dir, name,
                           esb_strerror(fd));
    int rc = w->io->fsync(w->io, w->dirfd);
    if (rc < 0) {
        w->io->close(w->io, fd);
        (void)w->io->unlinkat(w->io, w->dirfd, name); /* so a later roll can retry */
        return esb_err_set(err, rc, "syncing log directory %s: %s", w->dir, esb_strerror(rc));
    }
    pthread_rwlock_wrlock(&w->lock);
    add_segment(w, (struct segment){.no = no, .fd = fd, .size = 0, .phys = 0});
    pthread_rwlock_unlock(&w->lock);
    return 0;
}

static int list_segments(struct esb_wal *w, struct esb_err *err)
{
    int fd = dup(w->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int rc = -errno;
        if (fd >= 0) close(fd);
        return esb_err_set(err, rc, "listing %s: %s", w->dir, strerror(-rc));
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint32_t no;
        if (parse_seg_name(de->d_name, &no))
            add_segment(w, (struct segment){.no = no, .fd = -1, .size = 0});
    }
    closedir(d);
    if (w->nsegs) qsort(w->segs, w->nsegs, sizeof(*w->segs), cmp_seg);
    for (size_t i = 0; i < w->nsegs; i++) {
        char name[32];
        seg_name(name, sizeof(name), w->segs[i].no);
        int sfd = w->io->open(w->io, w->dirfd, name, O_RDWR, 0);
        if (sfd < 0)
            return esb_err_set(err, sfd, "opening log segment %s/%s: %s", w->dir, name,
                               esb_strerror(sfd));
        w->segs[i].fd = sfd;
        off_t sz = w->io->size(w->io, sfd);
        if (sz < 0)
            return esb_err_set(err, (int)sz, "sizing log segment %s/%s: %s", w->dir, name,
                               esb_strerror((int)sz));
        w->segs[i].size = w->segs[i].phys = (uint64_t)sz;
    }
    return 0;
}

int esb_wal_open(const char *dir, const struct esb_wal_opts *opts, esb_wal_visit_fn visit,
                 void *ctx, struct esb_wal **out, struct esb_wal_stats *stats, struct esb_err *err)
{
    struct esb_wal_stats st = {0};
    struct esb_wal *w = esb_calloc(1, sizeof(*w));
    int rc;
    *out = NULL;
    w->io = opts && opts->io ? opts->io : esb_io_posix();
    w->segment_size = opts && opts->segment_size ? opts->segment_size : DEFAULT_SEGMENT_SIZE;
    w->preallocate = opts && opts->preallocate;
    w->dir = esb_strdup(dir);
    w->dirfd = -1;
    w->lockfd = -1;
    pthread_rwlock_init(&w->lock, NULL);

    rc = mkdir_p(dir);
    if (rc < 0) {
        esb_err_set(err, rc, "creating bus directory %s: %s", dir, esb_strerror(rc));
        goto fail;
    }
    w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        rc = -errno;
        esb_err_set(err, rc, "opening bus directory %s: %s", dir, esb_strerror(rc));
        goto fail;
    }
    w->lockfd = openat(w->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (w->lockfd < 0 || flock(w->lockfd, LOCK_EX | LOCK_NB) != 0) {
        rc = -errno;
        esb_err_set(err, rc == -EWOULDBLOCK ? -EBUSY : rc,
                    "bus directory %s is in use by another process (%s/LOCK is locked)%s", dir, dir,
                    rc == -EWOULDBLOCK ? "" : ": cannot lock");
        rc = err ? err->code : rc;
        goto fail;
    }
    rc = list_segments(w, err);
    if (rc < 0) goto fail;
    for (size_t i = 0; i < w->nsegs; i++) {
        rc = scan_segment(w, &w->segs[i], i + 1 == w->nsegs, visit, ctx, &st, err);
        if (rc < 0) goto fail;
        st.segments++;
        w->total += w->segs[i].size;
    }
    if (w->nsegs == 0) {
        rc = create_segment(w, 1, err);
        if (rc < 0) goto fail;
    }
    if (w->preallocate) w->spare = esb_wal_spare_start(w->io, w->dirfd, w->dir, w->segment_size);
    if (stats) *stats = st;
    *out = w;
    return 0;
fail:
    esb_wal_close(w);
    return rc;
}

void esb_wal_close(struct esb_wal *w)
{
    if (!w) return;
    esb_wal_spare_stop(w->spare);
    for (size_t i = 0; i < w->nsegs; i++)
        if (w->segs[i].fd >= 0) w->io->close(w->io, w->segs[i].fd);
    if (w->dirfd >= 0) close(w->dirfd);
    if (w->lockfd >= 0) close(w->lockfd);
    pthread_rwlock_destroy(&w->lock);
    free(w->segs);
    free(w->dir);
    free(w);
}

static struct segment *active(struct esb_wal *w)
{
    return &w->segs[w->nsegs - 1];
}

/* Sync the active segment and start the next one: the spare if one is
 * ready, else a new empty file. */
static int roll(struct esb_wal *w)
{
    struct segment *s = active(w);
    int rc = 0;
    if (s->phys > s->size) { /* drop the unused zeros: only records stay */
        rc = w->io->ftruncate(w->io, s->fd, (off_t)s->size);
        if (rc == 0) s->phys = s->size;
    }
    if (rc == 0) rc = w->io->fdatasync(w->io, s->fd);
    if (rc < 0) {
        w->broken = 1; /* the old segment's tail may not be durable */
        return rc;
    }
    uint32_t no = s->no + 1;
    if (w->spare) {
        char name[32];
        seg_name(name, sizeof(name), no);
        int fd = esb_wal_spare_take(w->spare, name);
        if (fd >= 0) {
            pthread_rwlock_wrlock(&w->lock);
            add_segment(w,
                        (struct segment){.no = no, .fd = fd, .size = 0, .phys = w->segment_size});
            pthread_rwlock_unlock(&w->lock);
            return 0;
        }
        if (fd != -EAGAIN)
            esb_warn("wal spare segment not used dir=%s error=\"%s\"", w->dir, esb_strerror(fd));
    }
    struct esb_err err;
    rc = create_segment(w, no, &err);
    if (rc < 0) esb_error("wal roll failed: %s", err.msg);
    return rc;
}

/* Write all of iov at off, resuming after short writes. */
static int write_all(struct esb_wal *w, int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    struct iovec local[WAL_IOV_MAX];
    int i = 0;
    size_t skip = 0; /* bytes of iov[i] already written */
    while (i < iovcnt) {
        int n = 0;
        for (int j = i; j < iovcnt && n < WAL_IOV_MAX; j++, n++) local[n] = iov[j];
        local[0].iov_base = (uint8_t *)local[0].iov_base + skip;
        local[0].iov_len -= skip;
        ssize_t r = w->io->pwritev(w->io, fd, local, n, off);
        if (r < 0) return (int)r;
        if (r == 0) return -EIO;
        off += r;
        /* advance i/skip by r bytes */
        size_t left = (size_t)r;
        while (left > 0 && i < iovcnt) {
            size_t avail = iov[i].iov_len - skip;
            if (left < avail) {
                skip += left;
                left = 0;
            } else {
                left -= avail;
                skip = 0;
                i++;
            }
        }
        while (i < iovcnt && iov[i].iov_len == 0) i++;
    }
    return 0;
}

int esb_wal_append(struct esb_wal *w, const struct iovec *iov, int iovcnt, size_t total,
                   struct esb_wal_pos *start)
{
    if (w->broken) return -EIO;
    if (active(w)->size > 0 && active(w)->size + total > w->segment_size) {
        int rc = roll(w);
        if (rc < 0) return rc;
    }
    struct segment *s = active(w);
    int rc = write_all(w, s->fd, iov, iovcnt, (off_t)s->size);
    if (rc < 0) {
        /* Nothing of a failed batch may stay: cut back to where it began. */
        int trc = w->io->ftruncate(w->io, s->fd, (off_t)s->size);
        if (trc == 0) s->phys = s->size;
        if (trc < 0) {
            esb_error("wal cannot cut back a failed write segment=%s/%020u.seg error=\"%s\"",
                      w->dir, s->no, esb_strerror(trc));
            w->broken = 1;
            return -EIO;
        }
        return rc;
    }
    start->seg = s->no;
    start->off = s->size;
    s->size += total;
    if (s->phys < s->size) s->phys = s->size;
    w->total += total;
    return 0;
}

int esb_wal_broken(const struct esb_wal *w)
{
    return w->broken;
}

int esb_wal_sync(struct esb_wal *w)
{
    return w->io->fdatasync(w->io, active(w)->fd);
}

/* Index of segment no, or -1. Caller holds the lock. */
static ssize_t find_seg(const struct esb_wal *w, uint32_t no)
{
    size_t lo = 0, hi = w->nsegs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->segs[mid].no < no)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < w->nsegs && w->segs[lo].no == no ? (ssize_t)lo : -1;
}

static int pread_all(struct esb_io *io, int fd, uint8_t *buf, size_t n, uint64_t off, size_t *got)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = io->pread(io, fd, buf + done, n - done, (off_t)(off + done));
        if (r < 0) return (int)r;
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

int esb_wal_read(struct esb_wal *w, struct esb_wal_pos pos, struct esb_buf *out, uint8_t *type,
                 uint8_t *flags)
{
    int rc;
    size_t got = 0;
    pthread_rwlock_rdlock(&w->lock);
    ssize_t i = find_seg(w, pos.seg);
    if (i < 0) {
        rc = ESB_ENOTFOUND;
        goto out;
    }
    int fd = w->segs[i].fd;
    rc = esb_buf_reserve(out, ESB_WAL_HDR + READ_AHEAD);
    if (rc < 0) goto out;
    rc = pread_all(w->io, fd, out->data, ESB_WAL_HDR + READ_AHEAD, pos.off, &got);
    if (rc < 0) goto out;
    if (got < ESB_WAL_HDR || esb_get_u32(out->data) != ESB_WAL_MAGIC) {
        rc = ESB_ECORRUPT;
        goto out;
    }
    uint32_t len = esb_get_u32(out->data + 8);
    if (len > ESB_WAL_MAX_PAYLOAD) {
        rc = ESB_ECORRUPT;
        goto out;
    }
    size_t need = ESB_WAL_HDR + (size_t)len;
    if (got < need) {
        rc = esb_buf_reserve(out, need);
        if (rc < 0) goto out;
        size_t more = 0;
        rc = pread_all(w->io, fd, out->data + got, need - got, pos.off + got, &more);
        if (rc < 0) goto out;
        if (got + more < need) {
            rc = ESB_ECORRUPT;
            goto out;
        }
    }
    if (!valid_record(out->data, need)) {
        rc = ESB_ECORRUPT;
        goto out;
    }
    *type = out->data[12];
    if (flags) *flags = out->data[13];
    memmove(out->data, out->data + ESB_WAL_HDR, len);
    out->len = len;
    rc = 0;
out:
    pthread_rwlock_unlock(&w->lock);
    return rc;
}

uint32_t esb_wal_active(const struct esb_wal *w)
{
    return w->segs[w->nsegs - 1].no;
}

uint32_t esb_wal_oldest(const struct esb_wal *w)
{
    return w->segs[0].no;
}

uint64_t esb_wal_segment_bytes(const struct esb_wal *w, uint32_t seg)
{
    ssize_t i = find_seg(w, seg);
    return i < 0 ? 0 : w->segs[i].size;
}

uint64_t esb_wal_total_bytes(const struct esb_wal *w)
{
    return w->total;
}

int esb_wal_delete_oldest(struct esb_wal *w)
{
    if (w->nsegs < 2) return ESB_EINVAL;
    struct segment s = w->segs[0];
    char name[32];
    seg_name(name, sizeof(name), s.no);
    int rc = w->io->unlinkat(w->io, w->dirfd, name);
    if (rc < 0) return rc;
    /* Deletions must reach the disk in order: an older segment must never
     * reappear after a crash while a newer one (holding its acks) is gone. */
    rc = w->io->fsync(w->io, w->dirfd);
    pthread_rwlock_wrlock(&w->lock);
    memmove(w->segs, w->segs + 1, (w->nsegs - 1) * sizeof(*w->segs));
    w->nsegs--;
    w->total -= s.size;
    pthread_rwlock_unlock(&w->lock);
    w->io->close(w->io, s.fd);
    return rc;
}

int esb_wal_check(struct esb_wal *w)
{
    struct stat sb;
    if (fstat(active(w)->fd, &sb) != 0) return -errno;
    return sb.st_nlink == 0 ? -ENOENT : 0;
}

int64_t esb_wal_free_bytes(struct esb_wal *w)
{
    return w->io->free_bytes(w->io, w->dirfd);
}
