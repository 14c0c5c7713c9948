/* conf_attr.c - declarative attribute tables: value parsers (sizes,
 * durations, booleans, listen addresses), filling a struct from an
 * element's attributes with defaults and range checks, and the markdown
 * reference of a table. See conf_attr.h.
 *
 * Error messages follow one shape so users learn to read them:
 *   FILE:LINE: element <bus>: attribute 'max-disk': not a size (got '10X'; expected ...)
 * On failure esb_attrs_parse frees the strings it stored, so the caller may
 * call esb_attrs_free or not. */
#include "config.h"

#include "conf_attr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/tree.h>

/* Longest attribute value quoted back in an error message. */
#define QUOTE_MAX 60
/* Decimal places accepted in "1.5s" / "1.25GB". */
#define FRAC_DIGITS_MAX 6

/* ---- value parsers ---- */

struct unit {
    const char *name;
    uint64_t mult;
};

static const struct unit size_units[] = {
    {"", 1},
    {"B", 1},
    {"KB", 1024ull},
    {"KiB", 1024ull},
    {"MB", 1024ull * 1024},
    {"MiB", 1024ull * 1024},
    {"GB", 1024ull * 1024 * 1024},
    {"GiB", 1024ull * 1024 * 1024},
    {"TB", 1024ull * 1024 * 1024 * 1024},
    {"TiB", 1024ull * 1024 * 1024 * 1024},
};

static const struct unit duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};

/* Parse "DIGITS[.DIGITS]UNIT": a whole number of base units (bytes or ms),
 * overflow checked; a fraction must come out whole ("1.5KB" ok, "1.5B" not).
 * Units compare case-insensitively when ci is set. */
static int parse_scaled(const char *s, const struct unit *units, size_t nunits, int ci,
                        uint64_t *out)
{
    const char *p = s;
    uint64_t whole = 0, frac = 0, frac_den = 1;

    if (!s || *p < '0' || *p > '9') return ESB_EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (whole > (UINT64_MAX - d) / 10) return ESB_EINVAL;
        whole = whole * 10 + d;
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') return ESB_EINVAL;
        for (int n = 0; *p >= '0' && *p <= '9'; p++, n++) {
            if (n == FRAC_DIGITS_MAX) return ESB_EINVAL;
            frac = frac * 10 + (uint64_t)(*p - '0');
            frac_den *= 10;
        }
    }
    for (size_t i = 0; i < nunits; i++) {
        if (ci ? strcasecmp(p, units[i].name) != 0 : strcmp(p, units[i].name) != 0) continue;
        uint64_t m = units[i].mult;
        if (whole > UINT64_MAX / m) return ESB_EINVAL;
        uint64_t v = whole * m;
        /* frac < 10^6 and m <= 2^40: the product fits in 64 bits. */
        uint64_t f = frac * m;
        if (f % frac_den != 0) return ESB_EINVAL; /* not a whole byte/ms */
        f /= frac_den;
        if (v > UINT64_MAX - f) return ESB_EINVAL;
        *out = v + f;
        return 0;
    }
    return ESB_EINVAL;
}

int esb_parse_size(const char *s, uint64_t *out)
{
    return parse_scaled(s, size_units, ESB_ARRAY_LEN(size_units), 1, out);
}

int esb_parse_duration_ms(const char *s, uint64_t *out)
{
    return parse_scaled(s, duration_units, ESB_ARRAY_LEN(duration_units), 0, out);
}

int esb_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "1"}, *const no[] = {"false", "no", "0"};
    if (!s) return ESB_EINVAL;
    for (size_t i = 0; i < ESB_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return ESB_EINVAL;
}

static int parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s) return ESB_EINVAL;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return ESB_EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return ESB_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int esb_parse_listen(const char *s, char **host, unsigned *port)
{
    const char *colon, *hs, *he;
    uint64_t p;
    char buf[64];
    unsigned char addr[16];

    if (!s) return ESB_EINVAL;
    if (s[0] == '[') {
        hs = s + 1;
        he = strchr(hs, ']');
        if (!he || he[1] != ':') return ESB_EINVAL;
        colon = he + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return ESB_EINVAL;
        hs = s;
        he = colon;
    }
    size_t hlen = (size_t)(he - hs);
    if (hlen == 0 || hlen >= sizeof(buf)) return ESB_EINVAL;
    if (parse_uint(colon + 1, &p) < 0 || p < 1 || p > 65535) return ESB_EINVAL;
    memcpy(buf, hs, hlen);
    buf[hlen] = '\0';
    if (s[0] == '[') {
        if (inet_pton(AF_INET6, buf, addr) != 1) return ESB_EINVAL;
    } else if (strcmp(buf, "localhost") != 0 && inet_pton(AF_INET, buf, addr) != 1) {
        return ESB_EINVAL; /* also a bare IPv6 address: it needs [brackets] */
    }
    if (host) *host = esb_strdup(buf);
    if (port) *port = (unsigned)p;
    return 0;
}

