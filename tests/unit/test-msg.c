/* test-msg.c - the message model: refcounts, header semantics, clone, and the
 * binary encoding (round trips, limits, every truncation, hostile input). */
#include "config.h"

#include "msg.h"
#include "../tap.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static unsigned refs_of_body(struct esb_body *b)
{
    return atomic_load(&b->refs);
}

/* Same id, content type, headers (in order) and body bytes. */
static int msg_equal(const struct esb_msg *a, const struct esb_msg *b)
{
    if (memcmp(&a->id, &b->id, sizeof(a->id)) || strcmp(a->id_text, b->id_text)) return 0;
    if (strcmp(a->content_type, b->content_type) || a->nheaders != b->nheaders) return 0;
    for (size_t i = 0; i < a->nheaders; i++)
        if (strcmp(a->headers[i].name, b->headers[i].name) ||
            strcmp(a->headers[i].value, b->headers[i].value))
            return 0;
    return a->body->len == b->body->len &&
           memcmp(a->body->data, b->body->data, a->body->len) == 0 &&
           b->body->data[b->body->len] == '\0';
}

static uint8_t *encode(const struct esb_msg *m, size_t *n)
{
    *n = esb_msg_encoded_size(m);
    uint8_t *buf = esb_malloc(*n);
    size_t w = esb_msg_encode(m, buf);
    if (w != *n) bail("encode wrote %zu bytes, encoded_size said %zu", w, *n);
    return buf;
}

static void test_new_and_body(void)
{
    struct esb_msg *m = esb_msg_new();
    char text[ESB_UUID_STRLEN + 1];
    esb_uuid_format(&m->id, text);
    ok(atomic_load(&m->refs) == 1, "new message has refs 1");
    ok(strcmp(text, m->id_text) == 0 && (m->id.b[6] >> 4) == 7, "id_text matches a v7 id");
    ok(m->content_type && m->content_type[0] == '\0', "content type is \"\"");
    ok(m->body && m->body->len == 0 && m->body->data[0] == '\0', "body is empty, NUL-terminated");
    ok(m->nheaders == 0 && esb_msg_header(m, "x") == NULL, "no headers");

    struct esb_body *b = esb_body_new("hello", 5);
    ok(b->len == 5 && memcmp(b->data, "hello", 6) == 0, "body_new copies and NUL-terminates");
    esb_msg_set_body_take(m, b);
    ok(m->body == b && refs_of_body(b) == 1, "set_body_take takes the reference");
    esb_msg_set_body_take(m, esb_body_ref(m->body));
    ok(m->body == b && refs_of_body(b) == 1, "set_body_take of its own body keeps refs at 1");
    esb_msg_set_body(m, "abc\0def", 7);
    ok(m->body->len == 7 && memcmp(m->body->data, "abc\0def", 8) == 0, "set_body copies 7 bytes");
    esb_msg_set_content_type(m, "application/json");
    ok(strcmp(m->content_type, "application/json") == 0, "content type set");

    struct esb_msg *r = esb_msg_ref(m);
    ok(r == m && atomic_load(&m->refs) == 2, "ref returns m, refs 2");
    esb_msg_unref(m);
    ok(atomic_load(&m->refs) == 1, "unref drops to 1");
    esb_msg_unref(m);
    esb_msg_unref(NULL);
    esb_body_unref(NULL);
    ok(1, "unref(NULL) is a no-op");
}

