/* http_out_conf.c - the http-out connector's compiled configuration: the
 * URL template split into literal text and single placeholders (compiled
 * with routes/template.h, rendered percent-encoded), fixed headers,
 * forward-header globs and the retry status table, all checked at config
 * load with file:line; and the small pure helpers that describe results
 * (a URL fit for a reason text, Retry-After). See http_out_internal.h. */
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http_out.h"
#include "http_out_internal.h"
#include "template.h"

#define CONF(ep) ((const struct esb_http_out_conf *)(ep)->conf)

const char *const esb__http_out_methods[] = {"POST", "PUT", "PATCH", NULL};

void esb__http_out_compiled_free(struct esb__http_out_compiled *c)
{
    for (size_t i = 0; i < c->nparts; i++) {
        free(c->parts[i].text);
        esb_template_free(c->parts[i].tpl);
    }
    free(c->parts);
    for (size_t i = 0; i < c->nfixed; i++) free(c->fixed[i]);
    free(c->fixed);
    for (size_t i = 0; i < c->nglobs; i++) free(c->globs[i]);
    free(c->globs);
    memset(c, 0, sizeof(*c));
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

int esb__http_out_is_token(const char *s, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i])) return 0;
    return 1;
}

/* A header value we may send: no control characters but HTAB. */
int esb__http_out_value_ok(const char *v)
{
    for (; *v; v++)
        if (((unsigned char)*v < 0x20 && *v != '\t') || *v == 0x7f) return 0;
    return 1;
}

/* Header names the connector manages or that describe the connection. */
int esb__http_out_managed(const char *name)
{
    static const char *const names[] = {"host",        "content-length", "transfer-encoding",
                                        "connection",  "keep-alive",     "te",
                                        "trailer",     "upgrade",        "expect",
                                        "traceparent", "tracestate",     NULL};
    for (size_t i = 0; names[i]; i++)
        if (strcasecmp(name, names[i]) == 0) return 1;
    return strncasecmp(name, "proxy-", 6) == 0;
}

void esb__http_out_trim(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) (*e)--;
}

/* Split the URL template into literal text and single placeholders. */
static int compile_url(const char *src, struct esb__http_out_compiled *c, struct esb_err *err)
{
    struct esb_buf lit;
    esb_buf_init(&lit, ESB_TEMPLATE_MAX_LEN + 1);
    const char *s = src, *auth = strstr(src, "://");
    int rc = 0;
    if (strlen(src) > ESB_TEMPLATE_MAX_LEN) {
        rc = esb_err_set(err, ESB_EINVAL, "longer than %d characters", ESB_TEMPLATE_MAX_LEN);
        goto out;
    }
    size_t auth_end = auth ? (size_t)(auth - src) + 3 + strcspn(auth + 3, "/?#") : 0;
    for (; *s; s++) {
        size_t col = (size_t)(s - src) + 1;
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) {
            rc = esb_err_set(err, ESB_EINVAL,
                             "space, control or non-ASCII character at column %zu (write it "
                             "percent-encoded)",
                             col);
            goto out;
        }
        if (*s != '{' || s[1] == '{') {
            if (esb_buf_add(&lit, s, 1) != 0) abort(); /* under the cap checked above */
            if (*s == '{') s++;
            continue;
        }
        const char *end = strchr(s, '}');
        if (!end) {
            rc = esb_err_set(err, ESB_EINVAL, "unclosed '{' at column %zu (write {{ for a '{')",
                             col);
            goto out;
        }
        if (!auth || (size_t)(s - src) < auth_end) {
            rc = esb_err_set(err, ESB_EINVAL,
                             "placeholder at column %zu is in the scheme or host; placeholders "
                             "may only appear in the path, query or fragment",
                             col);
            goto out;
        }
        c->parts = esb_realloc(c->parts, (c->nparts + 2) * sizeof(*c->parts));
        if (lit.len) {
            c->parts[c->nparts++] =
                (struct esb__http_out_url_part){esb_strndup((char *)lit.data, lit.len), NULL};
            lit.len = 0;
        }
        char *one = esb_strndup(s, (size_t)(end - s) + 1);
        struct esb_template *t = NULL;
        struct esb_err e = {0, ""};
        rc = esb_template_compile(one, 0, &t, &e);
        free(one);
        if (rc != 0) {
            rc = esb_err_set(err, ESB_EINVAL, "placeholder at column %zu: %s", col, e.msg);
            goto out;
        }
        c->parts[c->nparts++] = (struct esb__http_out_url_part){NULL, t};
        s = end;
    }
    if (lit.len) {
        c->parts = esb_realloc(c->parts, (c->nparts + 1) * sizeof(*c->parts));
        c->parts[c->nparts++] =
            (struct esb__http_out_url_part){esb_strndup((char *)lit.data, lit.len), NULL};
    }
