/* dryrun.c - one route of a loaded config run on sample messages, without
 * the bus or endpoints (see dryrun.h). The route runs exactly as in a
 * worker (esb_route_run with its own scratch); a trace callback
 * (esb_route_scratch_set_trace) reports each step for the step-by-step
 * printout; outputs are rendered as text instead of being appended. */
#include "config.h"

#include "conf.h"

#include "dryrun.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "connector.h"
#include "msg.h"
#include "route.h"
#include "uuid.h"

#define MAX_CASES       10000        /* .in files in one golden folder */
#define MAX_RENDER      (256u << 20) /* rendering of one case's outputs */
#define MAX_HEADER_FILE (1u << 20)   /* a NAME.headers file */
#define DIFF_LINES      8            /* differing lines shown for a failed case */

struct esb_dryrun {
    struct esb_config *cfg;
    const struct esb_route *route;
    struct esb_route_scratch *scratch;
    const struct esb_endpoint *source; /* the inbound connector, or NULL */
    FILE *trace;                       /* during a traced run */
};

/* ---- small helpers ---- */

static int read_file(const char *path, size_t max, struct esb_buf *b, struct esb_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return esb_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = esb_err_set(err, ESB_EINVAL, "%s is not a regular file", path);
        goto out;
    }
    esb_buf_init(b, max);
    for (;;) {
        char chunk[65536];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = esb_err_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0) break;
        if (esb_buf_add(b, chunk, (size_t)n) != 0) {
            rc = esb_err_set(err, ESB_EFULL, "%s is larger than %zu bytes", path, max);
            goto out;
        }
    }
out:
    close(fd);
    if (rc != 0) esb_buf_free(b);
    return rc;
}

/* Append a NUL-terminated string (renderings are capped at MAX_RENDER). */
static int add(struct esb_buf *b, const char *s)
{
    return esb_buf_add(b, s, strlen(s));
}

/* Text that can be printed as it is: no control bytes but tab, CR, LF. */
static int printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') || p[i] == 0x7f) return 0;
    return 1;
}

/* Append a body: as it is when printable, else as a hex dump line. */
static int add_body(struct esb_buf *b, const struct esb_msg *m)
{
    const uint8_t *p = m->body->data;
    size_t n = m->body->len;
    if (printable(p, n)) return esb_buf_add(b, p, n);
    char line[64];
    snprintf(line, sizeof(line), "(%zu bytes, not text; hex:)\n", n);
    int rc = add(b, line);
    for (size_t i = 0; i < n && rc == 0; i++) {
        snprintf(line, sizeof(line), "%02x%s", p[i], (i % 32 == 31 || i + 1 == n) ? "\n" : " ");
        rc = add(b, line);
    }
    return rc;
}

