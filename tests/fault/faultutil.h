/* faultutil.h - helpers shared by the fault tests (test-recovery, test-faults,
 * test-crash): temporary directories, opening a bus, messages with unique
 * bodies ("m-<n>"), reading a whole queue without resolving anything, and
 * byte-level surgery on log segment files (copy, truncate, flip a bit,
 * append garbage, list records by walking the headers of wal.h).
 *
 * Everything here is static and single-threaded; a failed precondition
 * (cannot create a directory, cannot open a bus that must open) bails out of
 * the test program. Include after config.h and ../tap.h. */
#ifndef ESB_FAULTUTIL_H
#define ESB_FAULTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus.h"
#include "msg.h"
#include "util.h"
#include "wal.h"

/* ---- directories and paths ---- */

/* A new empty directory $TMPDIR/esb-TAG-XXXXXX (malloc'd path). */
__attribute__((unused)) static char *fu_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + strlen(tag) + 32;
    char *p = esb_malloc(n);
    snprintf(p, n, "%s/esb-%s-XXXXXX", base, tag);
    if (!mkdtemp(p)) bail("mkdtemp %s: %s", p, strerror(errno));
    return p;
}

/* "dir/name", malloc'd. */
__attribute__((unused)) static char *fu_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = esb_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int fu_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) != 0 && errno != ENOENT)
        bail("rm %s: %s", path, strerror(errno));
    return 0;
}

/* rm -rf path (a missing path is fine). */
__attribute__((unused)) static void fu_rmrf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (nftw(path, fu_rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0) bail("rm -rf %s failed", path);
}

/* rm -rf path && mkdir path. */
__attribute__((unused)) static void fu_fresh_dir(const char *path)
{
    fu_rmrf(path);
    if (mkdir(path, 0755) != 0) bail("mkdir %s: %s", path, strerror(errno));
}

/* Number of entries (but . and ..) in dir; 0 if it does not exist. */
__attribute__((unused)) static size_t fu_count_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

static int fu_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the segment files (*.seg) of dir, sorted (= log order). Returns
 * the count; *out is a malloc'd array of malloc'd names (fu_free_names). */
__attribute__((unused)) static size_t fu_list_segments(const char *dir, char ***out)
{
    DIR *d = opendir(dir);
    if (!d) bail("opendir %s: %s", dir, strerror(errno));
    char **v = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".seg") != 0) continue;
        v = esb_realloc(v, (n + 1) * sizeof(*v));
        v[n++] = esb_strdup(de->d_name);
    }
    closedir(d);
    if (n) qsort(v, n, sizeof(*v), fu_cmp_str);
    *out = v;
    return n;
}

__attribute__((unused)) static void fu_free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* ---- files ---- */

/* Size of the file at path, or -1. */
__attribute__((unused)) static int64_t fu_file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* Read the whole file (malloc'd, *n bytes); bails if it cannot. */
__attribute__((unused)) static uint8_t *fu_read_file(const char *path, size_t *n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) bail("open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) bail("fstat %s", path);
    uint8_t *buf = esb_malloc((size_t)sb.st_size + 1);
    size_t done = 0;
    while (done < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + done, (size_t)sb.st_size - done);
        if (r <= 0) bail("read %s: %s", path, r < 0 ? strerror(errno) : "short");
        done += (size_t)r;
    }
    close(fd);
    *n = done;
    return buf;
}

/* Create (or replace) path with n bytes, or append them with append set. */
__attribute__((unused)) static void fu_write_file(const char *path, const void *p, size_t n,
                                                  int append)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
    if (fd < 0) bail("open %s: %s", path, strerror(errno));
    size_t done = 0;
    while (done < n) {
        ssize_t r = write(fd, (const uint8_t *)p + done, n - done);
        if (r <= 0) bail("write %s: %s", path, strerror(errno));
        done += (size_t)r;
    }
    if (close(fd) != 0) bail("close %s: %s", path, strerror(errno));
}

