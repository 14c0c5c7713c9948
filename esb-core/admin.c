/* admin.c - the admin API (admin.h) on libmicrohttpd: the server.
 *
 * One MHD daemon bound to <admin listen> only, with a small thread pool, a
 * connection limit and an idle timeout. Each request runs through handle():
 * the first call (headers only) checks the bearer token (401 before any body
 * byte is read) and the announced body size (413 over 64 KiB); the body is
 * collected in a capped esb_buf; the last call dispatches on the path
 * (route table below: 404 for an unknown path, 405 for a known path with
 * the wrong method). Path segments and query values are percent-decoded
 * here, after splitting, so queue names may hold ':', '.', '#', even '/'.
 *
 * The endpoints over the bus and the dead letters live in admin_views.c;
 * health and reload (which calls esbd back; it serializes reloads) here.
 * Also here: the token file (read, or created with a random token). */
#include "config.h"

#include "conf.h"

#include "admin.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin_internal.h"
#include "bus.h"
#include "listen_addr.h"
#include "log.h"
#include "runtime.h"

#define ADMIN_DISCARD_MAX (256 * 1024) /* read on past the body cap to answer 413 */
#define ADMIN_CONN_MEMORY (32 * 1024)  /* request line + headers per connection */
#define ADMIN_MAX_CONNS   32
#define ADMIN_TIMEOUT_S   30
#define ADMIN_THREADS     2
#define TOKEN_RANDOM      32 /* bytes of a generated token (64 hex digits) */
#define TOKEN_MIN         16
#define TOKEN_FILE_MAX    4096
#define ADMIN_MAX_BODY    ESB__ADMIN_MAX_BODY
#define ARG_MAX           ESB__ADMIN_ARG_MAX
#define SEGS_MAX          ESB__ADMIN_SEGS_MAX

/* ---- text helpers ---- */

/* Decode %XX (and '+' as a space when plus) in place. -1 on a malformed
 * escape or an encoded NUL. */
int esb__admin_pct_decode(char *s, int plus)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == '%') {
            if (!isxdigit((unsigned char)r[1]) || !isxdigit((unsigned char)r[2])) return -1;
            char hex[3] = {r[1], r[2], '\0'};
            long v = strtol(hex, NULL, 16);
            if (v == 0) return -1;
            *w++ = (char)v;
            r += 2;
        } else {
            *w++ = plus && *r == '+' ? ' ' : *r;
        }
    }
    *w = '\0';
    return 0;
}

int esb__admin_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= k) return 0; /* truncated sequence */
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* A JSON string of s: as is when valid UTF-8, else with every byte outside
 * printable ASCII shown as '.'. */
json_t *esb__admin_string(const char *s)
{
    size_t n = strlen(s);
    if (esb__admin_utf8_valid((const uint8_t *)s, n)) return json_stringn(s, n);
    char *t = esb_malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        t[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
    }
    t[n] = '\0';
    json_t *j = json_stringn(t, n);
    free(t);
    return j;
}

/* ---- responses ---- */

static enum MHD_Result send_text_h(struct MHD_Connection *c, unsigned status, char *text,
                                   const char *ctype, const char *hname, const char *hvalue)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (hname) MHD_add_response_header(r, hname, hvalue);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result esb__admin_send_text(struct MHD_Connection *c, unsigned status, char *text,
                                     const char *ctype)
{
    return send_text_h(c, status, text, ctype, NULL, NULL);
}

/* Send json (a json_dumps result, taken) and a newline as application/json;
 * NULL json sends nothing and returns MHD_NO. */
static enum MHD_Result send_dumped_h(struct MHD_Connection *c, unsigned status, char *json,
                                     const char *hname, const char *hvalue)
{
    if (!json) return MHD_NO;
    size_t n = strlen(json);
    char *t = esb_realloc(json, n + 2);
    memcpy(t + n, "\n", 2);
    return send_text_h(c, status, t, "application/json", hname, hvalue);
}

