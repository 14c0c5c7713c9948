/* bus_tries.c - the attempt history the bus keeps with each entry: the
 * "tries block" codec shared by RETRY, DEAD and MSG (relocation) records
 * and by the in-memory entry, which keeps its history as one such block.
 *
 * A block: u8 n, then n items, oldest first, n <= ESB_BUS_TRIES_MAX:
 *   u64 at_ms | u8 len | class (<= ESB_TRY_CLASS_MAX) | u16 len | text
 *   (<= ESB_TRY_TEXT_MAX)
 * Callers hold the bus lock where they touch an entry; nothing here locks. */
#include "config.h"

#include <stdlib.h>

#include "bus_internal.h"

/* n bytes of s cut back to a UTF-8 character boundary, at most max. */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n <= max) return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    return n;
}

void esb_try_set(struct esb_try *t, uint64_t at_ms, const char *cls, const char *text)
{
    t->at_ms = at_ms;
    size_t n = utf8_cut(cls ? cls : "", ESB_TRY_CLASS_MAX);
    memcpy(t->cls, cls ? cls : "", n);
    t->cls[n] = '\0';
    n = utf8_cut(text ? text : "", ESB_TRY_TEXT_MAX);
    memcpy(t->text, text ? text : "", n);
    t->text[n] = '\0';
}

static void put(struct esb_buf *b, const void *p, size_t n)
{
    if (esb_buf_add(b, p, n) != 0) abort();
}

static void put_item(struct esb_buf *b, const struct esb_try *t)
{
    uint8_t x[8];
    esb_put_u64(x, t->at_ms);
    put(b, x, 8);
    size_t n = utf8_cut(t->cls, ESB_TRY_CLASS_MAX);
    x[0] = (uint8_t)n;
    put(b, x, 1);
    put(b, t->cls, n);
    n = utf8_cut(t->text, ESB_TRY_TEXT_MAX);
    esb_put_u16(x, (uint16_t)n);
    put(b, x, 2);
    put(b, t->text, n);
}

void esb__tries_put_one(struct esb_buf *b, const struct esb_try *failed)
{
    uint8_t n = failed ? 1 : 0;
    put(b, &n, 1);
    if (failed) put_item(b, failed);
}

/* Length of the valid item at p, or 0. */
static size_t item_len(const uint8_t *p, size_t avail)
{
    if (avail < 9 || p[8] > ESB_TRY_CLASS_MAX || avail < 9 + (size_t)p[8] + 2) return 0;
    size_t off = 9 + (size_t)p[8];
    uint16_t tl = esb_get_u16(p + off);
    off += 2;
    if (tl > ESB_TRY_TEXT_MAX || avail - off < tl) return 0;
    return off + tl;
}

size_t esb__tries_len(const uint8_t *p, size_t avail)
{
    if (avail < 1 || p[0] > ESB_BUS_TRIES_MAX) return 0;
    size_t off = 1;
    for (unsigned i = 0; i < p[0]; i++) {
        size_t n = item_len(p + off, avail - off);
        if (!n) return 0;
        off += n;
    }
    return off;
}

void esb__tries_put(struct esb_buf *b, const uint8_t *blk)
{
    static const uint8_t none = 0;
    if (!blk) blk = &none;
    put(b, blk, esb__tries_len(blk, SIZE_MAX));
}

void esb__tries_add(uint8_t **blk, const uint8_t *add, size_t len)
{
    unsigned have = *blk ? (*blk)[0] : 0, more = add[0];
    if (more == 0) return;
    size_t old_len = *blk ? esb__tries_len(*blk, SIZE_MAX) : 1;
    /* Drop the oldest items beyond ESB_BUS_TRIES_MAX. */
    size_t skip = 1;
    unsigned keep = have;
    while (keep + more > ESB_BUS_TRIES_MAX && keep > 0) {
        skip += item_len(*blk + skip, SIZE_MAX);
        keep--;
    }
    const uint8_t *add_items = add + 1;
    size_t add_len = len - 1;
    while (keep + more > ESB_BUS_TRIES_MAX) { /* more than the max added at once */
        size_t n = item_len(add_items, add_len);
        add_items += n;
        add_len -= n;
        more--;
    }
    size_t kept = old_len - skip;
    uint8_t *nb = esb_malloc(1 + kept + add_len);
    nb[0] = (uint8_t)(keep + more);
    if (kept) memcpy(nb + 1, *blk + skip, kept);
    memcpy(nb + 1 + kept, add_items, add_len);
    free(*blk);
    *blk = nb;
}

struct esb_try *esb__tries_decode(const uint8_t *blk, uint32_t *n)
{
    *n = 0;
    if (!blk || blk[0] == 0) return NULL;
    struct esb_try *v = esb_calloc(blk[0], sizeof(*v));
    size_t off = 1;
    for (unsigned i = 0; i < blk[0]; i++) {
        const uint8_t *p = blk + off;
        struct esb_try *t = &v[i];
        t->at_ms = esb_get_u64(p);
        memcpy(t->cls, p + 9, p[8]);
        t->cls[p[8]] = '\0';
        size_t toff = 9 + (size_t)p[8];
        uint16_t tl = esb_get_u16(p + toff);
        memcpy(t->text, p + toff + 2, tl);
        t->text[tl] = '\0';
        off += toff + 2 + tl;
    }
    *n = blk[0];
    return v;
}
