/* jsonpath.c - compile the JSON path subset into an array of selectors and
 * evaluate it by recursion over the selectors (depth <= the selector count,
 * itself capped), calling back for each selected value (see jsonpath.h). */
#include "config.h"

#include "jsonpath.h"

#include <jansson.h>
#include <stdlib.h>

enum sel_kind { SEL_KEY, SEL_INDEX, SEL_WILD };

struct sel {
    enum sel_kind kind;
    char *key; /* SEL_KEY: NUL-terminated member name */
    size_t index;
};

struct esb_jsonpath {
    char *text;
    struct sel *sels;
    size_t nsels;
};

#define MAX_INDEX 1000000000u

static int bad(struct esb_err *err, const char *path, size_t pos, const char *what)
{
    return esb_err_set(err, ESB_EINVAL, "%s: %s at column %zu", path, what, pos + 1);
}

static int is_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '$' || c == '@' || c >= 0x80;
}

/* Parse a quoted name starting at path[*pos] (the quote); on success *pos is
 * past the closing quote and *key is an owned copy. */
static int parse_quoted(const char *path, size_t *pos, char **key, struct esb_err *err)
{
    char q = path[*pos];
    size_t i = *pos + 1, n = 0;
    char *buf = esb_malloc(strlen(path) + 1);
    for (;;) {
        unsigned char c = (unsigned char)path[i];
        if (c == '\0') {
            free(buf);
            return bad(err, path, *pos, "unterminated quoted name starting");
        }
        if (c == (unsigned char)q) break;
        if (c == '\\') {
            char e = path[i + 1];
            if (e != '\\' && e != '\'' && e != '"') {
                free(buf);
                return bad(err, path, i, "only \\\\, \\' and \\\" escapes are allowed");
            }
            buf[n++] = e;
            i += 2;
            continue;
        }
        if (c < 0x20) {
            free(buf);
            return bad(err, path, i, "control character in a quoted name");
        }
        buf[n++] = (char)c;
        i++;
    }
    buf[n] = '\0';
    *key = buf;
    *pos = i + 1;
    return 0;
}

static void add_sel(struct esb_jsonpath *p, enum sel_kind kind, char *key, size_t index)
{
    p->sels = esb_realloc(p->sels, (p->nsels + 1) * sizeof(*p->sels));
    p->sels[p->nsels++] = (struct sel){kind, key, index};
}

int esb_jsonpath_compile(const char *path, struct esb_jsonpath **out, struct esb_err *err)
{
    *out = NULL;
    size_t len = strlen(path);
    if (len > ESB_JSONPATH_MAX_LEN)
        return esb_err_set(err, ESB_EINVAL, "JSON path longer than %d characters",
                           ESB_JSONPATH_MAX_LEN);
    if (path[0] != '$') return bad(err, path, 0, "a JSON path must start with '$'");
    struct esb_jsonpath *p = esb_calloc(1, sizeof(*p));
    int rc = 0;
    size_t i = 1;
    while (path[i]) {
        if (p->nsels == ESB_JSONPATH_MAX_STEPS) {
            rc = bad(err, path, i, "too many selectors");
            goto out;
        }
        if (path[i] == '.') {
            size_t start = ++i;
            while (is_name_char((unsigned char)path[i])) i++;
            if (i == start) {
                rc = bad(err, path, i, "expected a member name after '.'");
                goto out;
            }
            add_sel(p, SEL_KEY, esb_strndup(path + start, i - start), 0);
        } else if (path[i] == '[') {
            i++;
            if (path[i] == '\'' || path[i] == '"') {
                char *key = NULL;
                rc = parse_quoted(path, &i, &key, err);
                if (rc) goto out;
                add_sel(p, SEL_KEY, key, 0);
            } else if (path[i] == '*') {
                i++;
                add_sel(p, SEL_WILD, NULL, 0);
            } else if (path[i] >= '0' && path[i] <= '9') {
                size_t start = i, v = 0;
                while (path[i] >= '0' && path[i] <= '9') {
                    v = v * 10 + (size_t)(path[i] - '0');
                    if (v > MAX_INDEX) {
                        rc = bad(err, path, start, "array index too large");
                        goto out;
                    }
                    i++;
                }
                add_sel(p, SEL_INDEX, NULL, v);
            } else {
                rc = bad(err, path, i, "expected a number or *");
                goto out;
            }
            if (path[i] != ']') {
                rc = bad(err, path, i, "expected ']'");
                goto out;
            }
            i++;
        } else {
            rc = bad(err, path, i, "expected '.' or '['");
            goto out;
        }
    }
    p->text = esb_strdup(path);
out:
    if (rc) {
        esb_jsonpath_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void esb_jsonpath_free(struct esb_jsonpath *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nsels; i++) free(p->sels[i].key);
    free(p->sels);
    free(p->text);
    free(p);
}

const char *esb_jsonpath_text(const struct esb_jsonpath *p)
{
    return p->text;
}

static int eval_from(const struct esb_jsonpath *p, size_t k, json_t *v,
                     int (*fn)(void *ctx, json_t *v), void *ctx)
{
    if (k == p->nsels) return fn(ctx, v);
    const struct sel *s = &p->sels[k];
    switch (s->kind) {
    case SEL_KEY: {
        json_t *c = json_is_object(v) ? json_object_get(v, s->key) : NULL;
        return c ? eval_from(p, k + 1, c, fn, ctx) : 0;
    }
    case SEL_INDEX: {
        json_t *c = json_is_array(v) ? json_array_get(v, s->index) : NULL;
        return c ? eval_from(p, k + 1, c, fn, ctx) : 0;
    }
    case SEL_WILD:
        if (json_is_array(v)) {
            size_t i;
            json_t *c;
            json_array_foreach(v, i, c)
            {
                int r = eval_from(p, k + 1, c, fn, ctx);
                if (r) return r;
            }
        } else if (json_is_object(v)) {
            const char *key;
            json_t *c;
            json_object_foreach(v, key, c)
            {
                int r = eval_from(p, k + 1, c, fn, ctx);
                if (r) return r;
            }
        }
        return 0;
    }
    return 0;
}

int esb_jsonpath_eval(const struct esb_jsonpath *p, json_t *root, int (*fn)(void *ctx, json_t *v),
                      void *ctx)
{
    return root ? eval_from(p, 0, root, fn, ctx) : 0;
}

struct collect {
    json_t **vals;
    size_t max, n;
};

static int collect_one(void *ctx, json_t *v)
{
    struct collect *c = ctx;
    if (c->n < c->max) c->vals[c->n] = v;
    c->n++;
    return 0;
}

size_t esb_jsonpath_collect(const struct esb_jsonpath *p, json_t *root, json_t **vals, size_t max)
{
    struct collect c = {vals, max, 0};
    (void)esb_jsonpath_eval(p, root, collect_one, &c);
    return c.n;
}
