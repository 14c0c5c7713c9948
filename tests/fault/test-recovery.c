/* test-recovery.c - recovery of damaged logs, seen through the bus:
 *   a. the log cut at every byte of its last record (torn tail), of a
 *      final ACK, and of a final two-record transaction;
 *   b. garbage tails (random, zeros, "ESB1"-prefixed) of 1..4096 bytes;
 *   c. one bit flipped in the magic, CRC, length, type or payload of a
 *      record in the middle (corruption: reported, quarantined, skipped);
 *   d. the index rebuilt with entries ready, in flight, acked, waiting,
 *      due, dead-lettered;
 *   e. damage in an older segment of a multi-segment log.
 * Every case runs on a fresh copy of a pristine log in a temporary
 * directory; after recovery the bus must still append and reopen. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "faultutil.h"
#include "log.h"

#define N     30   /* messages in the pristine log */
#define Q     "q"  /* the queue they are in */
#define EXTRA 1000 /* the body number appended after a recovery */

static char *root, *pristine, *work;
static char *seg1;     /* name of the single segment file of the pristine log */
static uint64_t *offs; /* N + 1 record offsets in it (the last = its size) */
/* Maintenance off (no compaction or deletion behind the test's back). */
static const struct esb_bus_opts opts = {.compact_interval_ms = 60000};

static size_t pad_of(unsigned i)
{
    return i == N - 1 ? 900 : (i * 37) % 260; /* a long last record */
}

/* xorshift64*: deterministic garbage. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

/* Fresh work dir holding a copy of the pristine log; returns the path of
 * its segment (malloc'd). */
static char *work_copy(void)
{
    fu_fresh_dir(work);
    fu_copy_segments(pristine, work);
    return fu_path(work, seg1);
}

static void build_pristine(void)
{
    fu_fresh_dir(pristine);
    struct esb_bus *bus = fu_open(pristine, &opts, NULL);
    for (unsigned i = 0; i < N; i++)
        if (fu_append(bus, Q, i, pad_of(i)) != 0) bail("append %u to the pristine log", i);
    esb_bus_close(bus);
    char **names;
    size_t nseg = fu_list_segments(pristine, &names);
    if (nseg != 1) bail("pristine log has %zu segments, want 1", nseg);
    seg1 = esb_strdup(names[0]);
    fu_free_names(names, nseg);
    char *path = fu_path(pristine, seg1);
    size_t nrec = fu_record_offsets(path, &offs);
    int64_t size = fu_file_size(path);
    free(path);
    if (nrec != N || (int64_t)offs[N] != size)
        bail("pristine log: %zu records, walk ends at %llu of %lld", nrec,
             (unsigned long long)offs[N], (long long)size);
    ok(1, "pristine log: %d records in %s, %lld bytes, last record %llu bytes", N, seg1,
       (long long)size, (unsigned long long)(offs[N] - offs[N - 1]));
}

/* Open dir, read queue Q and compare with ids; then append EXTRA, reopen
 * and compare with ids + EXTRA. want_cut/want_corrupt/want_records are the
 * recovery stats expected at the first open, want_size the size of the
 * segment file seg right after it. Prints diagnostics only when
 * loud (so a systematic failure does not flood the output). */
