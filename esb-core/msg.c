/* msg.c - messages: refcounted bodies and messages, ordered case-insensitive
 * headers, and the binary encoding stored in log records (see msg.h).
 *
 * Refcounts are atomics: taking a reference is relaxed, dropping one is
 * acq_rel so the thread that frees sees every write made before other
 * threads let go. Header setters copy their arguments before touching the
 * array, so a name or value borrowed from the same message stays valid.
 * The decoder treats its input as hostile: every length is checked against
 * the bytes left before it is used, and against the ESB_MSG_MAX_* limits. */
#include "config.h"

#include "msg.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MSG_VERSION 1

/* --- bodies --- */

struct esb_body *esb_body_alloc(size_t n)
{
    if (n > SIZE_MAX - sizeof(struct esb_body) - 1) {
        fprintf(stderr, "esb: body of %zu bytes cannot be allocated\n", n);
        abort();
    }
    struct esb_body *b = esb_malloc(sizeof(*b) + n + 1);
    atomic_init(&b->refs, 1);
    b->len = n;
    b->data[n] = '\0';
    return b;
}

struct esb_body *esb_body_new(const void *data, size_t n)
{
    struct esb_body *b = esb_body_alloc(n);
    if (n) memcpy(b->data, data, n);
    return b;
}

struct esb_body *esb_body_ref(struct esb_body *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void esb_body_unref(struct esb_body *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) free(b);
}

/* --- messages --- */

struct esb_msg *esb_msg_new(void)
{
    struct esb_msg *m = esb_calloc(1, sizeof(*m));
    atomic_init(&m->refs, 1);
    esb_uuid_v7(&m->id);
    esb_uuid_format(&m->id, m->id_text);
    m->content_type = esb_strdup("");
    m->body = esb_body_alloc(0);
    return m;
}

struct esb_msg *esb_msg_ref(struct esb_msg *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

static void free_headers(struct esb_msg *m)
{
    for (size_t i = 0; i < m->nheaders; i++) {
        free(m->headers[i].name);
        free(m->headers[i].value);
    }
    free(m->headers);
    m->headers = NULL;
    m->nheaders = m->cap_headers = 0;
}

void esb_msg_unref(struct esb_msg *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1) return;
    free_headers(m);
    free(m->content_type);
    esb_body_unref(m->body);
    free(m);
}

struct esb_msg *esb_msg_clone(const struct esb_msg *m)
{
    struct esb_msg *c = esb_calloc(1, sizeof(*c));
    atomic_init(&c->refs, 1);
    c->id = m->id;
    memcpy(c->id_text, m->id_text, sizeof(c->id_text));
    c->content_type = esb_strdup(m->content_type);
    if (m->nheaders) {
        c->headers = esb_malloc(m->nheaders * sizeof(*c->headers));
        for (size_t i = 0; i < m->nheaders; i++) {
            c->headers[i].name = esb_strdup(m->headers[i].name);
            c->headers[i].value = esb_strdup(m->headers[i].value);
        }
        c->nheaders = c->cap_headers = m->nheaders;
    }
    c->body = esb_body_ref(m->body);
    return c;
}

void esb_msg_set_body_take(struct esb_msg *m, struct esb_body *b)
{
    struct esb_body *old = m->body;
    m->body = b ? b : esb_body_alloc(0);
    esb_body_unref(old); /* after the swap: b may be old itself */
}

void esb_msg_set_body(struct esb_msg *m, const void *data, size_t n)
{
    esb_msg_set_body_take(m, esb_body_new(data, n));
}

void esb_msg_set_content_type(struct esb_msg *m, const char *ct)
{
    char *copy = esb_strdup(ct ? ct : "");
    free(m->content_type);
    m->content_type = copy;
}

/* --- headers --- */

/* ASCII case-insensitive equality (locale-independent, unlike strcasecmp). */
static int name_eq(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
        if (x != y) return 0;
        if (!x) return 1;
    }
}

static void append_owned(struct esb_msg *m, char *name, char *value)
{
    if (m->nheaders == m->cap_headers) {
        m->cap_headers = m->cap_headers ? m->cap_headers * 2 : 8;
        m->headers = esb_realloc(m->headers, m->cap_headers * sizeof(*m->headers));
    }
    m->headers[m->nheaders].name = name;
    m->headers[m->nheaders].value = value;
    m->nheaders++;
}

/* Remove every header named name at index >= from; returns how many.
 * name must not point into the message (callers pass a copy). */
static size_t remove_from(struct esb_msg *m, const char *name, size_t from)
{
    size_t w = from;
    for (size_t r = from; r < m->nheaders; r++) {
        if (name_eq(m->headers[r].name, name)) {
            free(m->headers[r].name);
            free(m->headers[r].value);
        } else {
            m->headers[w++] = m->headers[r];
        }
    }
    size_t removed = m->nheaders - w;
    m->nheaders = w;
    return removed;
}

const char *esb_msg_header(const struct esb_msg *m, const char *name)
{
    for (size_t i = 0; i < m->nheaders; i++)
        if (name_eq(m->headers[i].name, name)) return m->headers[i].value;
    return NULL;
}

void esb_msg_set_header(struct esb_msg *m, const char *name, const char *value)
{
    char *n = esb_strdup(name), *v = esb_strdup(value);
    for (size_t i = 0; i < m->nheaders; i++) {
        if (!name_eq(m->headers[i].name, n)) continue;
        /* replace in place, taking the caller's spelling of the name */
        free(m->headers[i].name);
        free(m->headers[i].value);
        m->headers[i].name = n;
        m->headers[i].value = v;
        remove_from(m, n, i + 1);
        return;
    }
    append_owned(m, n, v);
}