static int cmp_hdr(const void *a, const void *b)
{
    const struct esb_header *x = *(const struct esb_header *const *)a;
    const struct esb_header *y = *(const struct esb_header *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* Append "content-type: T\n" and the headers sorted, each line prefixed. */
static int add_headers(struct esb_buf *b, const struct esb_msg *m, const char *prefix)
{
    const struct esb_header **v = esb_calloc(m->nheaders + 1, sizeof(*v));
    for (size_t i = 0; i < m->nheaders; i++) v[i] = &m->headers[i];
    qsort(v, m->nheaders, sizeof(*v), cmp_hdr);
    int rc = add(b, prefix) || add(b, "content-type: ") || add(b, m->content_type) || add(b, "\n");
    for (size_t i = 0; i < m->nheaders && rc == 0; i++)
        rc = add(b, prefix) || add(b, v[i]->name) || add(b, ": ") || add(b, v[i]->value) ||
             add(b, "\n");
    free(v);
    return rc ? ESB_EFULL : 0;
}

/* The URI of an output as the config writes it. */
static void output_uri(const struct esb_dryrun *d, const char *bus_name, char *buf, size_t n)
{
    if (strncmp(bus_name, "deliver:", 8) == 0) {
        const struct esb_endpoint *ep = esb_config_endpoint(d->cfg, bus_name + 8);
        if (ep) {
            snprintf(buf, n, "%s:%s", ep->ops->element, ep->id);
            return;
        }
    }
    snprintf(buf, n, "%s", bus_name);
}

/* The routes that take what goes to bus queue bus_name ("queue:x": its
 * consumer; "topic:x": every subscriber), as ", "-separated ids in buf. */
static void consumers(const struct esb_dryrun *d, const char *bus_name, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < d->cfg->nroutes && o + 1 < n; i++) {
        const struct esb_route *r = d->cfg->routes[i];
        const struct esb_route_source *src = esb_route_source(r);
        const char *kind = src->kind == ESB_URI_QUEUE   ? "queue:"
                           : src->kind == ESB_URI_TOPIC ? "topic:"
                                                        : NULL;
        if (!kind || strncmp(bus_name, kind, 6) != 0 || strcmp(bus_name + 6, src->name) != 0)
            continue;
        int w = snprintf(buf + o, n - o, "%s%s", o ? ", " : "", esb_route_id(r));
        if (w < 0) break;
        o += (size_t)w;
    }
}

/* ---- masking (golden runs) ---- */

static int hexd(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Length of a UUID text at p (36), or 0. */
static size_t uuid_at(const char *p, size_t n)
{
    static const int groups[] = {8, 4, 4, 4, 12};
    if (n < 36) return 0;
    size_t i = 0;
    for (int g = 0; g < 5; g++) {
        for (int k = 0; k < groups[g]; k++, i++)
            if (!hexd((unsigned char)p[i])) return 0;
        if (g < 4 && p[i++] != '-') return 0;
    }
    return 36;
}

static int digits(const char *p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        *v = *v * 10 + (p[i] - '0');
    }
    return 1;
}

/* An RFC 3339 time at p (YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)):
 * its length and *ms, or 0. */
static size_t time_at(const char *p, size_t n, int64_t *ms)
{
    int y, mo, d, h, mi, s, oh = 0, om = 0;
    if (n < 20 || !digits(p, 4, &y) || p[4] != '-' || !digits(p + 5, 2, &mo) || p[7] != '-' ||
        !digits(p + 8, 2, &d) || (p[10] != 'T' && p[10] != 't') || !digits(p + 11, 2, &h) ||
        p[13] != ':' || !digits(p + 14, 2, &mi) || p[16] != ':' || !digits(p + 17, 2, &s))
        return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return 0;
    size_t i = 19;
    int frac = 0, fd = 0;
    if (i < n && p[i] == '.') {
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++, fd++)
            if (fd < 3) frac = frac * 10 + (p[i] - '0');
        if (fd == 0) return 0;
        for (int k = fd; k < 3; k++) frac *= 10;
    }
    int sign = 0;
    if (i < n && (p[i] == 'Z' || p[i] == 'z')) {
        i++;
    } else if (i + 6 <= n && (p[i] == '+' || p[i] == '-') && digits(p + i + 1, 2, &oh) &&
               p[i + 3] == ':' && digits(p + i + 4, 2, &om)) {
        sign = p[i] == '-' ? -1 : 1;
        i += 6;
    } else {
        return 0;
    }
    int64_t t = ((esb_days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + s;
    t -= sign * (oh * 3600 + om * 60);
    *ms = t * 1000 + frac;
    return i;
}

/* Is the UUID text at p (36 bytes) a UUIDv7 made during the run: its time
 * within [from_ms - 1 s, to_ms + 1 s], and not the input's id? */
static int uuid_made_now(const char *p, const struct esb_dryrun_mask *mask)
{
    char text[ESB_UUID_STRLEN + 1];
    esb_uuid_t u;
    memcpy(text, p, ESB_UUID_STRLEN);
    text[ESB_UUID_STRLEN] = '\0';
    if (p[14] != '7' || esb_uuid_parse(text, &u) != 0) return 0;
    if (mask->in_id && strncasecmp(p, mask->in_id, ESB_UUID_STRLEN) == 0) return 0;
    uint64_t t = esb_uuid_v7_time_ms(&u);
    return t + 1000 >= mask->from_ms && t <= mask->to_ms + 1000;
}

/* Copy n bytes of p to out, masking UUIDv7s and RFC 3339 times made during
 * the run (within [from_ms - 1 s, to_ms + 1 s]; the input id is kept). */
static int add_masked(struct esb_buf *out, const char *p, size_t n,
                      const struct esb_dryrun_mask *mask)
{
    size_t i = 0, run = 0; /* run: start of bytes not yet copied */
    while (i < n) {
        int boundary = i == 0 || !hexd((unsigned char)p[i - 1]);
        size_t len;
        int64_t ms;
        const char *rep = NULL;
        if (boundary && (len = uuid_at(p + i, n - i)) &&
            (i + len == n || !hexd((unsigned char)p[i + len]))) {
            if (uuid_made_now(p + i, mask)) rep = "<uuid>";
        } else if (boundary && (len = time_at(p + i, n - i, &ms)) &&
                   ms + 1000 >= (int64_t)mask->from_ms && ms <= (int64_t)mask->to_ms + 1000) {
            rep = "<now>";
        } else {
            len = 1;
        }
        if (rep) {
            if (esb_buf_add(out, p + run, i - run) != 0 || add(out, rep) != 0) return ESB_EFULL;
            run = i + len;
        }
        i += len;
    }
    return esb_buf_add(out, p + run, n - run) != 0 ? ESB_EFULL : 0;
}

/* ---- rendering ---- */

int esb_dryrun_render(const struct esb_dryrun *d, const struct esb_route_result *res,
                      const struct esb_dryrun_mask *mask, struct esb_buf *out)
{
    struct esb_buf raw;
    int rc = 0;
    esb_buf_init(&raw, MAX_RENDER);
    if (res->error) {
        /* golden runs: without the Lua traceback, whose line numbers change
         * with every edit of a script */
        const char *tb = mask ? strstr(res->reason, "; stack traceback:") : NULL;
        size_t n = tb ? (size_t)(tb - res->reason) : strlen(res->reason);
        rc = add(&raw, "error: ") || esb_buf_add(&raw, res->reason, n) || add(&raw, "\n");
        goto done;
    }
    for (size_t i = 0; i < res->nout && rc == 0; i++) {
        char uri[600];
        output_uri(d, res->out[i].bus_name, uri, sizeof(uri));
        rc = (i > 0 && add(&raw, "\n")) || add(&raw, "to: ") || add(&raw, uri) || add(&raw, "\n") ||
             add_headers(&raw, res->out[i].msg, "") || add(&raw, "\n") ||
             add_body(&raw, res->out[i].msg) || add(&raw, "\n");
    }
    if (rc == 0 && res->dropped) rc = (res->nout > 0 && add(&raw, "\n")) || add(&raw, "dropped\n");
    if (rc == 0 && res->nout == 0 && !res->dropped) rc = add(&raw, "no output\n");
done:
    if (rc == 0)
        rc = mask ? add_masked(out, (const char *)raw.data, raw.len, mask)
                  : esb_buf_add(out, raw.data, raw.len);
    esb_buf_free(&raw);
    return rc ? ESB_EFULL : 0;
}

/* ---- tracing ---- */

static void print_msg(FILE *f, const struct esb_msg *m, const char *indent)
{
    struct esb_buf b;
    esb_buf_init(&b, MAX_RENDER);
    if (add_headers(&b, m, indent) == 0) fwrite(b.data, 1, b.len, f);
    fputc('\n', f);
    b.len = 0;
    if (add_body(&b, m) != 0) {
        fprintf(f, "%s(body too large to print)\n", indent);
    } else { /* each body line indented */
        const char *p = (const char *)b.data, *end = p + b.len;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            fprintf(f, "%s%.*s\n", indent, (int)len, p);
            p += len + (nl ? 1 : 0);
        }
    }
    esb_buf_free(&b);
}

static void on_trace(void *ctx, const struct esb_route_trace *t)
{
    struct esb_dryrun *d = ctx;
    FILE *f = d->trace;
    if (!f) return;
    char uri[600];
    switch (t->kind) {
    case ESB_TRACE_STEP:
        fprintf(f, "step %d: %s (line %d)\n", t->step, t->what, t->line);
        break;
    case ESB_TRACE_BRANCH:
        if (t->branch >= 0)
            fprintf(f, "    branch: when #%d (%s, line %d) holds\n", t->branch + 1, t->what,
                    t->line);
        else if (t->branch == -1)
            fprintf(f, "    branch: otherwise (no when holds)\n");
        else
            fprintf(f, "    branch: none (no when holds, no otherwise): going on\n");
        break;
    case ESB_TRACE_FILTER:
        fprintf(f, "    filter: %s\n", t->result ? "holds, going on" : "does not hold: dropped");
        break;
    case ESB_TRACE_TRANSFORM:
        if (t->count == 0) {
            fprintf(f, "    transform: returned nil: dropped\n");
            break;
        }
        if (t->count == 1)
            fprintf(f, "    transform: returned a message (id %s):\n", t->msg->id_text);
        else
            fprintf(f, "    transform: part %zu of %zu (id %s), runs the rest on its own:\n",
                    t->index + 1, t->count, t->msg->id_text);
        print_msg(f, t->msg, "        ");
        break;
    case ESB_TRACE_TO: {
        char who[400];
        output_uri(d, t->target, uri, sizeof(uri));
        consumers(d, t->target, who, sizeof(who));
        if (strncmp(t->target, "deliver:", 8) == 0)
            fprintf(f, "    -> %s (delivered from bus queue %s)\n", uri, t->target);
        else if (strncmp(t->target, "topic:", 6) == 0)
            fprintf(f, "    -> %s (subscribers: %s)\n", uri, who[0] ? who : "none");
        else
            fprintf(f, "    -> %s (consumed by route %s)\n", uri, who[0] ? who : "?");
        break;
    }
    }
}

/* ---- runs ---- */

int esb_dryrun_new(struct esb_config *cfg, const char *route_id, struct esb_dryrun **out,
                   struct esb_err *err)
{
    *out = NULL;
    const struct esb_route *r = esb_config_route(cfg, route_id);
    if (!r) {
        char ids[200] = "";
        size_t o = 0;
        for (size_t i = 0; i < cfg->nroutes && o + 4 < sizeof(ids); i++)
            o += (size_t)snprintf(ids + o, sizeof(ids) - o, "%s%s", i ? ", " : "",
                                  esb_route_id(cfg->routes[i]));
        return esb_err_set(err, ESB_ENOTFOUND, "%s has no route '%s' (routes: %s)", cfg->path,
                           route_id, cfg->nroutes ? ids : "none");
    }
    struct esb_dryrun *d = esb_calloc(1, sizeof(*d));
    d->cfg = esb_config_ref(cfg);
    d->route = r;
    d->scratch = esb_route_scratch_new();
    esb_route_scratch_set_trace(d->scratch, on_trace, d);
    const struct esb_route_source *src = esb_route_source(r);
    if (src->kind == ESB_URI_INBOUND || src->kind == ESB_URI_ENDPOINT)
        d->source = esb_config_endpoint(cfg, src->name);
    *out = d;
    return 0;
}

void esb_dryrun_free(struct esb_dryrun *d)
{
    if (!d) return;
    esb_route_scratch_free(d->scratch);
    esb_config_unref(d->cfg);
    free(d);
}

static const char *guess_type(const char *path)
{
    static const struct {
        const char *ext, *ct;
    } types[] = {{".xml", "application/xml"},
                 {".json", "application/json"},
                 {".csv", "text/csv"},
                 {".txt", "text/plain"}};
    size_t n = strlen(path);
    for (size_t i = 0; i < ESB_ARRAY_LEN(types); i++) {
        size_t e = strlen(types[i].ext);
        if (n > e && strcasecmp(path + n - e, types[i].ext) == 0) return types[i].ct;
    }
    return "application/octet-stream";
}

/* A message with body b, content type ct and the connector's headers;
 * file_name for esb-file-name (file-in). */
static struct esb_msg *make_input(const struct esb_dryrun *d, const struct esb_buf *b,
                                  const char *ct, const char *file_name)
{
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_body(m, b->data ? (const void *)b->data : "", b->len);
    esb_msg_set_content_type(m, ct);
    if (d->source) {
        esb_msg_set_header(m, "esb-source", d->source->id);
        if (strcmp(d->source->ops->element, "file-in") == 0)
            esb_msg_set_header(m, "esb-file-name", file_name);
    }
    return m;
}

int esb_dryrun_input(const struct esb_dryrun *d, const char *path, const char *ct,
                     struct esb_msg **out, struct esb_err *err)
{
    struct esb_buf b;
    *out = NULL;
    int rc = read_file(path, ESB_DRYRUN_MAX_BODY, &b, err);
    if (rc != 0) return rc;
    const char *base = strrchr(path, '/');
    *out = make_input(d, &b, ct ? ct : guess_type(path), base ? base + 1 : path);
    esb_buf_free(&b);
    return 0;
}

void esb_dryrun_run(struct esb_dryrun *d, const struct esb_msg *in, FILE *trace,
                    struct esb_route_result *res)
{
    memset(res, 0, sizeof(*res));
    d->trace = trace;
    esb_route_run(d->route, d->scratch, in, res);
    d->trace = NULL;
}

/* Print the route's header line: id, where it is, where it takes input. */
static void print_route(const struct esb_dryrun *d, FILE *out)
{
    const struct esb_route_source *src = esb_route_source(d->route);
    fprintf(out, "route %s: from ", esb_route_id(d->route));
    if (src->kind == ESB_URI_QUEUE)
        fprintf(out, "queue:%s", src->name);
    else if (src->kind == ESB_URI_TOPIC)
        fprintf(out, "topic:%s", src->name);
    else
        fprintf(out, "%s:%s", d->source ? d->source->ops->element : "?", src->name);
    if (src->path) fprintf(out, " path %s", src->path);
    fprintf(out, " (dry run: no bus, no endpoints)\n");
}

int esb_dryrun_message(struct esb_dryrun *d, const char *path, const char *ct, char *const *headers,
                       size_t nheaders, FILE *out, struct esb_err *err)
{
    struct esb_msg *in = NULL;
    int rc = esb_dryrun_input(d, path, ct, &in, err);
    if (rc != 0) return rc;
    for (size_t i = 0; i < nheaders; i++) {
        const char *eq = strchr(headers[i], '=');
        if (!eq || eq == headers[i] || (size_t)(eq - headers[i]) > ESB_MSG_MAX_NAME ||
            strlen(eq + 1) > ESB_MSG_MAX_VALUE) {
            rc = esb_err_set(err, ESB_EINVAL, "--header '%.100s': expected NAME=VALUE", headers[i]);
            goto out;
        }
        char name[ESB_MSG_MAX_NAME + 1];
        size_t nl = (size_t)(eq - headers[i]);
        for (size_t k = 0; k < nl; k++)
            name[k] = (char)((headers[i][k] >= 'A' && headers[i][k] <= 'Z') ? headers[i][k] + 32
                                                                            : headers[i][k]);
        name[nl] = '\0';
        if (strcmp(name, "content-type") == 0)
            esb_msg_set_content_type(in, eq + 1);
        else
            esb_msg_add_header(in, name, eq + 1);
    }
    print_route(d, out);
    fprintf(out, "input: %s (%zu bytes, id %s)\n", path, in->body->len, in->id_text);
    print_msg(out, in, "    ");
    struct esb_route_result res;
    esb_dryrun_run(d, in, out, &res);
    struct esb_buf b;
    esb_buf_init(&b, MAX_RENDER);
    if (res.error) {
        fprintf(out, "routing error (the message would be dead-lettered to %s):\n    %s\n",
                esb_route_dlq(d->route), res.reason);
        rc = 1;
    } else {
        fprintf(out, "result: %zu output%s%s\n", res.nout, res.nout == 1 ? "" : "s",
                res.dropped ? ", then dropped" : "");
        if (esb_dryrun_render(d, &res, NULL, &b) == 0)
            fwrite(b.data, 1, b.len, out);
        else
            fprintf(out, "(outputs too large to print)\n");
    }
    esb_buf_free(&b);
    esb_route_result_clear(&res);
out:
    esb_msg_unref(in);
    return rc;
}

/* ---- golden folders ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* The case names (NAME of DIR/NAME.in, no dotfiles) sorted. */
static int list_cases(const char *dir, char ***out, size_t *n, struct esb_err *err)
{
    DIR *dh = opendir(dir);
    *out = NULL;
    *n = 0;
    if (!dh) return esb_err_set(err, -errno, "cannot open directory %s: %s", dir, strerror(errno));
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(dh))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len <= 3 || strcmp(e->d_name + len - 3, ".in") != 0) continue;
        if (cnt == MAX_CASES) {
            rc = esb_err_set(err, ESB_EFULL, "%s holds more than %d .in files", dir, MAX_CASES);
            break;
        }
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            v = esb_realloc(v, cap * sizeof(*v));
        }
        v[cnt++] = esb_strndup(e->d_name, len - 3);
    }
    closedir(dh);
    if (rc == 0 && cnt == 0) rc = esb_err_set(err, ESB_ENOTFOUND, "%s holds no .in files", dir);
    if (rc != 0) {
        free_names(v, cnt);
        return rc;
    }
    qsort(v, cnt, sizeof(*v), cmp_str);
    *out = v;
    *n = cnt;
    return 0;
}