static int check_recovers(const char *dir, const unsigned *ids, size_t n, uint64_t want_cut,
                          uint64_t want_corrupt, uint64_t want_records, const char *seg,
                          int64_t want_size, int loud)
{
    const char *what = loud ? "recovered log" : NULL;
    struct esb_bus_stats st;
    struct fu_bodies b;
    struct esb_bus *bus = fu_open(dir, &opts, &st);
    int good = fu_read_all(bus, Q, &b) == 0;
    good &= fu_bodies_are(&b, ids, n, what);
    fu_bodies_free(&b);
    if (st.recovered_truncated_bytes != want_cut || st.recovered_corrupt != want_corrupt ||
        st.recovered_records != want_records) {
        if (loud)
            diag("recovery stats: cut %llu (want %llu) corrupt %llu (want %llu) records %llu "
                 "(want %llu)",
                 (unsigned long long)st.recovered_truncated_bytes, (unsigned long long)want_cut,
                 (unsigned long long)st.recovered_corrupt, (unsigned long long)want_corrupt,
                 (unsigned long long)st.recovered_records, (unsigned long long)want_records);
        good = 0;
    }
    int64_t size = fu_file_size(seg);
    if (size != want_size) {
        if (loud)
            diag("segment is %lld bytes after recovery, want %lld", (long long)size,
                 (long long)want_size);
        good = 0;
    }
    int rc = fu_append(bus, Q, EXTRA, 3);
    if (rc != 0) {
        if (loud) diag("append after recovery: %s", esb_strerror(rc));
        good = 0;
    }
    esb_bus_close(bus);

    unsigned *ids2 = esb_malloc((n + 1) * sizeof(*ids2));
    memcpy(ids2, ids, n * sizeof(*ids));
    ids2[n] = EXTRA;
    bus = fu_open(dir, &opts, &st);
    good &= fu_read_all(bus, Q, &b) == 0;
    good &= fu_bodies_are(&b, ids2, n + 1, loud ? "after append and reopen" : NULL);
    fu_bodies_free(&b);
    if (st.recovered_truncated_bytes != 0 || st.recovered_corrupt != want_corrupt) {
        if (loud)
            diag("second recovery: cut %llu corrupt %llu",
                 (unsigned long long)st.recovered_truncated_bytes,
                 (unsigned long long)st.recovered_corrupt);
        good = 0;
    }
    esb_bus_close(bus);
    free(ids2);
    return good;
}

/* a. Cut the log at every offset inside its last record. */
static void test_cut_every_offset(void)
{
    uint64_t first = offs[N - 1], end = offs[N];
    unsigned ids[N];
    size_t n = fu_ids_range(ids, 0, N - 1, -1);
    int chunk_good = 1, diags = 0;
    uint64_t chunk_start = first;
    size_t tried = 0;
    for (uint64_t o = first; o < end; o++) {
        char *seg = work_copy();
        fu_truncate(seg, o);
        /* the segment is cut back to the end of the last whole record */
        int good =
            check_recovers(work, ids, n, o - first, 0, N - 1, seg, (int64_t)first, diags < 3);
        free(seg);
        if (!good && diags++ < 3) diag("cut at offset %llu failed", (unsigned long long)o);
        chunk_good &= good;
        tried++;
        if ((o - first + 1) % 200 == 0 || o + 1 == end) {
            ok(chunk_good,
               "log cut at each of offsets %llu..%llu (in the last record): %d messages kept "
               "in order, cut bytes reported, appends work after",
               (unsigned long long)chunk_start, (unsigned long long)o, N - 1);
            chunk_good = 1;
            chunk_start = o + 1;
        }
    }
    ok(tried == end - first, "tried all %zu offsets of the last record", tried);
}

/* a'. The same when the last record is an ACK: a torn ack is no ack. */
static void test_cut_ack(void)
{
    char *dir = fu_path(root, "ack");
    fu_fresh_dir(dir);
    struct esb_bus *bus = fu_open(dir, &opts, NULL);
    struct esb_entry *e = NULL;
    struct esb_err err;
    if (fu_append(bus, Q, 0, 0) != 0 || fu_append(bus, Q, 1, 0) != 0 ||
        esb_bus_consume(bus, Q, 0, &e) != 0 || esb_bus_ack(bus, e, &err) != 0)
        bail("ack log");
    esb_entry_free(e);
    esb_bus_close(bus);
    char **names;
    size_t nseg = fu_list_segments(dir, &names);
    char *seg = fu_path(dir, names[0]);
    uint64_t *o;
    size_t nrec = fu_record_offsets(seg, &o);
    if (nseg != 1 || nrec != 3) bail("ack log: %zu segments, %zu records", nseg, nrec);
    char *copy = fu_path(work, names[0]);
    int good = 1;
    for (uint64_t cut = o[2]; cut < o[3]; cut++) {
        fu_fresh_dir(work);
        fu_copy_file(seg, copy);
        fu_truncate(copy, cut);
        unsigned ids[2] = {0, 1};
        good &= check_recovers(work, ids, 2, cut - o[2], 0, 2, copy, (int64_t)o[2], good);
    }
    ok(good,
       "log cut at each of the %llu bytes of a final ACK record: the entry is back "
       "(a torn ack is no ack)",
       (unsigned long long)(o[3] - o[2]));
    unsigned id1[1] = {1};
    fu_fresh_dir(work);
    fu_copy_file(seg, copy);
    ok(check_recovers(work, id1, 1, 0, 0, 3, copy, (int64_t)o[3], 1),
       "the whole ACK record is applied");
    free(o);
    free(copy);
    free(seg);
    fu_free_names(names, nseg);
    fu_rmrf(dir);
    free(dir);
}

