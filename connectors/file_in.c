/* file_in.c - the file-in connector: a watched directory.
 *
 * One thread per endpoint. Each cycle it first works through the claim
 * directory <dir>/.esb-work/ (files claimed earlier, including those left by
 * a crash or refused under back-pressure), then, unless the runtime is
 * refusing input, scans <dir>: a regular file whose name does not start with
 * '.', matches pattern and not exclude, and whose size and mtime stayed the
 * same for stable-for, is claimed by renaming it to .esb-work/<uuid>-<name>.
 * The claimed file is read (at most max-file-size bytes) into a message
 * whose id is that uuid, handed to esb_runtime_accept_marked() with the
 * mark "file-in:<id>:<uuid>" in the same durable batch, and only once it is
 * durable moved to done-dir. A claim found after a crash whose mark exists
 * was accepted already and only moves on: no file is accepted twice. Anything that can never be
 * accepted goes to error-dir next to a "<name>.reason" file. Symbolic links, directories and other
 * non-regular entries are never opened or followed: they are moved (the entry itself) to error-dir.
 *
 * Waiting: inotify on dir shortens the wait; the directory is polled every
 * poll-interval in any case (inotify may be unavailable or overflow).
 * Every file operation is relative to the directory fds with O_NOFOLLOW. */
#include "config.h"

#include "file_in.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "msg.h"
#include "runtime.h"

#define CONF(ep) ((const struct esb_file_in_conf *)(ep)->conf)

/* Longest base name that still fits "<uuid>-<name>" in NAME_MAX. */
#define CLAIM_NAME_MAX   (NAME_MAX - ESB_UUID_STRLEN - 1)
#define MAX_BACKOFF_MS   5000
#define MAX_TRACKED      100000 /* names tracked for stability at once */
#define ESB_FILE_IN_DONE "done"
#define ESB_FILE_IN_FAIL "failed"

static const struct esb_attr_spec file_in_attrs[] = {
    {"id", ESB_ATTR_STRING, NULL, offsetof(struct esb_file_in_conf, id), 0, 0, 0, NULL,
     "Endpoint id, used in from=\"file-in:ID\" and as the esb-source header."},
    {"dir", ESB_ATTR_STRING, NULL, offsetof(struct esb_file_in_conf, dir), 1, 0, 0, NULL,
     "Directory to watch; created (with parents) when the endpoint starts."},
    {"pattern", ESB_ATTR_STRING, "*", offsetof(struct esb_file_in_conf, pattern), 0, 0, 0, NULL,
     "Glob (fnmatch) a file's name must match to be picked up."},
    {"exclude", ESB_ATTR_STRING, "", offsetof(struct esb_file_in_conf, exclude), 0, 0, 0, NULL,
     "Glob (fnmatch) of names to leave alone; empty = none."},
    {"done-dir", ESB_ATTR_STRING, "", offsetof(struct esb_file_in_conf, done_dir), 0, 0, 0, NULL,
     "Where accepted files are moved; empty = DIR/done. Must be on the file system of dir."},
    {"error-dir", ESB_ATTR_STRING, "", offsetof(struct esb_file_in_conf, error_dir), 0, 0, 0, NULL,
     "Where refused files go, each with a NAME.reason file; empty = DIR/failed. Same file "
     "system as dir."},
    {"stable-for", ESB_ATTR_DURATION, "1s", offsetof(struct esb_file_in_conf, stable_for), 0, 0,
     UINT64_C(86400000), NULL,
     "How long a file's size and modification time must stay unchanged before it is read."},
    {"poll-interval", ESB_ATTR_DURATION, "500ms", offsetof(struct esb_file_in_conf, poll_interval),
     0, 10, UINT64_C(3600000), NULL,
     "Time between directory scans (inotify events only make a scan come sooner)."},
    {"max-file-size", ESB_ATTR_SIZE, "64MB", offsetof(struct esb_file_in_conf, max_file_size), 0, 0,
     UINT64_C(1) << 32, NULL,
     "Largest file accepted; a larger one is moved to error-dir with reason \"file too large\"."},
    {"content-type", ESB_ATTR_STRING, "application/octet-stream",
     offsetof(struct esb_file_in_conf, content_type), 0, 0, 0, NULL,
     "Content type given to the messages made from files."},
    ESB_ATTR_END,
};

