/* http_parse.h - HTTP/1.1 request framing (RFC 9112) for http-in's server:
 * the request head (request line and header fields) and the chunked
 * transfer coding. Pure functions over caller buffers: no allocation, no
 * I/O, nothing kept between calls but the caller's state structs.
 *
 * Strict where laxness lets two parties frame a request differently
 * (request smuggling): a field name must be a token followed directly by
 * ':', no obs-fold, no control characters in values, exactly one
 * Content-Length value (repeats must agree), never Content-Length together
 * with Transfer-Encoding, and "chunked" as the only transfer coding. A bare
 * LF ends a line as CRLF does (RFC 9112 section 2.2); a bare CR is an
 * error. */
#ifndef ESB_HTTP_PARSE_H
#define ESB_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Most header fields in one request head (more: 431). */
#define ESB_HTTP_MAX_FIELDS 100

struct esb_http_field {
    const char *name; /* points into the parsed buffer; not NUL-terminated */
    size_t name_len;
    const char *value; /* without leading and trailing whitespace */
    size_t value_len;
};

struct esb_http_head {
    const char *method;
    size_t method_len;
    const char *target; /* origin-form: starts with '/' */
    size_t target_len;
    int minor; /* HTTP/1.<minor>: 0 or 1 */
    struct esb_http_field fields[ESB_HTTP_MAX_FIELDS];
    size_t nfields;
    /* Framing, from the fields. */
    int chunked;    /* Transfer-Encoding: chunked */
    int has_length; /* Content-Length given (then length is its value) */
    uint64_t length;
    int keep_alive;      /* the connection may carry another request after this one */
    int expect_continue; /* Expect: 100-continue */
    size_t head_len;     /* bytes from the buffer's start up to and with the empty line */
};

/* Leading empty lines of buf (CR LF or LF; a client may send them before a
 * request line): the bytes to skip. A lone CR is not skipped. */
size_t esb_http_skip_empty(const char *buf, size_t len);

/* Where the head that starts at buf ends: the length up to and with its
 * empty line, or 0 when it is not complete yet. *scan (0 at first) keeps
 * the search's place between calls as buf grows. */
size_t esb_http_head_end(const char *buf, size_t len, size_t *scan);

/* Parse the head at the start of buf[0..len). Returns 0 when it is
 * complete (h filled; its pointers point into buf), 1 when more bytes are
 * needed, or the HTTP status to answer (400, 417, 431, 501, 505) with *why
 * set to a short reason. Empty lines before the request line are skipped. */
int esb_http_parse_head(const char *buf, size_t len, struct esb_http_head *h, const char **why);

/* The field named name (any case) of h, or NULL; *n gets its length. A
 * name given more than once: the first. */
const char *esb_http_field(const struct esb_http_head *h, const char *name, size_t *n);

/* Chunked transfer coding decoder state; zero it before a body. */
struct esb_http_chunked {
    int state;
    uint64_t left;  /* bytes left in the current chunk */
    size_t linelen; /* bytes of the current size/extension or trailer line */
    size_t trailer; /* trailer section bytes so far */
    int digits;     /* hex digits of the current size */
};

/* The body bytes decoded: 0 to go on, non-zero to stop (the decoder then
 * returns -2). */
typedef int (*esb_http_sink)(void *ctx, const char *data, size_t n);

/* Decode in[0..n) of a chunked body, handing the data to sink. Returns the
 * bytes of in consumed (all of them unless the body ended inside in: then
 * *done is set and the rest belongs to the next request), -1 on a framing
 * error (*why set), -2 when sink asked to stop. */
ssize_t esb_http_chunked_decode(struct esb_http_chunked *st, const char *in, size_t n,
                                esb_http_sink sink, void *ctx, int *done, const char **why);

/* The reason phrase of an HTTP status ("" for one we do not use). */
const char *esb_http_reason(unsigned status);

#endif