/* a''. A transaction is "all of it or none" (bus.h): cut anywhere inside
 * the batch of its records, recovery must keep none of it. */
static void cut_txn(int ack_first, const char *label)
{
    char *dir = fu_path(root, "txn");
    fu_fresh_dir(dir);
    struct esb_bus *bus = fu_open(dir, &opts, NULL);
    struct esb_entry *e = NULL;
    if (fu_append(bus, "in", 0, 0) != 0 || esb_bus_consume(bus, "in", 0, &e) != 0) bail("txn log");
    struct esb_txn *t = esb_txn_new();
    struct esb_msg *m = fu_msg(100, 40);
    const char *out = "out";
    if (ack_first) esb_txn_ack(t, e);
    esb_txn_append(t, &out, 1, m);
    if (!ack_first) esb_txn_ack(t, e);
    struct esb_err err;
    if (esb_bus_commit(bus, t, &err) != 0) bail("txn commit: %s", err.msg);
    esb_txn_free(t);
    esb_msg_unref(m);
    esb_entry_free(e);
    esb_bus_close(bus);
    char **names;
    size_t nseg = fu_list_segments(dir, &names);
    char *seg = fu_path(dir, names[0]), *copy = fu_path(work, names[0]);
    uint64_t *o;
    size_t nrec = fu_record_offsets(seg, &o);
    if (nseg != 1 || nrec != 3) bail("txn log: %zu segments, %zu records", nseg, nrec);
    size_t partial = 0;
    uint64_t first_partial = 0;
    for (uint64_t cut = o[1]; cut < o[3]; cut++) {
        fu_fresh_dir(work);
        fu_copy_file(seg, copy);
        fu_truncate(copy, cut);
        struct fu_bodies in, outb;
        bus = fu_open(work, &opts, NULL);
        if (fu_read_all(bus, "in", &in) != 0 || fu_read_all(bus, "out", &outb) != 0) bail("read");
        esb_bus_close(bus);
        if (!(in.n == 1 && outb.n == 0) && partial++ == 0) first_partial = cut;
        fu_bodies_free(&in);
        fu_bodies_free(&outb);
    }
    ok(partial == 0,
       "%s cut at each of the %llu offsets of its batch: none of it survives recovery "
       "(%zu cuts, from byte %llu of the batch on, leave part of it: %s)",
       label, (unsigned long long)(o[3] - o[1]), partial,
       (unsigned long long)(partial ? first_partial - o[1] : 0),
       ack_first ? "the input acked, the output lost" : "the output kept, the input not acked");
    free(o);
    free(copy);
    free(seg);
    fu_free_names(names, nseg);
    fu_rmrf(dir);
    free(dir);
}

/* b. Garbage after the last valid record is a torn tail: cut exactly. */
static int check_tail(const uint8_t *tail, size_t len, int loud)
{
    char *seg = work_copy();
    fu_write_file(seg, tail, len, 1);
    struct esb_bus_stats st;
    struct fu_bodies b;
    unsigned ids[N];
    size_t n = fu_ids_range(ids, 0, N, -1);
    struct esb_bus *bus = fu_open(work, &opts, &st);
    int good = fu_read_all(bus, Q, &b) == 0;
    good &= fu_bodies_are(&b, ids, n, loud ? "log with a garbage tail" : NULL);
    fu_bodies_free(&b);
    int64_t size = fu_file_size(seg);
    if (st.recovered_truncated_bytes != len || st.recovered_corrupt != 0 ||
        size != (int64_t)offs[N]) {
        if (loud)
            diag("tail of %zu bytes: cut %llu, corrupt %llu, segment now %lld bytes (want %llu)",
                 len, (unsigned long long)st.recovered_truncated_bytes,
                 (unsigned long long)st.recovered_corrupt, (long long)size,
                 (unsigned long long)offs[N]);
        good = 0;
    }
    esb_bus_close(bus);
    free(seg);
    return good;
}

