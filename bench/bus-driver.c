/* bus-driver.c - the measuring half of bench/bus: one bounded measurement per
 * run, printed as key=value lines (one per line) for the script to format.
 *
 *   bus-driver raw --per-sync N [--size B] [--seconds S] [--warmup W] --dir D
 *       The disk baseline: append N records of B bytes with one pwritev at
 *       the growing end of a plain file (no O_APPEND), then one fdatasync;
 *       repeat. The same kind of access the bus writer makes.
 *   bus-driver bus --producers N [--size B] [--seconds S] [--warmup W]
 *                  [--fsync always|never|interval:MS] [--preallocate 0|1] --dir D
 *       N producer threads, each calling esb_bus_append of a message with a
 *       B-byte body to one queue in a loop. Counts appends that returned 0
 *       and completed inside the measured window. --preallocate (default 1,
 *       as esbd's <bus preallocate="true">) rolls to zero-filled segments.
 *   bus-driver handoff [--pin none|same|cross] [--seconds S] [--warmup W]
 *       No I/O: the round trip of one request from a "producer" thread to a
 *       "writer" thread and back through one mutex and two condition
 *       variables, the way esb_bus_commit and the bus writer hand off: what
 *       the bus adds to an fdatasync at one producer. --pin same puts both
 *       threads on one CPU, cross on two (the cost of waking another CPU).
 *
 * Each run warms up for W seconds (default 1), measures for S seconds
 * (default 5) and stops by itself. Files are made in a fresh directory
 * under D, removed at the end unless --keep. Times are CLOCK_MONOTONIC.
 * Besides rates and latencies, raw and bus print the process's CPU use and
 * the block device's counters over the window (dev_*, from /proc/diskstats,
 * all processes), so that a run disturbed by other I/O can be told apart. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "msg.h"
#include "util.h"

#define MAX_PER_SYNC  1024
#define MAX_PRODUCERS 1024
#define MAX_SIZE      (1024 * 1024)

struct opts {
    const char *mode;
    const char *dir;
    const char *fsync;
    const char *pin;
    unsigned per_sync, producers;
    size_t size;
    double seconds, warmup;
    int keep;
    int preallocate;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: bus-driver raw --per-sync N [--size B] [--seconds S] [--warmup W] --dir D "
            "[--keep]\n"
            "       bus-driver bus --producers N [--size B] [--seconds S] [--warmup W]\n"
            "                      [--fsync always|never|interval:MS] [--preallocate 0|1] --dir D "
            "[--keep]\n"
            "       bus-driver handoff [--pin none|same|cross] [--seconds S] [--warmup W]\n");
    exit(2);
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bus-driver: %s: %s\n", what, strerror(err));
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static double num_arg(const char *name, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "bus-driver: %s wants a number in [%g, %g], got '%s'\n", name, lo, hi, v);
        exit(2);
    }
    return d;
}

static void parse(int argc, char **argv, struct opts *o)
{
    if (argc < 2) usage();
    o->mode = argv[1];
    o->size = 1024;
    o->seconds = 5;
    o->warmup = 1;
    o->fsync = "always";
    o->pin = "none";
    o->per_sync = 1;
    o->producers = 1;
    o->preallocate = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--keep") == 0) {
            o->keep = 1;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (strcmp(a, "--dir") == 0)
            o->dir = v;
        else if (strcmp(a, "--fsync") == 0)
            o->fsync = v;
        else if (strcmp(a, "--preallocate") == 0)
            o->preallocate = (int)num_arg(a, v, 0, 1);
        else if (strcmp(a, "--pin") == 0)
            o->pin = v;
        else if (strcmp(a, "--per-sync") == 0)
            o->per_sync = (unsigned)num_arg(a, v, 1, MAX_PER_SYNC);
        else if (strcmp(a, "--producers") == 0)
            o->producers = (unsigned)num_arg(a, v, 1, MAX_PRODUCERS);
        else if (strcmp(a, "--size") == 0)
            o->size = (size_t)num_arg(a, v, 1, MAX_SIZE);
        else if (strcmp(a, "--seconds") == 0)
            o->seconds = num_arg(a, v, 0.1, 3600);
        else if (strcmp(a, "--warmup") == 0)
            o->warmup = num_arg(a, v, 0, 3600);
        else
            usage();
    }
    if (!o->dir && strcmp(o->mode, "handoff") != 0) usage();
}

/* ---- latency samples ---- */