out:
    esb_buf_free(&lit);
    return rc;
}

/* The URL with every placeholder as "x", checked by libcurl's parser:
 * http or https, with a host. */
static int check_url_shape(const struct esb__http_out_compiled *c, struct esb_err *err)
{
    struct esb_buf b;
    esb_buf_init(&b, ESB_TEMPLATE_MAX_LEN + 1);
    for (size_t i = 0; i < c->nparts; i++) {
        const char *t = c->parts[i].text ? c->parts[i].text : "x";
        if (esb_buf_add(&b, t, strlen(t)) != 0) abort(); /* shorter than the source */
    }
    if (esb_buf_add(&b, "", 1) != 0) abort();
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = 0;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, (char *)b.data, 0);
    if (uc != CURLUE_OK) {
        rc = esb_err_set(err, ESB_EINVAL, "not a valid URL (%s)", curl_url_strerror(uc));
    } else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
               (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) ||
               strncasecmp((char *)b.data, scheme, strlen(scheme)) != 0) {
        rc = esb_err_set(err, ESB_EINVAL, "must start with http:// or https://");
    } else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
        rc = esb_err_set(err, ESB_EINVAL, "has no host");
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    esb_buf_free(&b);
    return rc;
}

static int compile_headers(const char *src, struct esb__http_out_compiled *c, struct esb_err *err)
{
    for (const char *s = src; src && *s;) {
        const char *e = s + strcspn(s, ";"), *colon = memchr(s, ':', (size_t)(e - s));
        const char *ns = s, *ne = colon ? colon : e;
        esb__http_out_trim(&ns, &ne);
        if (ns == ne && !colon) { /* empty item, e.g. a trailing ';' */
            s = *e ? e + 1 : e;
            continue;
        }
        if (!colon || !esb__http_out_is_token(ns, (size_t)(ne - ns)))
            return esb_err_set(err, ESB_EINVAL, "'%.*s' is not \"Name: value\"",
                               (int)((e - s) > 60 ? 60 : (e - s)), s);
        const char *vs = colon + 1, *ve = e;
        esb__http_out_trim(&vs, &ve);
        char *name = esb_strndup(ns, (size_t)(ne - ns)), *val = esb_strndup(vs, (size_t)(ve - vs));
        int bad = esb__http_out_managed(name) ? 1 : !esb__http_out_value_ok(val) ? 2 : 0;
        if (!bad && c->nfixed == ESB__HTTP_OUT_STATIC_MAX) bad = 3;
        if (!bad) {
            c->fixed = esb_realloc(c->fixed, (c->nfixed + 1) * sizeof(*c->fixed));
            size_t n = strlen(name) + strlen(val) + 3;
            c->fixed[c->nfixed] = esb_malloc(n);
            snprintf(c->fixed[c->nfixed++], n, "%s: %s", name, val);
            if (strcasecmp(name, "content-type") == 0) c->fixed_ct = 1;
        }
        int rc =
            bad == 1   ? esb_err_set(err, ESB_EINVAL, "header '%s' is set by the connector", name)
            : bad == 2 ? esb_err_set(err, ESB_EINVAL, "header '%s' has a control character", name)
            : bad == 3
                ? esb_err_set(err, ESB_EINVAL, "more than %d headers", ESB__HTTP_OUT_STATIC_MAX)
                : 0;
        free(name);
        free(val);
        if (rc) return rc;
        s = *e ? e + 1 : e;
    }
    return 0;
}