static void test_garbage_tails(void)
{
    /* every length 1..64, powers of two and their neighbours, a spread */
    size_t lens[400], nl = 0;
    for (size_t l = 1; l <= 64; l++) lens[nl++] = l;
    for (size_t p = 128; p <= 4096; p *= 2) {
        lens[nl++] = p - 1;
        lens[nl++] = p;
        if (p < 4096) lens[nl++] = p + 1;
    }
    for (size_t l = 70; l < 4096; l += 29) lens[nl++] = l;
    uint8_t *tail = esb_malloc(4096);
    int good_rand = 1, good_zero = 1, diags = 0;
    size_t has15 = 0, has4095 = 0, has4096 = 0;
    for (size_t i = 0; i < nl; i++) {
        size_t len = lens[i];
        has15 += len == 15 || len == 16 || len == 17;
        has4095 += len == 4095;
        has4096 += len == 4096;
        for (size_t k = 0; k < len; k++) tail[k] = (uint8_t)rng();
        int g = check_tail(tail, len, diags < 3);
        if (!g && diags++ < 3) diag("random tail of %zu bytes failed", len);
        good_rand &= g;
        memset(tail, 0, len);
        g = check_tail(tail, len, diags < 3);
        if (!g && diags++ < 3) diag("zero tail of %zu bytes failed", len);
        good_zero &= g;
    }
    ok(nl >= 200 && has15 == 3 && has4095 == 1 && has4096 == 1,
       "%zu distinct tail lengths from 1 to 4096", nl);
    ok(good_rand, "random tails of %zu lengths: all %d messages kept, tail length reported as cut",
       nl, N);
    ok(good_zero, "zero tails of %zu lengths: all %d messages kept, tail length reported as cut",
       nl, N);

    /* tails that start like a record */
    static const size_t mlens[] = {4, 5, 15, 16, 17, 100, 4096};
    int good = 1;
    for (size_t i = 0; i < ESB_ARRAY_LEN(mlens); i++) {
        for (size_t k = 0; k < mlens[i]; k++) tail[k] = (uint8_t)rng();
        memcpy(tail, "ESB1", 4);
        good &= check_tail(tail, mlens[i], good);
    }
    ok(good, "tails beginning with the magic \"ESB1\" then garbage (4..4096 bytes) are cut");

    /* a header that promises more than is there: the start of a real record */
    char *path = fu_path(pristine, seg1);
    size_t n;
    uint8_t *log = fu_read_file(path, &n);
    size_t rec3 = (size_t)(offs[4] - offs[3]);
    good = 1;
    for (size_t cut = 1; cut < rec3; cut += 7) good &= check_tail(log + offs[3], cut, good);
    ok(good, "a torn copy of a real record (every 7th prefix length of %zu) is cut", rec3);

    /* a whole record, well framed, whose CRC does not match */
    uint8_t rec[ESB_WAL_HDR + 5] = {0};
    struct iovec pl = {.iov_base = (void *)"hello", .iov_len = 5};
    esb_wal_header(rec, ESB_REC_ACK, 0, &pl, 1);
    memcpy(rec + ESB_WAL_HDR, "hellO", 5);
    ok(check_tail(rec, sizeof(rec), 1), "a complete final record with a bad CRC is cut (21 bytes)");

    /* garbage followed by a valid record is corruption, not a tail; the
     * replayed record (same seq) does not duplicate its message */
    size_t glen = 100;
    for (size_t k = 0; k < glen; k++) tail[k] = (uint8_t)rng();
    char *seg = work_copy();
    fu_write_file(seg, tail, glen, 1);
    fu_write_file(seg, log + offs[2], (size_t)(offs[3] - offs[2]), 1);
    struct esb_bus_stats st;
    struct fu_bodies b;
    unsigned ids[N];
    size_t nids = fu_ids_range(ids, 0, N, -1);
    struct esb_bus *bus = fu_open(work, &opts, &st);
    good = fu_read_all(bus, Q, &b) == 0 && fu_bodies_are(&b, ids, nids, "garbage then a record");
    fu_bodies_free(&b);
    char *qdir = fu_path(work, "quarantine");
    ok(good && st.recovered_corrupt == 1 && st.recovered_truncated_bytes == 0 &&
           fu_count_dir(qdir) == 1,
       "garbage followed by a valid record: reported as corruption (%llu), nothing cut, the "
       "replayed record adds no duplicate",
       (unsigned long long)st.recovered_corrupt);
    esb_bus_close(bus);
    free(qdir);
    free(seg);
    free(log);
    free(path);
    free(tail);
}

