/* http_in.c - the http-in connector on libmicrohttpd.
 *
 * One MHD daemon per endpoint with its own epoll thread pool. Each request
 * runs through handle() on an MHD thread: the first call (headers only)
 * decides 404/405/400/413/431 before any body byte is read; the body is
 * collected in a capped esb_buf; the last call builds the message, hands it
 * to esb_runtime_accept_async() and suspends the connection: the thread
 * serves other connections meanwhile, and the bus's group commit makes
 * every request in flight durable with one fdatasync. on_accepted (bus
 * writer thread) resumes the connection, and the next call answers 202 —
 * only once the message is durable — or 503 if it could not be written.
 *
 * CloudEvents 1.0 HTTP binding: a request with a ce-specversion header is
 * a binary-mode event (ce-id, ce-source, ce-type required, checked before
 * the body is read); one with Content-Type application/cloudevents+json is
 * a structured-mode event (the body must be a JSON object with specversion
 * "1.0", id, source and type). A bad event is answered 400. Either way the
 * body and the ce-* headers are kept as they are, and the message gets the
 * reserved headers esb-ce-mode (binary|structured) and esb-ce-id (the
 * event id), which a client cannot forge (esb-* headers are dropped).
 *
 * mode="request-reply": the last call registers the request with
 * esb_runtime_request() (durable like accept) and suspends the connection;
 * the reply callback (a worker or the timeout thread) stores the answer in
 * the request's refcounted reply_wait and resumes it, and the next call
 * queues the response. The reply_wait outlives a connection that ended
 * (a late reply is dropped) and never needs the endpoint's state, so a
 * reply may come after a reload stopped the endpoint. */
#include "config.h"

#include "http_in.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "listen_addr.h"
#include "log.h"
#include "msg.h"
#include "runtime.h"
#include "http_in_internal.h"

/* Memory per connection for the request line, headers and I/O buffers
 * (libmicrohttpd zeroes all of it after every request: 32 KiB cost 7 % of
 * an http-in thread at 64 connections).
 * A request whose headers do not fit gets 431 from libmicrohttpd itself. */
#define HTTP_IN_CONN_MEMORY (16 * 1024)

/* libmicrohttpd 0.9.75 cannot queue a response while a body is arriving.
 * A chunked body that passes max-body is therefore read on and thrown away
 * (nothing kept) for up to this many more bytes so that the client gets its
 * 413; a body that goes on longer is cut by closing the connection. */
#define HTTP_IN_DISCARD_MAX (1024 * 1024)

static const char *const http_in_modes[] = {"one-way", "request-reply", NULL};

static const struct esb_attr_spec http_in_attrs[] = {
    {"id", ESB_ATTR_STRING, NULL, offsetof(struct esb_http_in_conf, id), 0, 0, 0, NULL,
     "Endpoint id, used in from=\"http-in:ID\" and as the esb-source header."},
    {"listen", ESB_ATTR_LISTEN, NULL, offsetof(struct esb_http_in_conf, listen), 1, 0, 0, NULL,
     "Address to bind, host:port (an IP address or localhost; [v6]:port for IPv6)."},
    {"max-body", ESB_ATTR_SIZE, "10MB", offsetof(struct esb_http_in_conf, max_body), 0, 1,
     UINT64_C(1) << 32, NULL,
     "Largest accepted request body; a larger one is answered 413 without being stored."},
    {"max-connections", ESB_ATTR_UINT, "512", offsetof(struct esb_http_in_conf, max_connections), 0,
     1, 100000, NULL, "Most concurrent client connections; more are refused at accept."},
    {"per-ip-connections", ESB_ATTR_UINT, "256",
     offsetof(struct esb_http_in_conf, per_ip_connections), 0, 1, 100000, NULL,
     "Most concurrent connections from one client address."},
    {"timeout", ESB_ATTR_DURATION, "30s", offsetof(struct esb_http_in_conf, timeout), 0, 1000,
     UINT64_C(86400000), NULL,
     "Idle time after which a connection is closed (whole seconds, rounded up)."},
    {"threads", ESB_ATTR_UINT, "2", offsetof(struct esb_http_in_conf, threads), 0, 1, 256, NULL,
     "Server threads. Each runs its own event loop on its own listening socket of the same "
     "address (SO_REUSEPORT); the kernel spreads new connections over them. A request does not "
     "hold its thread while the bus makes it durable."},
    {"nice", ESB_ATTR_UINT, "5", offsetof(struct esb_http_in_conf, nice), 0, 0, 19, NULL,
     "Niceness of the server threads above the rest of esbd (0..19, as nice(1)). When the CPU "
     "is short, the routes and deliveries of what was accepted get it before new requests, so "
     "accepting slows down to what the routes can process instead of piling up a backlog "
     "(whose wait becomes every message's latency). 0: no preference."},
    {"mode", ESB_ATTR_ENUM, "one-way", offsetof(struct esb_http_in_conf, mode), 0, 0, 0,
     http_in_modes,
     "one-way: answer 202 once the message is durable; request-reply: hold the request until "
     "the route has run and answer with its final message (see docs/connectors.md)."},
    {"reply-timeout", ESB_ATTR_DURATION, "30s", offsetof(struct esb_http_in_conf, reply_timeout), 0,
     1, UINT64_C(86400000), NULL,
     "request-reply: how long after the message is durable to wait for the route; then 504 "
     "(the message is still processed)."},
    ESB_ATTR_END,
};

