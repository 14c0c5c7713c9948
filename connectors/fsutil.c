/* fsutil.c - see fsutil.h. */
#include "config.h"

#include "fsutil.h"
#include "log.h"

#include <time.h>

#include <dirent.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uuid.h"

int esb_fs_name_ok(const char *name)
{
    if (!name || !*name) return 0;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return 0;
    if (strchr(name, '/')) return 0;
    return strlen(name) <= NAME_MAX;
}

static int bad_name(const struct esb_dir *d, const char *name, struct esb_err *err)
{
    return esb_err_set(err, ESB_EINVAL, "%s: invalid file name '%.64s'", d ? d->path : "?",
                       name ? name : "(null)");
}

int esb_fs_mkdir_p(const char *path, struct esb_err *err)
{
    size_t n = strlen(path);
    if (n == 0) return esb_err_set(err, ESB_EINVAL, "empty directory path");
    if (n >= PATH_MAX) return esb_err_set(err, -ENAMETOOLONG, "%.64s...: path too long", path);
    char buf[PATH_MAX];
    memcpy(buf, path, n + 1);
    /* Create each prefix that ends at a '/', then the whole path. */
    for (size_t i = 1; i <= n; i++) {
        if (i < n && buf[i] != '/') continue;
        if (i < n && buf[i - 1] == '/') continue; /* "a//b" */
        char save = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            return esb_err_set(err, -e, "mkdir %s: %s", buf, strerror(e));
        }
        buf[i] = save;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        return esb_err_set(err, -e, "%s: %s", path, strerror(e));
    }
    if (!S_ISDIR(st.st_mode))
        return esb_err_set(err, -ENOTDIR, "%s: exists and is not a directory", path);
    return 0;
}

int esb_dir_open(struct esb_dir *d, const char *path, int create, struct esb_err *err)
{
    d->fd = -1;
    d->path = NULL;
    if (!path || !*path) return esb_err_set(err, ESB_EINVAL, "empty directory path");
    if (create) {
        int rc = esb_fs_mkdir_p(path, err);
        if (rc != 0) return rc;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP) return esb_err_set(err, -e, "%s: is a symbolic link (not followed)", path);
        return esb_err_set(err, -e, "open directory %s: %s", path, strerror(e));
    }
    d->fd = fd;
    d->path = esb_strdup(path);
    return 0;
}