/* ---- human-readable sizes and durations (messages and docs) ---- */

static void fmt_size(uint64_t v, char *buf, size_t n)
{
    static const char *const names[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (u < 4 && v && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    snprintf(buf, n, "%" PRIu64 "%s", v, v == 0 ? "" : names[u]);
}

static void fmt_duration(uint64_t v, char *buf, size_t n)
{
    static const struct unit u[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < ESB_ARRAY_LEN(u); i++) {
        if (v && v % u[i].mult == 0) {
            snprintf(buf, n, "%" PRIu64 "%s", v / u[i].mult, u[i].name);
            return;
        }
    }
    snprintf(buf, n, "%" PRIu64 "%s", v, v ? "ms" : "");
}

static void fmt_num(enum esb_attr_type t, uint64_t v, char *buf, size_t n)
{
    if (t == ESB_ATTR_SIZE)
        fmt_size(v, buf, n);
    else if (t == ESB_ATTR_DURATION)
        fmt_duration(v, buf, n);
    else
        snprintf(buf, n, "%" PRIu64, v);
}

/* "MIN..MAX", "at least MIN", or "" when unbounded. */
static void fmt_range(const struct esb_attr_spec *sp, char *buf, size_t n)
{
    char lo[32], hi[32];
    fmt_num(sp->type, sp->min, lo, sizeof(lo));
    fmt_num(sp->type, sp->max, hi, sizeof(hi));
    if (sp->max)
        snprintf(buf, n, "%s..%s", lo, hi);
    else if (sp->min)
        snprintf(buf, n, "at least %s", lo);
    else
        buf[0] = '\0';
}

/* "a, b, c" from a NULL-terminated list, with an optional quote around each. */
static void fmt_list(const char *const *v, const char *q, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; v && v[i] && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s%s%s", i ? ", " : "", q, v[i], q);
        if (w < 0) break;
        used += (size_t)w;
    }
}

static const char *type_name(enum esb_attr_type t)
{
    switch (t) {
    case ESB_ATTR_STRING:
        return "string";
    case ESB_ATTR_BOOL:
        return "bool";
    case ESB_ATTR_UINT:
        return "integer";
    case ESB_ATTR_SIZE:
        return "size";
    case ESB_ATTR_DURATION:
        return "duration";
    case ESB_ATTR_ENUM:
        return "enum";
    case ESB_ATTR_LISTEN:
        return "host:port";
    case ESB_ATTR_DOUBLE:
        return "number";
    }
    return "?";
}

/* What a valid value looks like, for "(got ...; expected ...)". */
static void fmt_expected(const struct esb_attr_spec *sp, char *buf, size_t n)
{
    char r[160];
    switch (sp->type) {
    case ESB_ATTR_BOOL:
        snprintf(buf, n, "true or false");
        return;
    case ESB_ATTR_UINT:
        fmt_range(sp, r, sizeof(r));
        snprintf(buf, n, "a whole number%s%s", r[0] ? " in " : "", r);
        return;
    case ESB_ATTR_SIZE:
        fmt_range(sp, r, sizeof(r));
        snprintf(buf, n, "a size like 4096, 512KB, 10MB, 1GB%s%s", r[0] ? "; range " : "", r);
        return;
    case ESB_ATTR_DURATION:
        fmt_range(sp, r, sizeof(r));
        snprintf(buf, n, "a duration like 500ms, 5s, 2m, 1h, 1d%s%s", r[0] ? "; range " : "", r);
        return;
    case ESB_ATTR_ENUM:
        fmt_list(sp->values, "", r, sizeof(r));
        snprintf(buf, n, "one of %s", r);
        return;
    case ESB_ATTR_LISTEN:
        snprintf(buf, n, "IP:PORT, [IPv6]:PORT or localhost:PORT, port 1..65535");
        return;
    case ESB_ATTR_DOUBLE:
        fmt_range(sp, r, sizeof(r));
        snprintf(buf, n, "a number%s%s", r[0] ? " in " : "", r);
        return;
    case ESB_ATTR_STRING:
        break;
    }
    snprintf(buf, n, "text");
}

/* ---- filling a struct ---- */

static char **str_slot(const struct esb_attr_spec *sp, void *out)
{
    return (char **)(void *)((char *)out + sp->offset);
}

static int owns_string(const struct esb_attr_spec *sp)
{
    return sp->type == ESB_ATTR_STRING || sp->type == ESB_ATTR_LISTEN;
}

/* Store v into out per sp. Returns 0, or ESB_EINVAL with what in *why. */
static int store(const struct esb_attr_spec *sp, const char *v, void *out, const char **why)
{
    char *base = (char *)out + sp->offset;
    uint64_t u = 0;
    int b;

    *why = NULL;
    switch (sp->type) {
    case ESB_ATTR_STRING:
    case ESB_ATTR_LISTEN:
        if (sp->type == ESB_ATTR_LISTEN && esb_parse_listen(v, NULL, NULL) < 0) {
            *why = "not a listen address";
            return ESB_EINVAL;
        }
        free(*str_slot(sp, out));
        *str_slot(sp, out) = esb_strdup(v);
        return 0;
    case ESB_ATTR_BOOL:
        if (esb_parse_bool(v, &b) < 0) {
            *why = "not a boolean";
            return ESB_EINVAL;
        }
        memcpy(base, &b, sizeof(b));
        return 0;
    case ESB_ATTR_ENUM:
        for (int i = 0; sp->values && sp->values[i]; i++) {
            if (strcmp(v, sp->values[i]) == 0) {
                memcpy(base, &i, sizeof(i));
                return 0;
            }
        }
        *why = "unknown value";
        return ESB_EINVAL;
    case ESB_ATTR_DOUBLE: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(d)) {
            *why = "not a number";
            return ESB_EINVAL;
        }
        if ((sp->min || sp->max) && (d < (double)sp->min || (sp->max && d > (double)sp->max))) {
            *why = "out of range";
            return ESB_EINVAL;
        }
        memcpy(base, &d, sizeof(d));
        return 0;
    }
    case ESB_ATTR_UINT:
    case ESB_ATTR_SIZE:
    case ESB_ATTR_DURATION: {
        int rc = sp->type == ESB_ATTR_UINT   ? parse_uint(v, &u)
                 : sp->type == ESB_ATTR_SIZE ? esb_parse_size(v, &u)
                                             : esb_parse_duration_ms(v, &u);
        if (rc < 0) {
            *why = sp->type == ESB_ATTR_UINT   ? "not a whole number (or too large)"
                   : sp->type == ESB_ATTR_SIZE ? "not a size (or too large)"
                                               : "not a duration (or too large)";
            return ESB_EINVAL;
        }
        if (u < sp->min || (sp->max && u > sp->max)) {
            *why = "out of range";
            return ESB_EINVAL;
        }
        memcpy(base, &u, sizeof(u));
        return 0;
    }
    }
    *why = "unsupported attribute type";
    return ESB_EINVAL;
}