static int compile_globs(const char *src, struct esb__http_out_compiled *c, struct esb_err *err)
{
    for (const char *s = src; src && *s;) {
        const char *e = s + strcspn(s, ","), *ps = s, *pe = e;
        esb__http_out_trim(&ps, &pe);
        for (const char *p = ps; p < pe; p++)
            if (!is_tchar((unsigned char)*p) && !strchr("*?[]!", *p))
                return esb_err_set(err, ESB_EINVAL, "bad character '%c' in pattern '%.*s'", *p,
                                   (int)(pe - ps > 60 ? 60 : pe - ps), ps);
        if (pe > ps) {
            if (c->nglobs == ESB__HTTP_OUT_GLOBS_MAX)
                return esb_err_set(err, ESB_EINVAL, "more than %d patterns",
                                   ESB__HTTP_OUT_GLOBS_MAX);
            c->globs = esb_realloc(c->globs, (c->nglobs + 1) * sizeof(*c->globs));
            c->globs[c->nglobs++] = esb_strndup(ps, (size_t)(pe - ps));
        }
        s = *e ? e + 1 : e;
    }
    return 0;
}

/* "408,425,429,500-599" into the bitmap. */
static int compile_retry(const char *src, struct esb__http_out_compiled *c, struct esb_err *err)
{
    memset(c->retry, 0, sizeof(c->retry));
    const char *s = src ? src : "";
    while (*s) {
        char *end;
        while (*s == ' ') s++;
        long lo = strtol(s, &end, 10), hi = lo;
        int ok = end != s;
        s = end;
        if (ok && *s == '-') {
            hi = strtol(s + 1, &end, 10);
            ok = end != s + 1;
            s = end;
        }
        while (*s == ' ') s++;
        if (!ok || (*s && *s != ','))
            return esb_err_set(err, ESB_EINVAL,
                               "expected codes or ranges like \"429,500-599\" near '%.20s'", s);
        if (lo < 300 || hi > 599 || lo > hi)
            return esb_err_set(err, ESB_EINVAL,
                               "%ld%s%.0ld: statuses must be within 300-599 (2xx is success)", lo,
                               lo == hi ? "" : "-", lo == hi ? 0 : hi);
        for (long k = lo; k <= hi; k++) c->retry[k / 8] |= (uint8_t)(1u << (k % 8));
        if (*s) s++;
    }
    return 0;
}