/* Apply path ("name: value" lines; blank lines and '#' comments skipped)
 * to m; content-type sets the content type. A missing file is fine. */
static int read_headers(const char *path, struct esb_msg *m, struct esb_err *err)
{
    struct esb_buf b;
    if (access(path, F_OK) != 0) return 0;
    int rc = read_file(path, MAX_HEADER_FILE, &b, err);
    if (rc != 0) return rc;
    if (esb_buf_add(&b, "\n", 1) != 0) { /* every line ends with a newline now */
        esb_buf_free(&b);
        return esb_err_set(err, ESB_EFULL, "%s is larger than %u bytes", path, MAX_HEADER_FILE);
    }
    char *p = (char *)b.data, *end = p + b.len;
    for (int line = 1; p && p < end && rc == 0; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        if (e > p && e[-1] == '\r') e--;
        *e = '\0'; /* at or before the line's newline */
        char *colon = strchr(p, ':');
        if (*p == '\0' || *p == '#') {
            /* skip */
        } else if (!colon || colon == p || (size_t)(colon - p) > ESB_MSG_MAX_NAME) {
            rc = esb_err_set(err, ESB_EINVAL, "%s:%d: expected 'name: value'", path, line);
        } else {
            *colon = '\0';
            for (char *q = p; *q; q++)
                if (*q >= 'A' && *q <= 'Z') *q = (char)(*q + 32);
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            if (strlen(v) > ESB_MSG_MAX_VALUE)
                rc = esb_err_set(err, ESB_EINVAL, "%s:%d: value too long", path, line);
            else if (strcmp(p, "content-type") == 0)
                esb_msg_set_content_type(m, v);
            else
                esb_msg_add_header(m, p, v);
        }
        p = nl ? nl + 1 : NULL;
    }
    esb_buf_free(&b);
    return rc;
}