/* Quote v for a message, cut at QUOTE_MAX bytes. */
static void quote(const char *v, char *buf, size_t n)
{
    size_t len = strlen(v);
    if (len > QUOTE_MAX)
        snprintf(buf, n, "%.*s...", QUOTE_MAX, v);
    else
        snprintf(buf, n, "%s", v);
}

static int node_line(xmlNode *node)
{
    long l = xmlGetLineNo(node);
    return l > 0 && l < INT32_MAX ? (int)l : 0;
}

int esb_attrs_parse(const struct esb_attr_spec *specs, struct _xmlNode *node, const char *file,
                    void *out, struct esb_err *err)
{
    const char *elem = node && node->name ? (const char *)node->name : "?";
    const char *why;
    int line = node_line(node), rc = 0;
    char got[QUOTE_MAX + 4], exp[224];
    const struct esb_attr_spec *sp;

    file = file ? file : "?";
    /* Defaults first. A bad default is a bug in the table: say so. */
    for (sp = specs; sp->name; sp++) {
        if (!sp->def) continue;
        if (store(sp, sp->def, out, &why) < 0) {
            rc = esb_err_set(err, ESB_EINVAL,
                             "%s:%d: element <%s>: attribute '%s': built-in default '%s' is "
                             "invalid: %s",
                             file, line, elem, sp->name, sp->def, why);
            goto out;
        }
    }
    for (xmlAttr *a = node->properties; a; a = a->next) {
        const char *name = (const char *)a->name;
        for (sp = specs; sp->name; sp++)
            if (!a->ns && strcmp(sp->name, name) == 0) break;
        if (!sp->name) {
            char names[160];
            size_t used = 0;
            names[0] = '\0';
            for (const struct esb_attr_spec *s2 = specs; s2->name && used < sizeof(names); s2++) {
                int w = snprintf(names + used, sizeof(names) - used, "%s%s",
                                 s2 == specs ? "" : ", ", s2->name);
                if (w < 0) break;
                used += (size_t)w;
            }
            rc = esb_err_set(err, ESB_EINVAL,
                             "%s:%d: element <%s>: attribute '%s%s%s': unknown attribute "
                             "(expected one of: %s)",
                             file, line, elem, a->ns && a->ns->prefix ? (char *)a->ns->prefix : "",
                             a->ns && a->ns->prefix ? ":" : "", name, names[0] ? names : "none");
            goto out;
        }
        xmlChar *v = xmlNodeListGetString(node->doc, a->children, 1);
        const char *value = v ? (const char *)v : "";
        if (store(sp, value, out, &why) < 0) {
            quote(value, got, sizeof(got));
            fmt_expected(sp, exp, sizeof(exp));
            rc = esb_err_set(err, ESB_EINVAL,
                             "%s:%d: element <%s>: attribute '%s': %s (got '%s'; expected %s)",
                             file, line, elem, sp->name, why, got, exp);
            xmlFree(v);
            goto out;
        }
        xmlFree(v);
    }
    for (sp = specs; sp->name; sp++) {
        if (sp->required && !xmlHasNsProp(node, (const xmlChar *)sp->name, NULL)) {
            fmt_expected(sp, exp, sizeof(exp));
            rc = esb_err_set(err, ESB_EINVAL,
                             "%s:%d: element <%s>: attribute '%s': required but missing "
                             "(expected %s)",
                             file, line, elem, sp->name, exp);
            goto out;
        }
    }
out:
    if (rc < 0) esb_attrs_free(specs, out);
    return rc;
}