static void test_headers(void)
{
    struct esb_msg *m = esb_msg_new();
    esb_msg_add_header(m, "Content-Length", "10");
    esb_msg_add_header(m, "X-Trace", "a");
    esb_msg_add_header(m, "x-trace", "b");
    esb_msg_add_header(m, "Other", "o");
    esb_msg_add_header(m, "X-TRACE", "c");
    ok(m->nheaders == 5, "add appends (5 headers)");
    ok(strcmp(esb_msg_header(m, "content-length"), "10") == 0, "get is case-insensitive");
    ok(strcmp(esb_msg_header(m, "X-trace"), "a") == 0, "get returns the first of duplicates");
    ok(esb_msg_header(m, "Content-Lengt") == NULL && esb_msg_header(m, "Content-Length2") == NULL,
       "get needs the whole name");

    esb_msg_set_header(m, "x-Trace", "z");
    ok(m->nheaders == 3, "set removed later duplicates (3 left)");
    ok(strcmp(m->headers[0].name, "Content-Length") == 0 &&
           strcmp(m->headers[1].name, "x-Trace") == 0 && strcmp(m->headers[1].value, "z") == 0 &&
           strcmp(m->headers[2].name, "Other") == 0,
       "set replaced the first in place; order kept");

    esb_msg_set_header(m, "New", "n");
    ok(m->nheaders == 4 && strcmp(m->headers[3].name, "New") == 0, "set of a new name appends");
    esb_msg_set_header(m, "new", "n2");
    ok(m->nheaders == 4 && strcmp(esb_msg_header(m, "NEW"), "n2") == 0, "set replaces value");

    /* arguments that point into the message itself */
    esb_msg_add_header(m, "dup", "1");
    esb_msg_add_header(m, "DUP", "2");
    esb_msg_set_header(m, m->headers[m->nheaders - 1].name, m->headers[m->nheaders - 1].value);
    ok(strcmp(esb_msg_header(m, "dup"), "2") == 0 && m->nheaders == 5,
       "set with a name/value borrowed from a later duplicate");
    esb_msg_add_header(m, "dup", "3");
    ok(esb_msg_remove_header(m, m->headers[m->nheaders - 1].name) == 2,
       "remove with a borrowed name removes both");

    ok(esb_msg_remove_header(m, "OTHER") == 1 && esb_msg_header(m, "other") == NULL,
       "remove is case-insensitive");
    ok(esb_msg_remove_header(m, "absent") == 0, "remove of an absent name returns 0");
    esb_msg_add_header(m, "a", "1");
    esb_msg_add_header(m, "A", "2");
    esb_msg_add_header(m, "b", "3");
    esb_msg_add_header(m, "a", "4");
    ok(esb_msg_remove_header(m, "a") == 3 && m->nheaders == 4 &&
           strcmp(m->headers[3].name, "b") == 0,
       "remove returns the count and keeps the others in order");
    esb_msg_add_header(m, "", "");
    ok(esb_msg_header(m, "") && esb_msg_header(m, "")[0] == '\0', "empty name and value work");
    esb_msg_unref(m);
}

static void test_clone(void)
{
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_content_type(m, "text/plain");
    esb_msg_add_header(m, "A", "1");
    esb_msg_add_header(m, "B", "2");
    esb_msg_set_body(m, "body", 4);
    struct esb_msg *c = esb_msg_clone(m);
    ok(atomic_load(&c->refs) == 1 && msg_equal(m, c), "clone equals the original, refs 1");
    ok(c->body == m->body && refs_of_body(m->body) == 2, "clone shares the body (refs 2)");
    ok(c->headers != m->headers && c->headers[0].name != m->headers[0].name &&
           c->headers[0].value != m->headers[0].value && c->content_type != m->content_type,
       "headers and content type are deep copies");
    esb_msg_set_header(c, "A", "changed");
    esb_msg_add_header(c, "C", "3");
    ok(strcmp(esb_msg_header(m, "A"), "1") == 0 && m->nheaders == 2,
       "changing the clone leaves the original alone");
    struct esb_body *b = m->body;
    esb_msg_unref(m);
    ok(refs_of_body(b) == 1 && memcmp(c->body->data, "body", 5) == 0,
       "the body outlives the original");
    esb_msg_set_body(c, "x", 1);
    esb_msg_unref(c);

    struct esb_msg *e = esb_msg_new();
    struct esb_msg *ec = esb_msg_clone(e);
    ok(ec->nheaders == 0 && msg_equal(e, ec), "clone of a header-less message");
    esb_msg_unref(e);
    esb_msg_unref(ec);
}