/* A name in dir seen by a scan and waiting to become stable (a chained
 * hash table keyed by name, so big backlogs scan in linear time). */
struct seen {
    struct seen *next;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    uint64_t since_ms; /* monotonic ms when this size/mtime was first seen */
    unsigned gen;      /* the last scan that saw it */
    char name[];
};

struct file_in_state {
    struct esb_endpoint *ep;
    struct esb_runtime *rt;
    struct esb_dir in, work, done, error;
    int ino_fd;  /* inotify, or -1 (polling only) */
    int wake_fd; /* eventfd: stop() wakes the thread */
    pthread_t thread;
    int started;
    _Atomic int stop;
    struct seen **buckets;
    size_t nbuckets, nseen;
    unsigned gen;
    /* Claims whose message is durable but whose move to done-dir failed:
     * only the move is retried, never the accept. */
    char **accepted;
    size_t naccepted;
    uint64_t backoff_ms; /* > 0 while claimed files wait for the runtime */
    int warned_full;
};

enum claim_result { CLAIM_FINISHED, CLAIM_RETRY };

static uint64_t mono_ms(void)
{
    return esb_mono_ns() / 1000000u;
}

/* ---- exactly-once hook ---- */

#define CLAIM_MARK_TTL_MS (7ull * 24 * 3600 * 1000) /* a week: far beyond any restart */

/* The idempotency mark written with the accept of claim uuid of ep. */
static void claim_key(const struct file_in_state *st, const char *uuidtext, char *out, size_t n)
{
    snprintf(out, n, "file-in:%s:%s", st->ep->id, uuidtext);
}

/* Has the message for the claimed file (message id = its claim uuid)
 * already been made durable by an earlier run? The accept writes a mark
 * in the same durable batch as the message, so after a crash between the
 * accept and the move to done-dir the claim is finished without accepting
 * it twice. */
static int already_accepted(const struct file_in_state *st, const char *uuidtext)
{
    char key[400];
    claim_key(st, uuidtext, key, sizeof(key));
    return esb_runtime_marked(st->rt, key);
}

/* ---- moving files out ---- */

/* Move from/fname to dir/name, or to "<name>.<uuid>" if name is taken.
 * Writes the chosen name to out (NAME_MAX + 1 bytes). */
static int move_unique(const struct esb_dir *from, const char *fname, const struct esb_dir *to,
                       const char *name, char *out, struct esb_err *err)
{
    snprintf(out, NAME_MAX + 1, "%s", name);
    int rc = esb_fs_move(from, fname, to, out, 1, err);
    if (rc != -EEXIST) return rc;
    char sfx[ESB_UUID_STRLEN + 2];
    esb_uuid_t u;
    esb_uuid_v7(&u);
    sfx[0] = '.';
    esb_uuid_format(&u, sfx + 1);
    esb_fs_name_with_suffix(name, sfx, out, NAME_MAX + 1);
    return esb_fs_move(from, fname, to, out, 1, err);
}

/* Move from/fname to error-dir as name (or a unique variant) and write
 * "<that>.reason" holding reason. Returns 0 or the move's error. */
static int to_error_dir(struct file_in_state *st, const struct esb_dir *from, const char *fname,
                        const char *name, const char *reason)
{
    char placed[NAME_MAX + 1], rname[NAME_MAX + 1], text[600];
    struct esb_err err = {0, ""};
    int rc = move_unique(from, fname, &st->error, name, placed, &err);
    if (rc != 0) {
        esb_error("file-in=%s cannot move %s/%s to error-dir: %s", st->ep->id, from->path, fname,
                  err.msg);
        return rc;
    }
    esb_fs_name_with_suffix(placed, ".reason", rname, sizeof(rname));
    snprintf(text, sizeof(text), "%s\n", reason);
    if (esb_fs_write_text(&st->error, rname, text, &err) != 0)
        esb_error("file-in=%s cannot write reason file: %s", st->ep->id, err.msg);
    esb_warn("file-in=%s file=%s moved to %s/%s: %s", st->ep->id, name, st->error.path, placed,
             reason);
    return 0;
}

