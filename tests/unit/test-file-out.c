/* test-file-out.c - the file-out connector and the fsutil helpers: files
 * land with the right bytes and names, hostile names stay in the directory,
 * nothing is ever clobbered unless asked, no temp files are left behind,
 * and concurrent deliveries all land. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tap.h"
#include "file_out.h"
#include "fsutil.h"
#include "log.h"
#include "msg.h"

static char root[256];

static char *path_of(const char *rel)
{
    static char buf[4][PATH_MAX];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", root, rel);
    return buf[i];
}

/* Contents of a file (malloc'd, NUL-terminated) or NULL. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static int file_is(const char *path, const char *want)
{
    size_t n = 0;
    char *got = slurp(path, &n);
    int same = got && n == strlen(want) && memcmp(got, want, n) == 0;
    free(got);
    return same;
}

/* Number of entries of dir (without . and ..); those starting with prefix
 * if prefix is non-NULL. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (!prefix || strncmp(de->d_name, prefix, strlen(prefix)) == 0) n++;
    }
    closedir(d);
    return n;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

struct fixture {
    struct esb_file_out_conf conf;
    struct esb_endpoint ep;
};

static void ep_init(struct fixture *f, const char *dir, const char *name, int overwrite)
{
    memset(f, 0, sizeof(*f));
    f->conf.dir = esb_strdup(path_of(dir));
    f->conf.name = esb_strdup(name);
    f->conf.overwrite = overwrite;
    f->ep.id = esb_strdup("archive");
    f->ep.ops = &esb_file_out_ops;
    f->ep.file = esb_strdup("test.xml");
    f->ep.line = 7;
    f->ep.conf = &f->conf;
}

static void ep_free(struct fixture *f)
{
    esb_file_out_ops.destroy(&f->ep);
    free(f->conf.dir);
    free(f->conf.name);
    free(f->ep.id);
    free(f->ep.file);
}

static struct esb_msg *msg_with(const char *body, const char *hname, const char *hvalue)
{
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_body(m, body, strlen(body));
    if (hname) esb_msg_set_header(m, hname, hvalue);
    return m;
}

static enum esb_outcome deliver(struct fixture *f, struct esb_msg *m, struct esb_err *err)
{
    enum esb_outcome o = esb_file_out_ops.deliver(&f->ep, m, err);
    esb_msg_unref(m);
    return o;
}

static void test_fsutil(void)
{
    struct esb_err err = {0, ""};
    ok(esb_fs_name_ok("a.txt") && !esb_fs_name_ok("") && !esb_fs_name_ok(".") &&
           !esb_fs_name_ok("..") && !esb_fs_name_ok("a/b") && !esb_fs_name_ok("/x"),
       "fsutil: names with '/' and dot names are refused");

    ok(esb_fs_mkdir_p(path_of("fs/a/b/c"), &err) == 0, "fsutil: mkdir -p makes nested dirs");
    ok(esb_fs_mkdir_p(path_of("fs/a/b/c"), &err) == 0, "fsutil: mkdir -p on an existing dir");
    struct esb_dir d;
    ok(esb_dir_open(&d, path_of("fs/a/b/c"), 0, &err) == 0, "fsutil: open dir");

    ok(esb_fs_write_atomic(&d, "x.txt", "hello", 5, 0, &err) == 0 &&
           file_is(path_of("fs/a/b/c/x.txt"), "hello"),
       "fsutil: atomic write puts the bytes in place");
    int rc = esb_fs_write_atomic(&d, "x.txt", "other", 5, 0, &err);
    ok(rc == -EEXIST && file_is(path_of("fs/a/b/c/x.txt"), "hello"),
       "fsutil: overwrite=0 refuses an existing name and keeps its bytes");
    ok(strstr(err.msg, "fs/a/b/c/x.txt") != NULL, "fsutil: the error names the path (%s)", err.msg);
    ok(esb_fs_write_atomic(&d, "x.txt", "new", 3, 1, &err) == 0 &&
           file_is(path_of("fs/a/b/c/x.txt"), "new"),
       "fsutil: overwrite=1 replaces");
    ok(esb_fs_write_atomic(&d, "../escape", "x", 1, 1, &err) == ESB_EINVAL &&
           access(path_of("fs/a/b/escape"), F_OK) != 0,
       "fsutil: a name with '/' is refused, nothing written outside");
    ok(count_entries(d.path, ESB_FS_TMP_PREFIX) == 0, "fsutil: no temp files left");

    /* Symbolic links are never followed. */
    if (symlink(path_of("fs/a/b/c/x.txt"), path_of("fs/a/b/c/link")) != 0) bail("symlink");
    ok(esb_fs_open(&d, "link", O_RDONLY, 0, &err) == -ELOOP, "fsutil: open refuses a symlink");
    char *buf = NULL;
    size_t len = 0;
    ok(esb_fs_read(&d, "link", 100, &buf, &len, &err) == -ELOOP && !buf,
       "fsutil: read refuses a symlink");
    struct esb_dir d2;
    if (symlink(path_of("fs/a"), path_of("fs/a/b/c/dirlink")) != 0) bail("symlink");
    ok(esb_dir_open_sub(&d2, &d, "dirlink", 1, &err) == -ELOOP && d2.fd == -1,
       "fsutil: a symlink in place of a subdirectory is not followed (%s)", err.msg);

    ok(esb_fs_read(&d, "x.txt", 100, &buf, &len, &err) == 0 && len == 3 &&
           memcmp(buf, "new", 3) == 0,
       "fsutil: read a file");
    free(buf);
    ok(esb_fs_read(&d, "x.txt", 2, &buf, &len, &err) == -EFBIG && !buf,
       "fsutil: read over the cap is -EFBIG");

    /* Moves. */
    struct esb_dir d3;
    ok(esb_dir_open_sub(&d3, &d, "sub", 1, &err) == 0, "fsutil: make and open a subdir");
    ok(esb_fs_write_text(&d3, "x.txt", "taken\n", &err) == 0, "fsutil: write a text file");
    ok(esb_fs_move(&d, "x.txt", &d3, "x.txt", 1, &err) == -EEXIST &&
           file_is(path_of("fs/a/b/c/sub/x.txt"), "taken\n") &&
           file_is(path_of("fs/a/b/c/x.txt"), "new"),
       "fsutil: move with noreplace never clobbers");
    ok(esb_fs_move(&d, "x.txt", &d3, "y.txt", 1, &err) == 0 &&
           file_is(path_of("fs/a/b/c/sub/y.txt"), "new") &&
           access(path_of("fs/a/b/c/x.txt"), F_OK) != 0,
       "fsutil: move renames between directories");

    char out[NAME_MAX + 1], longname[300];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    esb_fs_name_with_suffix(longname, ".reason", out, sizeof(out));
    ok(strlen(out) == NAME_MAX && strcmp(out + NAME_MAX - 7, ".reason") == 0,
       "fsutil: a suffixed name is cut to NAME_MAX keeping the suffix");

    esb_dir_close(&d3);
    esb_dir_close(&d);
}