/* Write path through a temporary file and rename. */
static int write_file(const char *path, const void *data, size_t n, struct esb_err *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return esb_err_set(err, -errno, "cannot create %s: %s", tmp, strerror(errno));
    const char *p = data;
    int rc = 0;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            rc = esb_err_set(err, -errno, "cannot write %s: %s", tmp, strerror(errno));
            break;
        }
        p += w;
        n -= (size_t)w;
    }
    if (close(fd) != 0 && rc == 0)
        rc = esb_err_set(err, -errno, "cannot write %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = esb_err_set(err, -errno, "cannot rename %s: %s", tmp, strerror(errno));
    if (rc != 0) unlink(tmp);
    return rc;
}

/* Print one side of a differing line: around column col (long lines are
 * cut to a window, marked with "...'). */
static void print_side(FILE *out, char sign, const char *p, size_t len, size_t col)
{
    size_t from = col > 60 ? col - 60 : 0, to = from + 200 < len ? from + 200 : len;
    while (from > 0 && ((unsigned char)p[from] & 0xc0) == 0x80) from--; /* whole UTF-8 */
    while (to < len && to > from && ((unsigned char)p[to] & 0xc0) == 0x80) to--;
    fprintf(out, "    %c %s%.*s%s\n", sign, from ? "..." : "", (int)(to - from), p + from,
            to < len ? "..." : "");
}

