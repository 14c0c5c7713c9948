/* test-crc32c.c - CRC-32C: published vectors, hardware == software == a
 * bit-at-a-time reference over random unaligned buffers, chaining, and a racy
 * first call from several threads. */
#include "config.h"

#include "crc32c.h"
#include "../tap.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* The definition, one bit at a time: the reference the fast paths must match. */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t n)
{
    uint32_t c = ~crc;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void *first_call(void *arg)
{
    uint32_t *out = arg;
    *out = esb_crc32c(0, "123456789", 9);
    return NULL;
}

static void test_first_call_race(void)
{
    pthread_t t[4];
    uint32_t r[4] = {0};
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, first_call, &r[i])) bail("pthread_create");
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    int good = 1;
    for (int i = 0; i < 4; i++) good &= r[i] == 0xE3069283u;
    ok(good, "four threads racing the first call all get 0xE3069283");
}

struct vec {
    const char *name;
    uint8_t data[48];
    size_t len;
    uint32_t crc;
};

static void test_vectors(void)
{
    static struct vec v[6];
    memset(v, 0, sizeof(v));
    v[0].name = "\"123456789\"";
    memcpy(v[0].data, "123456789", 9);
    v[0].len = 9;
    v[0].crc = 0xE3069283u;
    v[1].name = "32 zero bytes (RFC 3720 B.4)";
    v[1].len = 32;
    v[1].crc = 0x8A9136AAu;
    v[2].name = "32 0xFF bytes (RFC 3720 B.4)";
    memset(v[2].data, 0xFF, 32);
    v[2].len = 32;
    v[2].crc = 0x62A8AB43u;
    v[3].name = "32 incrementing bytes (RFC 3720 B.4)";
    for (int i = 0; i < 32; i++) v[3].data[i] = (uint8_t)i;
    v[3].len = 32;
    v[3].crc = 0x46DD794Eu;
    v[4].name = "32 decrementing bytes (RFC 3720 B.4)";
    for (int i = 0; i < 32; i++) v[4].data[i] = (uint8_t)(31 - i);
    v[4].len = 32;
    v[4].crc = 0x113FDB5Cu;
    v[5].name = "iSCSI read PDU (RFC 3720 B.4)";
    static const uint8_t pdu[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    memcpy(v[5].data, pdu, 48);
    v[5].len = 48;
    v[5].crc = 0xD9963A56u;

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint32_t hw = esb_crc32c(0, v[i].data, v[i].len);
        uint32_t sw = esb_crc32c_sw(0, v[i].data, v[i].len);
        uint32_t ref = crc_ref(0, v[i].data, v[i].len);
        ok(hw == v[i].crc, "%s: dispatch %08x == %08x", v[i].name, hw, v[i].crc);
        ok(sw == v[i].crc, "%s: software %08x == %08x", v[i].name, sw, v[i].crc);
        ok(ref == v[i].crc, "%s: bitwise reference %08x == %08x", v[i].name, ref, v[i].crc);
    }
    ok(esb_crc32c(0, NULL, 0) == 0 && esb_crc32c_sw(0, NULL, 0) == 0, "empty input gives 0");
    ok(esb_crc32c(0x12345678u, "", 0) == 0x12345678u, "empty input leaves crc unchanged");
}

static void test_random(void)
{
    enum { MAXLEN = 4096, SLACK = 16 };
    static uint8_t buf[MAXLEN + SLACK];
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)rng();

    unsigned bad_hw = 0, bad_sw = 0, runs = 0;
    for (size_t len = 0; len <= MAXLEN; len++) {
        size_t off = (size_t)(rng() % SLACK);
        uint32_t seed = (len % 3 == 0) ? 0 : (uint32_t)rng();
        uint32_t ref = crc_ref(seed, buf + off, len);
        if (esb_crc32c(seed, buf + off, len) != ref) bad_hw++;
        if (esb_crc32c_sw(seed, buf + off, len) != ref) bad_sw++;
        runs++;
    }
    ok(bad_hw == 0, "dispatch == reference over %u random unaligned buffers (%u bad)", runs,
       bad_hw);
    ok(bad_sw == 0, "software == reference over %u random unaligned buffers (%u bad)", runs,
       bad_sw);

    unsigned bad = 0;
    for (int i = 0; i < 2000; i++) {
        size_t off = (size_t)(rng() % SLACK), len = (size_t)(rng() % MAXLEN);
        if (esb_crc32c(0, buf + off, len) != esb_crc32c_sw(0, buf + off, len)) bad++;
    }
    ok(bad == 0, "dispatch == software over 2000 random (offset, length) pairs (%u bad)", bad);

    /* A change of one bit must change the CRC (sanity: the test can fail). */
    uint32_t before = esb_crc32c(0, buf, 100);
    buf[50] ^= 0x10;
    ok(esb_crc32c(0, buf, 100) != before, "flipping one bit changes the crc");
    buf[50] ^= 0x10;
}

static void test_chaining(void)
{
    static uint8_t buf[1000];
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)rng();
    uint32_t whole = esb_crc32c(0, buf, sizeof(buf));
    unsigned bad = 0;
    for (size_t cut = 0; cut <= sizeof(buf); cut++) {
        uint32_t a = esb_crc32c(esb_crc32c(0, buf, cut), buf + cut, sizeof(buf) - cut);
        uint32_t b = esb_crc32c_sw(esb_crc32c_sw(0, buf, cut), buf + cut, sizeof(buf) - cut);
        uint32_t c = esb_crc32c_sw(esb_crc32c(0, buf, cut), buf + cut, sizeof(buf) - cut);
        if (a != whole || b != whole || c != whole) bad++;
    }
    ok(bad == 0, "crc(crc(0,a),b) == crc(0,a||b) at every split of 1000 bytes (%u bad)", bad);

    uint32_t c = 0;
    for (size_t i = 0; i < sizeof(buf); i++) c = esb_crc32c(c, buf + i, 1);
    ok(c == whole, "byte-at-a-time chaining equals one call");
    ok(esb_crc32c(esb_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u,
       "\"1234\" then \"56789\" chains to the check value");
}

int main(void)
{
#if defined(__x86_64__)
    diag("cpu sse4.2: %s", __builtin_cpu_supports("sse4.2") ? "yes (hardware path)" : "no");
#endif
    test_first_call_race();
    test_vectors();
    test_random();
    test_chaining();
    return tap_done();
}