/* After a durable accept: move the claim to done-dir. Returns 0, or the
 * error (logged); the caller remembers the claim so that only the move is
 * retried. */
static int to_done_dir(struct file_in_state *st, const char *wname, const char *name,
                       const char *msgid)
{
    char placed[NAME_MAX + 1];
    struct esb_err err = {0, ""};
    int rc = move_unique(&st->work, wname, &st->done, name, placed, &err);
    if (rc == 0)
        esb_info("file-in=%s file=%s accepted id=%s done=%s/%s", st->ep->id, name, msgid,
                 st->done.path, placed);
    else
        esb_error("file-in=%s file=%s accepted id=%s but not moved to done-dir: %s", st->ep->id,
                  name, msgid, err.msg);
    return rc;
}

static void remember_accepted(struct file_in_state *st, const char *wname)
{
    st->accepted = esb_realloc(st->accepted, (st->naccepted + 1) * sizeof(char *));
    st->accepted[st->naccepted++] = esb_strdup(wname);
}

/* Index of wname in st->accepted, or -1. */
static long find_accepted(const struct file_in_state *st, const char *wname)
{
    for (size_t i = 0; i < st->naccepted; i++)
        if (strcmp(st->accepted[i], wname) == 0) return (long)i;
    return -1;
}

static void forget_accepted(struct file_in_state *st, long i)
{
    free(st->accepted[i]);
    st->accepted[i] = st->accepted[--st->naccepted];
}

/* ---- one claimed file ---- */

/* Read the regular file fd (size from st) into a new body of at most max
 * bytes. Returns 0, -EFBIG if larger, -EAGAIN if it keeps changing, or
 * -errno. */
static int read_body(int fd, uint64_t max, struct esb_body **out)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        struct stat sb;
        if (fstat(fd, &sb) != 0) return -errno;
        if ((uint64_t)sb.st_size > max) return -EFBIG;
        size_t size = (size_t)sb.st_size, have = 0;
        struct esb_body *b = esb_body_alloc(size);
        int rc = 0;
        while (have < size) {
            ssize_t r = pread(fd, b->data + have, size - have, (off_t)have);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                rc = -errno;
                break;
            }
            if (r == 0) break; /* shrank: take what is there */
            have += (size_t)r;
        }
        char probe;
        ssize_t more = rc == 0 ? pread(fd, &probe, 1, (off_t)have) : 0;
        if (rc == 0 && more == 0) {
            b->len = have;
            b->data[have] = '\0';
            *out = b;
            return 0;
        }
        esb_body_unref(b);
        if (rc != 0) return rc;
        if (more < 0) return -errno;
        /* it grew while we read: read it again */
    }
    return -EAGAIN;
}

/* Accept the claimed file wname ("<uuid>-<name>") and move it on. */
static enum claim_result handle_claimed(struct file_in_state *st, const char *wname)
{
    const struct esb_file_in_conf *conf = CONF(st->ep);
    char uuidtext[ESB_UUID_STRLEN + 1], reason[400];
    esb_uuid_t id;
    size_t wl = strlen(wname);
    if (wl < ESB_UUID_STRLEN + 2 || wname[ESB_UUID_STRLEN] != '-') goto foreign;
    memcpy(uuidtext, wname, ESB_UUID_STRLEN);
    uuidtext[ESB_UUID_STRLEN] = '\0';
    if (esb_uuid_parse(uuidtext, &id) != 0) goto foreign;
    const char *name = wname + ESB_UUID_STRLEN + 1;

    long acc = find_accepted(st, wname);
    if (acc >= 0 || already_accepted(st, uuidtext)) {
        if (to_done_dir(st, wname, name, uuidtext) != 0) {
            if (acc < 0) remember_accepted(st, wname);
            return CLAIM_RETRY;
        }
        if (acc >= 0) forget_accepted(st, acc);
        return CLAIM_FINISHED;
    }