struct lat {
    uint64_t *v;
    size_t n, cap;
};

static void lat_add(struct lat *l, uint64_t ns)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->v = esb_realloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of l's samples, sorting them; 0 if none. */
static uint64_t lat_quantile(struct lat *l, double q)
{
    if (!l->n) return 0;
    size_t rank = (size_t)(q * (double)l->n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > l->n) rank = l->n;
    return l->v[rank - 1];
}

static void print_latency(struct lat *l)
{
    qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
    printf("lat_samples=%zu\n", l->n);
    printf("lat_p50_us=%.1f\n", (double)lat_quantile(l, 0.50) / 1e3);
    printf("lat_p99_us=%.1f\n", (double)lat_quantile(l, 0.99) / 1e3);
    printf("lat_max_us=%.1f\n", l->n ? (double)l->v[l->n - 1] / 1e3 : 0.0);
}

/* ---- run directory ---- */

static char *make_run_dir(const char *parent, const char *mode)
{
    size_t n = strlen(parent) + 64;
    char *p = esb_malloc(n);
    snprintf(p, n, "%s/bus-driver-%s.XXXXXX", parent, mode);
    if (!mkdtemp(p)) die(p, errno);
    return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (remove(path) != 0)
        fprintf(stderr, "bus-driver: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

struct cpu {
    double user, sys;
};

static struct cpu cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    struct cpu c = {(double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
                    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6};
    return c;
}

static void print_cpu(struct cpu a, struct cpu b, double secs)
{
    printf("cpu_user_pct=%.1f\n", 100 * (b.user - a.user) / secs);
    printf("cpu_sys_pct=%.1f\n", 100 * (b.sys - a.sys) / secs);
}

/* ---- what the block device did (all processes, not only us) ---- */

struct devio {
    int ok;
    unsigned long long writes, wsect, flushes, flush_ms, discards;
};

/* Counters of the block device holding path, from /proc/diskstats. */
static struct devio devio_read(const char *path)
{
    struct devio d = {0};
    struct stat st;
    FILE *f = fopen("/proc/diskstats", "r");
    if (!f) return d;
    if (stat(path, &st) != 0) {
        fclose(f);
        return d;
    }
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        unsigned maj, min;
        unsigned long long v[17] = {0};
        int n = sscanf(line,
                       " %u %u %*s %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
                       "%llu %llu %llu %llu %llu",
                       &maj, &min, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8],
                       &v[9], &v[10], &v[11], &v[12], &v[13], &v[14], &v[15], &v[16]);
        if (n < 13 || maj != major(st.st_dev) || min != minor(st.st_dev)) continue;
        d.ok = 1;
        d.writes = v[4];
        d.wsect = v[6];
        if (n >= 17) d.discards = v[11];
        if (n >= 19) {
            d.flushes = v[15];
            d.flush_ms = v[16];
        }
        break;
    }
    fclose(f);
    return d;
}

/* The device's counters over the window, per second. */
static void print_devio(struct devio a, struct devio b, double secs)
{
    if (!a.ok || !b.ok) return;
    printf("dev_writes_per_sec=%.0f\n", (double)(b.writes - a.writes) / secs);
    printf("dev_write_kib_per_sec=%.0f\n", (double)(b.wsect - a.wsect) / 2 / secs);
    printf("dev_flushes_per_sec=%.0f\n", (double)(b.flushes - a.flushes) / secs);
    /* the device's own time per flush request (the rest of an fdatasync is
     * the kernel writing the data back first) */
    printf("dev_flush_ms_avg=%.3f\n", b.flushes > a.flushes ? (double)(b.flush_ms - a.flush_ms) /
                                                                  (double)(b.flushes - a.flushes)
                                                            : 0.0);
    printf("dev_discards=%llu\n", b.discards - a.discards);
}

/* ---- raw: pwritev + fdatasync at the growing end of a plain file ---- */