enum MHD_Result esb__admin_send_json(struct MHD_Connection *c, unsigned status, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return send_dumped_h(c, status, s, NULL, NULL);
}

enum MHD_Result esb__admin_send_error_h(struct MHD_Connection *c, unsigned status,
                                        const char *hname, const char *hvalue, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, "error", esb__admin_string(msg));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) s = esb_strdup("{\"error\":\"?\"}");
    return send_dumped_h(c, status, s, hname, hvalue);
}

unsigned esb__admin_status_of(int rc)
{
    switch (rc) {
    case ESB_ENOTFOUND:
        return MHD_HTTP_NOT_FOUND;
    case ESB_EBUSY:
    case ESB_EEXIST:
        return MHD_HTTP_CONFLICT;
    case ESB_EINVAL:
        return MHD_HTTP_BAD_REQUEST;
    case ESB_EFULL:
    case ESB_ECLOSED:
    case ESB_EFAILED:
    case ESB_ETIMEDOUT:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

/* A decimal number 1..max, digits only. */
int esb__admin_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s || strlen(s) > 20) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (v < 1 || v > max) return -1;
    *out = v;
    return 0;
}

/* ---- health, reload ---- */

static enum MHD_Result h_health(struct esb__admin_call *k)
{
    if (esb_bus_failed(esb_runtime_bus(k->a->rt)))
        return esb__admin_send_json(
            k->c, MHD_HTTP_SERVICE_UNAVAILABLE,
            json_pack("{s:s, s:s}", "status", "failed", "version", PACKAGE_VERSION));
    return esb__admin_send_json(k->c, MHD_HTTP_OK,
                                json_pack("{s:s, s:s, s:I}", "status", "ok", "version",
                                          PACKAGE_VERSION, "pid", (json_int_t)getpid()));
}

static enum MHD_Result h_reload(struct esb__admin_call *k)
{
    if (!k->a->reload)
        return esb__admin_send_error(k->c, MHD_HTTP_SERVICE_UNAVAILABLE, "reload is not available");
    struct esb_diags d = {0};
    esb_info("admin reload requested");
    int rc = k->a->reload(k->a->reload_ctx, &d);
    if (rc == 0) {
        esb_diags_free(&d);
        return esb__admin_send_json(k->c, MHD_HTTP_OK, json_pack("{s:b}", "ok", 1));
    }
    json_t *errs = json_array();
    for (size_t i = 0; i < d.n; i++) json_array_append_new(errs, esb__admin_string(d.msgs[i]));
    if (d.n == 0) json_array_append_new(errs, json_string(esb_strerror(rc)));
    esb_diags_free(&d);
    return esb__admin_send_json(k->c, MHD_HTTP_BAD_REQUEST,
                                json_pack("{s:b, s:o}", "ok", 0, "errors", errs));
}

/* ---- dispatch ---- */

static const struct {
    const char *segs[SEGS_MAX]; /* "*": any segment (passed in args) */
    const char *method;
    enum MHD_Result (*fn)(struct esb__admin_call *k);
} routes[] = {
    {{"v1", "health"}, "GET", h_health},
    {{"v1", "queues"}, "GET", esb__admin_queues},
    {{"v1", "queues", "*", "entries"}, "GET", esb__admin_entries},
    {{"v1", "queues", "*", "entries", "*"}, "GET", esb__admin_entry},
    {{"v1", "queues", "*", "replay"}, "POST", esb__admin_replay},
    {{"v1", "queues", "*", "purge"}, "POST", esb__admin_purge},
    {{"v1", "reload"}, "POST", h_reload},
    {{"v1", "metrics"}, "GET", esb__admin_metrics},
};