/* ---- responses ---- */

/* Append s to out as JSON string content (without quotes). */
void esb__hin_json_escape(char *out, size_t outsize, const char *s)
{
    size_t o = 0;
    for (; *s && o + 7 < outsize; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, outsize - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

/* Queue a response with body text (copied) and optional extra header. */
enum MHD_Result esb__hin_respond(struct MHD_Connection *c, unsigned status, const char *body,
                                 const char *hname, const char *hvalue)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (hname) MHD_add_response_header(r, hname, hvalue);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Queue {"error":"<text>"} with status. */
enum MHD_Result esb__hin_respond_error(struct MHD_Connection *c, unsigned status, const char *text,
                                       const char *hname, const char *hvalue)
{
    char esc[600], body[640];
    esb__hin_json_escape(esc, sizeof(esc), text);
    snprintf(body, sizeof(body), "{\"error\":\"%s\"}", esc);
    return esb__hin_respond(c, status, body, hname, hvalue);
}

/* ---- request checks ---- */

/* Hop-by-hop and framing headers that describe this connection, not the
 * message; plus content-type (it is the message's content type) and the
 * reserved esb-* names, which a client must not be able to forge. */
static int header_dropped(const char *name)
{
    static const char *const drop[] = {
        "connection", "keep-alive",     "transfer-encoding", "te",     "upgrade",
        "trailer",    "content-length", "content-type",      "expect", NULL,
    };
    for (size_t i = 0; drop[i]; i++)
        if (strcasecmp(name, drop[i]) == 0) return 1;
    return strncasecmp(name, "proxy-", 6) == 0 || strncasecmp(name, "esb-", 4) == 0;
}

struct header_scan {
    size_t count;
    int too_big;
};

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct header_scan *s = cls;
    s->count++;
    if (strlen(key) > ESB_MSG_MAX_NAME || (value && strlen(value) > ESB_MSG_MAX_VALUE) ||
        s->count > ESB_MSG_MAX_HEADERS - 8)
        s->too_big = 1;
    return MHD_YES;
}

static enum MHD_Result copy_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct esb_msg *m = cls;
    if (header_dropped(key)) return MHD_YES;
    char lower[ESB_MSG_MAX_NAME + 1];
    size_t n = strlen(key);
    if (n > ESB_MSG_MAX_NAME) n = ESB_MSG_MAX_NAME; /* scan_header refused this already */
    for (size_t i = 0; i < n; i++) lower[i] = (char)tolower((unsigned char)key[i]);
    lower[n] = '\0';
    esb_msg_add_header(m, lower, value ? value : "");
    return MHD_YES;
}

/* Parse a Content-Length value strictly: digits only. */
static int parse_length(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* ---- CloudEvents ---- */

/* Binary mode (a ce-specversion header): it must be "1.0" and ce-id,
 * ce-source and ce-type must be given and non-empty. Returns 0 (also when
 * the request is no binary-mode event) or -1 with why. */
static int ce_binary_check(struct MHD_Connection *c, char *why, size_t why_len)
{
    static const char *const required[] = {"ce-id", "ce-source", "ce-type"};
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "ce-specversion");
    if (!v) return 0;
    if (strcmp(v, "1.0") != 0) {
        snprintf(why, why_len, "cloudevents: ce-specversion must be 1.0");
        return -1;
    }
    for (size_t i = 0; i < ESB_ARRAY_LEN(required); i++) {
        v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, required[i]);
        if (!v || !*v) {
            snprintf(why, why_len, "cloudevents: binary mode needs a non-empty %s header",
                     required[i]);
            return -1;
        }
    }
    return 0;
}