static int run_raw(const struct opts *o)
{
    char *dir = make_run_dir(o->dir, "raw");
    size_t pn = strlen(dir) + 16;
    char *path = esb_malloc(pn);
    snprintf(path, pn, "%s/raw.dat", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) die(path, errno);

    uint8_t *rec = esb_malloc(o->size);
    for (size_t i = 0; i < o->size; i++) rec[i] = (uint8_t)(i * 131u + 7u);
    struct iovec iov[MAX_PER_SYNC];
    for (unsigned i = 0; i < o->per_sync; i++) iov[i] = (struct iovec){rec, o->size};
    size_t batch = (size_t)o->per_sync * o->size;

    struct lat lat = {0};
    uint64_t off = 0, records = 0, syncs = 0;
    uint64_t t_warm = now_ns(), t0 = 0, t_end = 0;
    uint64_t warm_ns = (uint64_t)(o->warmup * 1e9), run_ns = (uint64_t)(o->seconds * 1e9);
    int measuring = 0;
    struct cpu c0 = {0, 0};
    struct devio d0 = {0}, d1;
    for (;;) {
        uint64_t a = now_ns();
        if (!measuring && a - t_warm >= warm_ns) {
            measuring = 1;
            d0 = devio_read(dir);
            t0 = now_ns();
            c0 = cpu_now();
            a = t0;
        }
        if (measuring && a - t0 >= run_ns) {
            t_end = a;
            break;
        }
        ssize_t w = pwritev(fd, iov, (int)o->per_sync, (off_t)off);
        if (w < 0) die("pwritev", errno);
        if ((size_t)w != batch) die("pwritev (short write)", EIO);
        off += batch;
        if (fdatasync(fd) != 0) die("fdatasync", errno);
        uint64_t b = now_ns();
        if (measuring) {
            records += o->per_sync;
            syncs++;
            lat_add(&lat, b - a);
        }
    }
    struct cpu c1 = cpu_now();
    d1 = devio_read(dir);
    close(fd);
    double secs = (double)(t_end - t0) / 1e9;
    printf("mode=raw\n");
    printf("per_sync=%u\n", o->per_sync);
    printf("size=%zu\n", o->size);
    printf("seconds=%.3f\n", secs);
    printf("records=%llu\n", (unsigned long long)records);
    printf("syncs=%llu\n", (unsigned long long)syncs);
    printf("rate=%.0f\n", (double)records / secs);
    printf("syncs_per_sec=%.0f\n", (double)syncs / secs);
    printf("file_bytes=%llu\n", (unsigned long long)off);
    /* latency of one pwritev + fdatasync (a whole batch) */
    print_latency(&lat);
    print_cpu(c0, c1, secs);
    print_devio(d0, d1, secs);
    fflush(stdout);
    if (!o->keep) remove_tree(dir);
    free(lat.v);
    free(rec);
    free(path);
    free(dir);
    return 0;
}

/* ---- bus: N producers appending to one queue ---- */

enum { PH_WARMUP, PH_MEASURE, PH_STOP };

struct shared {
    struct esb_bus *bus;
    const struct opts *o;
    _Atomic int phase;
};

struct producer {
    _Alignas(64) struct shared *sh;
    pthread_t tid;
    unsigned idx;
    uint64_t ok, failed, ok_outside;
    int last_err;
    char last_msg[256];
    struct lat lat;
};

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    const struct opts *o = p->sh->o;
    uint8_t *body = esb_malloc(o->size);
    for (size_t i = 0; i < o->size; i++) body[i] = (uint8_t)('a' + (i + p->idx) % 26);
    /* One message per producer, appended again and again: the bus encodes
     * (copies) it on every append, so this measures the bus, not msg_new. */
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_body(m, body, o->size);
    esb_msg_set_content_type(m, "application/octet-stream");
    for (;;) {
        int ph = atomic_load_explicit(&p->sh->phase, memory_order_acquire);
        if (ph == PH_STOP) break;
        struct esb_err err = {0};
        uint64_t a = now_ns();
        int rc = esb_bus_append(p->sh->bus, "bench", m, &err);
        uint64_t b = now_ns();
        /* Count what completed inside the measured window. */
        int in = atomic_load_explicit(&p->sh->phase, memory_order_acquire) == PH_MEASURE &&
                 ph == PH_MEASURE;
        if (rc == 0) {
            if (in) {
                p->ok++;
                lat_add(&p->lat, b - a);
            } else {
                p->ok_outside++;
            }
        } else {
            p->failed++;
            p->last_err = rc;
            memcpy(p->last_msg, err.msg, sizeof(p->last_msg));
            if (rc == ESB_EFAILED || rc == ESB_ECLOSED) break;
        }
    }
    esb_msg_unref(m);
    free(body);
    return NULL;
}

