/* crc32c.c - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
 *
 * Two implementations of one function: the SSE4.2 crc32 instruction (x86-64
 * only, compiled with a per-function target attribute so the rest of the file
 * needs no -msse4.2) and a portable slicing-by-8 table walk. The choice is made
 * once, on the first call, and published through an atomic function pointer;
 * the tables are built once under pthread_once. Both paths work on the raw CRC
 * register: the public functions apply the ~crc pre- and post-conditioning, so
 * esb_crc32c(esb_crc32c(0, a, n), b, m) == esb_crc32c(0, a || b, n + m). */
#include "config.h"

#include "crc32c.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u

/* tables[k][i]: the CRC register after feeding byte i followed by k zero bytes. */
static uint32_t tables[8][256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1u)));
        tables[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            tables[k][i] = (tables[k - 1][i] >> 8) ^ tables[0][tables[k - 1][i] & 0xff];
}

/* Slicing-by-8 over the raw register (no conditioning). */
static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint32_t lo = c ^ esb_get_u32(p);
        uint32_t hi = esb_get_u32(p + 4);
        c = tables[7][lo & 0xff] ^ tables[6][(lo >> 8) & 0xff] ^ tables[5][(lo >> 16) & 0xff] ^
            tables[4][lo >> 24] ^ tables[3][hi & 0xff] ^ tables[2][(hi >> 8) & 0xff] ^
            tables[1][(hi >> 16) & 0xff] ^ tables[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ tables[0][(c ^ *p++) & 0xff];
    return c;
}

uint32_t esb_crc32c_sw(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&tables_once, tables_init);
    return ~crc_sw(~crc, p, n);
}

#if defined(__x86_64__)
/* The crc32 instruction over the raw register; loads go through memcpy so
 * unaligned buffers are fine (and free on x86). */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n)
{
    while (n && ((uintptr_t)p & 7u)) {
        c = _mm_crc32_u8(c, *p++);
        n--;
    }
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = _mm_crc32_u64(c64, w);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--) c = _mm_crc32_u8(c, *p++);
    return c;
}
#endif

typedef uint32_t (*crc_fn)(uint32_t c, const uint8_t *p, size_t n);

static uint32_t crc_resolve(uint32_t c, const uint8_t *p, size_t n);

/* Starts at the resolver, which replaces itself with the chosen implementation.
 * Racing first calls all pick the same answer, so the store needs no CAS. */
static _Atomic(crc_fn) crc_impl = crc_resolve;

static uint32_t crc_resolve(uint32_t c, const uint8_t *p, size_t n)
{
    crc_fn fn = crc_sw;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) fn = crc_hw;
#endif
    if (fn == crc_sw) pthread_once(&tables_once, tables_init);
    /* release: a thread that loads crc_sw also sees the finished tables */
    atomic_store_explicit(&crc_impl, fn, memory_order_release);
    return fn(c, p, n);
}

uint32_t esb_crc32c(uint32_t crc, const void *p, size_t n)
{
    crc_fn fn = atomic_load_explicit(&crc_impl, memory_order_acquire);
    return ~fn(~crc, p, n);
}