static void *clone_churn(void *arg)
{
    const struct esb_msg *m = arg;
    for (int i = 0; i < 20000; i++) {
        struct esb_msg *c = esb_msg_clone(m);
        struct esb_body *b = esb_body_ref(c->body);
        esb_msg_unref(c);
        esb_body_unref(b);
    }
    return NULL;
}

static void test_refcount_threads(void)
{
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_body(m, "shared", 6);
    esb_msg_add_header(m, "h", "v");
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, clone_churn, m)) bail("pthread_create");
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    ok(refs_of_body(m->body) == 1 && atomic_load(&m->refs) == 1,
       "4 threads x 20000 clone/unref leave body refs at 1");
    esb_msg_unref(m);
}

static void roundtrip(struct esb_msg *m, const char *name)
{
    size_t n;
    uint8_t *buf = encode(m, &n);
    struct esb_err err = {0, ""};
    struct esb_msg *d = esb_msg_decode(buf, n, &err);
    int good = d && msg_equal(m, d) && atomic_load(&d->refs) == 1;
    if (!d) diag("decode failed: %s", err.msg);
    if (good) {
        size_t n2;
        uint8_t *buf2 = encode(d, &n2);
        good = n2 == n && memcmp(buf, buf2, n) == 0;
        free(buf2);
    }
    ok(good, "round trip: %s (%zu bytes)", name, n);
    esb_msg_unref(d);
    free(buf);
}

static void test_roundtrip(void)
{
    struct esb_msg *m = esb_msg_new();
    roundtrip(m, "empty message");
    size_t n;
    uint8_t *buf = encode(m, &n);
    ok(n == 1 + 16 + 2 + 2 + 4 && buf[0] == 1 && memcmp(buf + 1, m->id.b, 16) == 0,
       "empty message encodes to 25 bytes: version 1, then the id");
    free(buf);

    uint8_t bin[300];
    for (size_t i = 0; i < sizeof(bin); i++) bin[i] = (uint8_t)i;
    esb_msg_set_body(m, bin, sizeof(bin));
    esb_msg_set_content_type(m, "application/octet-stream");
    roundtrip(m, "binary body with NULs");

    esb_msg_add_header(m, "a", "1");
    esb_msg_add_header(m, "A", "2"); /* duplicates survive decoding in order */
    roundtrip(m, "duplicate headers");
    esb_msg_unref(m);

    m = esb_msg_new();
    char name[32], value[32];
    for (int i = 0; i < ESB_MSG_MAX_HEADERS; i++) {
        snprintf(name, sizeof(name), "X-Header-%d", i);
        snprintf(value, sizeof(value), "value %d", i * 7);
        esb_msg_add_header(m, name, value);
    }
    roundtrip(m, "ESB_MSG_MAX_HEADERS headers");
    esb_msg_unref(m);

    m = esb_msg_new();
    char *big = esb_malloc(ESB_MSG_MAX_VALUE + 1);
    memset(big, 'v', ESB_MSG_MAX_VALUE);
    big[ESB_MSG_MAX_VALUE] = '\0';
    char *bigname = esb_malloc(ESB_MSG_MAX_NAME + 1);
    memset(bigname, 'n', ESB_MSG_MAX_NAME);
    bigname[ESB_MSG_MAX_NAME] = '\0';
    esb_msg_add_header(m, bigname, big);
    esb_msg_set_content_type(m, bigname);
    uint8_t *body = esb_malloc(1 << 20);
    for (size_t i = 0; i < (1 << 20); i++) body[i] = (uint8_t)rng();
    esb_msg_set_body(m, body, 1 << 20);
    roundtrip(m, "values, names and content type at their limits, 1 MiB body");
    free(big);
    free(bigname);
    free(body);
    esb_msg_unref(m);
}

/* Hand-built encodings for the limit checks. */
struct enc {
    uint8_t b[200000];
    size_t n;
};

static void put(struct enc *e, const void *p, size_t n)
{
    memcpy(e->b + e->n, p, n);
    e->n += n;
}