static int run_bus(const struct opts *o)
{
    char *dir = make_run_dir(o->dir, "bus");
    struct esb_bus_opts bo = {0};
    bo.dir = dir;
    bo.preallocate = o->preallocate;
    if (esb_fsync_parse(o->fsync, &bo.fsync, &bo.fsync_interval_ms) != 0) {
        fprintf(stderr, "bus-driver: bad --fsync '%s'\n", o->fsync);
        exit(2);
    }
    struct esb_err err = {0};
    struct shared sh = {.o = o};
    atomic_store(&sh.phase, PH_WARMUP);
    if (esb_bus_open(&bo, &sh.bus, &err) != 0) {
        fprintf(stderr, "bus-driver: bus open: %s\n", err.msg);
        exit(1);
    }
    struct producer *ps = aligned_alloc(64, sizeof(*ps) * o->producers);
    if (!ps) die("aligned_alloc", ENOMEM);
    memset(ps, 0, sizeof(*ps) * o->producers);
    for (unsigned i = 0; i < o->producers; i++) {
        ps[i].sh = &sh;
        ps[i].idx = i;
        int rc = pthread_create(&ps[i].tid, NULL, producer_main, &ps[i]);
        if (rc) die("pthread_create", rc);
    }
    sleep_s(o->warmup);
    struct esb_bus_stats s0, s1;
    struct devio d0 = devio_read(dir), d1;
    esb_bus_get_stats(sh.bus, &s0);
    struct cpu c0 = cpu_now();
    uint64_t t0 = now_ns();
    atomic_store_explicit(&sh.phase, PH_MEASURE, memory_order_release);
    sleep_s(o->seconds);
    atomic_store_explicit(&sh.phase, PH_STOP, memory_order_release);
    uint64_t t1 = now_ns();
    esb_bus_get_stats(sh.bus, &s1);
    struct cpu c1 = cpu_now();
    d1 = devio_read(dir);
    for (unsigned i = 0; i < o->producers; i++) pthread_join(ps[i].tid, NULL);

    uint64_t ok = 0, failed = 0;
    struct lat all = {0};
    int last_err = 0;
    const char *last_msg = "";
    for (unsigned i = 0; i < o->producers; i++) {
        ok += ps[i].ok;
        failed += ps[i].failed;
        if (ps[i].failed) {
            last_err = ps[i].last_err;
            last_msg = ps[i].last_msg;
        }
        for (size_t j = 0; j < ps[i].lat.n; j++) lat_add(&all, ps[i].lat.v[j]);
    }
    double secs = (double)(t1 - t0) / 1e9;
    uint64_t commits = s1.commits - s0.commits, syncs = s1.syncs - s0.syncs;
    uint64_t batches = s1.batches - s0.batches, records = s1.records - s0.records;
    uint64_t bytes = s1.bytes - s0.bytes;
    printf("mode=bus\n");
    printf("producers=%u\n", o->producers);
    printf("fsync=%s\n", o->fsync);
    printf("size=%zu\n", o->size);
    printf("seconds=%.3f\n", secs);
    printf("appends_ok=%llu\n", (unsigned long long)ok);
    printf("appends_failed=%llu\n", (unsigned long long)failed);
    if (failed) printf("last_error=%d %s\n", last_err, last_msg);
    printf("rate=%.0f\n", (double)ok / secs);
    printf("commits=%llu\n", (unsigned long long)commits);
    printf("records=%llu\n", (unsigned long long)records);
    printf("batches=%llu\n", (unsigned long long)batches);
    printf("syncs=%llu\n", (unsigned long long)syncs);
    printf("bytes=%llu\n", (unsigned long long)bytes);
    printf("syncs_per_msg=%.4f\n", commits ? (double)syncs / (double)commits : 0.0);
    printf("avg_batch=%.2f\n", batches ? (double)commits / (double)batches : 0.0);
    printf("bytes_per_record=%.0f\n", records ? (double)bytes / (double)records : 0.0);
    printf("syncs_per_sec=%.0f\n", (double)syncs / secs);
    /* latency of one esb_bus_append call, as the producer sees it */
    print_latency(&all);
    print_cpu(c0, c1, secs);
    print_devio(d0, d1, secs);
    fflush(stdout);

    esb_bus_close(sh.bus);
    for (unsigned i = 0; i < o->producers; i++) free(ps[i].lat.v);
    free(ps);
    free(all.v);
    if (!o->keep) remove_tree(dir);
    free(dir);
    return failed && !ok ? 1 : 0;
}

