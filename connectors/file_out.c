/* file_out.c - the file-out connector: one file per delivered message.
 *
 * deliver() renders the name template (routes/template.h, file-name mode:
 * nothing a message carries can make the name leave the directory), writes
 * the body to a temp file, fdatasyncs it, renames it into place without
 * replacing anything (unless overwrite="true") and fsyncs the directory;
 * only then it returns ESB_DONE. A name that is taken gets "-1", "-2", ...
 * before its extension; a taken name that already holds exactly these
 * bytes counts as this delivery (a redelivery after a crash adds no copy).
 *
 * State (the open directory and the compiled template) is made on the first
 * delivery and shared by all worker threads. */
#include "config.h"

#include "file_out.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "log.h"
#include "msg.h"
#include "template.h"

#define CONF(ep) ((const struct esb_file_out_conf *)(ep)->conf)

/* Most "-N" suffixes tried for one taken name before giving up (REJECT). */
#define FILE_OUT_MAX_SUFFIX 1000

static const struct esb_attr_spec file_out_attrs[] = {
    {"id", ESB_ATTR_STRING, NULL, offsetof(struct esb_file_out_conf, id), 0, 0, 0, NULL,
     "Endpoint id, used in to uri=\"file-out:ID\"."},
    {"dir", ESB_ATTR_STRING, NULL, offsetof(struct esb_file_out_conf, dir), 1, 0, 0, NULL,
     "Directory the files are written to; created (with parents) at the first delivery."},
    {"name", ESB_ATTR_STRING, "{id}", offsetof(struct esb_file_out_conf, name), 0, 0, 0, NULL,
     "File name template ({id}, {header:NAME}, {content-type}, {date:FMT}, {route}); "
     "values are sanitized so the name stays inside dir."},
    {"overwrite", ESB_ATTR_BOOL, "false", offsetof(struct esb_file_out_conf, overwrite), 0, 0, 0,
     NULL,
     "Replace an existing file of the same name; if false a taken name gets a -1, -2, ... "
     "suffix and nothing is ever replaced."},
    ESB_ATTR_END,
};

struct file_out_state {
    pthread_mutex_t lock; /* guards opening dir */
    struct esb_dir dir;   /* fd -1 until the first delivery opens it */
    struct esb_template *name;
};