    struct esb_err err = {0, ""};
    int fd = esb_fs_open(&st->work, wname, O_RDONLY | O_NONBLOCK, 0, &err);
    if (fd == -ENOENT) return CLAIM_FINISHED; /* gone (an operator removed it) */
    if (fd == -ELOOP) {
        to_error_dir(st, &st->work, wname, name, "symbolic link (never followed)");
        return CLAIM_FINISHED;
    }
    if (fd < 0) {
        esb_warn("file-in=%s file=%s cannot open claimed file: %s", st->ep->id, name, err.msg);
        return CLAIM_RETRY;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        to_error_dir(st, &st->work, wname, name, "not a regular file");
        return CLAIM_FINISHED;
    }
    struct esb_body *body = NULL;
    int rc = read_body(fd, conf->max_file_size, &body);
    close(fd);
    if (rc == -EFBIG) {
        snprintf(reason, sizeof(reason), "file too large (%lld bytes; max-file-size is %llu)",
                 (long long)sb.st_size, (unsigned long long)conf->max_file_size);
        to_error_dir(st, &st->work, wname, name, reason);
        return CLAIM_FINISHED;
    }
    if (rc != 0) {
        esb_warn("file-in=%s file=%s read failed: %s", st->ep->id, name,
                 rc == -EAGAIN ? "it keeps changing" : strerror(-rc));
        return CLAIM_RETRY;
    }

    if (atomic_load(&st->stop)) { /* stopping: the claim is taken up at the next start */
        esb_body_unref(body);
        return CLAIM_RETRY;
    }
    struct esb_msg *m = esb_msg_new();
    m->id = id; /* the claim's uuid: a re-accept after a crash keeps the id */
    memcpy(m->id_text, uuidtext, sizeof(uuidtext));
    esb_msg_set_body_take(m, body);
    esb_msg_set_content_type(m, conf->content_type ? conf->content_type : "");
    esb_msg_set_header(m, "esb-file-name", name);
    esb_msg_set_header(m, "esb-source", st->ep->id);
    char key[400];
    claim_key(st, uuidtext, key, sizeof(key));
    rc = esb_runtime_accept_marked(st->rt, st->ep, NULL, m, key, esb_now_ms() + CLAIM_MARK_TTL_MS,
                                   &err);
    esb_msg_unref(m);
    if (rc == 0) {
        st->warned_full = 0;
        if (to_done_dir(st, wname, name, uuidtext) == 0) return CLAIM_FINISHED;
        remember_accepted(st, wname);
        return CLAIM_RETRY;
    }
    if (rc == ESB_ENOTFOUND) {
        snprintf(reason, sizeof(reason), "not accepted: %s", err.msg);
        to_error_dir(st, &st->work, wname, name, reason);
        return CLAIM_FINISHED;
    }
    if (rc == ESB_EFULL) {
        if (!st->warned_full)
            esb_warn("file-in=%s back-pressure: pausing pick-up (%s)", st->ep->id, err.msg);
        st->warned_full = 1;
    } else if (rc != ESB_ECLOSED) {
        esb_warn("file-in=%s file=%s not accepted, will retry: %s", st->ep->id, name,
                 err.msg[0] ? err.msg : esb_strerror(rc));
    }
    return CLAIM_RETRY;

foreign:
    to_error_dir(st, &st->work, wname, wname, "unexpected file in the claim directory");
    return CLAIM_FINISHED;
}