/* ---- handoff: producer -> writer -> producer through mutex + condvars ---- */

struct handoff {
    pthread_mutex_t lock;
    pthread_cond_t writer_cv, commit_cv;
    int pending, done, stop;
};

/* The writer side, shaped like the bus writer: a timed wait for work, take
 * it, drop the lock (where the bus writes and syncs), retake it, mark done
 * and broadcast. */
static void *handoff_writer(void *arg)
{
    struct handoff *h = arg;
    pthread_mutex_lock(&h->lock);
    while (!h->stop) {
        if (!h->pending) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&h->writer_cv, &h->lock, &ts);
            continue;
        }
        h->pending = 0;
        pthread_mutex_unlock(&h->lock);
        pthread_mutex_lock(&h->lock);
        h->done = 1;
        pthread_cond_broadcast(&h->commit_cv);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* Pin thread t to the n-th CPU (0-based) of mask. Returns the CPU number,
 * or -1 if mask has no such CPU. */
static int pin_nth(pthread_t t, const cpu_set_t *mask, int n)
{
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, mask) || n-- > 0) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        int rc = pthread_setaffinity_np(t, sizeof(one), &one);
        if (rc) die("pthread_setaffinity_np", rc);
        return cpu;
    }
    return -1;
}

static int run_handoff(const struct opts *o)
{
    int same = strcmp(o->pin, "same") == 0, cross = strcmp(o->pin, "cross") == 0;
    if (!same && !cross && strcmp(o->pin, "none") != 0) usage();
    struct handoff h = {.pending = 0};
    pthread_mutex_init(&h.lock, NULL);
    esb_cond_init_mono(&h.writer_cv);
    esb_cond_init_mono(&h.commit_cv);
    pthread_t w;
    int rc = pthread_create(&w, NULL, handoff_writer, &h);
    if (rc) die("pthread_create", rc);
    int cpu_p = -1, cpu_w = -1;
    if (same || cross) {
        cpu_set_t mask;
        if (sched_getaffinity(0, sizeof(mask), &mask) != 0) die("sched_getaffinity", errno);
        cpu_w = pin_nth(w, &mask, same ? 0 : 1);
        cpu_p = pin_nth(pthread_self(), &mask, 0);
        if (cpu_w < 0) {
            fprintf(stderr, "bus-driver: --pin cross needs two CPUs\n");
            exit(1);
        }
    }
    struct lat lat = {0};
    uint64_t start = now_ns(), t0 = 0, t1;
    uint64_t warm_ns = (uint64_t)(o->warmup * 1e9), run_ns = (uint64_t)(o->seconds * 1e9);
    for (;;) {
        uint64_t a = now_ns();
        if (!t0 && a - start >= warm_ns) t0 = a;
        if (t0 && a - t0 >= run_ns) {
            t1 = a;
            break;
        }
        pthread_mutex_lock(&h.lock);
        h.done = 0;
        h.pending = 1;
        pthread_cond_signal(&h.writer_cv);
        while (!h.done) pthread_cond_wait(&h.commit_cv, &h.lock);
        pthread_mutex_unlock(&h.lock);
        if (t0) lat_add(&lat, now_ns() - a);
    }
    pthread_mutex_lock(&h.lock);
    h.stop = 1;
    pthread_cond_signal(&h.writer_cv);
    pthread_mutex_unlock(&h.lock);
    pthread_join(w, NULL);
    double secs = (double)(t1 - t0) / 1e9;
    printf("mode=handoff\n");
    printf("pin=%s\n", o->pin);
    printf("cpu_producer=%d\n", cpu_p);
    printf("cpu_writer=%d\n", cpu_w);
    printf("seconds=%.3f\n", secs);
    printf("rate=%.0f\n", (double)lat.n / secs);
    print_latency(&lat);
    fflush(stdout);
    free(lat.v);
    pthread_cond_destroy(&h.writer_cv);
    pthread_cond_destroy(&h.commit_cv);
    pthread_mutex_destroy(&h.lock);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    parse(argc, argv, &o);
    if (strcmp(o.mode, "raw") == 0) return run_raw(&o);
    if (strcmp(o.mode, "bus") == 0) return run_bus(&o);
    if (strcmp(o.mode, "handoff") == 0) return run_handoff(&o);
    usage();
    return 2;
}