/* Print the first lines where expected and actual differ. */
static void print_diff(FILE *out, const struct esb_buf *exp, const struct esb_buf *act)
{
    const char *a = (const char *)exp->data, *ae = a + exp->len;
    const char *b = (const char *)act->data, *be = b + act->len;
    int shown = 0;
    for (int line = 1; (a < ae || b < be) && shown < DIFF_LINES; line++) {
        const char *an = a < ae ? memchr(a, '\n', (size_t)(ae - a)) : NULL;
        const char *bn = b < be ? memchr(b, '\n', (size_t)(be - b)) : NULL;
        size_t al = a < ae ? (an ? (size_t)(an - a) : (size_t)(ae - a)) : 0;
        size_t bl = b < be ? (bn ? (size_t)(bn - b) : (size_t)(be - b)) : 0;
        if ((a < ae) != (b < be) || al != bl || memcmp(a, b, al) != 0) {
            size_t col = 0;
            while (col < al && col < bl && a[col] == b[col]) col++;
            fprintf(out, "    line %d, column %zu:\n", line, col + 1);
            if (a < ae) print_side(out, '-', a, al, col);
            if (b < be) print_side(out, '+', b, bl, col);
            shown++;
        }
        a = a < ae ? a + al + 1 : ae;
        b = b < be ? b + bl + 1 : be;
    }
}