/* Is the media type (parameters ignored, any case) application/cloudevents+json? */
static int ce_structured_type(const char *ct)
{
    static const char want[] = "application/cloudevents+json";
    size_t n = strcspn(ct, "; \t");
    return n == sizeof(want) - 1 && strncasecmp(ct, want, n) == 0;
}

/* Structured mode: the body must be a JSON object with specversion "1.0"
 * and non-empty string id, source and type. Returns 0 with the event id
 * copied to id (up to ESB_MSG_MAX_VALUE bytes), or -1 with why. */
static int ce_structured_check(const struct esb_body *body, char **id, char *why, size_t why_len)
{
    static const char *const required[] = {"id", "source", "type"};
    json_error_t jerr;
    json_t *ev = json_loadb((const char *)body->data, body->len, JSON_REJECT_DUPLICATES, &jerr);
    int rc = -1;
    if (!ev) {
        snprintf(why, why_len, "cloudevents: the body is not JSON: %s at line %d column %d",
                 jerr.text, jerr.line, jerr.column);
        goto out;
    }
    if (!json_is_object(ev)) {
        snprintf(why, why_len, "cloudevents: the body is not a JSON object");
        goto out;
    }
    const char *sv = json_string_value(json_object_get(ev, "specversion"));
    if (!sv || strcmp(sv, "1.0") != 0) {
        snprintf(why, why_len, "cloudevents: specversion must be \"1.0\"");
        goto out;
    }
    for (size_t i = 0; i < ESB_ARRAY_LEN(required); i++) {
        const char *v = json_string_value(json_object_get(ev, required[i]));
        if (!v || !*v) {
            snprintf(why, why_len, "cloudevents: %s must be a non-empty string", required[i]);
            goto out;
        }
    }
    const char *v = json_string_value(json_object_get(ev, "id"));
    if (strlen(v) > ESB_MSG_MAX_VALUE) {
        snprintf(why, why_len, "cloudevents: id longer than %d bytes", ESB_MSG_MAX_VALUE);
        goto out;
    }
    *id = esb_strdup(v);
    rc = 0;
out:
    json_decref(ev);
    return rc;
}

/* The first call of a request (headers read, no body yet): answer the
 * errors that need no body. Returns 0 to go on (*body_len: the
 * Content-Length, or UINT64_MAX for a chunked body), else the status
 * queued. */
static unsigned check_request(struct esb_endpoint *ep, struct http_in_state *st,
                              struct MHD_Connection *c, const char *url, const char *method,
                              enum MHD_Result *ret, uint64_t *body_len)
{
    const struct esb_http_in_conf *conf = CONF(ep);
    if (!esb_runtime_has_route(st->rt, ep, url)) {
        *ret = esb__hin_respond_error(c, MHD_HTTP_NOT_FOUND, "no route for this path", NULL, NULL);
        return MHD_HTTP_NOT_FOUND;
    }
    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
        *ret = esb__hin_respond_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only POST is allowed",
                                      MHD_HTTP_HEADER_ALLOW, "POST");
        return MHD_HTTP_METHOD_NOT_ALLOWED;
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding");
    if (cl && te) {
        *ret = esb__hin_respond_error(
            c, MHD_HTTP_BAD_REQUEST, "both Content-Length and Transfer-Encoding given", NULL, NULL);
        return MHD_HTTP_BAD_REQUEST;
    }
    uint64_t len = 0;
    if (cl && parse_length(cl, &len) != 0) {
        *ret =
            esb__hin_respond_error(c, MHD_HTTP_BAD_REQUEST, "invalid Content-Length", NULL, NULL);
        return MHD_HTTP_BAD_REQUEST;
    }
    if (cl && len > conf->max_body) {
        char text[128];
        snprintf(text, sizeof(text), "body larger than max-body (%" PRIu64 " bytes)",
                 conf->max_body);
        *ret = esb__hin_respond_error(c, MHD_HTTP_CONTENT_TOO_LARGE, text, NULL, NULL);
        return MHD_HTTP_CONTENT_TOO_LARGE;
    }
    struct header_scan hs = {0, 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, scan_header, &hs);
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (hs.too_big || (ct && strlen(ct) > ESB_MSG_MAX_NAME)) {
        *ret = esb__hin_respond_error(c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
                                      "too many or too large header fields", NULL, NULL);
        return MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE;
    }
    char why[160];
    if (ce_binary_check(c, why, sizeof(why)) < 0) {
        *ret = esb__hin_respond_error(c, MHD_HTTP_BAD_REQUEST, why, NULL, NULL);
        return MHD_HTTP_BAD_REQUEST;
    }
    *body_len = cl ? len : UINT64_MAX;
    return 0;
}