static void test_deliver_basic(void)
{
    struct fixture f;
    struct esb_err err = {0, ""};
    ep_init(&f, "out/new/sub", "{id}.json", 0);
    ok(esb_file_out_ops.check(&f.ep, &err) == 0, "check accepts a good endpoint");
    ok(access(path_of("out"), F_OK) != 0, "check does not create the directory");

    struct esb_msg *m = msg_with("{\"a\":1}", NULL, NULL);
    char want[PATH_MAX];
    snprintf(want, sizeof(want), "out/new/sub/%s.json", m->id_text);
    ok(deliver(&f, m, &err) == ESB_DONE, "deliver: DONE (%s)", err.msg);
    ok(file_is(path_of(want), "{\"a\":1}"), "deliver: file named {id}.json holds the body");

    m = msg_with("", NULL, NULL);
    snprintf(want, sizeof(want), "out/new/sub/%s.json", m->id_text);
    ok(deliver(&f, m, &err) == ESB_DONE && file_is(path_of(want), ""),
       "deliver: an empty body gives an empty file");

    /* Binary bytes with NULs survive. */
    m = esb_msg_new();
    const char bin[] = {'a', 0, 'b', 0, (char)0xff};
    esb_msg_set_body(m, bin, sizeof(bin));
    snprintf(want, sizeof(want), "out/new/sub/%s.json", m->id_text);
    ok(deliver(&f, m, &err) == ESB_DONE, "deliver binary body");
    size_t n = 0;
    char *got = slurp(path_of(want), &n);
    ok(got && n == sizeof(bin) && memcmp(got, bin, n) == 0, "deliver: binary bytes intact");
    free(got);
    ep_free(&f);
}

static void test_templates(void)
{
    struct fixture f;
    struct esb_err err = {0, ""};
    ep_init(&f, "tpl", "{header:x-name}", 0);
    ok(deliver(&f, msg_with("r1", "x-name", "report.csv"), &err) == ESB_DONE &&
           file_is(path_of("tpl/report.csv"), "r1"),
       "template: {header:NAME} names the file");
    ok(deliver(&f, msg_with("nothing", NULL, NULL), &err) == ESB_REJECT,
       "template: an empty rendered name is REJECT");
    ok(strstr(err.msg, "empty file name") != NULL, "template: reason says why (%s)", err.msg);
    ep_free(&f);

    ep_init(&f, "tpl2", "{route}-{header:x-k}.txt", 0);
    struct esb_msg *m = msg_with("rt", "x-k", "v");
    esb_msg_set_header(m, "esb-route", "orders");
    ok(deliver(&f, m, &err) == ESB_DONE && file_is(path_of("tpl2/orders-v.txt"), "rt"),
       "template: {route} comes from the esb-route header");
    ep_free(&f);

    ep_init(&f, "tpl3", "{bogus}", 0);
    ok(esb_file_out_ops.check(&f.ep, &err) == ESB_EINVAL && strstr(err.msg, "test.xml:7") &&
           strstr(err.msg, "name"),
       "check: a bad template is an error naming file:line (%s)", err.msg);
    ep_free(&f);
}

