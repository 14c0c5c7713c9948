/* test-uuid.c - UUIDv7: layout bits, text round trip, strict parsing, the
 * counter and clock rules, uniqueness and per-thread order across 4 threads,
 * and fresh random bits in a forked child. */
#include "config.h"

#include "uuid.h"
#include "util.h"
#include "../tap.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned counter_of(const esb_uuid_t *u)
{
    return ((unsigned)(u->b[6] & 0x0F) << 8) | u->b[7];
}

static void test_layout(void)
{
    esb_uuid_t u;
    uint64_t before = esb_now_ms();
    esb_uuid_v7(&u);
    uint64_t after = esb_now_ms();
    ok((u.b[6] >> 4) == 7, "version nibble is 7 (got %x)", u.b[6] >> 4);
    ok((u.b[8] & 0xC0) == 0x80, "variant bits are 10 (byte 8 = %02x)", u.b[8]);
    uint64_t t = esb_uuid_v7_time_ms(&u);
    ok(t >= before && t <= after + 5, "time_ms %llu within [%llu, %llu]", (unsigned long long)t,
       (unsigned long long)before, (unsigned long long)after);

    int bad = 0;
    for (int i = 0; i < 1000; i++) {
        esb_uuid_v7(&u);
        if ((u.b[6] >> 4) != 7 || (u.b[8] & 0xC0) != 0x80) bad++;
    }
    ok(bad == 0, "1000 ids all have version 7 and variant 10 (%d bad)", bad);
}

static void test_text(void)
{
    esb_uuid_t u, v;
    for (int i = 0; i < 16; i++) u.b[i] = (uint8_t)(i * 0x11);
    char s[ESB_UUID_STRLEN + 1];
    memset(s, 'x', sizeof(s));
    esb_uuid_format(&u, s);
    ok(strcmp(s, "00112233-4455-6677-8899-aabbccddeeff") == 0, "format: %s", s);
    ok(strlen(s) == ESB_UUID_STRLEN, "formatted length is %d", ESB_UUID_STRLEN);
    ok(esb_uuid_parse(s, &v) == 0 && memcmp(&u, &v, 16) == 0, "parse(format(u)) == u");
    ok(esb_uuid_parse("00112233-4455-6677-8899-AABBCCDDEEFF", &v) == 0 && memcmp(&u, &v, 16) == 0,
       "parse accepts upper case");

    int bad = 0;
    for (int i = 0; i < 1000; i++) {
        esb_uuid_v7(&u);
        esb_uuid_format(&u, s);
        if (esb_uuid_parse(s, &v) != 0 || memcmp(&u, &v, 16) != 0) bad++;
    }
    ok(bad == 0, "1000 fresh ids round-trip through text (%d bad)", bad);

    static const char *const badtext[] = {
        "",
        "01122334-4556-6778-899a-abbccddeeff",   /* 35 chars */
        "01122334-4556-6778-899a-abbccddeeff00", /* 37 chars */
        "01122334-4556-6778-899a-abbccddeeffg",  /* bad hex */
        "01122334-4556-6778-899a-abbccddeeff ",  /* trailing space */
        " 1122334-4556-6778-899a-abbccddeeff0",  /* leading space */
        "011223344-556-6778-899a-abbccddeeff0",  /* dash moved right */
        "0112233-44556-6778-899a-abbccddeeff0",  /* dash moved left */
        "01122334-4556-6778-899aabbccddeeff00",  /* dash missing */
        "01122334_4556_6778_899a_abbccddeeff0",  /* wrong separator */
        "0112233445566778899aabbccddeeff0",      /* no dashes, 32 hex */
        "{1122334-4556-6778-899a-abbccddeeff}",  /* braces */
        "01122334-4556-6778-899a-abbccddeef-0",  /* extra dash */
        "0x122334-4556-6778-899a-abbccddeeff0",  /* 0x prefix */
    };
    for (size_t i = 0; i < ESB_ARRAY_LEN(badtext); i++) {
        memset(&v, 0xAB, sizeof(v));
        int r = esb_uuid_parse(badtext[i], &v);
        int untouched = 1;
        for (int k = 0; k < 16; k++) untouched &= v.b[k] == 0xAB;
        ok(r == -1 && untouched, "parse rejects \"%s\" and leaves out alone", badtext[i]);
    }
}

