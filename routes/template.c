/* template.c - templates compiled into a list of parts (literal text or a
 * placeholder), rendered into a caller's buffer (see template.h).
 *
 * File names: every part knows how many literal bytes follow it, so a long
 * value is cut to leave room for the literal text after it ("{header:x}.json"
 * keeps its ".json"); the dot rules run over the whole name at the end. */
#include "config.h"

#include "template.h"

#include "msg.h"

#include <stdlib.h>
#include <time.h>

enum part_kind { PART_TEXT, PART_ID, PART_HEADER, PART_CONTENT_TYPE, PART_DATE, PART_ROUTE };

struct part {
    enum part_kind kind;
    char *text;       /* TEXT: the literal; HEADER: the name; DATE: the format */
    size_t len;       /* TEXT: its length */
    size_t lit_after; /* literal bytes in the parts after this one */
};

struct esb_template {
    char *src;
    unsigned flags;
    struct part *parts;
    size_t nparts;
};

#define DATE_FMT_MAX 64
#define DATE_OUT_MAX 256

static int is_tchar(unsigned char c)
{
    /* RFC 9110 token characters */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void add_part(struct esb_template *t, enum part_kind kind, const char *text, size_t len)
{
    /* merge adjacent literal text ("a{{b" is one part) */
    if (kind == PART_TEXT && t->nparts && t->parts[t->nparts - 1].kind == PART_TEXT) {
        struct part *p = &t->parts[t->nparts - 1];
        p->text = esb_realloc(p->text, p->len + len + 1);
        memcpy(p->text + p->len, text, len);
        p->len += len;
        p->text[p->len] = '\0';
        return;
    }
    t->parts = esb_realloc(t->parts, (t->nparts + 1) * sizeof(*t->parts));
    t->parts[t->nparts++] = (struct part){kind, text ? esb_strndup(text, len) : NULL, len, 0};
}

static int check_date_fmt(const char *fmt, size_t len, size_t col, struct esb_err *err)
{
    static const char ok_conv[] = "aAbBcCdDeFgGhHIjmMnpRStTuUVwWxXyYzZ%";
    if (len == 0 || len > DATE_FMT_MAX)
        return esb_err_set(err, ESB_EINVAL,
                           "{date:FMT} needs a format of 1 to %d characters at column %zu",
                           DATE_FMT_MAX, col);
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)fmt[i] < 0x20)
            return esb_err_set(err, ESB_EINVAL, "control character in {date:FMT} at column %zu",
                               col);
        if (fmt[i] != '%') continue;
        if (i + 1 == len || !strchr(ok_conv, fmt[i + 1]) || fmt[i + 1] == '\0')
            return esb_err_set(err, ESB_EINVAL,
                               "{date:FMT}: unsupported conversion '%%%.1s' at column %zu",
                               i + 1 < len ? fmt + i + 1 : "", col);
        i++;
    }
    return 0;
}

/* Compile-time checks of literal text for file names. */
static int check_name_literal(const struct esb_template *t, struct esb_err *err)
{
    for (size_t k = 0; k < t->nparts; k++) {
        const struct part *p = &t->parts[k];
        if (p->kind != PART_TEXT) continue;
        if (k == 0 && p->text[0] == '.')
            return esb_err_set(err, ESB_EINVAL, "a file name may not start with '.'");
        for (size_t i = 0; i < p->len; i++) {
            unsigned char c = (unsigned char)p->text[i];
            if (c == '/') return esb_err_set(err, ESB_EINVAL, "'/' is not allowed in a file name");
            if (c < 0x20 || c == 0x7f)
                return esb_err_set(err, ESB_EINVAL,
                                   "control character is not allowed in a file name");
            if (c == '.' && i + 1 < p->len && p->text[i + 1] == '.')
                return esb_err_set(err, ESB_EINVAL, "\"..\" is not allowed in a file name");
        }
    }
    size_t lit = 0;
    for (size_t k = t->nparts; k-- > 0;) {
        t->parts[k].lit_after = lit;
        if (t->parts[k].kind == PART_TEXT) lit += t->parts[k].len;
    }
    if (lit > ESB_TEMPLATE_NAME_MAX)
        return esb_err_set(err, ESB_EINVAL, "the literal text of a file name is over %d bytes",
                           ESB_TEMPLATE_NAME_MAX);
    return 0;
}

