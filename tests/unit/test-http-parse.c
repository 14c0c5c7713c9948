/* test-http-parse.c - http-in's HTTP/1.1 request parsing: heads (framing,
 * keep-alive, every error and its status), the end-of-head search across
 * growing buffers, and the chunked decoder fed whole, byte by byte and
 * split at every position. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../tap.h"
#include "http_parse.h"

static struct esb_http_head H;

/* Parse s whole; the status (0 ok). */
static int parse(const char *s)
{
    const char *why = NULL;
    int rc = esb_http_parse_head(s, strlen(s), &H, &why);
    if (rc > 1 && (!why || !*why)) return -1; /* an error must say why */
    return rc;
}

static void status_is(const char *name, const char *req, int want)
{
    int rc = parse(req);
    ok(rc == want, "%s: %d (got %d)", name, want, rc);
}

static int field_is(const char *name, const char *want)
{
    size_t n = 0;
    const char *v = esb_http_field(&H, name, &n);
    return v && n == strlen(want) && memcmp(v, want, n) == 0;
}

static void heads(void)
{
    const char *req = "POST /orders?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                      "X-Pad:   v a l  \r\n\r\nhelloNEXT";
    ok(parse(req) == 0, "a POST head parses");
    ok(H.method_len == 4 && memcmp(H.method, "POST", 4) == 0, "method");
    ok(H.target_len == 11 && memcmp(H.target, "/orders?x=1", 11) == 0, "target as sent");
    ok(H.minor == 1 && H.keep_alive && H.has_length && H.length == 5 && !H.chunked,
       "HTTP/1.1, keep-alive, Content-Length 5");
    ok(H.head_len == strlen(req) - strlen("helloNEXT") &&
           memcmp(req + H.head_len, "helloNEXT", 9) == 0,
       "head_len ends at the empty line, the body follows it");
    ok(H.nfields == 3 && field_is("x-pad", "v a l") && field_is("HOST", "a"),
       "fields found in any case, value trimmed");

    int all = 1;
    size_t head = H.head_len;
    for (size_t i = 0; i < head; i++) {
        const char *why = NULL;
        if (esb_http_parse_head(req, i, &H, &why) != 1) all = 0;
    }
    ok(all, "every prefix of the head: 1 (need more)");

    ok(parse("\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\n\r\n") == 0 && H.head_len == 32 &&
           H.method_len == 4 && memcmp(H.method, "POST", 4) == 0,
       "leading empty lines skipped (and counted in head_len)");
    ok(parse("POST / HTTP/1.1\nHost: a\n\n") == 0 && H.keep_alive, "bare LF line ends");
    ok(parse("POST / HTTP/1.0\r\n\r\n") == 0 && !H.keep_alive && H.minor == 0,
       "HTTP/1.0: no Host needed, closes by default");
    ok(parse("POST / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == 0 && H.keep_alive,
       "HTTP/1.0 with Connection: keep-alive");
    ok(parse("POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") == 0 && !H.keep_alive,
       "Connection: close");
    ok(parse("POST / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n") == 0 && !H.keep_alive,
       "Connection: a list with close");
    ok(parse("POST / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n") == 0 && !H.keep_alive,
       "HTTP/1.0: keep-alive, close -> close");
    /* RFC 9112 section 9.3: "close" decides, wherever it stands. */
    ok(parse("POST / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n") == 0 && !H.keep_alive,
       "HTTP/1.0: close, keep-alive -> close");
    ok(parse("POST / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n") == 0 &&
           !H.keep_alive,
       "HTTP/1.0: Connection: close, then a Connection: keep-alive field -> close");
    ok(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n") == 0 &&
           H.chunked && !H.has_length,
       "Transfer-Encoding: chunked in any case");
    ok(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  CHUNKED \r\n\r\n") == 0 &&
           H.chunked,
       "Transfer-Encoding: CHUNKED with spaces around");
    ok(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n") == 0 &&
           H.length == 7,
       "two equal Content-Length");
    ok(parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n") == 0 &&
           H.expect_continue,
       "Expect: 100-continue");
    ok(parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n") == 0 && !H.expect_continue,
       "Expect: 100-continue ignored in HTTP/1.0");
    ok(parse("POST / HTTP/1.1\r\nHost: a\r\nA: 1\r\nA: 2\r\n\r\n") == 0 && field_is("a", "1"),
       "a repeated field: the first");
    ok(esb_http_field(&H, "Content-Length", NULL) == NULL, "an absent field: NULL");
    ok(parse("POST / HTTP/1.1\r\nHost: a\r\nEmpty:\r\n\r\n") == 0 && field_is("empty", ""),
       "an empty value");
}

static void errors(void)
{
    static const struct {
        const char *name, *req;
        int status;
    } cases[] = {
        {"Content-Length with Transfer-Encoding",
         "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         400},
        {"missing Host in 1.1", "POST / HTTP/1.1\r\n\r\n", 400},
        {"two Host", "POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"two different Content-Length",
         "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
        {"Transfer-Encoding gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
         501},
        {"Transfer-Encoding gzip, chunked",
         "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"Transfer-Encoding twice",
         "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n",
         400},
        {"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
         400},
        {"HTTP/2.0", "POST / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        {"a garbage version", "POST / HTTQ/1.1\r\nHost: a\r\n\r\n", 400},
        {"absolute-form target", "POST http://x/y HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"asterisk target", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"no spaces", "POST/HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"two spaces", "POST  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"space before the colon", "POST / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        {"obs-fold", "POST / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", 400},
        {"obs-fold with a tab", "POST / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n", 400},
        {"a space before the first field", "POST / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
        {"no colon", "POST / HTTP/1.1\r\nHost: a\r\nJunk\r\n\r\n", 400},
        {"a control byte in a value", "POST / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400},
        {"DEL in a value", "POST / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400},
        {"an empty field name", "POST / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400},
        {"a bare CR in a line", "POST / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n", 400},
        {"a bare CR in the request line", "POST /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"a bare CR line before the empty line", "POST / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n", 400},
        {"Expect: something else", "POST / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n", 417},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        status_is(cases[i].name, cases[i].req, cases[i].status);
    int v12 = parse("POST / HTTP/1.2\r\nHost: a\r\n\r\n");
    ok(v12 == 400 || v12 == 505, "HTTP/1.2: 400 or 505 (got %d)", v12);
    static const char *const bad_len[] = {"abc", "-5", "+5", "5, 5", "12345678901234567890", ""};
    for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
        char req[200];
        snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n",
                 bad_len[i]);
        char name[80];
        snprintf(name, sizeof(name), "Content-Length '%s'", bad_len[i]);
        status_is(name, req, 400);
    }
    static char many[8192];
    size_t o = (size_t)snprintf(many, sizeof(many), "POST / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < ESB_HTTP_MAX_FIELDS; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "F%d: v\r\n", i);
    snprintf(many + o, sizeof(many) - o, "\r\n");
    ok(parse(many) == 0 && H.nfields == ESB_HTTP_MAX_FIELDS, "exactly ESB_HTTP_MAX_FIELDS fields");
    o += (size_t)snprintf(many + o, sizeof(many) - o, "F0: v\r\n\r\n");
    status_is("one field more than ESB_HTTP_MAX_FIELDS", many, 431);

    const char *nul = "POST / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    const char *why = NULL;
    ok(esb_http_parse_head(nul, 36, &H, &why) == 400 && why && *why, "a NUL in a value: 400");
}

static void head_end(void)
{
    static const char *const reqs[] = {
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
        "POST / HTTP/1.1\nHost: a\n\n",
        "POST / HTTP/1.1\r\nHost: a\n\r\n",
    };
    for (size_t k = 0; k < sizeof(reqs) / sizeof(reqs[0]); k++) {
        const char *r = reqs[k];
        size_t n = strlen(r), scan = 0, at = 0;
        int early = 0;
        for (size_t i = 1; i <= n; i++) {
            size_t e = esb_http_head_end(r, i, &scan);
            if (e && i < n) early = 1;
            if (i == n) at = e;
        }
        ok(!early && at == n, "head end found exactly at the last byte, fed 1 byte at a time (%zu)",
           k);
        scan = 0;
        ok(esb_http_head_end(r, n, &scan) == n, "head end found fed whole (%zu)", k);
        int split_ok = 1;
        for (size_t cut = 1; cut < n; cut++) {
            scan = 0;
            if (esb_http_head_end(r, cut, &scan) != 0 || esb_http_head_end(r, n, &scan) != n)
                split_ok = 0;
        }
        ok(split_ok, "head end found in two calls split at every position (%zu)", k);
    }
}

/* ---- chunked ---- */

struct sink {
    char buf[4096];
    size_t len;
    int stop_after; /* stop when this many bytes came (0: never) */
};

static int sink_fn(void *ctx, const char *d, size_t n)
{
    struct sink *s = ctx;
    if (s->len + n > sizeof(s->buf)) return 1;
    memcpy(s->buf + s->len, d, n);
    s->len += n;
    return s->stop_after && s->len >= (size_t)s->stop_after;
}

static const char *why_last; /* the last decode_split's *why */

/* Decode in[0..n) in two calls split at cut. Returns the total consumed,
 * -1/-2 for errors, with *done. */
static ssize_t decode_split(const char *in, size_t n, size_t cut, struct sink *s, int *done)
{
    struct esb_http_chunked st;
    memset(&st, 0, sizeof(st));
    const char *why = NULL;
    why_last = NULL;
    ssize_t a = esb_http_chunked_decode(&st, in, cut, sink_fn, s, done, &why);
    why_last = why;
    if (a < 0 || *done) return a;
    ssize_t b = esb_http_chunked_decode(&st, in + cut, n - cut, sink_fn, s, done, &why);
    why_last = why;
    return b < 0 ? b : a + b;
}

static void chunked(void)
{
    const char body[] = "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
                        "0\r\nTrailer: x\r\n\r\n";
    const char *want = "Wikipedia in\r\n\r\nchunks.";
    char in[256];
    snprintf(in, sizeof(in), "%sPOST", body); /* a pipelined request follows */
    size_t n = strlen(in), blen = strlen(body);

    int all = 1;
    for (size_t cut = 0; cut <= n; cut++) {
        struct sink s = {.len = 0};
        int done = 0;
        ssize_t k = decode_split(in, n, cut, &s, &done);
        if (!(done && k == (ssize_t)blen && s.len == strlen(want) && !memcmp(s.buf, want, s.len)))
            all = 0;
    }
    ok(all, "chunked: split at every position, same body, ends before the next request");

    struct esb_http_chunked st;
    memset(&st, 0, sizeof(st));
    struct sink s = {.len = 0};
    int done = 0;
    size_t used = 0;
    const char *why = NULL;
    for (size_t i = 0; i < n && !done; i++) {
        ssize_t k = esb_http_chunked_decode(&st, in + i, 1, sink_fn, &s, &done, &why);
        if (k < 0) break;
        used += (size_t)k;
    }
    ok(done && used == blen && s.len == strlen(want) && !memcmp(s.buf, want, s.len),
       "chunked: fed one byte at a time");

    struct sink u = {.len = 0};
    done = 0;
    ok(decode_split("A\r\n0123456789\r\n0\r\n\r\n", 20, 20, &u, &done) == 20 && done && u.len == 10,
       "chunked: upper-case hex size");
    ok(decode_split("3\n123\n0\n\n", 9, 9, &u, &done) == 9 && done, "chunked: bare LF");

    static const struct {
        const char *name, *in;
    } bad[] = {
        {"no size digits", "\r\nabc\r\n0\r\n\r\n"},
        {"17 hex digits", "10000000000000000\r\n"},
        {"a non-hex size", "zz\r\n"},
        {"data longer than its size", "3\r\nabcd\r\n0\r\n\r\n"},
        {"a CR not followed by LF after the size", "3\rabc\r\n"},
        {"a bare CR in an extension", "3;a\rb\r\nabc\r\n0\r\n\r\n"},
        {"a CR not followed by LF after the data", "3\r\nabc\rx0\r\n\r\n"},
        {"a CR not followed by LF ending the trailer", "0\r\n\rX"},
        /* the header: "a bare CR is an error" (a lenient parser may end the
         * line there and see a different end of the trailer section) */
        {"a bare CR inside a trailer line", "0\r\nX: a\rb\r\n\r\n"},
        {"a trailer line ending in CR CR LF", "0\r\nX: a\r\r\n\r\n"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sink b = {.len = 0};
        done = 0;
        ok(decode_split(bad[i].in, strlen(bad[i].in), strlen(bad[i].in), &b, &done) == -1 &&
               why_last && *why_last,
           "chunked error: %s", bad[i].name);
    }
    static char big[12000];
    size_t o = (size_t)snprintf(big, sizeof(big), "0\r\n");
    while (o < 9000) o += (size_t)snprintf(big + o, sizeof(big) - o, "X-Trailer: yyyyyyyyyy\r\n");
    struct sink b = {.len = 0};
    ok(decode_split(big, o, o, &b, &done) == -1 && why_last && *why_last,
       "chunked error: trailer section over 8 KiB");
    o = (size_t)snprintf(big, sizeof(big), "1;");
    memset(big + o, 'e', 5000);
    memcpy(big + o + 5000, "\r\n", 2);
    ok(decode_split(big, o + 5002, o + 5002, &b, &done) == -1 && why_last && *why_last,
       "chunked error: extension over 4 KiB");
    memcpy(big + o + 100, "\r\nx\r\n0\r\n\r\n", 10);
    ok(decode_split(big, o + 110, o + 110, &b, &done) == (ssize_t)(o + 110) && done,
       "chunked: a 100-byte extension is fine");
    struct sink stop = {.len = 0, .stop_after = 2};
    ok(decode_split("5\r\nabcde\r\n0\r\n\r\n", 15, 15, &stop, &done) == -2,
       "chunked: the sink stops the decoder (-2)");
}

/* Mutated inputs (a fixed seed, bounded count): the parsers only ever
 * answer with their documented results (run under ASan+UBSan in CI). */
static void mutations(void)
{
    static const char req[] = "POST /a%20b HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n"
                              "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    static const char body[] = "5;x=y\r\nhello\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n";
    static const char bytes[] = "\r\n :;0aF\t\x01\x7f\x80Gz";
    uint32_t seed = 12345;
    int heads_ok = 1, chunks_ok = 1;
    for (int i = 0; i < 20000; i++) {
        char buf[sizeof(req) + sizeof(body)];
        int head = i % 2 == 0;
        size_t n = head ? sizeof(req) - 1 : sizeof(body) - 1;
        memcpy(buf, head ? req : body, n);
        for (int k = 0; k < 1 + i % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            buf[at] = bytes[(seed >> 8) % (sizeof(bytes) - 1)];
        }
        seed = seed * 1103515245u + 12345u;
        size_t len = (seed >> 8) % (n + 1);
        if (head) {
            const char *why = NULL;
            int rc = esb_http_parse_head(buf, len, &H, &why);
            if (!(rc == 0 || rc == 1 || rc == 400 || rc == 417 || rc == 431 || rc == 501 ||
                  rc == 505) ||
                (rc > 1 && !why) || (rc == 0 && H.head_len > len))
                heads_ok = 0;
        } else {
            struct sink s = {.len = 0};
            int done = 0;
            ssize_t k = decode_split(buf, len, len / 2, &s, &done);
            if (k < -1 || k > (ssize_t)len) chunks_ok = 0;
        }
    }
    ok(heads_ok, "10000 mutated heads: only documented results");
    ok(chunks_ok, "10000 mutated chunked bodies: only documented results");
}

static void reason_is(unsigned status, const char *want)
{
    const char *r = esb_http_reason(status);
    ok(r && strcmp(r, want) == 0, "reason phrase of %u: '%s'", status, want);
}

int main(void)
{
    heads();
    errors();
    head_end();
    chunked();
    mutations();
    reason_is(202, "Accepted");
    reason_is(413, "Content Too Large");
    reason_is(431, "Request Header Fields Too Large");
    reason_is(503, "Service Unavailable");
    reason_is(299, "");
    return tap_done();
}