static void state_free(struct file_out_state *st)
{
    if (!st) return;
    esb_dir_close(&st->dir);
    esb_template_free(st->name);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

static int compile_name(const struct esb_endpoint *ep, struct esb_template **out,
                        struct esb_err *err)
{
    struct esb_err e = {0, ""};
    if (esb_template_compile(CONF(ep)->name, ESB_TEMPLATE_FILENAME, out, &e) != 0)
        return esb_err_set(err, ESB_EINVAL, "%s:%d: file-out '%s': attribute 'name': %s",
                           ep->file ? ep->file : "?", ep->line, ep->id, e.msg);
    return 0;
}

/* The endpoint's state, made on first use (any thread; one wins). */
static struct file_out_state *get_state(struct esb_endpoint *ep, struct esb_err *err)
{
    struct file_out_state *st = esb_endpoint_state(ep);
    if (st) return st;
    st = esb_calloc(1, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    st->dir.fd = -1;
    if (compile_name(ep, &st->name, err) != 0) {
        state_free(st);
        return NULL;
    }
    struct file_out_state *won = esb_endpoint_state_install(ep, st);
    if (won != st) state_free(st);
    return won;
}

/* The output directory, opened (and created) on first use. */
static const struct esb_dir *get_dir(struct esb_endpoint *ep, struct file_out_state *st,
                                     struct esb_err *err)
{
    pthread_mutex_lock(&st->lock);
    int rc = 0;
    if (st->dir.fd < 0) {
        rc = esb_dir_open(&st->dir, CONF(ep)->dir, 1, err);
        /* leftovers of deliveries a crash cut short (older than any write
         * in progress could be) */
        if (rc == 0) esb_fs_sweep_tmp(&st->dir, 600);
    }
    pthread_mutex_unlock(&st->lock);
    return rc == 0 ? &st->dir : NULL;
}

/* name with "-k" before its extension ("a.json" -> "a-1.json"; "a" ->
 * "a-1"); the stem is cut so the result fits ESB_TEMPLATE_NAME_MAX bytes.
 * out holds ESB_TEMPLATE_NAME_MAX + 1 bytes. */
static void suffixed_name(const char *name, unsigned k, char *out)
{
    char suffix[16];
    int sl = snprintf(suffix, sizeof(suffix), "-%u", k);
    size_t nl = strlen(name);
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || strlen(dot) > 32) dot = name + nl;
    size_t stem = (size_t)(dot - name), ext = nl - stem;
    if (stem + (size_t)sl + ext > ESB_TEMPLATE_NAME_MAX)
        stem = ESB_TEMPLATE_NAME_MAX - (size_t)sl - ext;
    memcpy(out, name, stem);
    memcpy(out + stem, suffix, (size_t)sl);
    memcpy(out + stem + (size_t)sl, dot, ext);
    out[stem + (size_t)sl + ext] = '\0';
}

/* Non-zero if dir/name is a regular file holding exactly data. */
static int same_content(const struct esb_dir *d, const char *name, const void *data, size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    if (esb_fs_read(d, name, n, &buf, &len, NULL) != 0) return 0;
    int same = len == n && (n == 0 || memcmp(buf, data, n) == 0);
    free(buf);
    return same;
}

static enum esb_outcome outcome_of(int rc)
{
    /* A name the file system will never take is permanent; the rest (full
     * disk, I/O error, permissions an operator can fix) may heal. */
    return rc == ESB_EINVAL || rc == -ENAMETOOLONG ? ESB_REJECT : ESB_RETRY;
}

static enum esb_outcome file_out_deliver(struct esb_endpoint *ep, const struct esb_msg *m,
                                         struct esb_err *err)
{
    const struct esb_file_out_conf *conf = CONF(ep);
    struct file_out_state *st = get_state(ep, err);
    if (!st) return ESB_REJECT;

    char name[ESB_TEMPLATE_NAME_MAX + 1];
    struct esb_template_env env = {m, esb_msg_header(m, "esb-route"), 0};
    if (esb_template_render_filename(st->name, &env, name) != 0) {
        esb_err_set(err, ESB_EINVAL, "file-out '%s': template '%s' gives an empty file name",
                    ep->id, conf->name);
        return ESB_REJECT;
    }
    const struct esb_dir *d = get_dir(ep, st, err);
    if (!d) return ESB_RETRY;

    const void *data = m->body->data;
    size_t n = m->body->len;
    char tmp[ESB_FS_TMP_NAME_SIZE];
    int rc = esb_fs_tmp_write(d, data, n, tmp, err);
    if (rc != 0) return outcome_of(rc);

    rc = esb_fs_tmp_place(d, tmp, name, conf->overwrite, err);
    char alt[ESB_TEMPLATE_NAME_MAX + 1];
    const char *placed = name;
    for (unsigned k = 1; rc == -EEXIST; k++) {
        if (same_content(d, placed, data, n)) {
            esb_debug("file-out=%s id=%s %s/%s already holds this message", ep->id, m->id_text,
                      d->path, placed);
            esb_fs_tmp_discard(d, tmp);
            return ESB_DONE;
        }
        if (k > FILE_OUT_MAX_SUFFIX) {
            esb_fs_tmp_discard(d, tmp);
            esb_err_set(err, -EEXIST, "file-out '%s': %s/%s and its %d suffixed variants all exist",
                        ep->id, d->path, name, FILE_OUT_MAX_SUFFIX);
            return ESB_REJECT;
        }
        suffixed_name(name, k, alt);
        placed = alt;
        rc = esb_fs_tmp_place(d, tmp, placed, 0, err);
    }
    if (rc != 0) {
        /* A rename that happened but whose directory fsync failed leaves the
         * file in place; the retry then finds it with the same bytes. */
        esb_fs_tmp_discard(d, tmp);
        return outcome_of(rc);
    }
    esb_debug("file-out=%s id=%s wrote %s/%s bytes=%zu", ep->id, m->id_text, d->path, placed, n);
    return ESB_DONE;
}

static int file_out_check(struct esb_endpoint *ep, struct esb_err *err)
{
    const struct esb_file_out_conf *conf = CONF(ep);
    if (!conf->dir || !*conf->dir)
        return esb_err_set(err, ESB_EINVAL, "%s:%d: file-out '%s': attribute 'dir' is empty",
                           ep->file ? ep->file : "?", ep->line, ep->id);
    struct esb_template *t = NULL;
    int rc = compile_name(ep, &t, err);
    esb_template_free(t);
    return rc;
}

static void file_out_destroy(struct esb_endpoint *ep)
{
    if (!ep) return;
    state_free(ep->state);
    ep->state = NULL;
}

const struct esb_connector_ops esb_file_out_ops = {
    .element = "file-out",
    .dir = ESB_OUTBOUND,
    .summary = "Writes each message body to its own file, atomically (temp file, fdatasync, "
               "rename, directory fsync).",
    .attrs = file_out_attrs,
    .conf_size = sizeof(struct esb_file_out_conf),
    .check = file_out_check,
    .deliver = file_out_deliver,
    .destroy = file_out_destroy,
};
