/* test-crash.c - the SIGKILL crash loop.
 *
 * K times (K = $ESB_CRASH_KILLS, default 20): start crash-child on one bus
 * directory with stdout to a pipe, collect its acknowledgement lines (a
 * body is printed only after its append returned 0), SIGKILL it after a
 * random 1..120 ms (the short delays land in the child's start-up and
 * recovery), reap it, read what it had written, then open the bus here and
 * check what survived:
 *   - every acknowledged body is present;
 *   - every body present was produced by this run of the child;
 *   - per child thread the bodies are n = 0, 1, 2, ... in queue order: no
 *     duplicate, no hole, and at most one beyond the last acknowledged (the
 *     append in flight when the kill came);
 *   - recovery found no corruption (a kill leaves at most a torn tail).
 * Then every entry read is acked (one transaction) and the bus closed, so
 * the queue stays small while the same directory - and its history of
 * torn tails, rolled and deleted segments - is reused by every iteration;
 * a body of an earlier run seen again would be an acked entry come back,
 * and fails the "produced by this run" check.
 *
 * Odd runs (child and check) open the bus with preallocate (segments
 * taken from a zero-filled spare, zero tails kept), even runs without:
 * both modes, and each recovering what the other left.
 *
 * The delays come from a seed printed as a diagnostic; ESB_CRASH_SEED=N
 * repeats a run's schedule. crash-child is found next to this program
 * (argv[0]'s directory), else in $top_builddir/tests/fault, or at
 * $ESB_CRASH_CHILD. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tap.h"
#include "faultutil.h"
#include "log.h"

#define THREADS     4
#define PREALLOC(r) ((r) % 2 == 1)
#define QUEUE       "crash"

static uint64_t mono_ms(void)
{
    return esb_mono_ns() / 1000000u;
}

static char *find_child(const char *argv0)
{
    const char *env = getenv("ESB_CRASH_CHILD");
    if (env && *env) return esb_strdup(env);
    const char *slash = strrchr(argv0, '/');
    if (slash) {
        size_t n = (size_t)(slash - argv0);
        char *p = esb_malloc(n + sizeof("/crash-child"));
        memcpy(p, argv0, n);
        strcpy(p + n, "/crash-child");
        if (access(p, X_OK) == 0) return p;
        free(p);
    }
    const char *top = getenv("top_builddir");
    if (top && *top) {
        char *p = fu_path(top, "tests/fault/crash-child");
        if (access(p, X_OK) == 0) return p;
        free(p);
    }
    bail("cannot find crash-child next to %s (set ESB_CRASH_CHILD)", argv0);
}

/* A growable byte buffer for the child's output. */
struct out {
    char *p;
    size_t n, cap;
};

static int read_some(int fd, struct out *o)
{
    if (o->cap - o->n < 4096) {
        o->cap = o->cap ? o->cap * 2 : 65536;
        o->p = esb_realloc(o->p, o->cap);
    }
    ssize_t r = read(fd, o->p + o->n, o->cap - o->n);
    if (r > 0) o->n += (size_t)r;
    return r < 0 && errno == EINTR ? 1 : (int)(r > 0);
}

/* Parse "r<run>-t<k>-<n>"; returns 1 if it is one. */
static int parse_body(const char *s, size_t len, unsigned long *run, int *k, long *n)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf)) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char tail;
    return sscanf(buf, "r%lu-t%d-%ld%c", run, k, n, &tail) == 3 && *k >= 0 && *k < THREADS &&
           *n >= 0;
}

/* Run the child once, killing it after delay_ms. Fills out with what it
 * wrote; returns its wait status. */
static int run_child(const char *child, const char *dir, unsigned long run, unsigned delay_ms,
                     struct out *out)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) bail("pipe: %s", strerror(errno));
    char runs[32];
    snprintf(runs, sizeof(runs), "%lu", run);
    const char *prealloc = PREALLOC(run) ? "1" : "0";
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) bail("fork: %s", strerror(errno));
    if (pid == 0) {
        if (dup2(pfd[1], STDOUT_FILENO) < 0) _exit(126);
        execl(child, child, dir, runs, prealloc, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    uint64_t deadline = mono_ms() + delay_ms;
    int open_pipe = 1;
    for (;;) {
        uint64_t now = mono_ms();
        if (now >= deadline || !open_pipe) break;
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0) open_pipe = read_some(pfd[0], out);
    }
    /* Only the child we started, by its pid. */
    if (kill(pid, SIGKILL) != 0 && errno != ESRCH) bail("kill: %s", strerror(errno));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) bail("waitpid: %s", strerror(errno));
    while (read_some(pfd[0], out) > 0) {
    }
    close(pfd[0]);
    return status;
}

struct totals {
    unsigned long acked, present, beyond, dups, cut, corrupt, early;
};

/* One iteration: run, kill, verify, ack all. Returns 1 if it passed. */
static int iteration(const char *child, const char *dir, unsigned long run, unsigned delay_ms,
                     struct totals *tot)
{
    struct out out = {0};
    int status = run_child(child, dir, run, delay_ms, &out);
    int killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (!killed) diag("run %lu: the child was not killed but ended with status 0x%x", run, status);

    /* The acknowledgements: whole lines only; per thread n = 0, 1, ... */
    long ack_max[THREADS];
    for (int k = 0; k < THREADS; k++) ack_max[k] = -1;
    size_t acked = 0;
    int acks_ok = 1;
    for (size_t i = 0, start = 0; i < out.n; i++) {
        if (out.p[i] != '\n') continue;
        unsigned long r;
        int k;
        long n;
        if (!parse_body(out.p + start, i - start, &r, &k, &n) || r != run || n != ack_max[k] + 1)
            acks_ok = 0;
        else
            ack_max[k] = n;
        acked++;
        start = i + 1;
    }
    free(out.p);
    if (!acks_ok) diag("run %lu: the child's acknowledgement lines are not in order", run);