int esb__http_out_compile(const struct esb_endpoint *ep, struct esb__http_out_compiled *c,
                          struct esb_err *err)
{
    const struct esb_http_out_conf *conf = CONF(ep);
    struct esb_err e = {0, ""};
    const char *attr = "url";
    memset(c, 0, sizeof(*c));
    int rc = compile_url(conf->url ? conf->url : "", c, &e);
    if (!rc) rc = check_url_shape(c, &e);
    if (!rc) {
        attr = "headers";
        rc = compile_headers(conf->headers, c, &e);
    }
    if (!rc) {
        attr = "forward-headers";
        rc = compile_globs(conf->forward_headers, c, &e);
    }
    if (!rc) {
        attr = "retry-status";
        rc = compile_retry(conf->retry_status, c, &e);
    }
    const char *ih = conf->idempotency_header;
    if (!rc && ih && *ih &&
        (!esb__http_out_is_token(ih, strlen(ih)) || esb__http_out_managed(ih))) {
        attr = "idempotency-header";
        rc = esb_err_set(&e, ESB_EINVAL, "'%.60s' is not a header name we may set", ih);
    }
    if (!rc) {
        const char *files[] = {conf->ca_file, conf->client_cert, conf->client_key};
        const char *names[] = {"ca-file", "client-cert", "client-key"};
        for (size_t i = 0; i < 3 && !rc; i++)
            if (files[i] && access(files[i], R_OK) != 0) {
                attr = names[i];
                rc = esb_err_set(&e, ESB_EINVAL, "cannot read '%s': %s", files[i], strerror(errno));
            }
        if (!rc && conf->client_key && !conf->client_cert) {
            attr = "client-key";
            rc = esb_err_set(&e, ESB_EINVAL, "needs client-cert");
        }
    }
    if (rc) {
        esb__http_out_compiled_free(c);
        return esb_err_set(err, ESB_EINVAL, "%s:%d: http-out '%s': attribute '%s': %s",
                           ep->file ? ep->file : "?", ep->line, ep->id, attr, e.msg);
    }
    return 0;
}

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int esb__http_out_render_url(const struct esb__http_out_compiled *c, const struct esb_msg *m,
                             char *scratch, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    struct esb_template_env env = {m, esb_msg_header(m, "esb-route"), 0};
    size_t n = 0;
    for (size_t i = 0; i < c->nparts; i++) {
        const struct esb__http_out_url_part *p = &c->parts[i];
        if (p->text) {
            size_t l = strlen(p->text);
            if (l > ESB__HTTP_OUT_URL_MAX - n) return ESB_EFULL;
            memcpy(out + n, p->text, l);
            n += l;
            continue;
        }
        size_t vl = 0;
        if (esb_template_render(p->tpl, &env, scratch, ESB__HTTP_OUT_VALUE_MAX, &vl) != 0)
            return ESB_EFULL;
        int dots = vl > 0 && strspn(scratch, ".") == vl;
        for (size_t k = 0; k < vl; k++) {
            unsigned char ch = (unsigned char)scratch[k];
            if (unreserved(ch) && !dots) {
                if (n + 1 > ESB__HTTP_OUT_URL_MAX) return ESB_EFULL;
                out[n++] = (char)ch;
            } else {
                if (n + 3 > ESB__HTTP_OUT_URL_MAX) return ESB_EFULL;
                out[n++] = '%';
                out[n++] = hex[ch >> 4];
                out[n++] = hex[ch & 15];
            }
        }
    }
    out[n] = '\0';
    return 0;
}

int esb__http_out_forwarded(const struct esb__http_out_compiled *c, const char *name)
{
    for (size_t i = 0; i < c->nglobs; i++)
        if (fnmatch(c->globs[i], name, FNM_CASEFOLD) == 0) return 1;
    return 0;
}

/* Is name set by headers= (which wins over forwarded message headers)? */
int esb__http_out_fixed_has(const struct esb__http_out_compiled *c, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < c->nfixed; i++)
        if (strncasecmp(c->fixed[i], name, nl) == 0 && c->fixed[i][nl] == ':') return 1;
    return 0;
}

/* url without user info, query or fragment, cut for a reason text. */
void esb__http_out_safe_url(const char *url, char *out, size_t cap)
{
    const char *s = strstr(url, "://"), *host = s ? s + 3 : url;
    const char *at = strchr(host, '@'), *slash = host + strcspn(host, "/?#");
    if (at && at < slash) host = at + 1;
    size_t scheme = (size_t)(s ? s + 3 - url : 0), rest = strcspn(host, "?#");
    snprintf(out, cap, "%.*s%.*s%s", (int)scheme, url,
             (int)(rest > ESB__HTTP_OUT_REASON_URL ? ESB__HTTP_OUT_REASON_URL : rest), host,
             rest > ESB__HTTP_OUT_REASON_URL ? "..." : "");
}

/* Seconds from a Retry-After value (delay-seconds or HTTP-date), capped; 0 if none. */
uint64_t esb__http_out_retry_after_ms(const char *v)
{
    if (!*v) return 0;
    long long secs;
    if (strspn(v, "0123456789") == strlen(v)) {
        secs = strlen(v) > 9 ? ESB__HTTP_OUT_RETRY_MAX_S : atoll(v);
    } else {
        time_t t = curl_getdate(v, NULL);
        if (t == (time_t)-1) return 0;
        secs = (long long)t - (long long)time(NULL);
    }
    if (secs <= 0) return 0;
    if (secs > ESB__HTTP_OUT_RETRY_MAX_S) secs = ESB__HTTP_OUT_RETRY_MAX_S;
    return (uint64_t)secs * 1000;
}

int esb__http_out_retry_status(const struct esb__http_out_compiled *c, long status)
{
    return status >= 300 && status < 600 && (c->retry[status / 8] & (1u << (status % 8)));
}