static enum MHD_Result dispatch(struct esb__admin_call *k, const char *url, const char *method)
{
    char *segs[SEGS_MAX + 1];
    size_t n = 0;
    char path[4 * ARG_MAX];
    if (url[0] != '/' || strlen(url) >= sizeof(path))
        return esb__admin_send_error(k->c, MHD_HTTP_NOT_FOUND, "no such path");
    strcpy(path, url + 1);
    for (char *p = path; n <= SEGS_MAX;) {
        segs[n++] = p;
        p = strchr(p, '/');
        if (!p) break;
        *p++ = '\0';
    }
    if (n > SEGS_MAX) return esb__admin_send_error(k->c, MHD_HTTP_NOT_FOUND, "no such path");
    for (size_t i = 0; i < n; i++) {
        if (esb__admin_pct_decode(segs[i], 0) < 0 || strlen(segs[i]) > ARG_MAX)
            return esb__admin_send_error(k->c, MHD_HTTP_BAD_REQUEST,
                                         "bad percent-encoding in the path");
        for (const char *p = segs[i]; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                return esb__admin_send_error(k->c, MHD_HTTP_BAD_REQUEST,
                                             "control characters in the path");
    }
    const char *allow = NULL;
    for (size_t r = 0; r < ESB_ARRAY_LEN(routes); r++) {
        size_t len = 0, nargs = 0;
        while (len < SEGS_MAX && routes[r].segs[len]) len++;
        if (len != n) continue;
        int match = 1;
        for (size_t i = 0; i < n && match; i++) {
            if (strcmp(routes[r].segs[i], "*") == 0)
                match = segs[i][0] != '\0';
            else
                match = strcmp(routes[r].segs[i], segs[i]) == 0;
        }
        if (!match) continue;
        if (strcmp(method, routes[r].method) != 0) {
            allow = routes[r].method;
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(routes[r].segs[i], "*") == 0) k->args[nargs++] = segs[i];
        return routes[r].fn(k);
    }
    if (allow)
        return esb__admin_send_error_h(k->c, MHD_HTTP_METHOD_NOT_ALLOWED, MHD_HTTP_HEADER_ALLOW,
                                       allow, "method %s not allowed here (use %s)", method, allow);
    return esb__admin_send_error(k->c, MHD_HTTP_NOT_FOUND, "no such path: %.200s", url);
}

/* Constant-time: the time depends on the expected token's length only. */
static int token_equal(const struct esb_admin *a, const char *given, size_t n)
{
    unsigned diff = n != a->token_len;
    for (size_t i = 0; i < a->token_len; i++)
        diff |= (unsigned char)a->token[i] ^ (unsigned char)(i < n ? given[i] : 0);
    return diff == 0;
}

static int authorized(const struct esb_admin *a, struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) return 0;
    while (*h == ' ' || *h == '\t') h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) return 0;
    h += 6;
    while (*h == ' ' || *h == '\t') h++;
    size_t n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
    return token_equal(a, h, n);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    struct esb_admin *a = cls;
    struct esb__admin_request *req = *con_cls;
    (void)version;
    if (!req) { /* headers only: answer 401/413 before reading any body */
        req = esb_calloc(1, sizeof(*req));
        esb_buf_init(&req->body, ADMIN_MAX_BODY);
        *con_cls = req;
        if (!authorized(a, c)) {
            char shown[201];
            size_t i = 0;
            for (; url[i] && i < sizeof(shown) - 1; i++)
                shown[i] = url[i] > 0x20 && url[i] < 0x7f ? url[i] : '?';
            shown[i] = '\0';
            req->answered = 1;
            esb_warn("admin unauthorized request method=%.10s path=%s", method, shown);
            return esb__admin_send_error_h(
                c, MHD_HTTP_UNAUTHORIZED, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                "Bearer realm=\"esb-admin\"", "missing or wrong bearer token (see the token file)");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        uint64_t len = 0;
        if (cl && esb__admin_parse_u64(cl, UINT64_MAX, &len) == 0 && len > ADMIN_MAX_BODY) {
            req->answered = 1;
            return esb__admin_send_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
                                         "request body too large (most %d bytes)", ADMIN_MAX_BODY);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->answered) return MHD_YES;
        if (!req->too_large && esb_buf_add(&req->body, upload_data, n) == 0) return MHD_YES;
        req->too_large = 1;
        req->discarded += n;
        return req->discarded <= ADMIN_DISCARD_MAX ? MHD_YES : MHD_NO; /* MHD_NO: close */
    }
    if (req->answered) return MHD_YES;
    req->answered = 1;
    if (req->too_large)
        return esb__admin_send_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
                                     "request body too large (most %d bytes)", ADMIN_MAX_BODY);
    struct esb__admin_call k = {.a = a, .c = c, .req = req};
    return dispatch(&k, url, method);
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct esb__admin_request *req = *con_cls;
    (void)cls, (void)c, (void)toe;
    if (!req) return;
    esb_buf_free(&req->body);
    free(req);
    *con_cls = NULL;
}