/* A body of known length up to this is allocated whole before it arrives;
 * a longer one (or a chunked one) grows as it comes, so that a client
 * announcing a large body and sending nothing holds no memory for it. */
#define HTTP_IN_BODY_UPFRONT (64 * 1024)

/* Append n bytes to req's body, growing it up to max. -1: over max. */
static int body_add(struct http_req *req, const char *data, size_t n, uint64_t max)
{
    size_t len = req->body ? req->body->len : 0;
    if (n > max || len > max - n) return -1;
    if (len + n > req->cap) {
        size_t cap = req->cap ? req->cap : 4096;
        while (cap < len + n) cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        if (cap > max) cap = (size_t)max;
        struct esb_body *b = esb_realloc(req->body, sizeof(*b) + cap + 1);
        if (!req->body) {
            atomic_init(&b->refs, 1);
            b->len = 0;
        }
        req->body = b;
        req->cap = cap;
    }
    memcpy(req->body->data + len, data, n);
    req->body->len = len + n;
    return 0;
}

/* The finished body (empty if none came), taken from req. */
static struct esb_body *body_take(struct http_req *req)
{
    struct esb_body *b = req->body ? req->body : esb_body_alloc(0);
    b->data[b->len] = '\0';
    req->body = NULL;
    req->cap = 0;
    return b;
}

static void body_free(struct http_req *req)
{
    esb_body_unref(req->body);
    req->body = NULL;
    req->cap = 0;
}

/* esb_runtime_accept/request failed with rc: nothing was stored. */
enum MHD_Result esb__hin_respond_not_accepted(struct esb_endpoint *ep, struct MHD_Connection *c,
                                              const char *url, int rc, const struct esb_err *err)
{
    if (rc == ESB_EFULL)
        return esb__hin_respond_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                      err->msg[0] ? err->msg : "busy, retry later",
                                      MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (rc == ESB_ENOTFOUND)
        return esb__hin_respond_error(c, MHD_HTTP_NOT_FOUND, "no route for this path", NULL, NULL);
    /* Stopping, failed or unexpected: nothing was acknowledged. */
    esb_warn("http-in=%s path=%s accept failed: %s", ep->id, url,
             err->msg[0] ? err->msg : esb_strerror(rc));
    return esb__hin_respond_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not accepted, retry later",
                                  MHD_HTTP_HEADER_RETRY_AFTER, "1");
}

/* The last call: the whole body is in req. Make it a message, hand it to
 * the runtime and answer by the outcome. */