/* c. One bit flipped in record k in the middle. */
static void test_mid_corruption(void)
{
    const unsigned k = N / 2;
    uint64_t at = offs[k], len = offs[k + 1] - offs[k];
    struct {
        const char *field;
        uint64_t off;
        int bit;
    } cases[] = {
        {"magic", at + 0, 0},
        {"CRC", at + 5, 3},
        {"length (low bit)", at + 8, 0},
        {"length (high bit)", at + 10, 6},
        {"type", at + 12, 1},
        {"payload", at + ESB_WAL_HDR + (len - ESB_WAL_HDR) / 2, 5},
        {"payload (last byte)", at + len - 1, 7},
    };
    unsigned ids[N];
    size_t n = fu_ids_range(ids, 0, N, k);
    char qname[64];
    snprintf(qname, sizeof(qname), "quarantine/%020u-%020llu.bad", 1u, (unsigned long long)at);
    for (size_t c = 0; c < ESB_ARRAY_LEN(cases); c++) {
        char *seg = work_copy();
        fu_flip_bit(seg, cases[c].off, cases[c].bit);
        size_t segn;
        uint8_t *damaged = fu_read_file(seg, &segn);
        /* corruption is skipped, not cut: the segment keeps its size */
        int good = check_recovers(work, ids, n, 0, 1, N - 1, seg, (int64_t)offs[N], 1);
        char *qfile = fu_path(work, qname), *qdir = fu_path(work, "quarantine");
        int64_t qsize = fu_file_size(qfile);
        int qsame = 0;
        if (qsize == (int64_t)len) {
            size_t qn;
            uint8_t *q = fu_read_file(qfile, &qn);
            qsame = memcmp(q, damaged + at, len) == 0;
            free(q);
        }
        ok(good && qsame && fu_count_dir(qdir) == 1,
           "bit flipped in the %s of record %u of %d: reported (corrupt=1), that message "
           "missing, the other %d in order, the %llu damaged bytes in %s, appends work after",
           cases[c].field, k, N, N - 1, (unsigned long long)len, qname);
        free(qfile);
        free(qdir);
        free(damaged);
        free(seg);
    }
}

/* d. The index rebuilt from the log, entries in every state. */
struct seen {
    int n;
    char body[8][16];
    uint32_t attempt[8];
    uint64_t enq[8];
    char reason[8][64];
    char from[8][16];
    char tries[8][128]; /* "CLASS@AT:TEXT;..." */
};

static int browse_fn(void *ctx, const struct esb_entry *e)
{
    struct seen *s = ctx;
    if (s->n >= 8) return 1;
    snprintf(s->body[s->n], sizeof(s->body[0]), "%.*s", (int)e->msg->body->len,
             (const char *)e->msg->body->data);
    s->attempt[s->n] = e->attempt;
    s->enq[s->n] = e->enqueued_ms;
    snprintf(s->reason[s->n], sizeof(s->reason[0]), "%s", e->reason ? e->reason : "(null)");
    snprintf(s->from[s->n], sizeof(s->from[0]), "%s", e->dead_from ? e->dead_from : "(null)");
    size_t k = 0;
    for (uint32_t i = 0; i < e->ntries && k < sizeof(s->tries[0]); i++)
        k += (size_t)snprintf(s->tries[s->n] + k, sizeof(s->tries[0]) - k, "%s@%llu:%s;",
                              e->tries[i].cls, (unsigned long long)e->tries[i].at_ms,
                              e->tries[i].text);
    s->n++;
    return 0;
}

static int is_body(const struct esb_entry *e, const char *s)
{
    return e && e->msg->body->len == strlen(s) && memcmp(e->msg->body->data, s, strlen(s)) == 0;
}

static struct esb_entry *take(struct esb_bus *bus, const char *q, const char *body)
{
    struct esb_entry *e = NULL;
    if (esb_bus_consume(bus, q, 0, &e) != 0 || !is_body(e, body))
        bail("expected %s from %s, got %s", body, q, e ? (const char *)e->msg->body->data : "none");
    return e;
}