/* Leave URLs and query arguments encoded: dispatch() decodes each segment
 * after splitting the path on '/'. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls, (void)c;
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    (void)cls;
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    esb_info("admin libmicrohttpd: %s", line);
}

/* ---- the token file ---- */

/* Create path (O_EXCL, 0600) holding a new random token. ESB_EEXIST if it
 * appeared meanwhile. */
static int token_create(const char *path, char **out, struct esb_err *err)
{
    uint8_t rnd[TOKEN_RANDOM];
    char hex[2 * TOKEN_RANDOM + 2];
    size_t got = 0;
    while (got < sizeof(rnd)) {
        ssize_t r = getrandom(rnd + got, sizeof(rnd) - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return esb_err_set(err, -errno, "getrandom: %s", strerror(errno));
        got += (size_t)r;
    }
    for (size_t i = 0; i < sizeof(rnd); i++) snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    hex[2 * TOKEN_RANDOM] = '\n';
    hex[2 * TOKEN_RANDOM + 1] = '\0';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == EEXIST) return ESB_EEXIST;
    if (fd < 0)
        return esb_err_set(err, -errno, "admin: cannot create token file %s: %s", path,
                           strerror(errno));
    size_t len = 2 * TOKEN_RANDOM + 1;
    if (write(fd, hex, len) != (ssize_t)len || fsync(fd) != 0) {
        int e = errno ? errno : EIO;
        close(fd);
        unlink(path);
        return esb_err_set(err, -e, "admin: cannot write token file %s: %s", path, strerror(e));
    }
    close(fd);
    /* Make the new name durable too (best effort). */
    char *dir = esb_strdup(path), *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = '\0';
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dir);
    hex[2 * TOKEN_RANDOM] = '\0';
    *out = esb_strdup(hex);
    esb_info("admin token created file=%s mode=0600 (read it from there; it is not logged)", path);
    return 0;
}

/* Read the token from path (whitespace around it trimmed), creating the
 * file with a random token when it does not exist. */
