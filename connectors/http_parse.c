/* http_parse.c - HTTP/1.1 request head and chunked body decoding. See
 * http_parse.h for the rules. */
#include "config.h"

#include "http_parse.h"

#include <string.h>
#include <strings.h>

/* tchar of RFC 9110 section 5.6.2. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A field value byte: visible ASCII, SP, HTAB or obs-text. */
static int is_vbyte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int ieq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

size_t esb_http_head_end(const char *buf, size_t len, size_t *scan)
{
    size_t i = *scan;
    for (;;) {
        const char *lf = i < len ? memchr(buf + i, '\n', len - i) : NULL;
        if (!lf) {
            *scan = len;
            return 0;
        }
        i = (size_t)(lf - buf) + 1;
        if (i < len && buf[i] == '\n') return i + 1;
        if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n') return i + 2;
        if (i >= len || (buf[i] == '\r' && i + 1 >= len)) { /* decided by the next bytes */
            *scan = i - 1;
            return 0;
        }
    }
}

size_t esb_http_skip_empty(const char *buf, size_t len)
{
    size_t i = 0;
    for (;;) {
        if (i < len && buf[i] == '\n')
            i++;
        else if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n')
            i += 2;
        else
            return i; /* a lone CR is left to the parser: an error */
    }
}

/* The line at buf[*pos..end): its content without CR LF in *line and *n, *pos
 * after it. -1: a CR that does not end the line. */
static int next_line(const char *buf, size_t end, size_t *pos, const char **line, size_t *n)
{
    const char *s = buf + *pos;
    const char *lf = memchr(s, '\n', end - *pos);
    size_t k = lf ? (size_t)(lf - s) : end - *pos;
    *pos += lf ? k + 1 : k;
    if (k > 0 && s[k - 1] == '\r') k--;
    if (memchr(s, '\r', k)) return -1;
    *line = s;
    *n = k;
    return 0;
}

static int parse_request_line(const char *l, size_t n, struct esb_http_head *h, const char **why)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)l[i])) i++;
    if (i == 0 || i == n || l[i] != ' ') {
        *why = "malformed request line";
        return 400;
    }
    h->method = l;
    h->method_len = i;
    size_t t = ++i;
    while (i < n && (unsigned char)l[i] > 0x20 && (unsigned char)l[i] < 0x7f) i++;
    if (i == t || i == n || l[i] != ' ') {
        *why = "malformed request line";
        return 400;
    }
    if (l[t] != '/') {
        *why = "the request target must be a path (origin-form)";
        return 400;
    }
    h->target = l + t;
    h->target_len = i - t;
    const char *v = l + i + 1;
    size_t vn = n - i - 1;
    if (vn == 8 && memcmp(v, "HTTP/1.", 7) == 0 && (v[7] == '0' || v[7] == '1')) {
        h->minor = v[7] - '0';
        return 0;
    }
    if (vn == 8 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
        v[7] >= '0' && v[7] <= '9') {
        *why = "HTTP version not supported (HTTP/1.0 and HTTP/1.1 are)";
        return 505;
    }
    *why = "malformed request line";
    return 400;
}

static int parse_field(const char *l, size_t n, struct esb_http_head *h, const char **why)
{
    if (l[0] == ' ' || l[0] == '\t') {
        *why = "folded header field (obs-fold) not allowed";
        return 400;
    }
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)l[i])) i++;
    if (i == 0 || i == n || l[i] != ':') {
        *why = "malformed header field";
        return 400;
    }
    if (h->nfields == ESB_HTTP_MAX_FIELDS) {
        *why = "too many header fields";
        return 431;
    }
    struct esb_http_field *f = &h->fields[h->nfields++];
    f->name = l;
    f->name_len = i;
    size_t b = i + 1, e = n;
    while (b < e && (l[b] == ' ' || l[b] == '\t')) b++;
    while (e > b && (l[e - 1] == ' ' || l[e - 1] == '\t')) e--;
    for (size_t k = b; k < e; k++)
        if (!is_vbyte((unsigned char)l[k])) {
            *why = "control character in a header field value";
            return 400;
        }
    f->value = l + b;
    f->value_len = e - b;
    return 0;
}