int esb_template_compile(const char *src, unsigned flags, struct esb_template **out,
                         struct esb_err *err)
{
    *out = NULL;
    if (strlen(src) > ESB_TEMPLATE_MAX_LEN)
        return esb_err_set(err, ESB_EINVAL, "template longer than %d characters",
                           ESB_TEMPLATE_MAX_LEN);
    struct esb_template *t = esb_calloc(1, sizeof(*t));
    t->src = esb_strdup(src);
    t->flags = flags;
    int rc = 0;
    const char *s = src;
    while (*s) {
        const char *brace = strchr(s, '{');
        if (!brace) {
            add_part(t, PART_TEXT, s, strlen(s));
            break;
        }
        if (brace > s) add_part(t, PART_TEXT, s, (size_t)(brace - s));
        size_t col = (size_t)(brace - src) + 1;
        if (brace[1] == '{') {
            add_part(t, PART_TEXT, "{", 1);
            s = brace + 2;
            continue;
        }
        const char *name = brace + 1, *end = strchr(name, '}');
        if (!end) {
            rc = esb_err_set(err, ESB_EINVAL, "unclosed '{' at column %zu (write {{ for a '{')",
                             col);
            goto out;
        }
        size_t n = (size_t)(end - name);
        if (n == 2 && memcmp(name, "id", 2) == 0) {
            add_part(t, PART_ID, NULL, 0);
        } else if (n == 5 && memcmp(name, "route", 5) == 0) {
            add_part(t, PART_ROUTE, NULL, 0);
        } else if (n == 12 && memcmp(name, "content-type", 12) == 0) {
            add_part(t, PART_CONTENT_TYPE, NULL, 0);
        } else if (n >= 7 && memcmp(name, "header:", 7) == 0) {
            size_t hn = n - 7;
            if (hn == 0 || hn > ESB_MSG_MAX_NAME) {
                rc = esb_err_set(err, ESB_EINVAL, "{header:NAME} needs a name at column %zu", col);
                goto out;
            }
            for (size_t i = 0; i < hn; i++)
                if (!is_tchar((unsigned char)name[7 + i])) {
                    rc = esb_err_set(err, ESB_EINVAL,
                                     "bad character in a header name at column %zu", col + 8 + i);
                    goto out;
                }
            add_part(t, PART_HEADER, name + 7, hn);
        } else if (n >= 5 && memcmp(name, "date:", 5) == 0) {
            rc = check_date_fmt(name + 5, n - 5, col, err);
            if (rc) goto out;
            add_part(t, PART_DATE, name + 5, n - 5);
        } else {
            rc = esb_err_set(err, ESB_EINVAL,
                             "unknown placeholder {%.*s} at column %zu (known: {id}, "
                             "{header:NAME}, {content-type}, {date:FMT}, {route}; {{ for '{')",
                             (int)(n > 40 ? 40 : n), name, col);
            goto out;
        }
        s = end + 1;
    }
    if (flags & ESB_TEMPLATE_FILENAME) rc = check_name_literal(t, err);
out:
    if (rc) {
        esb_template_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void esb_template_free(struct esb_template *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->nparts; i++) free(t->parts[i].text);
    free(t->parts);
    free(t->src);
    free(t);
}

const char *esb_template_text(const struct esb_template *t)
{
    return t->src;
}

/* The text of part p (TEXT and placeholders), borrowed or in tmp. */
static const char *part_value(const struct part *p, const struct esb_template_env *env,
                              char tmp[DATE_OUT_MAX], size_t *len)
{
    const char *v = "";
    switch (p->kind) {
    case PART_TEXT:
        *len = p->len;
        return p->text;
    case PART_ID:
        v = env->msg->id_text;
        break;
    case PART_HEADER:
        v = esb_msg_header(env->msg, p->text);
        if (!v) v = "";
        break;
    case PART_CONTENT_TYPE:
        v = env->msg->content_type;
        break;
    case PART_ROUTE:
        v = env->route ? env->route : "";
        break;
    case PART_DATE: {
        uint64_t ms = env->now_ms ? env->now_ms : esb_now_ms();
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        *len = strftime(tmp, DATE_OUT_MAX, p->text, &tm); /* 0: too long, render "" */
#pragma GCC diagnostic pop
        tmp[*len] = '\0';
        return tmp;
    }
    }
    *len = strlen(v);
    return v;
}

int esb_template_render(const struct esb_template *t, const struct esb_template_env *env, char *buf,
                        size_t cap, size_t *len)
{
    size_t n = 0;
    int rc = 0;
    char tmp[DATE_OUT_MAX];
    for (size_t k = 0; k < t->nparts && !rc; k++) {
        size_t vl;
        const char *v = part_value(&t->parts[k], env, tmp, &vl);
        if (vl > cap - 1 - n) {
            vl = cap - 1 - n;
            rc = ESB_EFULL;
        }
        memcpy(buf + n, v, vl);
        n += vl;
    }
    buf[n] = '\0';
    *len = n;
    return rc;
}

/* Bytes of v (at most room) that end on a UTF-8 character boundary. */
static size_t utf8_cut(const char *v, size_t vl, size_t room)
{
    if (vl <= room) return vl;
    size_t n = room;
    while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80) n--;
    return n;
}

int esb_template_render_filename(const struct esb_template *t, const struct esb_template_env *env,
                                 char buf[ESB_TEMPLATE_NAME_MAX + 1])
{
    if (!(t->flags & ESB_TEMPLATE_FILENAME)) return ESB_EINVAL;
    size_t n = 0;
    char tmp[DATE_OUT_MAX];
    for (size_t k = 0; k < t->nparts; k++) {
        const struct part *p = &t->parts[k];
        size_t vl;
        const char *v = part_value(p, env, tmp, &vl);
        if (p->kind == PART_TEXT) { /* fits: checked at compile time */
            memcpy(buf + n, v, vl);
            n += vl;
            continue;
        }
        vl = utf8_cut(v, vl, ESB_TEMPLATE_NAME_MAX - n - p->lit_after);
        for (size_t i = 0; i < vl; i++) {
            unsigned char c = (unsigned char)v[i];
            buf[n++] = (c == '/' || c < 0x20 || c == 0x7f) ? '_' : (char)c;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '.' && (i == 0 || buf[i - 1] == '.')) buf[i] = '_';
    buf[n] = '\0';
    return n ? 0 : ESB_EINVAL;
}