static int token_load(const char *path, char **out, struct esb_err *err)
{
    char buf[TOKEN_FILE_MAX + 1];
    struct stat st;
    int rc = 0;
    for (int tries = 0; tries < 2; tries++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 && errno == ENOENT) {
            rc = token_create(path, out, err);
            if (rc != ESB_EEXIST) return rc;
            continue;
        }
        if (fd < 0)
            return esb_err_set(err, -errno, "admin: cannot open token file %s: %s", path,
                               strerror(errno));
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return esb_err_set(err, ESB_EINVAL, "admin: token file %s is not a regular file", path);
        }
        ssize_t n = read(fd, buf, sizeof(buf));
        int e = errno;
        close(fd);
        if (n < 0)
            return esb_err_set(err, -e, "admin: cannot read token file %s: %s", path, strerror(e));
        if ((size_t)n > TOKEN_FILE_MAX)
            return esb_err_set(err, ESB_EINVAL, "admin: token file %s is larger than %d bytes",
                               path, TOKEN_FILE_MAX);
        buf[n] = '\0';
        char *s = buf, *end = buf + n;
        while (s < end && isspace((unsigned char)*s)) s++;
        while (end > s && isspace((unsigned char)end[-1])) end--;
        *end = '\0';
        for (char *p = s; p < end; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                return esb_err_set(err, ESB_EINVAL,
                                   "admin: token file %s: the token must be one word of "
                                   "printable ASCII",
                                   path);
        if ((size_t)(end - s) < TOKEN_MIN)
            return esb_err_set(err, ESB_EINVAL,
                               "admin: token file %s: the token is shorter than %d characters "
                               "(delete the file and esbd creates a random one)",
                               path, TOKEN_MIN);
        if (st.st_mode & 077)
            esb_warn("admin token file %s is accessible by group or others (mode %04o); "
                     "chmod 600 it",
                     path, (unsigned)(st.st_mode & 07777));
        *out = esb_strdup(s);
        memset(buf, 0, sizeof(buf));
        return 0;
    }
    return esb_err_set(err, ESB_EFAILED, "admin: token file %s keeps appearing and vanishing",
                       path);
}

/* ---- lifecycle ---- */

static int is_loopback(const struct esb_listen_addr *la)
{
    if (la->ipv6) return IN6_IS_ADDR_LOOPBACK(&la->u.v6.sin6_addr);
    return (ntohl(la->u.v4.sin_addr.s_addr) >> 24) == 127;
}

int esb_admin_start(const struct esb_config *cfg, struct esb_runtime *rt,
                    esb_admin_reload_fn reload, void *reload_ctx, struct esb_admin **out,
                    struct esb_err *err)
{
    struct esb_admin *a = NULL;
    int rc = 0;
    *out = NULL;
    if (!cfg->admin.enabled) return 0;
    const char *listen = cfg->admin.listen;
    struct esb_listen_addr la;
    if (esb_listen_addr_parse(listen, &la) != 0)
        return esb_err_set(err, ESB_EINVAL, "admin: invalid listen address '%s'", listen);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (la.ipv6) flags |= MHD_USE_IPv6;
    if (!is_loopback(&la))
        esb_warn("admin listen=%s is not a loopback address: whoever reaches it with the token "
                 "can replay, purge and reload, and the token travels in clear text",
                 listen);

    a = esb_calloc(1, sizeof(*a));
    a->rt = rt;
    a->reload = reload;
    a->reload_ctx = reload_ctx;
    a->listen = esb_strdup(listen);
    rc = token_load(cfg->admin.token_file, &a->token, err);
    if (rc < 0) goto out;
    a->token_len = strlen(a->token);

    a->daemon = MHD_start_daemon(
        flags, (uint16_t)la.port, NULL, NULL, handle, a, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,
        MHD_OPTION_SOCK_ADDR, &la.u.sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)ADMIN_MAX_CONNS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ADMIN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ADMIN_CONN_MEMORY, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)ADMIN_THREADS, MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL, MHD_OPTION_END);
    if (!a->daemon) {
        rc = esb_err_set(err, ESB_EFAILED,
                         "admin: cannot listen on %s (address in use or not available)", listen);
        goto out;
    }
    esb_info("admin listening=%s token-file=%s", listen, cfg->admin.token_file);
    *out = a;
    a = NULL;
out:
    esb_admin_stop(a);
    return rc;
}

void esb_admin_stop(struct esb_admin *a)
{
    if (!a) return;
    if (a->daemon) {
        MHD_stop_daemon(a->daemon);
        esb_info("admin stopped listening=%s", a->listen);
    }
    if (a->token) memset(a->token, 0, a->token_len);
    free(a->token);
    free(a->listen);
    free(a);
}
