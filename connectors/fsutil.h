/* fsutil.h - safe file helpers shared by the file connectors.
 *
 * Every operation is relative to an open directory (struct esb_dir: its fd
 * and its path, the path only for messages) and takes a single file name
 * that must not contain '/'; files are opened with O_NOFOLLOW | O_CLOEXEC,
 * so a symbolic link is never followed and nothing escapes the directory.
 * Writes are atomic (temp file, fdatasync, rename, directory fsync) and
 * moves fsync both directories, so a completed call survives a power loss.
 *
 * Errors: functions return 0 or a negative errno (ESB_EINVAL for a bad
 * name) and fill err with a message naming the path. Thread-safe: the
 * helpers keep no state; several threads may use one esb_dir at once. */
#ifndef ESB_FSUTIL_H
#define ESB_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "util.h"

/* An open directory: fd (O_DIRECTORY | O_CLOEXEC) and its path as given. */
struct esb_dir {
    int fd;
    char *path;
};

/* The prefix of temporary files written by esb_fs_write_atomic. */
#define ESB_FS_TMP_PREFIX ".tmp-"

/* Non-zero if name is a usable single path component: non-empty, no '/',
 * not "." or "..", no NUL, at most NAME_MAX bytes. */
int esb_fs_name_ok(const char *name);

/* Create path and its missing parents (mode 0755 before umask). An existing
 * directory is fine; an existing non-directory is -ENOTDIR. */
int esb_fs_mkdir_p(const char *path, struct esb_err *err) ESB_WUR;

/* Open directory path into d (creating it and its parents first if create).
 * path comes from the operator's config and may go through symbolic links.
 * On error d->fd is -1 and d->path NULL. */
int esb_dir_open(struct esb_dir *d, const char *path, int create, struct esb_err *err) ESB_WUR;
/* Open (and if create, make) the subdirectory name of parent; a symbolic
 * link there is refused (-ELOOP), never followed. */
int esb_dir_open_sub(struct esb_dir *d, const struct esb_dir *parent, const char *name, int create,
                     struct esb_err *err) ESB_WUR;
/* Close d and free its path; safe on a closed or zeroed-then-(-1) dir. */
void esb_dir_close(struct esb_dir *d);

/* fsync the directory (makes renames and creations in it durable). */
int esb_fs_sync_dir(const struct esb_dir *d, struct esb_err *err) ESB_WUR;

/* openat(d, name, flags | O_NOFOLLOW | O_CLOEXEC, mode): an fd or -errno.
 * A symbolic link gives -ELOOP. */
int esb_fs_open(const struct esb_dir *d, const char *name, int flags, mode_t mode,
                struct esb_err *err) ESB_WUR;

/* Write n bytes to d/name atomically: a temp file ".tmp-<uuid>" is created
 * with O_EXCL, written in full, fdatasync'd and renamed into place, then the
 * directory is fsync'd. overwrite=0 never replaces an existing file:
 * returns -EEXIST (temp removed, nothing changed) and the caller decides.
 * On any error no temp file is left behind (best effort on a failing disk). */
int esb_fs_write_atomic(const struct esb_dir *d, const char *name, const void *data, size_t n,
                        int overwrite, struct esb_err *err) ESB_WUR;

/* The same in steps, for callers that try several names for one content:
 * esb_fs_tmp_write creates, writes, fdatasyncs and closes a new temp file
 * and puts its name in tmp; esb_fs_tmp_place renames it to name (see
 * overwrite above; -EEXIST leaves the temp file in place for another try)
 * and fsyncs the directory; esb_fs_tmp_discard removes it. On error
 * esb_fs_tmp_write leaves no temp file. */
#define ESB_FS_TMP_NAME_SIZE (sizeof(ESB_FS_TMP_PREFIX) + 36)
int esb_fs_tmp_write(const struct esb_dir *d, const void *data, size_t n,
                     char tmp[ESB_FS_TMP_NAME_SIZE], struct esb_err *err) ESB_WUR;
int esb_fs_tmp_place(const struct esb_dir *d, const char *tmp, const char *name, int overwrite,
                     struct esb_err *err) ESB_WUR;
void esb_fs_tmp_discard(const struct esb_dir *d, const char *tmp);

/* Write a small text file atomically, replacing an existing one (used for
 * "<name>.reason" files). */
int esb_fs_write_text(const struct esb_dir *d, const char *name, const char *text,
                      struct esb_err *err) ESB_WUR;

/* Move from/fromname to to/toname with renameat (both directories must be
 * on one file system: -EXDEV otherwise), then fsync both directories.
 * noreplace: never replace an existing toname (-EEXIST, nothing moved). */
int esb_fs_move(const struct esb_dir *from, const char *fromname, const struct esb_dir *to,
                const char *toname, int noreplace, struct esb_err *err) ESB_WUR;

/* Read the regular file d/name (not a symlink, not a FIFO: -EINVAL) into a
 * new buffer of at most max bytes: *out (malloc'd, NUL-terminated beyond
 * *len; free()). Larger than max: -EFBIG. */
int esb_fs_read(const struct esb_dir *d, const char *name, size_t max, char **out, size_t *len,
                struct esb_err *err) ESB_WUR;

/* Build "<name><suffix>" into out (size NAME_MAX + 1), cutting name short
 * if needed so the result fits in NAME_MAX bytes (suffix is kept whole). */
void esb_fs_name_with_suffix(const char *name, const char *suffix, char *out, size_t outsize);

/* Remove temporary files (ESB_FS_TMP_PREFIX...) in d last modified more
 * than older_than_s seconds ago: leftovers of writes cut by a crash (the
 * real name was never made, so nothing refers to them). Returns how many. */
int esb_fs_sweep_tmp(const struct esb_dir *d, unsigned older_than_s);

#endif