static void commit_or_bail(struct esb_bus *bus, struct esb_txn *t, const char *what)
{
    struct esb_err err;
    if (esb_bus_commit(bus, t, &err) != 0) bail("%s: %s", what, err.msg);
    esb_txn_free(t);
}

#define REASON "HTTP 400: bad order"

static void check_states(const char *dir, const char *label, const uint64_t *enq)
{
    struct esb_bus_stats st;
    struct esb_bus *bus = fu_open(dir, &opts, &st);
    struct esb_queue_info qi = {0}, di = {0};
    int rc = esb_bus_queue_info(bus, "st", &qi), rc2 = esb_bus_queue_info(bus, "st.dlq", &di);
    ok(rc == 0 && qi.entries == 4 && qi.inflight == 0 && qi.ready + qi.waiting == 4 &&
           st.recovered_entries == 5,
       "%s: st has 4 entries (m-0 ready, m-1 was in flight, m-3 and m-4 retried), none in "
       "flight; 5 entries recovered",
       label);
    ok(qi.ready == 3 && qi.waiting == 1,
       "%s: queue info counts the retry already due as ready, not waiting (ready %llu, "
       "waiting %llu; bus.h: waiting = retry not yet due)",
       label, (unsigned long long)qi.ready, (unsigned long long)qi.waiting);
    ok(rc2 == 0 && di.entries == 1 && di.ready == 1 && di.waiting == 0,
       "%s: st.dlq has the dead letter, ready", label);

    struct seen s = {0};
    int nb = esb_bus_browse(bus, "st", browse_fn, &s);
    ok(nb == 4 && strcmp(s.body[0], "m-0") == 0 && strcmp(s.body[1], "m-1") == 0 &&
           strcmp(s.body[2], "m-3") == 0 && strcmp(s.body[3], "m-4") == 0 && s.attempt[0] == 0 &&
           s.attempt[1] == 0 && s.attempt[2] == 1 && s.attempt[3] == 2 && s.enq[0] == enq[0] &&
           s.enq[1] == enq[1] && s.enq[2] == enq[3] && s.enq[3] == enq[4] &&
           strcmp(s.reason[0], "(null)") == 0 && strcmp(s.from[3], "(null)") == 0,
       "%s: browse st: m-0 a0, m-1 a0, m-3 a1, m-4 a2 in seq order, enqueue times kept, the "
       "acked m-2 gone",
       label);
    ok(strcmp(s.tries[0], "") == 0 && strcmp(s.tries[2], "timeout@1003:t3;") == 0 &&
           strcmp(s.tries[3], "http-status@1004:HTTP 503;connect@2004:refused;") == 0,
       "%s: attempt histories rebuilt: m-0 none, m-3 one, m-4 two in order (%s | %s)", label,
       s.tries[2], s.tries[3]);
    memset(&s, 0, sizeof(s));
    nb = esb_bus_browse(bus, "st.dlq", browse_fn, &s);
    ok(nb == 1 && strcmp(s.body[0], "m-5") == 0 && s.attempt[0] == 2 &&
           strcmp(s.reason[0], REASON) == 0 && strcmp(s.from[0], "st") == 0 && s.enq[0] == enq[5],
       "%s: browse st.dlq: m-5 attempt 2 (tried twice), reason and origin rebuilt", label);
    ok(strcmp(s.tries[0], "timeout@1005:t5;http-status@2005:" REASON ";") == 0,
       "%s: the dead letter keeps both attempts: its retry's and the last (%s)", label, s.tries[0]);

    struct esb_entry *a = NULL, *b = NULL, *c = NULL, *d = NULL, *x = NULL;
    int r1 = esb_bus_consume(bus, "st", 0, &a), r2 = esb_bus_consume(bus, "st", 0, &b);
    int r3 = esb_bus_consume(bus, "st", 0, &c), r4 = esb_bus_consume(bus, "st", 0, &x);
    ok(r1 == 0 && is_body(a, "m-4") && a->attempt == 2 && r2 == 0 && is_body(b, "m-0") && r3 == 0 &&
           is_body(c, "m-1") && b->attempt == 0 && c->attempt == 0 && r4 == ESB_ETIMEDOUT,
       "%s: consume st: the due retry m-4 (attempt 2) first, then m-0, m-1; m-3 not due", label);
    int r5 = esb_bus_consume(bus, "st.dlq", 0, &d);
    ok(r5 == 0 && is_body(d, "m-5") && d->attempt == 2 && d->ntries == 2 && d->reason &&
           strcmp(d->reason, REASON) == 0 && d->dead_from && strcmp(d->dead_from, "st") == 0,
       "%s: consume st.dlq: m-5 with reason and origin", label);
    esb_entry_free(a);
    esb_entry_free(b);
    esb_entry_free(c);
    esb_entry_free(d);
    esb_entry_free(x);
    esb_bus_close(bus);
}