static enum MHD_Result finish_request(struct esb_endpoint *ep, struct http_in_state *st,
                                      struct MHD_Connection *c, const char *url,
                                      struct http_req *req)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    char *ce_id = NULL, why[300];
    const char *ce_mode = NULL;
    struct esb_body *body = body_take(req);
    if (ct && ce_structured_type(ct)) {
        if (ce_structured_check(body, &ce_id, why, sizeof(why)) < 0) {
            esb_body_unref(body);
            return esb__hin_respond_error(c, MHD_HTTP_BAD_REQUEST, why, NULL, NULL);
        }
        ce_mode = "structured";
    } else if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "ce-specversion")) {
        /* binary mode: check_request made sure ce-id is there */
        const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "ce-id");
        ce_id = esb_strdup(v ? v : "");
        ce_mode = "binary";
    }
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_body_take(m, body);
    esb_msg_set_content_type(m, ct && *ct ? ct : "application/octet-stream");
    MHD_get_connection_values(c, MHD_HEADER_KIND, copy_header, m);
    esb_msg_set_header(m, "esb-source", ep->id);
    if (ce_mode) {
        esb_msg_set_header(m, "esb-ce-mode", ce_mode);
        esb_msg_set_header(m, "esb-ce-id", ce_id);
        free(ce_id);
    }

    return esb__hin_request_reply(ep, st, c, url, req, m,
                                  CONF(ep)->mode != ESB_HTTP_IN_REQUEST_REPLY);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    struct esb_endpoint *ep = cls;
    struct http_in_state *st = ep->state;
    struct http_req *req = *con_cls;
    static _Thread_local int niced;
    if (!niced) { /* libmicrohttpd made this thread: set its niceness once */
        niced = 1;
        if (CONF(ep)->nice) {
            errno = 0;
            int base = getpriority(PRIO_PROCESS, 0); /* -1 is a valid answer */
            int want = (errno ? 0 : base) + (int)CONF(ep)->nice;
            (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), want > 19 ? 19 : want);
        }
    }

    if (!req) {
        enum MHD_Result ret = MHD_NO;
        if (atomic_load(&st->stopping))
            return esb__hin_respond_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down",
                                          MHD_HTTP_HEADER_RETRY_AFTER, "1");
        uint64_t len = UINT64_MAX;
        if (check_request(ep, st, c, url, method, &ret, &len) != 0) return ret;
        req = esb_calloc(1, sizeof(*req));
        if (len > 0 && len <= HTTP_IN_BODY_UPFRONT) { /* one allocation, the right size */
            req->body = esb_body_alloc((size_t)len);
            req->body->len = 0;
            req->cap = (size_t)len;
        }
        *con_cls = req;
        return MHD_YES;
    }
    if (req->rw) return esb__hin_request_reply_again(c, req->rw);
    if (*upload_data_size > 0) {
        /* Chunked bodies have no length up front: count as they stream. */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (!req->too_large && body_add(req, upload_data, n, CONF(ep)->max_body) == 0)
            return MHD_YES;
        if (!req->too_large) {
            req->too_large = 1;
            body_free(req);
            esb_info("http-in=%s path=%s chunked body over max-body, discarding", ep->id, url);
        }
        req->discarded += n;
        return req->discarded <= HTTP_IN_DISCARD_MAX ? MHD_YES : MHD_NO; /* MHD_NO: close */
    }
    if (req->too_large) {
        char text[128];
        snprintf(text, sizeof(text), "body larger than max-body (%" PRIu64 " bytes)",
                 CONF(ep)->max_body);
        return esb__hin_respond_error(c, MHD_HTTP_CONTENT_TOO_LARGE, text, NULL, NULL);
    }
    return finish_request(ep, st, c, url, req);
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct esb_endpoint *ep = cls;
    struct http_req *req = *con_cls;
    if (!req) return;
    if (req->rw) esb__hin_request_reply_done(ep->state, req->rw);
    body_free(req);
    free(req);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct esb_endpoint *ep = cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    esb_info("http-in=%s libmicrohttpd: %s", ep->id, line);
}

/* ---- lifecycle ---- */

static void state_free(struct http_in_state *st)
{
    if (!st) return;
    pthread_mutex_destroy(&st->waits_lock);
    free(st);
}

/* Several daemons share the address through SO_REUSEPORT, which would
 * also let them share it with another process of ours that listens there
 * already. Bind a plain socket first: it fails when anyone holds the
 * address, as a single listener would. Returns 0 or a negative errno. */
static int probe_listen(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1, rc = 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* as MHD does */
    if (bind(fd, sa, len) != 0) rc = -errno;
    close(fd);
    return rc;
}

/* Stop every running daemon of st and forget them. */
static void stop_daemons(struct http_in_state *st)
{
    for (unsigned i = 0; i < st->ndaemons; i++) MHD_stop_daemon(st->daemons[i]);
    free(st->daemons);
    st->daemons = NULL;
    st->ndaemons = 0;
}

static int http_in_check(struct esb_endpoint *ep, struct esb_err *err)
{
    const struct esb_http_in_conf *conf = CONF(ep);
    char *host = NULL;
    unsigned port = 0;
    if (esb_parse_listen(conf->listen, &host, &port) != 0)
        return esb_err_set(err, ESB_EINVAL,
                           "%s:%d: http-in '%s': attribute 'listen': expected host:port, got '%s'",
                           ep->file, ep->line, ep->id, conf->listen);
    free(host);
    return 0;
}