static void test_hostile(void)
{
    static const char *const hostile[] = {
        "../../escape1",       "/etc/escape2",     "..", ".", ".hidden", "a/../../escape3", "x\ny",
        "....//....//escape4", "%2e%2e%2fescape5", NULL,
    };
    struct fixture f;
    struct esb_err err = {0, ""};
    if (esb_fs_mkdir_p(path_of("h/in"), &err) != 0) bail("mkdir");
    ep_init(&f, "h/in", "{header:x-n}", 0);
    int done = 0;
    for (int i = 0; hostile[i]; i++)
        if (deliver(&f, msg_with("evil", "x-n", hostile[i]), &err) != ESB_REJECT) done++;
    ok(count_entries(path_of("h"), NULL) == 1, "hostile: nothing created next to the dir");
    ok(access(path_of("escape1"), F_OK) != 0 && access(path_of("escape3"), F_OK) != 0 &&
           access(path_of("escape4"), F_OK) != 0 && access("/tmp/escape1", F_OK) != 0,
       "hostile: nothing created further up");
    ok(access("/etc/escape2", F_OK) != 0, "hostile: nothing in /etc");
    ok(count_entries(path_of("h/in"), NULL) == done, "hostile: every delivered file is in dir");
    ok(count_entries(path_of("h/in"), ".") == 0, "hostile: no hidden or dot names made");
    ep_free(&f);

    /* A symbolic link at the target name is never written through. */
    if (esb_fs_mkdir_p(path_of("h/outside"), &err) != 0) bail("mkdir");
    FILE *t = fopen(path_of("h/outside/target"), "w");
    fputs("keep", t);
    fclose(t);
    if (symlink(path_of("h/outside/target"), path_of("h/in/link.txt")) != 0) bail("symlink");
    ep_init(&f, "h/in", "{header:x-n}", 0);
    ok(deliver(&f, msg_with("via-link", "x-n", "link.txt"), &err) == ESB_DONE &&
           file_is(path_of("h/outside/target"), "keep") &&
           file_is(path_of("h/in/link-1.txt"), "via-link"),
       "symlink at the name: not followed, the file gets a suffix");
    ep_free(&f);
    ep_init(&f, "h/in", "{header:x-n}", 1);
    struct stat sb;
    ok(deliver(&f, msg_with("replaced", "x-n", "link.txt"), &err) == ESB_DONE &&
           file_is(path_of("h/outside/target"), "keep") &&
           lstat(path_of("h/in/link.txt"), &sb) == 0 && S_ISREG(sb.st_mode) &&
           file_is(path_of("h/in/link.txt"), "replaced"),
       "overwrite=true replaces the link itself, never its target");
    ep_free(&f);
}

static void test_no_clobber(void)
{
    struct fixture f;
    struct esb_err err = {0, ""};
    ep_init(&f, "nc", "same.txt", 0);
    ok(deliver(&f, msg_with("A", NULL, NULL), &err) == ESB_DONE, "no-clobber: first");
    ok(deliver(&f, msg_with("B", NULL, NULL), &err) == ESB_DONE, "no-clobber: second");
    ok(file_is(path_of("nc/same.txt"), "A") && file_is(path_of("nc/same-1.txt"), "B"),
       "no-clobber: the first file is kept, the second gets -1 before the extension");
    ok(deliver(&f, msg_with("B", NULL, NULL), &err) == ESB_DONE &&
           count_entries(path_of("nc"), NULL) == 2,
       "no-clobber: the same bytes again (a redelivery) add no copy");
    ok(deliver(&f, msg_with("C", NULL, NULL), &err) == ESB_DONE &&
           file_is(path_of("nc/same-2.txt"), "C") && file_is(path_of("nc/same.txt"), "A"),
       "no-clobber: a third body gets -2");
    ok(count_entries(path_of("nc"), ESB_FS_TMP_PREFIX) == 0, "no-clobber: no temp files left");
    ep_free(&f);

    ep_init(&f, "nc", "same.txt", 1);
    ok(deliver(&f, msg_with("Z", NULL, NULL), &err) == ESB_DONE &&
           file_is(path_of("nc/same.txt"), "Z") && count_entries(path_of("nc"), NULL) == 3,
       "overwrite=true replaces in place");
    ep_free(&f);

    ep_init(&f, "noext", "plain", 0);
    ok(deliver(&f, msg_with("1", NULL, NULL), &err) == ESB_DONE &&
           deliver(&f, msg_with("2", NULL, NULL), &err) == ESB_DONE &&
           file_is(path_of("noext/plain-1"), "2"),
       "no-clobber: a name without extension gets -1 at the end");
    ep_free(&f);
}