__attribute__((unused)) static void fu_copy_file(const char *src, const char *dst)
{
    size_t n;
    uint8_t *buf = fu_read_file(src, &n);
    fu_write_file(dst, buf, n, 0);
    free(buf);
}

/* Copy every segment file of src into dst (which must exist). Not LOCK,
 * not quarantine/: a copy is what a crash would have left on the disk. */
__attribute__((unused)) static void fu_copy_segments(const char *src, const char *dst)
{
    char **names;
    size_t n = fu_list_segments(src, &names);
    for (size_t i = 0; i < n; i++) {
        char *a = fu_path(src, names[i]), *b = fu_path(dst, names[i]);
        fu_copy_file(a, b);
        free(a);
        free(b);
    }
    fu_free_names(names, n);
}

__attribute__((unused)) static void fu_truncate(const char *path, uint64_t len)
{
    if (truncate(path, (off_t)len) != 0) bail("truncate %s: %s", path, strerror(errno));
}

/* Flip bit (0..7) of the byte at off. */
__attribute__((unused)) static void fu_flip_bit(const char *path, uint64_t off, int bit)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    uint8_t b;
    if (fd < 0 || pread(fd, &b, 1, (off_t)off) != 1)
        bail("flip: read %s+%llu", path, (unsigned long long)off);
    b ^= (uint8_t)(1u << bit);
    if (pwrite(fd, &b, 1, (off_t)off) != 1) bail("flip: write %s", path);
    close(fd);
}

/* Offsets of the records of a segment file, found by walking the headers
 * as wal.h lays them out (magic, len at +8). Stops at the first header that
 * is not a whole record. Returns the count; *offs (malloc'd) gets count + 1
 * values, the last being where the walk stopped. */
__attribute__((unused)) static size_t fu_record_offsets(const char *path, uint64_t **offs)
{
    size_t n;
    uint8_t *buf = fu_read_file(path, &n);
    uint64_t *v = esb_malloc(sizeof(*v));
    size_t count = 0, off = 0;
    while (off + ESB_WAL_HDR <= n && esb_get_u32(buf + off) == ESB_WAL_MAGIC) {
        uint32_t len = esb_get_u32(buf + off + 8);
        if (len > n - off - ESB_WAL_HDR) break;
        v = esb_realloc(v, (count + 2) * sizeof(*v));
        v[count++] = off;
        off += ESB_WAL_HDR + len;
    }
    v[count] = off;
    free(buf);
    *offs = v;
    return count;
}

/* ---- the bus ---- */

/* Open the bus on dir with options o (may be NULL; o->dir is ignored).
 * Returns the result code; on success *out is set and st (if not NULL)
 * gets the stats right after recovery. */
__attribute__((unused)) static int fu_open_rc(const char *dir, const struct esb_bus_opts *o,
                                              struct esb_bus **out, struct esb_bus_stats *st,
                                              struct esb_err *err)
{
    struct esb_bus_opts opts = {0};
    if (o) opts = *o;
    opts.dir = dir;
    int rc = esb_bus_open(&opts, out, err);
    if (rc == 0 && st) esb_bus_get_stats(*out, st);
    return rc;
}

/* The same, bailing out when the bus does not open. */
__attribute__((unused)) static struct esb_bus *
fu_open(const char *dir, const struct esb_bus_opts *o, struct esb_bus_stats *st)
{
    struct esb_bus *bus;
    struct esb_err err = {0};
    if (fu_open_rc(dir, o, &bus, st, &err) != 0) bail("open bus %s: %s", dir, err.msg);
    return bus;
}

/* A message with body "m-<n>" and a header x-pad of pad bytes (to vary the
 * record size without changing the body). */