/* Content-Length: digits only, no list, at most 19 digits. */
static int parse_length(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Connection: a comma-separated token list; close and keep-alive matter. */
static void parse_connection(const char *s, size_t n, int *close, int *keep)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ',')) i++;
        size_t b = i;
        while (i < n && s[i] != ',' && s[i] != ' ' && s[i] != '\t') i++;
        if (ieq(s + b, i - b, "close"))
            *close = 1;
        else if (ieq(s + b, i - b, "keep-alive"))
            *keep = 1;
    }
}

/* The framing fields, once every field is in h. */
static int framing(struct esb_http_head *h, const char **why)
{
    int hosts = 0, tes = 0, close = 0, keep = 0;
    for (size_t i = 0; i < h->nfields; i++) {
        const struct esb_http_field *f = &h->fields[i];
        if (ieq(f->name, f->name_len, "content-length")) {
            uint64_t v;
            if (parse_length(f->value, f->value_len, &v) != 0 ||
                (h->has_length && v != h->length)) {
                *why = "invalid Content-Length";
                return 400;
            }
            h->has_length = 1;
            h->length = v;
        } else if (ieq(f->name, f->name_len, "transfer-encoding")) {
            tes++;
            if (!ieq(f->value, f->value_len, "chunked")) {
                *why = "transfer coding not supported (only chunked is)";
                return 501;
            }
            h->chunked = 1;
        } else if (ieq(f->name, f->name_len, "host")) {
            hosts++;
        } else if (ieq(f->name, f->name_len, "connection")) {
            parse_connection(f->value, f->value_len, &close, &keep);
        } else if (ieq(f->name, f->name_len, "expect")) {
            if (!ieq(f->value, f->value_len, "100-continue")) {
                *why = "unsupported expectation (only 100-continue is)";
                return 417;
            }
            h->expect_continue = h->minor == 1;
        }
    }
    /* close wins over keep-alive, in any order and any field (RFC 9112 9.3) */
    h->keep_alive = !close && (h->minor == 1 || keep);
    if (tes > 1) {
        *why = "Transfer-Encoding given more than once";
        return 400;
    }
    if (h->chunked && h->has_length) {
        *why = "both Content-Length and Transfer-Encoding given";
        return 400;
    }
    if (h->chunked && h->minor == 0) {
        *why = "Transfer-Encoding in an HTTP/1.0 request";
        return 400;
    }
    if (hosts > 1 || (hosts == 0 && h->minor == 1)) {
        *why = hosts ? "Host given more than once" : "missing Host header";
        return 400;
    }
    return 0;
}

int esb_http_parse_head(const char *buf, size_t len, struct esb_http_head *h, const char **why)
{
    h->method = h->target = NULL;
    h->method_len = h->target_len = 0;
    h->minor = 0;
    h->nfields = 0;
    h->chunked = h->has_length = h->keep_alive = h->expect_continue = 0;
    h->length = 0;
    h->head_len = 0;
    size_t pos = esb_http_skip_empty(buf, len), scan = 0;
    size_t end = esb_http_head_end(buf + pos, len - pos, &scan);
    if (end == 0) return 1;
    end += pos;
    const char *l;
    size_t n;
    if (next_line(buf, end, &pos, &l, &n) != 0) {
        *why = "bare CR in the request line";
        return 400;
    }
    int rc = parse_request_line(l, n, h, why);
    if (rc) return rc;
    for (;;) {
        if (next_line(buf, end, &pos, &l, &n) != 0) {
            *why = "bare CR in a header field";
            return 400;
        }
        if (n == 0) break;
        if ((rc = parse_field(l, n, h, why)) != 0) return rc;
    }
    h->head_len = end;
    return framing(h, why);
}

const char *esb_http_field(const struct esb_http_head *h, const char *name, size_t *n)
{
    for (size_t i = 0; i < h->nfields; i++)
        if (ieq(h->fields[i].name, h->fields[i].name_len, name)) {
            if (n) *n = h->fields[i].value_len;
            return h->fields[i].value;
        }
    return NULL;
}

/* ---- chunked ---- */

enum {
    CH_SIZE,
    CH_SIZE_WS,
    CH_EXT,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER,
    CH_TRAILER_LINE,
    CH_TRAILER_LINE_LF,
    CH_TRAILER_LF,
};

#define CH_LINE_MAX    4096 /* a chunk-size line with its extensions */
#define CH_TRAILER_MAX 8192 /* the whole trailer section */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The chunk-size line ended. */
static void size_done(struct esb_http_chunked *st)
{
    st->state = st->left ? CH_DATA : CH_TRAILER;
    st->linelen = 0;
    st->digits = 0;
}