/* Consecutive ids from one thread: same ms => counter + 1; new ms => later. */
static void test_counter(void)
{
    enum { N = 20000 };
    static esb_uuid_t ids[N];
    for (int i = 0; i < N; i++) esb_uuid_v7(&ids[i]);
    int bad = 0, same_ms = 0, carried = 0;
    for (int i = 1; i < N; i++) {
        uint64_t ta = esb_uuid_v7_time_ms(&ids[i - 1]), tb = esb_uuid_v7_time_ms(&ids[i]);
        unsigned ca = counter_of(&ids[i - 1]), cb = counter_of(&ids[i]);
        if (tb == ta) {
            same_ms++;
            if (cb != ca + 1) bad++;
        } else if (tb < ta) {
            bad++;
        } else if (ca == 0xFFF) {
            carried++;
            if (tb != ta + 1 || cb != 0) bad++;
        } else if (cb > 0x7FF) {
            bad++; /* a new millisecond starts the counter below 2048 */
        }
    }
    ok(bad == 0, "%d consecutive ids follow the counter rules (%d bad)", N, bad);
    ok(same_ms > 0, "some ids shared a millisecond and incremented the counter (%d)", same_ms);
    diag("counter overflows carried into the timestamp: %d", carried);
    uint64_t now = esb_now_ms(), t = esb_uuid_v7_time_ms(&ids[N - 1]);
    ok(t <= now + 50, "artificial advance stays near the clock (%llu vs now %llu)",
       (unsigned long long)t, (unsigned long long)now);
}

enum { THREADS = 4, PER_THREAD = 25000 };
static esb_uuid_t tids[THREADS][PER_THREAD];

static void *gen_thread(void *arg)
{
    esb_uuid_t *out = arg;
    for (int i = 0; i < PER_THREAD; i++) esb_uuid_v7(&out[i]);
    return NULL;
}

static int cmp_uuid(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static void test_threads(void)
{
    pthread_t t[THREADS];
    uint64_t before = esb_now_ms();
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, gen_thread, tids[i])) bail("pthread_create");
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    uint64_t after = esb_now_ms();

    for (int i = 0; i < THREADS; i++) {
        int bad = 0;
        for (int k = 1; k < PER_THREAD; k++)
            if (memcmp(&tids[i][k - 1], &tids[i][k], 16) >= 0) bad++;
        ok(bad == 0, "thread %d: %d ids strictly increasing (%d out of order)", i, PER_THREAD, bad);
    }

    static esb_uuid_t all[THREADS * PER_THREAD];
    memcpy(all, tids, sizeof(all));
    qsort(all, THREADS * PER_THREAD, sizeof(all[0]), cmp_uuid);
    int dups = 0;
    for (int k = 1; k < THREADS * PER_THREAD; k++)
        if (memcmp(&all[k - 1], &all[k], 16) == 0) dups++;
    ok(dups == 0, "%d ids from %d threads are unique (%d duplicates)", THREADS * PER_THREAD,
       THREADS, dups);

    uint64_t lo = esb_uuid_v7_time_ms(&all[0]);
    uint64_t hi = esb_uuid_v7_time_ms(&all[THREADS * PER_THREAD - 1]);
    ok(lo + 1000 >= before && hi <= after + 1000,
       "timestamps [%llu, %llu] close to the run [%llu, %llu]", (unsigned long long)lo,
       (unsigned long long)hi, (unsigned long long)before, (unsigned long long)after);
}

/* A child must not reuse the random bytes buffered in its parent. */
static void test_fork(void)
{
    esb_uuid_t u, child;
    esb_uuid_v7(&u); /* make sure this thread's random buffer is filled */
    int fds[2];
    if (pipe(fds) != 0) bail("pipe");
    pid_t pid = fork();
    if (pid < 0) bail("fork");
    if (pid == 0) {
        esb_uuid_v7(&u);
        ssize_t w = write(fds[1], &u, sizeof(u));
        _exit(w == (ssize_t)sizeof(u) ? 0 : 1);
    }
    esb_uuid_v7(&u);
    ssize_t r = read(fds[0], &child, sizeof(child));
    int status = 0;
    waitpid(pid, &status, 0);
    close(fds[0]);
    close(fds[1]);
    ok(r == (ssize_t)sizeof(child) && WIFEXITED(status) && WEXITSTATUS(status) == 0,
       "forked child made an id");
    ok(memcmp(&u.b[9], &child.b[9], 7) != 0, "parent and child draw different random bits");
}

int main(void)
{
    test_layout();
    test_text();
    test_counter();
    test_threads();
    test_fork();
    return tap_done();
}