__attribute__((unused)) static struct esb_msg *fu_msg(unsigned n, size_t pad)
{
    char body[32];
    struct esb_msg *m = esb_msg_new();
    int len = snprintf(body, sizeof(body), "m-%u", n);
    esb_msg_set_body(m, body, (size_t)len);
    esb_msg_set_content_type(m, "text/plain");
    char *p = esb_malloc(pad + 1);
    for (size_t i = 0; i < pad; i++) p[i] = (char)('a' + (n + i) % 26);
    p[pad] = '\0';
    esb_msg_set_header(m, "x-pad", p);
    free(p);
    return m;
}

/* Append fu_msg(n, pad) to queue; returns the commit's result. */
__attribute__((unused)) static int fu_append(struct esb_bus *bus, const char *queue, unsigned n,
                                             size_t pad)
{
    struct esb_msg *m = fu_msg(n, pad);
    struct esb_err err;
    int rc = esb_bus_append(bus, queue, m, &err);
    esb_msg_unref(m);
    return rc;
}

/* The number n of a body "m-<n>", or -1 if it is not one. */
__attribute__((unused)) static long fu_body_no(const struct esb_msg *m)
{
    const char *s = (const char *)m->body->data;
    if (m->body->len < 3 || m->body->len > 12 || strncmp(s, "m-", 2) != 0) return -1;
    char *end;
    long v = strtol(s + 2, &end, 10);
    return end == s + m->body->len && v >= 0 ? v : -1;
}

/* A list of bodies as read from a queue, in consume order. */
struct fu_bodies {
    char **v;
    size_t n;
};

__attribute__((unused)) static void fu_bodies_free(struct fu_bodies *b)
{
    for (size_t i = 0; i < b->n; i++) free(b->v[i]);
    free(b->v);
    b->v = NULL;
    b->n = 0;
}

/* Consume every ready entry of queue (timeout 0) until ESB_ETIMEDOUT,
 * collecting the bodies, then release them all unresolved (they are ready
 * again). Returns 0, or the first other result of consume. */
__attribute__((unused)) static int fu_read_all(struct esb_bus *bus, const char *queue,
                                               struct fu_bodies *out)
{
    struct esb_entry **held = NULL;
    size_t n = 0;
    int rc;
    out->v = NULL;
    out->n = 0;
    for (;;) {
        struct esb_entry *e = NULL;
        rc = esb_bus_consume(bus, queue, 0, &e);
        if (rc != 0) break;
        held = esb_realloc(held, (n + 1) * sizeof(*held));
        held[n++] = e;
        out->v = esb_realloc(out->v, n * sizeof(*out->v));
        out->v[n - 1] = esb_strndup((const char *)e->msg->body->data, e->msg->body->len);
    }
    out->n = n;
    for (size_t i = 0; i < n; i++) esb_entry_free(held[i]);
    free(held);
    return rc == ESB_ETIMEDOUT ? 0 : rc;
}

/* True when b is exactly m-ids[0], m-ids[1], ... m-ids[n-1]. On a mismatch
 * prints one diagnostic saying where, prefixed by what (none if what is NULL). */
__attribute__((unused)) static int fu_bodies_are(const struct fu_bodies *b, const unsigned *ids,
                                                 size_t n, const char *what)
{
    char want[32] = "";
    for (size_t i = 0; i < n || i < b->n; i++) {
        if (i < n) snprintf(want, sizeof(want), "m-%u", ids[i]);
        if (i >= n || i >= b->n || strcmp(b->v[i], want) != 0) {
            if (what)
                diag("%s: at position %zu expected %s, got %s (expected %zu bodies, got %zu)", what,
                     i, i < n ? want : "(end)", i < b->n ? b->v[i] : "(end)", n, b->n);
            return 0;
        }
    }
    return 1;
}

/* Fill ids with first, first+1, ... first+n-1 except skip (pass -1 for
 * none); returns how many were written. */
__attribute__((unused)) static size_t fu_ids_range(unsigned *ids, unsigned first, unsigned n,
                                                   long skip)
{
    size_t k = 0;
    for (unsigned i = first; i < first + n; i++)
        if ((long)i != skip) ids[k++] = i;
    return k;
}

#endif