static int http_in_start(struct esb_endpoint *ep, struct esb_runtime *rt, struct esb_err *err)
{
    const struct esb_http_in_conf *conf = CONF(ep);
    int rc = 0;
    struct http_in_state *st = NULL;
    struct esb_listen_addr la;
    if (esb_listen_addr_parse(conf->listen, &la) != 0) {
        rc = esb_err_set(err, ESB_EINVAL, "http-in '%s': invalid listen address '%s'", ep->id,
                         conf->listen);
        goto out;
    }
    unsigned port = la.port;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (la.ipv6) flags |= MHD_USE_IPv6;

    if (ep->state) { /* started before and stopped: start afresh */
        if (((struct http_in_state *)ep->state)->ndaemons) {
            rc = esb_err_set(err, ESB_EINVAL, "http-in '%s': already running", ep->id);
            goto out;
        }
        state_free(ep->state);
        ep->state = NULL;
    }
    st = esb_calloc(1, sizeof(*st));
    pthread_mutex_init(&st->waits_lock, NULL);
    st->rt = rt;
    ep->state = st;
    flags |= MHD_ALLOW_SUSPEND_RESUME; /* both modes suspend while the bus works */
    unsigned timeout_s = (unsigned)((conf->timeout + 999) / 1000);
    if (timeout_s == 0) timeout_s = 1;
    unsigned n = (unsigned)conf->threads;
    if (n > 1) {
        int prc = probe_listen(&la.u.sa, la.len);
        if (prc < 0) {
            rc = esb_err_set(err, ESB_EFAILED, "http-in '%s': cannot listen on %s: %s", ep->id,
                             conf->listen, esb_strerror(prc));
            goto out;
        }
    }
    unsigned conns = ((unsigned)conf->max_connections + n - 1) / n;
    st->daemons = esb_calloc(n, sizeof(*st->daemons));
    for (unsigned i = 0; i < n; i++) {
        st->daemons[i] = MHD_start_daemon(
            flags, (uint16_t)port, NULL, NULL, handle, ep, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, ep,
            MHD_OPTION_SOCK_ADDR, &la.u.sa, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)(n > 1),
            MHD_OPTION_CONNECTION_LIMIT, conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
            (unsigned)conf->per_ip_connections, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_IN_CONN_MEMORY,
            MHD_OPTION_NOTIFY_COMPLETED, request_done, ep, MHD_OPTION_END);
        if (!st->daemons[i]) {
            rc = esb_err_set(err, ESB_EFAILED,
                             "http-in '%s': cannot listen on %s (address in use or not available)",
                             ep->id, conf->listen);
            stop_daemons(st);
            goto out;
        }
        st->ndaemons++;
    }
    esb_info("http-in=%s listening=%s port=%u", ep->id, conf->listen, port);
out:
    if (rc != 0 && st) {
        state_free(st);
        ep->state = NULL;
    }
    return rc;
}

static void http_in_stop(struct esb_endpoint *ep)
{
    struct http_in_state *st = ep ? ep->state : NULL;
    if (!st || !st->ndaemons) return;
    atomic_store(&st->stopping, 1);
    esb__hin_request_reply_stop(st);
    stop_daemons(st);
    esb_info("http-in=%s stopped", ep->id);
}

static int http_in_same(const struct esb_endpoint *a, const struct esb_endpoint *b)
{
    const struct esb_http_in_conf *x = CONF(a), *y = CONF(b);
    return strcmp(a->id, b->id) == 0 && strcmp(x->listen, y->listen) == 0 &&
           x->max_body == y->max_body && x->max_connections == y->max_connections &&
           x->per_ip_connections == y->per_ip_connections && x->timeout == y->timeout &&
           x->threads == y->threads && x->nice == y->nice && x->mode == y->mode &&
           x->reply_timeout == y->reply_timeout;
}

static void http_in_destroy(struct esb_endpoint *ep)
{
    if (!ep || !ep->state) return;
    http_in_stop(ep);
    state_free(ep->state);
    ep->state = NULL;
}

const struct esb_connector_ops esb_http_in_ops = {
    .element = "http-in",
    .dir = ESB_INBOUND,
    .summary = "Receives messages as HTTP POST requests; answers 202 once they are durable, or "
               "(mode=\"request-reply\") with the route's final message.",
    .attrs = http_in_attrs,
    .conf_size = sizeof(struct esb_http_in_conf),
    .check = http_in_check,
    .start = http_in_start,
    .stop = http_in_stop,
    .same = http_in_same,
    .destroy = http_in_destroy,
};