void esb_msg_add_header(struct esb_msg *m, const char *name, const char *value)
{
    append_owned(m, esb_strdup(name), esb_strdup(value));
}

size_t esb_msg_remove_header(struct esb_msg *m, const char *name)
{
    char *n = esb_strdup(name);
    size_t removed = remove_from(m, n, 0);
    free(n);
    return removed;
}

/* --- encoding --- */

size_t esb_msg_encoded_size(const struct esb_msg *m)
{
    size_t n = 1 + 16 + 2 + strlen(m->content_type) + 2;
    for (size_t i = 0; i < m->nheaders; i++)
        n += 2 + strlen(m->headers[i].name) + 4 + strlen(m->headers[i].value);
    return n + 4 + m->body->len;
}

size_t esb_msg_encode(const struct esb_msg *m, uint8_t *out)
{
    uint8_t *p = out;
    size_t len;

    *p++ = MSG_VERSION;
    memcpy(p, m->id.b, 16);
    p += 16;
    len = strlen(m->content_type);
    esb_put_u16(p, (uint16_t)len);
    memcpy(p + 2, m->content_type, len);
    p += 2 + len;
    esb_put_u16(p, (uint16_t)m->nheaders);
    p += 2;
    for (size_t i = 0; i < m->nheaders; i++) {
        len = strlen(m->headers[i].name);
        esb_put_u16(p, (uint16_t)len);
        memcpy(p + 2, m->headers[i].name, len);
        p += 2 + len;
        len = strlen(m->headers[i].value);
        esb_put_u32(p, (uint32_t)len);
        memcpy(p + 4, m->headers[i].value, len);
        p += 4 + len;
    }
    esb_put_u32(p, (uint32_t)m->body->len);
    if (m->body->len) memcpy(p + 4, m->body->data, m->body->len);
    p += 4 + m->body->len;
    return (size_t)(p - out);
}

/* A bounds-checked reader over the input being decoded. */
struct rd {
    const uint8_t *p;
    size_t n, off;
    struct esb_err *err;
};

static int need(struct rd *r, size_t k, const char *what)
{
    if (r->n - r->off >= k) return 0;
    return esb_err_set(r->err, ESB_ECORRUPT,
                       "message truncated: %s needs %zu bytes at offset %zu, %zu left", what, k,
                       r->off, r->n - r->off);
}

/* Read a length-prefixed string of at most max bytes into a new C string. */
static int read_str(struct rd *r, size_t width, size_t max, const char *what, char **out)
{
    size_t len;
    if (need(r, width, what)) return ESB_ECORRUPT;
    len = width == 2 ? esb_get_u16(r->p + r->off) : esb_get_u32(r->p + r->off);
    if (len > max)
        return esb_err_set(r->err, ESB_ECORRUPT, "%s length %zu exceeds the limit of %zu", what,
                           len, max);
    r->off += width;
    if (need(r, len, what)) return ESB_ECORRUPT;
    if (memchr(r->p + r->off, '\0', len))
        return esb_err_set(r->err, ESB_ECORRUPT, "%s at offset %zu contains a NUL byte", what,
                           r->off);
    *out = esb_strndup((const char *)r->p + r->off, len);
    r->off += len;
    return 0;
}

struct esb_msg *esb_msg_decode(const uint8_t *p, size_t n, struct esb_err *err)
{
    struct rd r = {p, n, 0, err};
    struct esb_msg *m = NULL;
    char what[64];

    if (need(&r, 1 + 16, "version and id")) return NULL;
    if (p[0] != MSG_VERSION) {
        esb_err_set(err, ESB_ECORRUPT, "unsupported message encoding version %u (expected %d)",
                    p[0], MSG_VERSION);
        return NULL;
    }
    m = esb_calloc(1, sizeof(*m));
    atomic_init(&m->refs, 1);
    memcpy(m->id.b, p + 1, 16);
    esb_uuid_format(&m->id, m->id_text);
    r.off = 17;

    if (read_str(&r, 2, ESB_MSG_MAX_NAME, "content type", &m->content_type)) goto fail;

    if (need(&r, 2, "header count")) goto fail;
    size_t count = esb_get_u16(p + r.off);
    r.off += 2;
    if (count > ESB_MSG_MAX_HEADERS) {
        esb_err_set(err, ESB_ECORRUPT, "header count %zu exceeds the limit of %d", count,
                    ESB_MSG_MAX_HEADERS);
        goto fail;
    }
    /* each header takes at least 6 bytes: refuse before allocating for them */
    if (need(&r, count * 6, "header table")) goto fail;
    if (count) {
        m->headers = esb_calloc(count, sizeof(*m->headers));
        m->cap_headers = count;
    }
    for (size_t i = 0; i < count; i++) {
        char *name = NULL, *value = NULL;
        snprintf(what, sizeof(what), "header %zu name", i);
        if (read_str(&r, 2, ESB_MSG_MAX_NAME, what, &name)) goto fail;
        snprintf(what, sizeof(what), "header %zu value", i);
        if (read_str(&r, 4, ESB_MSG_MAX_VALUE, what, &value)) {
            free(name);
            goto fail;
        }
        m->headers[i].name = name;
        m->headers[i].value = value;
        m->nheaders++;
    }

    if (need(&r, 4, "body length")) goto fail;
    size_t blen = esb_get_u32(p + r.off);
    r.off += 4;
    if (need(&r, blen, "body")) goto fail;
    m->body = esb_body_new(p + r.off, blen);
    r.off += blen;
    if (r.off != n) {
        esb_err_set(err, ESB_ECORRUPT, "message has %zu trailing bytes after the body", n - r.off);
        goto fail;
    }
    return m;

fail:
    esb_msg_unref(m); /* copes with the fields not yet filled in */
    return NULL;
}