ssize_t esb_http_chunked_decode(struct esb_http_chunked *st, const char *in, size_t n,
                                esb_http_sink sink, void *ctx, int *done, const char **why)
{
    size_t i = 0;
    *done = 0;
    while (i < n) {
        unsigned char c = (unsigned char)in[i];
        switch (st->state) {
        case CH_SIZE: {
            int d = hexval(c);
            if (d >= 0) {
                if (st->digits == 16) goto bad_size;
                st->left = st->left * 16 + (uint64_t)d;
                st->digits++;
                i++;
                continue;
            }
            if (st->digits == 0) goto bad_size;
            st->state = CH_SIZE_WS; /* the rest of the line: this byte again there */
            continue;
        }
        case CH_SIZE_WS: /* BWS, then ';' or the line end */
            if ((c == ' ' || c == '\t') && ++st->linelen <= CH_LINE_MAX) {
                i++;
            } else if (c == ';') {
                st->state = CH_EXT;
            } else if (c == '\r') {
                st->state = CH_SIZE_LF;
                i++;
            } else if (c == '\n') {
                size_done(st);
                i++;
            } else {
                goto bad_size;
            }
            continue;
        case CH_EXT:
            if (c == '\r') {
                st->state = CH_SIZE_LF;
            } else if (c == '\n') {
                size_done(st);
            } else if ((c < 0x20 && c != '\t') || c == 0x7f || ++st->linelen > CH_LINE_MAX) {
                *why = "malformed chunk extension";
                return -1;
            }
            i++;
            continue;
        case CH_SIZE_LF:
            if (c != '\n') goto bad_size;
            size_done(st);
            i++;
            continue;
        case CH_DATA: {
            size_t k = n - i;
            if (k > st->left) k = (size_t)st->left;
            if (sink(ctx, in + i, k) != 0) return -2;
            st->left -= k;
            i += k;
            if (st->left == 0) st->state = CH_DATA_CR;
            continue;
        }
        case CH_DATA_CR:
            if (c == '\r') {
                st->state = CH_DATA_LF;
            } else if (c == '\n') {
                st->state = CH_SIZE;
            } else {
                *why = "chunk data longer than its size";
                return -1;
            }
            i++;
            continue;
        case CH_DATA_LF:
            if (c != '\n') {
                *why = "chunk data longer than its size";
                return -1;
            }
            st->state = CH_SIZE;
            i++;
            continue;
        case CH_TRAILER:
            i++;
            if (c == '\n') goto end;
            st->state = c == '\r' ? CH_TRAILER_LF : CH_TRAILER_LINE;
            if (++st->trailer > CH_TRAILER_MAX) goto bad_trailer;
            continue;
        case CH_TRAILER_LINE:
            i++;
            if (++st->trailer > CH_TRAILER_MAX) goto bad_trailer;
            if (c == '\n')
                st->state = CH_TRAILER;
            else if (c == '\r')
                st->state = CH_TRAILER_LINE_LF;
            continue;
        case CH_TRAILER_LINE_LF: /* a CR in a trailer line must end it */
            i++;
            if (c != '\n') goto bad_trailer;
            st->state = CH_TRAILER;
            continue;
        case CH_TRAILER_LF:
            i++;
            if (c == '\n') goto end;
            goto bad_trailer;
        }
    }
    return (ssize_t)i;
end:
    *done = 1;
    return (ssize_t)i;
bad_size:
    *why = "malformed chunk size";
    return -1;
bad_trailer:
    *why = "malformed or too large trailer section";
    return -1;
}

const char *esb_http_reason(unsigned status)
{
    static const struct {
        unsigned code;
        const char *text;
    } t[] = {
        {100, "Continue"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {203, "Non-Authoritative Information"},
        {204, "No Content"},
        {205, "Reset Content"},
        {206, "Partial Content"},
        {300, "Multiple Choices"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {402, "Payment Required"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {406, "Not Acceptable"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {411, "Length Required"},
        {412, "Precondition Failed"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {417, "Expectation Failed"},
        {422, "Unprocessable Content"},
        {425, "Too Early"},
        {426, "Upgrade Required"},
        {428, "Precondition Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {451, "Unavailable For Legal Reasons"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (t[i].code == status) return t[i].text;
    return "";
}