int esb_dir_open_sub(struct esb_dir *d, const struct esb_dir *parent, const char *name, int create,
                     struct esb_err *err)
{
    d->fd = -1;
    d->path = NULL;
    if (!esb_fs_name_ok(name)) return bad_name(parent, name, err);
    if (create && mkdirat(parent->fd, name, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        return esb_err_set(err, -e, "mkdir %s/%s: %s", parent->path, name, strerror(e));
    }
    if (create) {
        int rc = esb_fs_sync_dir(parent, err);
        if (rc != 0) return rc;
    }
    int fd = openat(parent->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        struct stat st;
        if ((e == ENOTDIR || e == ELOOP) &&
            fstatat(parent->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
            return esb_err_set(err, -ELOOP, "%s/%s: is a symbolic link (not followed)",
                               parent->path, name);
        return esb_err_set(err, -e, "open directory %s/%s: %s", parent->path, name, strerror(e));
    }
    size_t n = strlen(parent->path) + 1 + strlen(name) + 1;
    d->path = esb_malloc(n);
    snprintf(d->path, n, "%s/%s", parent->path, name);
    d->fd = fd;
    return 0;
}

void esb_dir_close(struct esb_dir *d)
{
    if (!d) return;
    if (d->fd >= 0) close(d->fd);
    d->fd = -1;
    free(d->path);
    d->path = NULL;
}

int esb_fs_sync_dir(const struct esb_dir *d, struct esb_err *err)
{
    if (fsync(d->fd) != 0) {
        int e = errno;
        return esb_err_set(err, -e, "fsync directory %s: %s", d->path, strerror(e));
    }
    return 0;
}

int esb_fs_open(const struct esb_dir *d, const char *name, int flags, mode_t mode,
                struct esb_err *err)
{
    if (!esb_fs_name_ok(name)) return bad_name(d, name, err);
    int fd;
    do {
        fd = openat(d->fd, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int e = errno;
        return esb_err_set(err, -e, "open %s/%s: %s", d->path, name,
                           e == ELOOP ? "is a symbolic link (not followed)" : strerror(e));
    }
    return fd;
}

static int write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (w == 0) return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Rename tmp to name without replacing an existing name: renameat2
 * RENAME_NOREPLACE, or link + unlink where the file system lacks it. */
static int rename_noreplace(int fromfd, const char *from, int tofd, const char *to)
{
    if (renameat2(fromfd, from, tofd, to, RENAME_NOREPLACE) == 0) return 0;
    int e = errno;
    if (e != EINVAL && e != ENOSYS && e != ENOTSUP) return -e;
    if (linkat(fromfd, from, tofd, to, 0) != 0) return -errno;
    if (unlinkat(fromfd, from, 0) != 0) return -errno;
    return 0;
}

int esb_fs_tmp_write(const struct esb_dir *d, const void *data, size_t n,
                     char tmp[ESB_FS_TMP_NAME_SIZE], struct esb_err *err)
{
    esb_uuid_t u;
    esb_uuid_v7(&u);
    memcpy(tmp, ESB_FS_TMP_PREFIX, sizeof(ESB_FS_TMP_PREFIX) - 1);
    esb_uuid_format(&u, tmp + sizeof(ESB_FS_TMP_PREFIX) - 1);

    int rc = 0;
    int fd = esb_fs_open(d, tmp, O_WRONLY | O_CREAT | O_EXCL, 0644, err);
    if (fd < 0) return fd;
    if ((rc = write_all(fd, data, n)) != 0) {
        esb_err_set(err, rc, "write %s/%s: %s", d->path, tmp, strerror(-rc));
        goto out;
    }
    if (fdatasync(fd) != 0) {
        rc = -errno;
        esb_err_set(err, rc, "fdatasync %s/%s: %s", d->path, tmp, strerror(-rc));
        goto out;
    }
    rc = close(fd) != 0 && errno != EINTR ? -errno : 0;
    fd = -1;
    if (rc != 0) esb_err_set(err, rc, "close %s/%s: %s", d->path, tmp, strerror(-rc));
out:
    if (fd >= 0) close(fd);
    if (rc != 0) unlinkat(d->fd, tmp, 0);
    return rc;
}

int esb_fs_tmp_place(const struct esb_dir *d, const char *tmp, const char *name, int overwrite,
                     struct esb_err *err)
{
    if (!esb_fs_name_ok(name)) return bad_name(d, name, err);
    int rc;
    if (overwrite)
        rc = renameat(d->fd, tmp, d->fd, name) == 0 ? 0 : -errno;
    else
        rc = rename_noreplace(d->fd, tmp, d->fd, name);
    if (rc == -EEXIST) return esb_err_set(err, rc, "%s/%s: already exists", d->path, name);
    if (rc != 0) return esb_err_set(err, rc, "rename into %s/%s: %s", d->path, name, strerror(-rc));
    return esb_fs_sync_dir(d, err);
}

void esb_fs_tmp_discard(const struct esb_dir *d, const char *tmp)
{
    unlinkat(d->fd, tmp, 0);
}

int esb_fs_write_atomic(const struct esb_dir *d, const char *name, const void *data, size_t n,
                        int overwrite, struct esb_err *err)
{
    if (!esb_fs_name_ok(name)) return bad_name(d, name, err);
    char tmp[ESB_FS_TMP_NAME_SIZE];
    int rc = esb_fs_tmp_write(d, data, n, tmp, err);
    if (rc != 0) return rc;
    rc = esb_fs_tmp_place(d, tmp, name, overwrite, err);
    /* After a rename the temp name is gone; a failed directory fsync leaves
     * the file in place (not durable yet) and the caller retries. */
    if (rc != 0) esb_fs_tmp_discard(d, tmp);
    return rc;
}

int esb_fs_write_text(const struct esb_dir *d, const char *name, const char *text,
                      struct esb_err *err)
{
    return esb_fs_write_atomic(d, name, text, strlen(text), 1, err);
}

int esb_fs_move(const struct esb_dir *from, const char *fromname, const struct esb_dir *to,
                const char *toname, int noreplace, struct esb_err *err)
{
    if (!esb_fs_name_ok(fromname)) return bad_name(from, fromname, err);
    if (!esb_fs_name_ok(toname)) return bad_name(to, toname, err);
    int rc;
    if (noreplace)
        rc = rename_noreplace(from->fd, fromname, to->fd, toname);
    else
        rc = renameat(from->fd, fromname, to->fd, toname) == 0 ? 0 : -errno;
    if (rc == -EEXIST) return esb_err_set(err, rc, "%s/%s: already exists", to->path, toname);
    if (rc != 0)
        return esb_err_set(err, rc, "move %s/%s to %s/%s: %s", from->path, fromname, to->path,
                           toname, strerror(-rc));
    if ((rc = esb_fs_sync_dir(to, err)) != 0) return rc;
    if (from->fd != to->fd) rc = esb_fs_sync_dir(from, err);
    return rc;
}

int esb_fs_read(const struct esb_dir *d, const char *name, size_t max, char **out, size_t *len,
                struct esb_err *err)
{
    *out = NULL;
    *len = 0;
    int fd = esb_fs_open(d, name, O_RDONLY | O_NONBLOCK, 0, err);
    if (fd < 0) return fd;
    int rc = 0;
    struct stat st;
    char *buf = NULL;
    size_t have = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        esb_err_set(err, rc, "stat %s/%s: %s", d->path, name, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = esb_err_set(err, ESB_EINVAL, "%s/%s: not a regular file", d->path, name);
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        rc = esb_err_set(err, -EFBIG, "%s/%s: file too large (%lld bytes, max %zu)", d->path, name,
                         (long long)st.st_size, max);
        goto out;
    }
    /* Read up to max + 1 bytes: a file that grew past max is still refused. */
    size_t cap = (size_t)st.st_size + 1;
    buf = esb_malloc(cap + 1);
    for (;;) {
        if (have == cap) {
            if (cap > max) break;
            cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            buf = esb_realloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + have, cap - have);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = -errno;
            esb_err_set(err, rc, "read %s/%s: %s", d->path, name, strerror(-rc));
            goto out;
        }
        if (r == 0) break;
        have += (size_t)r;
    }
    if (have > max) {
        rc = esb_err_set(err, -EFBIG, "%s/%s: file too large (more than %zu bytes)", d->path, name,
                         max);
        goto out;
    }
    buf[have] = '\0';
    *out = buf;
    *len = have;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

void esb_fs_name_with_suffix(const char *name, const char *suffix, char *out, size_t outsize)
{
    size_t limit = outsize - 1 < NAME_MAX ? outsize - 1 : NAME_MAX;
    size_t sl = strlen(suffix), nl = strlen(name);
    if (sl > limit) sl = limit;
    if (nl > limit - sl) nl = limit - sl;
    memcpy(out, name, nl);
    memcpy(out + nl, suffix, sl);
    out[nl + sl] = '\0';
}

int esb_fs_sweep_tmp(const struct esb_dir *d, unsigned older_than_s)
{
    int fd = dup(d->fd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0) close(fd);
        return 0;
    }
    time_t now = time(NULL);
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strncmp(de->d_name, ESB_FS_TMP_PREFIX, sizeof(ESB_FS_TMP_PREFIX) - 1) != 0) continue;
        struct stat st;
        if (fstatat(d->fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (now - st.st_mtime < (time_t)older_than_s) continue;
        if (unlinkat(d->fd, de->d_name, 0) == 0) removed++;
    }
    closedir(dir);
    if (removed) esb_info("removed %d stale temporary files in %s", removed, d->path);
    return removed;
}