void esb_attrs_free(const struct esb_attr_spec *specs, void *out)
{
    if (!out) return;
    for (const struct esb_attr_spec *sp = specs; sp->name; sp++) {
        if (!owns_string(sp)) continue;
        free(*str_slot(sp, out));
        *str_slot(sp, out) = NULL;
    }
}

/* ---- reference docs ---- */

/* Emit s with '|' escaped and newlines flattened, for a table cell. */
static void emit_cell(void (*emit)(void *, const char *), void *ctx, const char *s)
{
    char buf[256];
    size_t n = 0;
    for (; s && *s; s++) {
        if (n + 3 >= sizeof(buf)) {
            buf[n] = '\0';
            emit(ctx, buf);
            n = 0;
        }
        if (*s == '|') buf[n++] = '\\';
        buf[n++] = *s == '\n' ? ' ' : *s;
    }
    buf[n] = '\0';
    if (n) emit(ctx, buf);
}

void esb_attrs_doc(const char *element, const char *summary, const struct esb_attr_spec *specs,
                   void (*emit)(void *ctx, const char *text), void *ctx)
{
    char buf[512];

    snprintf(buf, sizeof(buf), "### `<%s>`\n\n", element);
    emit(ctx, buf);
    if (summary && *summary) {
        emit(ctx, summary);
        emit(ctx, "\n\n");
    }
    if (!specs || !specs->name) {
        emit(ctx, "No attributes.\n\n");
        return;
    }
    emit(ctx, "| attribute | type | default | range/values | description |\n");
    emit(ctx, "|---|---|---|---|---|\n");
    for (const struct esb_attr_spec *sp = specs; sp->name; sp++) {
        char range[200];
        snprintf(buf, sizeof(buf), "| `%s` | %s | ", sp->name, type_name(sp->type));
        emit(ctx, buf);
        if (sp->required) {
            emit(ctx, "*required*");
        } else if (sp->def && *sp->def) {
            emit(ctx, "`");
            emit_cell(emit, ctx, sp->def);
            emit(ctx, "`");
        } else if (sp->def) {
            emit(ctx, "(empty)");
        } else {
            emit(ctx, "-");
        }
        emit(ctx, " | ");
        if (sp->type == ESB_ATTR_ENUM)
            fmt_list(sp->values, "`", range, sizeof(range));
        else if (sp->type == ESB_ATTR_BOOL)
            snprintf(range, sizeof(range), "`true`, `false`");
        else if (sp->type == ESB_ATTR_UINT || sp->type == ESB_ATTR_SIZE ||
                 sp->type == ESB_ATTR_DURATION || sp->type == ESB_ATTR_DOUBLE)
            fmt_range(sp, range, sizeof(range));
        else
            range[0] = '\0';
        emit_cell(emit, ctx, range);
        emit(ctx, " | ");
        emit_cell(emit, ctx, sp->doc);
        emit(ctx, " |\n");
    }
    emit(ctx, "\n");
}