static void test_index_rebuild(void)
{
    char *dir = fu_path(root, "states"), *snap = fu_path(root, "states-snap");
    fu_fresh_dir(dir);
    struct esb_bus *bus = fu_open(dir, &opts, NULL);
    for (unsigned i = 0; i < 6; i++)
        if (fu_append(bus, "st", i, 10 * i) != 0) bail("append");
    struct esb_entry *e[6];
    uint64_t enq[6];
    char body[16];
    for (int i = 0; i < 6; i++) {
        snprintf(body, sizeof(body), "m-%d", i);
        e[i] = take(bus, "st", body);
        enq[i] = e[i]->enqueued_ms;
    }
    uint64_t now = esb_now_ms();
    esb_entry_free(e[0]); /* m-0: released untouched: ready */
    /* m-1 stays held: in flight while the log is copied */
    struct esb_txn *t = esb_txn_new();
    struct esb_try f3, f4, f5, g4, g5;
    esb_try_set(&f3, 1003, "timeout", "t3");
    esb_try_set(&f4, 1004, "http-status", "HTTP 503");
    esb_try_set(&f5, 1005, "timeout", "t5");
    esb_try_set(&g4, 2004, "connect", "refused");
    esb_try_set(&g5, 2005, "http-status", REASON);
    esb_txn_ack(t, e[2]);                       /* m-2: acked */
    esb_txn_retry(t, e[3], now + 3600000, &f3); /* m-3: waiting an hour */
    esb_txn_retry(t, e[4], now - 2000, &f4);    /* m-4: due */
    esb_txn_retry(t, e[5], now - 1000, &f5);    /* m-5: due */
    commit_or_bail(bus, t, "resolve m-2..m-5");
    for (int i = 2; i < 6; i++) esb_entry_free(e[i]);
    struct esb_entry *r = take(bus, "st", "m-4"); /* due retries come first */
    t = esb_txn_new();
    esb_txn_retry(t, r, esb_now_ms() - 500, &g4); /* m-4: attempt 2, due */
    commit_or_bail(bus, t, "retry m-4 again");
    esb_entry_free(r);
    r = take(bus, "st", "m-5");
    t = esb_txn_new();
    esb_txn_dead(t, r, "st.dlq", REASON, &g5); /* m-5: dead after its 2nd attempt */
    commit_or_bail(bus, t, "dead-letter m-5");
    esb_entry_free(r);
    struct esb_queue_info qi;
    ok(esb_bus_queue_info(bus, "st", &qi) == 0 && qi.entries == 4 && qi.inflight == 1,
       "before restart: st has 4 entries, m-1 in flight");
    /* What a crash now would leave: every commit above is durable. */
    fu_fresh_dir(snap);
    fu_copy_segments(dir, snap);
    esb_entry_free(e[1]);
    esb_bus_close(bus);

    check_states(snap, "log copied while m-1 was in flight", enq);
    check_states(dir, "log closed normally", enq);
    fu_rmrf(snap);
    fu_rmrf(dir);
    free(snap);
    free(dir);
}

/* e. Damage in an older segment of a multi-segment log. */
struct recref {
    size_t seg;   /* index into the sorted segment names */
    uint64_t off; /* record start */
    uint64_t len; /* record length */
    int last_in_seg;
};