    /* What survived. */
    struct esb_bus_stats st;
    struct esb_bus_opts o = {.segment_size = 16 * 1024, .preallocate = PREALLOC(run)};
    struct esb_bus *bus = fu_open(dir, &o, &st);
    struct esb_entry **held = NULL;
    size_t nheld = 0;
    long next[THREADS] = {0};
    unsigned long foreign = 0, dups = 0, holes = 0;
    int rc;
    for (;;) {
        struct esb_entry *e = NULL;
        rc = esb_bus_consume(bus, QUEUE, 0, &e);
        if (rc != 0) break;
        held = esb_realloc(held, (nheld + 1) * sizeof(*held));
        held[nheld++] = e;
        unsigned long r;
        int k;
        long n;
        if (!parse_body((const char *)e->msg->body->data, e->msg->body->len, &r, &k, &n) ||
            r != run) {
            if (foreign++ < 3)
                diag("run %lu: foreign body %.*s", run, (int)e->msg->body->len,
                     (const char *)e->msg->body->data);
            continue;
        }
        if (n < next[k]) {
            if (dups++ < 3) diag("run %lu: duplicate r%lu-t%d-%ld", run, r, k, n);
        } else if (n > next[k]) {
            if (holes++ < 3)
                diag("run %lu: thread %d: r%lu-t%d-%ld where n=%ld was due", run, k, r, k, n,
                     next[k]);
            next[k] = n + 1;
        } else {
            next[k]++;
        }
    }
    int all_acked_present = 1;
    long beyond = 0;
    for (int k = 0; k < THREADS; k++) {
        long m = next[k] - 1; /* the last present */
        if (m < ack_max[k] || m > ack_max[k] + 1) {
            diag("run %lu: thread %d: last acknowledged n=%ld, last present n=%ld", run, k,
                 ack_max[k], m);
            all_acked_present = 0;
        }
        beyond += m - ack_max[k];
    }

    /* Ack everything read, in one transaction, so the queue stays small. */
    if (nheld) {
        struct esb_txn *t = esb_txn_new();
        for (size_t i = 0; i < nheld; i++) esb_txn_ack(t, held[i]);
        struct esb_err err;
        if (esb_bus_commit(bus, t, &err) != 0) bail("ack after run %lu: %s", run, err.msg);
        esb_txn_free(t);
    }
    for (size_t i = 0; i < nheld; i++) esb_entry_free(held[i]);
    free(held);
    esb_bus_close(bus);

    int good = killed && acks_ok && rc == ESB_ETIMEDOUT && foreign == 0 && dups == 0 &&
               holes == 0 && all_acked_present && st.recovered_corrupt == 0;
    ok(good,
       "kill %lu after %u ms: %zu acknowledged, %s; %zu present (%ld unacknowledged), "
       "%lu duplicates, %lu holes, %lu foreign; torn tail cut %llu bytes, corrupt %llu",
       run, delay_ms, acked, all_acked_present ? "all present" : "NOT ALL PRESENT", nheld, beyond,
       dups, holes, foreign, (unsigned long long)st.recovered_truncated_bytes,
       (unsigned long long)st.recovered_corrupt);
    tot->acked += acked;
    tot->present += nheld;
    tot->beyond += beyond > 0 ? (unsigned long)beyond : 0;
    tot->dups += dups;
    tot->cut += st.recovered_truncated_bytes != 0;
    tot->corrupt += st.recovered_corrupt;
    tot->early += acked == 0;
    return good;
}

int main(int argc, char **argv)
{
    (void)argc;
    esb_log_set_level(ESB_LOG_OFF);
    const char *ks = getenv("ESB_CRASH_KILLS");
    unsigned long kills = ks && *ks ? strtoul(ks, NULL, 10) : 20;
    const char *ss = getenv("ESB_CRASH_SEED");
    unsigned seed = ss && *ss ? (unsigned)strtoul(ss, NULL, 10)
                              : (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    diag("seed %u (ESB_CRASH_SEED=%u repeats this schedule), %lu kills", seed, seed, kills);
    char *child = find_child(argv[0]);
    char *root = fu_tmpdir("crash");
    char *dir = fu_path(root, "bus");
    diag("child %s, bus %s", child, dir);
    signal(SIGPIPE, SIG_IGN);
    struct totals tot = {0};
    uint64_t t0 = mono_ms();
    for (unsigned long run = 1; run <= kills; run++) {
        unsigned delay = 1 + (unsigned)(rand_r(&seed) % 120);
        iteration(child, dir, run, delay, &tot);
    }
    diag("%lu kills in %.1f s: %lu acknowledged, %lu present (%lu unacknowledged but "
         "written), %lu duplicates, %lu recoveries cut a torn tail, %lu corrupt regions, %lu "
         "kills before the first acknowledgement",
         kills, (double)(mono_ms() - t0) / 1000.0, tot.acked, tot.present, tot.beyond, tot.dups,
         tot.cut, tot.corrupt, tot.early);
    char **names;
    size_t nseg = fu_list_segments(dir, &names);
    diag("segments left in the bus directory: %zu (resolved ones are deleted by maintenance)",
         nseg);
    fu_free_names(names, nseg);
    fu_rmrf(root);
    free(dir);
    free(root);
    free(child);
    return tap_done();
}
