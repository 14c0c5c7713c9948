/* uuid.c - UUIDv7 (RFC 9562, section 5.7, with the "fixed bit-length dedicated
 * counter" of section 6.2 method 1 in rand_a).
 *
 * Layout: unix_ts_ms (48 bits, big-endian) | ver 0111 | counter (12 bits) |
 * var 10 | rand_b (62 random bits).
 *
 * Monotonicity: the process-wide state is one atomic 64-bit word holding
 * (ms << 12 | counter). Each id is made by a compare-and-swap from the last
 * state: a clock ahead of it starts a new millisecond with a random 11-bit
 * counter (the top bit clear leaves at least 2048 ids of headroom); otherwise
 * (same millisecond, or the wall clock went backwards) the word is incremented,
 * so a counter overflow carries into the timestamp - the artificial +1 ms.
 * States are totally ordered by the CAS, so ids compare strictly increasing in
 * the order they were made, across all threads, and are unique within the process.
 *
 * Random bytes come from getrandom(2) in 256-byte chunks buffered per thread.
 * A fork handler empties the forking thread's buffer so a child never repeats
 * its parent's random bits. */
#include "config.h"

#include "uuid.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#define RAND_CHUNK 256

static _Thread_local struct {
    uint8_t buf[RAND_CHUNK];
    size_t pos; /* next unused byte of buf */
    int filled; /* 0: buf holds nothing usable (new thread, or after fork) */
} rnd;

static _Atomic uint64_t last_state; /* ms << 12 | counter */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    rnd.filled = 0; /* only the forking thread survives in the child */
}

static void fork_init(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

/* Copy n (<= RAND_CHUNK) random bytes into out. */
static void rand_bytes(uint8_t *out, size_t n)
{
    if (!rnd.filled || RAND_CHUNK - rnd.pos < n) {
        pthread_once(&fork_once, fork_init);
        size_t got = 0;
        while (got < RAND_CHUNK) {
            ssize_t r = getrandom(rnd.buf + got, RAND_CHUNK - got, 0);
            if (r < 0) {
                if (errno == EINTR) continue;
                fprintf(stderr, "esb: getrandom failed: %s\n", strerror(errno));
                abort();
            }
            got += (size_t)r;
        }
        rnd.pos = 0;
        rnd.filled = 1;
    }
    memcpy(out, rnd.buf + rnd.pos, n);
    rnd.pos += n;
}

void esb_uuid_v7(esb_uuid_t *out)
{
    uint8_t r[10];
    rand_bytes(r, sizeof(r)); /* r[0..1]: a new counter start; r[2..9]: rand_b */

    uint64_t old = atomic_load_explicit(&last_state, memory_order_relaxed), next;
    do {
        uint64_t now = esb_now_ms() & 0xFFFFFFFFFFFFull;
        if (now > (old >> 12))
            next = (now << 12) | ((uint64_t)esb_get_u16(r) & 0x7FFu);
        else
            next = old + 1;
    } while (!atomic_compare_exchange_weak_explicit(&last_state, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));

    uint64_t ms = next >> 12;
    unsigned counter = (unsigned)(next & 0xFFFu);
    for (int i = 0; i < 6; i++) out->b[i] = (uint8_t)(ms >> (8 * (5 - i)));
    out->b[6] = (uint8_t)(0x70u | (counter >> 8));
    out->b[7] = (uint8_t)counter;
    memcpy(&out->b[8], r + 2, 8);
    out->b[8] = (uint8_t)(0x80u | (out->b[8] & 0x3Fu));
}

void esb_uuid_format(const esb_uuid_t *u, char *out)
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
        *p++ = hex[u->b[i] >> 4];
        *p++ = hex[u->b[i] & 0xF];
    }
    *p = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int esb_uuid_parse(const char *s, esb_uuid_t *out)
{
    esb_uuid_t u;
    int nib = 0;
    for (int i = 0; i < ESB_UUID_STRLEN; i++) {
        if (s[i] == '\0') return -1; /* too short; never reads past the NUL */
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return -1;
            continue;
        }
        int v = hexval(s[i]);
        if (v < 0) return -1;
        if (nib & 1)
            u.b[nib / 2] = (uint8_t)(u.b[nib / 2] | v);
        else
            u.b[nib / 2] = (uint8_t)(v << 4);
        nib++;
    }
    if (s[ESB_UUID_STRLEN] != '\0') return -1;
    *out = u;
    return 0;
}

uint64_t esb_uuid_v7_time_ms(const esb_uuid_t *u)
{
    uint64_t ms = 0;
    for (int i = 0; i < 6; i++) ms = (ms << 8) | u->b[i];
    return ms;
}