static void test_older_segment(void)
{
    enum { M = 40 };
    char *src = fu_path(root, "multi");
    fu_fresh_dir(src);
    struct esb_bus_opts o = opts;
    o.segment_size = 600;
    struct esb_bus *bus = fu_open(src, &o, NULL);
    for (unsigned i = 0; i < M; i++)
        if (fu_append(bus, Q, i, (i * 13) % 120) != 0) bail("append multi");
    esb_bus_close(bus);
    char **names;
    size_t nseg = fu_list_segments(src, &names);
    struct recref refs[M];
    size_t nrec = 0, first_count = 0;
    for (size_t s = 0; s < nseg; s++) {
        char *p = fu_path(src, names[s]);
        uint64_t *so;
        size_t c = fu_record_offsets(p, &so);
        if ((int64_t)so[c] != fu_file_size(p)) bail("segment %s does not walk", names[s]);
        for (size_t r = 0; r < c && nrec < M; r++)
            refs[nrec++] = (struct recref){s, so[r], so[r + 1] - so[r], r + 1 == c};
        if (s == 0) first_count = c;
        free(so);
        free(p);
    }
    if (nrec != M || nseg < 4 || first_count < 3)
        bail("multi-segment log: %zu records in %zu segments (%zu in the first)", nrec, nseg,
             first_count);
    ok(1, "multi-segment log: %d records in %zu segments", M, nseg);

    size_t mid_rec = 0; /* the first record of a middle segment */
    while (refs[mid_rec].seg != nseg / 2) mid_rec++;
    struct {
        const char *what;
        size_t rec;
        int cut; /* truncate inside the record instead of flipping a bit */
    } cases[] = {
        {"a middle record of the oldest segment", 1, 0},
        {"the last record of the oldest segment", first_count - 1, 0},
        {"the oldest segment cut inside its last record", first_count - 1, 1},
        {"the first record of a middle segment", mid_rec, 0},
    };
    for (size_t c = 0; c < ESB_ARRAY_LEN(cases); c++) {
        const struct recref *r = &refs[cases[c].rec];
        fu_fresh_dir(work);
        fu_copy_segments(src, work);
        char *seg = fu_path(work, names[r->seg]);
        if (cases[c].cut)
            fu_truncate(seg, r->off + r->len / 2);
        else
            fu_flip_bit(seg, r->off + ESB_WAL_HDR + 3, 2);
        int64_t before = fu_file_size(seg);
        struct esb_bus_stats st;
        struct fu_bodies b;
        unsigned ids[M];
        size_t n = fu_ids_range(ids, 0, M, (long)cases[c].rec);
        bus = fu_open(work, &o, &st);
        int good = fu_read_all(bus, Q, &b) == 0 && fu_bodies_are(&b, ids, n, cases[c].what);
        fu_bodies_free(&b);
        int64_t after = fu_file_size(seg);
        char *qdir = fu_path(work, "quarantine");
        good &= fu_append(bus, Q, EXTRA, 0) == 0;
        esb_bus_close(bus);
        ids[n] = EXTRA;
        struct esb_bus_stats st2;
        bus = fu_open(work, &o, &st2);
        good &= fu_read_all(bus, Q, &b) == 0 && fu_bodies_are(&b, ids, n + 1, "after append");
        fu_bodies_free(&b);
        esb_bus_close(bus);
        ok(good && st.recovered_corrupt == 1 && st.recovered_truncated_bytes == 0 &&
               st.recovered_records == M - 1 && before == after && fu_count_dir(qdir) == 1 &&
               st2.recovered_corrupt == 1,
           "%s (segment %zu of %zu): reported as corruption, not cut (%lld -> %lld bytes); "
           "message %zu missing, the other %d kept; appends work after",
           cases[c].what, r->seg + 1, nseg, (long long)before, (long long)after, cases[c].rec,
           M - 1);
        free(qdir);
        free(seg);
    }
    fu_free_names(names, nseg);
    fu_rmrf(src);
    free(src);
}

int main(void)
{
    esb_log_set_level(ESB_LOG_OFF);
    root = fu_tmpdir("recovery");
    pristine = fu_path(root, "pristine");
    work = fu_path(root, "work");
    diag("working in %s", root);
    build_pristine();
    test_cut_every_offset();
    test_cut_ack();
    cut_txn(1, "transaction {ack in, append out}");
    cut_txn(0, "transaction {append out, ack in}");
    test_garbage_tails();
    test_mid_corruption();
    test_index_rebuild();
    test_older_segment();
    fu_rmrf(root);
    free(offs);
    free(seg1);
    free(work);
    free(pristine);
    free(root);
    return tap_done();
}