static void test_retry(void)
{
    struct fixture f;
    struct esb_err err = {0, ""};
    FILE *t = fopen(path_of("afile"), "w");
    fclose(t);
    ep_init(&f, "afile/out", "{id}", 0);
    ok(deliver(&f, msg_with("x", NULL, NULL), &err) == ESB_RETRY,
       "a directory that cannot be made is RETRY");
    ok(strstr(err.msg, "afile") != NULL, "and the error names the path (%s)", err.msg);
    ep_free(&f);
}

struct worker {
    struct fixture *f;
    int id, fails;
};

#define NTHREADS   4
#define PER_THREAD 25

static void *deliver_many(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char body[32];
        snprintf(body, sizeof(body), "t%d-m%d", w->id, i);
        struct esb_err err = {0, ""};
        if (deliver(w->f, msg_with(body, NULL, NULL), &err) != ESB_DONE) w->fails++;
    }
    return NULL;
}

/* Every body t<i>-m<j> exists in exactly one file of dir. */
static int all_landed(const char *dir)
{
    int seen[NTHREADS][PER_THREAD] = {{0}};
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    int ok_all = 1;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char p[PATH_MAX + 300];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        char *b = slurp(p, NULL);
        int t = -1, m = -1;
        if (b && sscanf(b, "t%d-m%d", &t, &m) == 2 && t >= 0 && t < NTHREADS && m >= 0 &&
            m < PER_THREAD)
            seen[t][m]++;
        else
            ok_all = 0;
        free(b);
    }
    closedir(d);
    for (int t = 0; t < NTHREADS; t++)
        for (int m = 0; m < PER_THREAD; m++)
            if (seen[t][m] != 1) ok_all = 0;
    return ok_all;
}

static void test_concurrent(const char *dir, const char *name, const char *what)
{
    struct fixture f;
    ep_init(&f, dir, name, 0);
    pthread_t th[NTHREADS];
    struct worker w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){&f, i, 0};
        pthread_create(&th[i], NULL, deliver_many, &w[i]);
    }
    int fails = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        fails += w[i].fails;
    }
    ok(fails == 0, "concurrent (%s): every delivery DONE", what);
    ok(count_entries(path_of(dir), NULL) == NTHREADS * PER_THREAD, "concurrent (%s): %d files",
       what, NTHREADS * PER_THREAD);
    ok(all_landed(path_of(dir)), "concurrent (%s): each body exactly once", what);
    ep_free(&f);
}

/* Temporary files left by a crash in the middle of a delivery are removed
 * when the endpoint first opens its directory; recent ones are not (another
 * process may be writing them). */
static void test_tmp_sweep(void)
{
    struct fixture f;
    struct esb_err err = {0, ""};
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/sweep", root);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/sweep/.tmp-old", root);
    FILE *fp = fopen(p, "w");
    if (fp) fclose(fp);
    struct timespec old[2] = {{.tv_sec = time(NULL) - 3600}, {.tv_sec = time(NULL) - 3600}};
    utimensat(AT_FDCWD, p, old, 0);
    snprintf(p, sizeof(p), "%s/sweep/.tmp-new", root);
    fp = fopen(p, "w");
    if (fp) fclose(fp);
    ep_init(&f, "sweep", "{id}", 0);
    ok(deliver(&f, msg_with("x", NULL, NULL), &err) == ESB_DONE, "deliver into sweep/");
    snprintf(p, sizeof(p), "%s/sweep/.tmp-old", root);
    ok(access(p, F_OK) != 0, "an hour-old temp file from a crashed delivery is removed");
    snprintf(p, sizeof(p), "%s/sweep/.tmp-new", root);
    ok(access(p, F_OK) == 0, "a fresh temp file is left alone");
    ep_free(&f);
}

int main(void)
{
    esb_log_set_level(ESB_LOG_WARN);
    snprintf(root, sizeof(root), "/tmp/esb-test-file-out-XXXXXX");
    if (!mkdtemp(root)) bail("mkdtemp");

    test_fsutil();
    test_deliver_basic();
    test_templates();
    test_hostile();
    test_no_clobber();
    test_retry();
    test_concurrent("conc-id", "{id}.txt", "distinct names");
    test_concurrent("conc-same", "one.txt", "one name");
    test_tmp_sweep();

    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return tap_done();
}