/* Run one case: 1 passed (or updated), 0 failed, negative: error. */
static int run_case(struct esb_dryrun *d, const char *dir, const char *name, const char *ct,
                    int update, FILE *out, struct esb_err *err)
{
    char path[4096];
    struct esb_buf body, got, want;
    struct esb_msg *in = NULL;
    int rc;
    esb_buf_init(&got, MAX_RENDER);
    esb_buf_init(&want, MAX_RENDER);
    snprintf(path, sizeof(path), "%s/%s.in", dir, name);
    if ((rc = read_file(path, ESB_DRYRUN_MAX_BODY, &body, err)) != 0) goto out;
    in = make_input(d, &body, ct ? ct : guess_type(name), name);
    esb_buf_free(&body);
    if (esb_uuid_parse(ESB_DRYRUN_ID, &in->id) != 0) abort();
    esb_uuid_format(&in->id, in->id_text);
    snprintf(path, sizeof(path), "%s/%s.headers", dir, name);
    if ((rc = read_headers(path, in, err)) != 0) goto out;

    struct esb_route_result res;
    struct esb_dryrun_mask mask = {ESB_DRYRUN_ID, esb_now_ms(), 0};
    esb_dryrun_run(d, in, NULL, &res);
    mask.to_ms = esb_now_ms();
    rc = esb_dryrun_render(d, &res, &mask, &got);
    esb_route_result_clear(&res);
    if (rc != 0) {
        rc = esb_err_set(err, rc, "%s: the outputs are larger than %u bytes", name, MAX_RENDER);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/%s.expected", dir, name);
    if (update) {
        if ((rc = write_file(path, got.data ? (const void *)got.data : "", got.len, err)) != 0)
            goto out;
        fprintf(out, "UPDATED %s\n", name);
        rc = 1;
        goto out;
    }
    if (access(path, F_OK) != 0) {
        fprintf(out, "FAIL %s: no %s.expected (--update writes it)\n", name, name);
        rc = 0;
        goto out;
    }
    if ((rc = read_file(path, MAX_RENDER, &want, err)) != 0) goto out;
    if (want.len == got.len && memcmp(want.data, got.data, got.len) == 0) {
        fprintf(out, "PASS %s\n", name);
        rc = 1;
    } else {
        fprintf(out, "FAIL %s: the outputs differ from %s.expected (- expected, + actual):\n", name,
                name);
        print_diff(out, &want, &got);
        rc = 0;
    }
out:
    esb_msg_unref(in);
    esb_buf_free(&got);
    esb_buf_free(&want);
    return rc;
}

int esb_dryrun_dir(struct esb_dryrun *d, const char *dir, const char *ct, int update, FILE *out,
                   struct esb_err *err)
{
    char **names;
    size_t n;
    int rc = list_cases(dir, &names, &n, err);
    if (rc != 0) return rc;
    size_t passed = 0, failed = 0;
    print_route(d, out);
    for (size_t i = 0; i < n; i++) {
        rc = run_case(d, dir, names[i], ct, update, out, err);
        if (rc < 0) break;
        if (rc == 1)
            passed++;
        else
            failed++;
    }
    free_names(names, n);
    if (rc < 0) return rc;
    if (update)
        fprintf(out, "%zu updated\n", passed);
    else
        fprintf(out, "%zu passed, %zu failed\n", passed, failed);
    return failed > INT32_MAX ? INT32_MAX : (int)failed;
}