static void put16(struct enc *e, uint16_t v)
{
    esb_put_u16(e->b + e->n, v);
    e->n += 2;
}

static void put32(struct enc *e, uint32_t v)
{
    esb_put_u32(e->b + e->n, v);
    e->n += 4;
}

static void prologue(struct enc *e, uint8_t version, size_t ctlen)
{
    e->n = 0;
    put(e, &version, 1);
    put(e, "0123456789abcdef", 16);
    put16(e, (uint16_t)ctlen);
    for (size_t i = 0; i < ctlen; i++) put(e, "c", 1);
}

static void expect_corrupt(const struct enc *e, const char *word, const char *name)
{
    struct esb_err err = {0, ""};
    struct esb_msg *m = esb_msg_decode(e->b, e->n, &err);
    ok(!m && err.code == ESB_ECORRUPT && strstr(err.msg, word), "decode rejects %s: \"%s\"", name,
       err.msg);
    esb_msg_unref(m);
}

static void test_limits(void)
{
    static struct enc e;
    prologue(&e, 1, 4);
    put16(&e, 0);
    put32(&e, 0);
    struct esb_msg *m = esb_msg_decode(e.b, e.n, NULL);
    ok(m && strcmp(m->content_type, "cccc") == 0 && m->body->len == 0,
       "a hand-built minimal encoding decodes");
    esb_msg_unref(m);

    put(&e, "x", 1);
    expect_corrupt(&e, "trailing", "one trailing byte");
    e.n--;
    e.b[0] = 2;
    expect_corrupt(&e, "version", "version 2");
    e.b[0] = 0;
    expect_corrupt(&e, "version", "version 0");

    prologue(&e, 1, ESB_MSG_MAX_NAME + 1);
    put16(&e, 0);
    put32(&e, 0);
    expect_corrupt(&e, "content type length", "an oversized content type");

    prologue(&e, 1, 0);
    put16(&e, ESB_MSG_MAX_HEADERS + 1);
    for (int i = 0; i < ESB_MSG_MAX_HEADERS + 1; i++) {
        put16(&e, 1);
        put(&e, "h", 1);
        put32(&e, 0);
    }
    put32(&e, 0);
    expect_corrupt(&e, "header count", "header count > ESB_MSG_MAX_HEADERS");

    prologue(&e, 1, 0);
    put16(&e, 1);
    put16(&e, ESB_MSG_MAX_NAME + 1);
    for (int i = 0; i < ESB_MSG_MAX_NAME + 1; i++) put(&e, "n", 1);
    put32(&e, 0);
    put32(&e, 0);
    expect_corrupt(&e, "header 0 name length", "an oversized header name");

    prologue(&e, 1, 0);
    put16(&e, 2);
    put16(&e, 1);
    put(&e, "a", 1);
    put32(&e, 1);
    put(&e, "1", 1);
    put16(&e, 1);
    put(&e, "b", 1);
    put32(&e, ESB_MSG_MAX_VALUE + 1);
    for (int i = 0; i < ESB_MSG_MAX_VALUE + 1; i++) put(&e, "v", 1);
    put32(&e, 0);
    expect_corrupt(&e, "header 1 value length", "an oversized header value");

    prologue(&e, 1, 0);
    put16(&e, 1);
    put16(&e, 3);
    put(&e, "a\0b", 3);
    put32(&e, 0);
    put32(&e, 0);
    expect_corrupt(&e, "NUL", "a NUL inside a header name");

    prologue(&e, 1, 0);
    put16(&e, 0);
    put32(&e, 0xFFFFFFFFu);
    expect_corrupt(&e, "truncated", "a body length past the end");

    prologue(&e, 1, 0);
    put16(&e, 1000);
    put32(&e, 0);
    expect_corrupt(&e, "truncated", "a header count the input cannot hold");
}