/* Handle every file in the claim directory. Returns the number left there. */
static size_t drain_work(struct file_in_state *st)
{
    int fd = openat(st->work.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return 1;
    DIR *dp = fdopendir(fd);
    if (!dp) {
        close(fd);
        return 1;
    }
    size_t left = 0;
    struct dirent *de;
    while (!atomic_load(&st->stop) && (de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.') continue; /* ".", "..", temp files */
        if (handle_claimed(st, de->d_name) == CLAIM_RETRY) {
            left++;
            break; /* the runtime refuses: try again after the back-off */
        }
    }
    closedir(dp);
    return left;
}

/* ---- scanning the inbox ---- */

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* The entry for name, or a new one (since = now) if there is room. */
static struct seen *seen_get(struct file_in_state *st, const char *name, uint64_t now)
{
    if (!st->buckets) {
        st->nbuckets = 64;
        st->buckets = esb_calloc(st->nbuckets, sizeof(*st->buckets));
    }
    size_t h = name_hash(name);
    for (struct seen *s = st->buckets[h & (st->nbuckets - 1)]; s; s = s->next)
        if (strcmp(s->name, name) == 0) return s;
    if (st->nseen >= MAX_TRACKED) return NULL;
    if (st->nseen >= st->nbuckets * 2) { /* grow and rehash */
        size_t nb = st->nbuckets * 4;
        struct seen **b = esb_calloc(nb, sizeof(*b));
        for (size_t i = 0; i < st->nbuckets; i++)
            for (struct seen *s = st->buckets[i], *next; s; s = next) {
                next = s->next;
                size_t j = name_hash(s->name) & (nb - 1);
                s->next = b[j];
                b[j] = s;
            }
        free(st->buckets);
        st->buckets = b;
        st->nbuckets = nb;
    }
    size_t n = strlen(name);
    struct seen *s = esb_calloc(1, sizeof(*s) + n + 1);
    memcpy(s->name, name, n + 1);
    s->since_ms = now;
    size_t j = h & (st->nbuckets - 1);
    s->next = st->buckets[j];
    st->buckets[j] = s;
    st->nseen++;
    return s;
}

/* Drop entries not seen by scan gen (all of them if gen is 0). */
static void seen_prune(struct file_in_state *st, unsigned gen)
{
    for (size_t i = 0; i < st->nbuckets; i++)
        for (struct seen **pp = &st->buckets[i]; *pp;) {
            struct seen *s = *pp;
            if (gen && s->gen == gen) {
                pp = &s->next;
                continue;
            }
            *pp = s->next;
            free(s);
            st->nseen--;
        }
}

static void seen_remove(struct file_in_state *st, const char *name)
{
    if (!st->buckets) return;
    for (struct seen **pp = &st->buckets[name_hash(name) & (st->nbuckets - 1)]; *pp;
         pp = &(*pp)->next)
        if (strcmp((*pp)->name, name) == 0) {
            struct seen *s = *pp;
            *pp = s->next;
            free(s);
            st->nseen--;
            return;
        }
}

static const char *kind_of(mode_t mode)
{
    if (S_ISLNK(mode)) return "symbolic link (never followed)";
    if (S_ISDIR(mode)) return "directory, not a regular file";
    if (S_ISFIFO(mode)) return "FIFO, not a regular file";
    if (S_ISSOCK(mode)) return "socket, not a regular file";
    return "device or other special file, not a regular file";
}

/* Claim dir/name into the work dir and handle it. */
static enum claim_result claim(struct file_in_state *st, const char *name)
{
    char wname[NAME_MAX + 1];
    esb_uuid_t u;
    esb_uuid_v7(&u);
    esb_uuid_format(&u, wname);
    wname[ESB_UUID_STRLEN] = '-';
    size_t nl = strlen(name); /* <= CLAIM_NAME_MAX: checked by the caller */
    if (nl > CLAIM_NAME_MAX) nl = CLAIM_NAME_MAX;
    memcpy(wname + ESB_UUID_STRLEN + 1, name, nl);
    wname[ESB_UUID_STRLEN + 1 + nl] = '\0';
    struct esb_err err = {0, ""};
    int rc = esb_fs_move(&st->in, name, &st->work, wname, 1, &err);
    if (rc == -ENOENT) return CLAIM_FINISHED; /* taken by someone else */
    if (rc != 0) {
        esb_warn("file-in=%s file=%s cannot claim: %s", st->ep->id, name, err.msg);
        return CLAIM_FINISHED; /* still in dir: seen again next scan */
    }
    return handle_claimed(st, wname);
}

/* Scan dir once. Returns CLAIM_RETRY if a claimed file must wait for the
 * runtime; *wait_ms is lowered to when the next file becomes stable. */
static enum claim_result scan_inbox(struct file_in_state *st, uint64_t *wait_ms)
{
    const struct esb_file_in_conf *conf = CONF(st->ep);
    int fd = openat(st->in.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return CLAIM_FINISHED;
    DIR *dp = fdopendir(fd);
    if (!dp) {
        close(fd);
        return CLAIM_FINISHED;
    }
    enum claim_result res = CLAIM_FINISHED;
    unsigned gen = ++st->gen;
    struct dirent *de;
    while (!atomic_load(&st->stop) && (de = readdir(dp)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.') continue;
        if (fnmatch(conf->pattern, name, 0) != 0) continue;
        if (conf->exclude && conf->exclude[0] && fnmatch(conf->exclude, name, 0) == 0) continue;
        struct stat sb;
        if (fstatat(st->in.fd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (!S_ISREG(sb.st_mode)) {
            struct stat d;
            if (S_ISDIR(sb.st_mode) &&
                ((fstat(st->done.fd, &d) == 0 && d.st_dev == sb.st_dev && d.st_ino == sb.st_ino) ||
                 (fstat(st->error.fd, &d) == 0 && d.st_dev == sb.st_dev && d.st_ino == sb.st_ino)))
                continue; /* our own done-dir or error-dir inside dir */
            to_error_dir(st, &st->in, name, name, kind_of(sb.st_mode));
            continue;
        }
        if (strlen(name) > CLAIM_NAME_MAX) {
            char reason[96];
            snprintf(reason, sizeof(reason), "file name too long (more than %d bytes)",
                     CLAIM_NAME_MAX);
            to_error_dir(st, &st->in, name, name, reason);
            continue;
        }
        uint64_t now = mono_ms();
        struct seen *s = seen_get(st, name, now);
        if (!s) continue; /* too many names waiting: the next scan */
        /* A new entry starts at now; a changed file starts again. */
        if (s->gen != 0 &&
            (s->dev != sb.st_dev || s->ino != sb.st_ino || s->size != sb.st_size ||
             s->mtime.tv_sec != sb.st_mtim.tv_sec || s->mtime.tv_nsec != sb.st_mtim.tv_nsec))
            s->since_ms = now; /* still being written */
        s->dev = sb.st_dev;
        s->ino = sb.st_ino;
        s->size = sb.st_size;
        s->mtime = sb.st_mtim;
        s->gen = gen;
        uint64_t age = now - s->since_ms;
        if (age < conf->stable_for) {
            if (conf->stable_for - age < *wait_ms) *wait_ms = conf->stable_for - age;
            continue;
        }
        seen_remove(st, name);
        if (claim(st, name) == CLAIM_RETRY) {
            res = CLAIM_RETRY;
            break;
        }
    }
    closedir(dp);
    /* Forget names that are gone (only after a complete scan). */
    if (res == CLAIM_FINISHED && !atomic_load(&st->stop)) seen_prune(st, gen);
    return res;
}

/* ---- the thread ---- */

static void wait_events(struct file_in_state *st, uint64_t ms)
{
    struct pollfd p[2] = {{st->wake_fd, POLLIN, 0}, {st->ino_fd, POLLIN, 0}};
    int n = st->ino_fd >= 0 ? 2 : 1;
    if (poll(p, (nfds_t)n, (int)ms) <= 0) return;
    if (n == 2 && (p[1].revents & POLLIN)) {
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        while (read(st->ino_fd, buf, sizeof(buf)) > 0) {
        }
    }
}

static void *file_in_main(void *arg)
{
    struct file_in_state *st = arg;
    const struct esb_file_in_conf *conf = CONF(st->ep);
    esb_thread_name("esb-in-%s", st->ep->id);
    while (!atomic_load(&st->stop)) {
        uint64_t wait = conf->poll_interval;
        int pending = drain_work(st) > 0;
        if (!pending && scan_inbox(st, &wait) == CLAIM_RETRY) pending = 1;
        if (pending) {
            uint64_t base = conf->poll_interval < 100 ? 100 : conf->poll_interval;
            st->backoff_ms = st->backoff_ms ? st->backoff_ms * 2 : base;
            if (st->backoff_ms > MAX_BACKOFF_MS) st->backoff_ms = MAX_BACKOFF_MS;
            wait = st->backoff_ms;
        } else {
            st->backoff_ms = 0;
        }
        if (!atomic_load(&st->stop)) wait_events(st, wait);
    }
    return NULL;
}

/* ---- lifecycle ---- */

/* The done-dir / error-dir path: the attribute, or dir/<def>. */
static char *sub_path(const char *given, const char *dir, const char *def)
{
    if (given && *given) return esb_strdup(given);
    size_t n = strlen(dir) + 1 + strlen(def) + 1;
    char *p = esb_malloc(n);
    snprintf(p, n, "%s/%s", dir, def);
    return p;
}

static int file_in_check(struct esb_endpoint *ep, struct esb_err *err)
{
    const struct esb_file_in_conf *conf = CONF(ep);
    const char *file = ep->file ? ep->file : "?";
    if (!conf->dir || !*conf->dir)
        return esb_err_set(err, ESB_EINVAL, "%s:%d: file-in '%s': attribute 'dir' is empty", file,
                           ep->line, ep->id);
    if (!conf->pattern || !*conf->pattern)
        return esb_err_set(err, ESB_EINVAL, "%s:%d: file-in '%s': attribute 'pattern' is empty",
                           file, ep->line, ep->id);
    const char *names[2] = {conf->done_dir, conf->error_dir};
    const char *attrs[2] = {"done-dir", "error-dir"};
    for (int i = 0; i < 2; i++)
        if (names[i] && strcmp(names[i], conf->dir) == 0)
            return esb_err_set(err, ESB_EINVAL,
                               "%s:%d: file-in '%s': attribute '%s' must differ from dir", file,
                               ep->line, ep->id, attrs[i]);
    return 0;
}

static void state_free(struct file_in_state *st)
{
    if (!st) return;
    esb_dir_close(&st->in);
    esb_dir_close(&st->work);
    esb_dir_close(&st->done);
    esb_dir_close(&st->error);
    if (st->ino_fd >= 0) close(st->ino_fd);
    if (st->wake_fd >= 0) close(st->wake_fd);
    seen_prune(st, 0);
    free(st->buckets);
    for (size_t i = 0; i < st->naccepted; i++) free(st->accepted[i]);
    free(st->accepted);
    free(st);
}

/* Open dir/done/error/work into st; checks they are distinct and share a
 * file system (moves are renames). */
static int open_dirs(struct esb_endpoint *ep, struct file_in_state *st, struct esb_err *err)
{
    const struct esb_file_in_conf *conf = CONF(ep);
    char *done = sub_path(conf->done_dir, conf->dir, ESB_FILE_IN_DONE);
    char *error = sub_path(conf->error_dir, conf->dir, ESB_FILE_IN_FAIL);
    int rc;
    if ((rc = esb_dir_open(&st->in, conf->dir, 1, err)) != 0) goto out;
    if ((rc = esb_dir_open(&st->done, done, 1, err)) != 0) goto out;
    if ((rc = esb_dir_open(&st->error, error, 1, err)) != 0) goto out;
    if ((rc = esb_dir_open_sub(&st->work, &st->in, ESB_FILE_IN_WORK_DIR, 1, err)) != 0) goto out;
    struct stat a, b, c;
    if (fstat(st->in.fd, &a) != 0 || fstat(st->done.fd, &b) != 0 || fstat(st->error.fd, &c) != 0) {
        rc = esb_err_set(err, -errno, "file-in '%s': stat: %s", ep->id, strerror(errno));
        goto out;
    }
    if ((a.st_dev == b.st_dev && a.st_ino == b.st_ino) ||
        (a.st_dev == c.st_dev && a.st_ino == c.st_ino)) {
        rc =
            esb_err_set(err, ESB_EINVAL, "file-in '%s': done-dir and error-dir must differ from %s",
                        ep->id, conf->dir);
        goto out;
    }
    if (a.st_dev != b.st_dev || a.st_dev != c.st_dev) {
        rc = esb_err_set(err, ESB_EINVAL,
                         "file-in '%s': %s, %s and %s must be on one file system (files are "
                         "moved by rename)",
                         ep->id, conf->dir, done, error);
        goto out;
    }
out:
    free(done);
    free(error);
    return rc;
}

/* Files in the claim directory (left by a crash or an earlier stop). */
static size_t count_claims(const struct file_in_state *st)
{
    int fd = openat(st->work.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dp) {
        if (fd >= 0) close(fd);
        return 0;
    }
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL)
        if (de->d_name[0] != '.') n++;
    closedir(dp);
    return n;
}

static int file_in_start(struct esb_endpoint *ep, struct esb_runtime *rt, struct esb_err *err)
{
    struct file_in_state *old = ep->state;
    if (old && old->started)
        return esb_err_set(err, ESB_EINVAL, "file-in '%s': already running", ep->id);
    state_free(old); /* stopped earlier: start afresh */
    ep->state = NULL;

    struct file_in_state *st = esb_calloc(1, sizeof(*st));
    st->ep = ep;
    st->rt = rt;
    st->in.fd = st->work.fd = st->done.fd = st->error.fd = -1;
    st->ino_fd = -1;
    int rc = open_dirs(ep, st, err);
    if (rc != 0) goto fail;
    st->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (st->wake_fd < 0) {
        rc = esb_err_set(err, -errno, "file-in '%s': eventfd: %s", ep->id, strerror(errno));
        goto fail;
    }
    st->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    int ino_errno = errno;
    if (st->ino_fd >= 0) {
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", st->in.fd);
        if (inotify_add_watch(st->ino_fd, proc,
                              IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ONLYDIR) < 0) {
            ino_errno = errno;
            close(st->ino_fd);
            st->ino_fd = -1;
        }
    }
    if (st->ino_fd < 0)
        esb_info("file-in=%s inotify unavailable (%s): polling only", ep->id, strerror(ino_errno));
    size_t claims = count_claims(st);
    ep->state = st;
    if ((rc = pthread_create(&st->thread, NULL, file_in_main, st)) != 0) {
        ep->state = NULL;
        rc = esb_err_set(err, -rc, "file-in '%s': cannot start thread", ep->id);
        goto fail;
    }
    st->started = 1;
    esb_info("file-in=%s watching=%s done=%s error=%s", ep->id, st->in.path, st->done.path,
             st->error.path);
    if (claims > 0)
        esb_warn("file-in=%s found %zu claimed files from an earlier run in %s: finishing them "
                 "(those already accepted are only moved to done-dir)",
                 ep->id, claims, st->work.path);
    return 0;
fail:
    state_free(st);
    return rc;
}

static void file_in_stop(struct esb_endpoint *ep)
{
    struct file_in_state *st = ep ? ep->state : NULL;
    if (!st || !st->started) return;
    atomic_store(&st->stop, 1);
    uint64_t one = 1;
    if (write(st->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter is non-zero already: the thread wakes anyway */
    }
    pthread_join(st->thread, NULL);
    st->started = 0;
    esb_info("file-in=%s stopped", ep->id);
}

/* Strings equal, NULL counting as "". */
static int same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static int file_in_same(const struct esb_endpoint *a, const struct esb_endpoint *b)
{
    const struct esb_file_in_conf *x = CONF(a), *y = CONF(b);
    return same_str(a->id, b->id) && same_str(x->dir, y->dir) && same_str(x->pattern, y->pattern) &&
           same_str(x->exclude, y->exclude) && same_str(x->done_dir, y->done_dir) &&
           same_str(x->error_dir, y->error_dir) && x->stable_for == y->stable_for &&
           x->poll_interval == y->poll_interval && x->max_file_size == y->max_file_size &&
           same_str(x->content_type, y->content_type);
}

static void file_in_destroy(struct esb_endpoint *ep)
{
    if (!ep || !ep->state) return;
    file_in_stop(ep);
    state_free(ep->state);
    ep->state = NULL;
}

const struct esb_connector_ops esb_file_in_ops = {
    .element = "file-in",
    .dir = ESB_INBOUND,
    .summary = "Picks up files dropped in a directory; each file becomes one message and is "
               "moved to done-dir once durable.",
    .attrs = file_in_attrs,
    .conf_size = sizeof(struct esb_file_in_conf),
    .check = file_in_check,
    .start = file_in_start,
    .stop = file_in_stop,
    .same = file_in_same,
    .destroy = file_in_destroy,
};