static void test_truncation(void)
{
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_content_type(m, "text/xml");
    esb_msg_add_header(m, "Correlation-Id", "abc-123");
    esb_msg_add_header(m, "Empty", "");
    esb_msg_add_header(m, "X", "a longer value with spaces");
    esb_msg_set_body(m, "<a>\0</a>", 8);
    size_t n;
    uint8_t *buf = encode(m, &n);
    int bad = 0;
    for (size_t len = 0; len < n; len++) {
        /* a fresh copy of exactly len bytes, so ASan sees any over-read */
        uint8_t *cut = esb_malloc(len);
        memcpy(cut, buf, len);
        struct esb_err err = {0, ""};
        struct esb_msg *d = esb_msg_decode(cut, len, &err);
        if (d || err.code != ESB_ECORRUPT || !strstr(err.msg, "truncated")) {
            bad++;
            diag("length %zu: %s", len, err.msg);
        }
        esb_msg_unref(d);
        free(cut);
    }
    ok(bad == 0, "all %zu truncations fail with ESB_ECORRUPT \"truncated\" (%d bad)", n, bad);
    struct esb_msg *d = esb_msg_decode(buf, n, NULL);
    ok(d && msg_equal(m, d), "the untruncated %zu bytes decode", n);
    esb_msg_unref(d);
    esb_msg_unref(m);
    free(buf);
}

/* Success must be faithful: whatever decodes re-encodes to the same bytes. */
static int check_decode(const uint8_t *p, size_t n, unsigned *decoded)
{
    struct esb_err err = {0, ""};
    struct esb_msg *m = esb_msg_decode(p, n, &err);
    if (!m) return err.code == ESB_ECORRUPT && err.msg[0];
    (*decoded)++;
    size_t n2;
    uint8_t *again = encode(m, &n2);
    char text[ESB_UUID_STRLEN + 1];
    esb_uuid_format(&m->id, text);
    int good = n2 == n && memcmp(p, again, n) == 0 && strcmp(text, m->id_text) == 0;
    free(again);
    esb_msg_unref(m);
    return good;
}

static void test_fuzz(void)
{
    unsigned bad = 0, decoded = 0;
    for (int it = 0; it < 100000; it++) {
        size_t n = (size_t)(rng() % 160);
        uint8_t *p = esb_malloc(n);
        for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rng();
        if (n && (it & 1)) p[0] = 1;
        if (n > 21 && (it & 2)) p[18] = p[20] = 0; /* small ct length, small header count */
        if (!check_decode(p, n, &decoded)) bad++;
        free(p);
    }
    ok(bad == 0, "100000 random inputs: clean errors or faithful decodes (%u bad, %u decoded)", bad,
       decoded);

    struct esb_msg *m = esb_msg_new();
    esb_msg_set_content_type(m, "ct");
    esb_msg_add_header(m, "k1", "v1");
    esb_msg_add_header(m, "key2", "value2");
    esb_msg_set_body(m, "payload", 7);
    size_t n;
    uint8_t *good = encode(m, &n);
    bad = decoded = 0;
    for (int it = 0; it < 100000; it++) {
        size_t len = n + (size_t)(rng() % 3) - 1; /* also one short / one long */
        uint8_t *p = esb_calloc(1, len);
        memcpy(p, good, len < n ? len : n);
        for (int k = (int)(rng() % 4) + 1; k > 0; k--) {
            size_t at = (size_t)(rng() % len);
            p[at] = (rng() & 1) ? (uint8_t)rng() : (uint8_t)(p[at] ^ (1u << (rng() % 8)));
        }
        if (!check_decode(p, len, &decoded)) bad++;
        free(p);
    }
    ok(bad == 0, "100000 mutated encodings: clean errors or faithful decodes (%u bad, %u decoded)",
       bad, decoded);
    ok(decoded > 0, "some mutations (id, body bytes) still decode");
    free(good);
    esb_msg_unref(m);
}

int main(void)
{
    test_new_and_body();
    test_headers();
    test_clone();
    test_refcount_threads();
    test_roundtrip();
    test_limits();
    test_truncation();
    test_fuzz();
    return tap_done();
}
