/* http_in.c - the http-in connector: each POST to a routed path becomes a
 * message, answered 202 once the bus made it durable.
 *
 * The HTTP side is http_server.c (own epoll loops). Each request runs
 * through the callbacks below on its connection's loop thread: head()
 * decides 404/405/413/431/400 before any body byte is read and builds the
 * message from the header fields; body() collects the body straight into
 * the message's body (capped at max-body: 413 at once, mid-body too);
 * complete() adds the message to its loop's batch and parks the request;
 * at the end of the loop's pass the batch is committed as one transaction
 * (esb_runtime_batch_commit), and the bus's group commit makes every
 * request in flight durable with one fdatasync.
 * on_accepted (the bus's completer thread) resumes the request, and
 * resumed() answers 202 - only once the message is durable - or 503 if it
 * could not be written.
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
 * mode="request-reply": complete() registers the request with
 * esb_runtime_request() (durable like accept) and parks it; the reply
 * callback (a worker or the timeout thread) stores the answer in the
 * request's refcounted reply_wait and resumes it, and resumed() answers.
 * The reply_wait outlives a connection that ended (a late reply is
 * dropped) and never needs the endpoint's state, so a reply may come after
 * a reload stopped the endpoint. */
#include "config.h"

#include "http_in.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_in_internal.h"
#include "listen_addr.h"
#include "log.h"
#include "msg.h"
#include "runtime.h"

/* Bytes for a request line and its header fields (more: 431). */
#define HTTP_IN_HEAD_MAX (16 * 1024)

/* A body of known length up to this is allocated whole before it arrives;
 * a longer one (or a chunked one) grows as it comes, so that a client
 * announcing a large body and sending nothing holds no memory for it. */
#define HTTP_IN_BODY_UPFRONT (64 * 1024)

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
     "A connection with no progress (no request byte read, no answer byte written) for this long "
     "is closed; checked once a second. A request waiting for the bus or its route does not "
     "time out (see reply-timeout)."},
    {"threads", ESB_ATTR_UINT, "2", offsetof(struct esb_http_in_conf, threads), 0, 1, 256, NULL,
     "Server threads. Each runs its own event loop (epoll) on its own listening socket of the "
     "same address (SO_REUSEPORT); the kernel spreads new connections over them. A request does "
     "not hold its thread while the bus makes it durable."},
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

void esb__hin_respond(struct esb_http_conn *c, unsigned status, const char *body, const char *hname,
                      const char *hvalue)
{
    struct esb_http_hdr h[2] = {{"Content-Type", "application/json"}, {hname, hvalue}};
    esb_http_respond(c, status, h, hname ? 2 : 1, body, strlen(body));
}

void esb__hin_respond_error(struct esb_http_conn *c, unsigned status, const char *text,
                            const char *hname, const char *hvalue)
{
    char esc[600], body[640];
    esb__hin_json_escape(esc, sizeof(esc), text);
    snprintf(body, sizeof(body), "{\"error\":\"%s\"}", esc);
    esb__hin_respond(c, status, body, hname, hvalue);
}

/* esb_runtime_accept/request failed with rc: nothing was stored. */
void esb__hin_respond_not_accepted(struct esb_endpoint *ep, struct esb_http_conn *c,
                                   const char *url, int rc, const struct esb_err *err)
{
    if (rc == ESB_EFULL) {
        esb__hin_respond_error(c, 503, err->msg[0] ? err->msg : "busy, retry later", "Retry-After",
                               "1");
        return;
    }
    if (rc == ESB_ENOTFOUND) {
        esb__hin_respond_error(c, 404, "no route for this path", NULL, NULL);
        return;
    }
    /* Stopping, failed or unexpected: nothing was acknowledged. */
    esb_warn("http-in=%s path=%s accept failed: %s", ep->id, url,
             err->msg[0] ? err->msg : esb_strerror(rc));
    esb__hin_respond_error(c, 503, "not accepted, retry later", "Retry-After", "1");
}

/* ---- request checks ---- */

/* Hop-by-hop and framing headers that describe this connection, not the
 * message; plus content-type (it is the message's content type) and the
 * reserved esb-* names, which a client must not be able to forge. */
static int header_dropped(const char *name, size_t n)
{
    static const char *const drop[] = {
        "connection", "keep-alive",     "transfer-encoding", "te",     "upgrade",
        "trailer",    "content-length", "content-type",      "expect", NULL,
    };
    for (size_t i = 0; drop[i]; i++)
        if (strlen(drop[i]) == n && strncasecmp(name, drop[i], n) == 0) return 1;
    return (n >= 6 && strncasecmp(name, "proxy-", 6) == 0) ||
           (n >= 4 && strncasecmp(name, "esb-", 4) == 0);
}

/* Every field fits a message header (names of at most ESB_MSG_MAX_NAME
 * bytes, values of at most ESB_MSG_MAX_VALUE). */
static int fields_fit(const struct esb_http_head *h)
{
    for (size_t i = 0; i < h->nfields; i++)
        if (h->fields[i].name_len > ESB_MSG_MAX_NAME || h->fields[i].value_len > ESB_MSG_MAX_VALUE)
            return 0;
    return h->nfields <= ESB_MSG_MAX_HEADERS - 8;
}

/* The request's fields as message headers (names in lower case; on_head
 * made sure they fit). */
static void copy_headers(struct esb_msg *m, const struct esb_http_head *h)
{
    char name[ESB_MSG_MAX_NAME + 1];
    for (size_t i = 0; i < h->nfields; i++) {
        const struct esb_http_field *f = &h->fields[i];
        if (header_dropped(f->name, f->name_len)) continue;
        for (size_t k = 0; k < f->name_len; k++) name[k] = (char)tolower((unsigned char)f->name[k]);
        name[f->name_len] = '\0';
        char small[256];
        char *value = f->value_len < sizeof(small) ? small : esb_malloc(f->value_len + 1);
        memcpy(value, f->value, f->value_len);
        value[f->value_len] = '\0';
        esb_msg_add_header(m, name, value);
        if (value != small) free(value);
    }
}

/* Percent-decode the path of target (up to '?' or '#') into out. -1: a
 * bad escape, a NUL, or longer than out. */
static int decode_path(const char *t, size_t n, char *out, size_t outsize)
{
    size_t o = 0;
    for (size_t i = 0; i < n && t[i] != '?' && t[i] != '#'; i++) {
        char ch = t[i];
        if (ch == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)t[i + 1]) ||
                !isxdigit((unsigned char)t[i + 2]))
                return -1;
            char hex[3] = {t[i + 1], t[i + 2], 0};
            ch = (char)strtol(hex, NULL, 16);
            if (ch == 0) return -1;
            i += 2;
        }
        if (o + 1 >= outsize) return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    return 0;
}

/* ---- CloudEvents ---- */

/* Binary mode (a ce-specversion header): it must be "1.0" and ce-id,
 * ce-source and ce-type must be given and non-empty. Returns 0 (also when
 * the request is no binary-mode event) or -1 with why. */
static int ce_binary_check(const struct esb_http_head *h, char *why, size_t why_len)
{
    static const char *const required[] = {"ce-id", "ce-source", "ce-type"};
    size_t n = 0;
    const char *v = esb_http_field(h, "ce-specversion", &n);
    if (!v) return 0;
    if (n != 3 || memcmp(v, "1.0", 3) != 0) {
        snprintf(why, why_len, "cloudevents: ce-specversion must be 1.0");
        return -1;
    }
    for (size_t i = 0; i < ESB_ARRAY_LEN(required); i++) {
        v = esb_http_field(h, required[i], &n);
        if (!v || !n) {
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

/* ---- the server's callbacks ---- */

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

static void req_free(struct http_req *req)
{
    free(req->url);
    esb_body_unref(req->body);
    esb_msg_unref(req->m);
    free(req);
}

static void too_large(struct esb_endpoint *ep, struct esb_http_conn *c)
{
    char text[128];
    snprintf(text, sizeof(text), "body larger than max-body (%" PRIu64 " bytes)",
             CONF(ep)->max_body);
    esb__hin_respond_error(c, 413, text, NULL, NULL);
}

/* The head is read: answer what needs no body, else make the message. */
static void on_head(void *app, struct esb_http_conn *c, const struct esb_http_head *h)
{
    struct esb_endpoint *ep = app;
    struct http_in_state *st = ep->state;
    const struct esb_http_in_conf *conf = CONF(ep);
    char url[1024];
    if (atomic_load(&st->stopping)) {
        esb__hin_respond_error(c, 503, "shutting down", "Retry-After", "1");
        return;
    }
    if (decode_path(h->target, h->target_len, url, sizeof(url)) != 0) {
        esb__hin_respond_error(c, 400, "malformed or too long path", NULL, NULL);
        return;
    }
    if (!esb_runtime_has_route(st->rt, ep, url)) {
        esb__hin_respond_error(c, 404, "no route for this path", NULL, NULL);
        return;
    }
    if (h->method_len != 4 || memcmp(h->method, "POST", 4) != 0) {
        esb__hin_respond_error(c, 405, "only POST is allowed", "Allow", "POST");
        return;
    }
    if (h->has_length && h->length > conf->max_body) {
        too_large(ep, c);
        return;
    }
    size_t ctlen = 0;
    const char *ct = esb_http_field(h, "content-type", &ctlen);
    if (ctlen > ESB_MSG_MAX_NAME || !fields_fit(h)) {
        esb__hin_respond_error(c, 431, "too many or too large header fields", NULL, NULL);
        return;
    }
    char why[160];
    if (ce_binary_check(h, why, sizeof(why)) < 0) {
        esb__hin_respond_error(c, 400, why, NULL, NULL);
        return;
    }
    struct http_req *req = esb_calloc(1, sizeof(*req));
    req->url = esb_strdup(url);
    struct esb_msg *m = req->m = esb_msg_new();
    if (ct && ctlen) {
        char *t = esb_strndup(ct, ctlen);
        esb_msg_set_content_type(m, t);
        req->structured = ce_structured_type(t);
        free(t);
    } else {
        esb_msg_set_content_type(m, "application/octet-stream");
    }
    copy_headers(m, h);
    esb_msg_set_header(m, "esb-source", ep->id);
    size_t idlen = 0;
    const char *ceid = esb_http_field(h, "ce-id", &idlen);
    if (!req->structured && esb_http_field(h, "ce-specversion", NULL)) {
        char *id = esb_strndup(ceid ? ceid : "", idlen); /* ce_binary_check made sure */
        esb_msg_set_header(m, "esb-ce-mode", "binary");
        esb_msg_set_header(m, "esb-ce-id", id);
        free(id);
    }
    if (h->has_length && h->length > 0 && h->length <= HTTP_IN_BODY_UPFRONT) {
        req->body = esb_body_alloc((size_t)h->length); /* one allocation, the right size */
        req->body->len = 0;
        req->cap = (size_t)h->length;
    }
    *esb_http_ctx(c) = req;
}

static int on_body(void *app, struct esb_http_conn *c, const char *data, size_t n)
{
    struct esb_endpoint *ep = app;
    struct http_req *req = *esb_http_ctx(c);
    if (body_add(req, data, n, CONF(ep)->max_body) == 0) return 0;
    esb_info("http-in=%s path=%s body over max-body, refused", ep->id, req->url);
    too_large(ep, c);
    return 1;
}

/* The body is complete: check a structured event, hand the message over. */
static void on_complete(void *app, struct esb_http_conn *c)
{
    struct esb_endpoint *ep = app;
    struct http_in_state *st = ep->state;
    struct http_req *req = *esb_http_ctx(c);
    struct esb_msg *m = req->m;
    struct esb_body *body = body_take(req);
    if (req->structured) {
        char *ce_id = NULL, why[300];
        if (ce_structured_check(body, &ce_id, why, sizeof(why)) < 0) {
            esb_body_unref(body);
            esb__hin_respond_error(c, 400, why, NULL, NULL);
            return;
        }
        esb_msg_set_header(m, "esb-ce-mode", "structured");
        esb_msg_set_header(m, "esb-ce-id", ce_id);
        free(ce_id);
    }
    esb_msg_set_body_take(m, body);
    req->m = NULL;
    esb__hin_request_reply(ep, st, c, req->url, req, m,
                           CONF(ep)->mode != ESB_HTTP_IN_REQUEST_REPLY);
}

static void on_resumed(void *app, struct esb_http_conn *c)
{
    (void)app;
    struct http_req *req = *esb_http_ctx(c);
    esb__hin_request_reply_again(c, req->rw);
}

static void on_done(void *app, struct esb_http_conn *c)
{
    struct esb_endpoint *ep = app;
    struct http_req *req = *esb_http_ctx(c);
    if (!req) return;
    if (req->rw) esb__hin_request_reply_done(ep->state, req->rw);
    req_free(req);
    *esb_http_ctx(c) = NULL;
}

static void on_pass_end(void *app)
{
    (void)app;
    esb__hin_pass_end();
}

static const struct esb_http_server_ops http_in_server_ops = {
    .head = on_head,
    .body = on_body,
    .complete = on_complete,
    .resumed = on_resumed,
    .done = on_done,
    .pass_end = on_pass_end,
};

/* ---- lifecycle ---- */

static void state_free(struct http_in_state *st)
{
    if (!st) return;
    pthread_mutex_destroy(&st->waits_lock);
    free(st);
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
    struct esb_listen_addr la;
    if (esb_listen_addr_parse(conf->listen, &la) != 0)
        return esb_err_set(err, ESB_EINVAL, "http-in '%s': invalid listen address '%s'", ep->id,
                           conf->listen);
    if (ep->state) { /* started before and stopped: start afresh */
        if (((struct http_in_state *)ep->state)->srv)
            return esb_err_set(err, ESB_EINVAL, "http-in '%s': already running", ep->id);
        state_free(ep->state);
        ep->state = NULL;
    }
    struct http_in_state *st = esb_calloc(1, sizeof(*st));
    pthread_mutex_init(&st->waits_lock, NULL);
    st->rt = rt;
    ep->state = st;
    struct esb_http_server_conf sc = {
        .name = ep->id,
        .addr = &la.u.sa,
        .addr_len = la.len,
        .threads = (unsigned)conf->threads,
        .nice = (int)conf->nice,
        .max_connections = (unsigned)conf->max_connections,
        .per_ip_connections = (unsigned)conf->per_ip_connections,
        .idle_timeout_ms = conf->timeout,
        .head_max = HTTP_IN_HEAD_MAX,
        .ops = &http_in_server_ops,
        .app = ep,
    };
    struct esb_err serr = {0, ""};
    if (esb_http_server_start(&sc, &st->srv, &serr) != 0) {
        state_free(st);
        ep->state = NULL;
        return esb_err_set(err, ESB_EFAILED, "http-in '%s': cannot listen on %s: %s", ep->id,
                           conf->listen, serr.msg);
    }
    esb_info("http-in=%s listening=%s port=%u threads=%u", ep->id, conf->listen, la.port,
             (unsigned)conf->threads);
    return 0;
}

static void http_in_stop(struct esb_endpoint *ep)
{
    struct http_in_state *st = ep ? ep->state : NULL;
    if (!st || !st->srv) return;
    atomic_store(&st->stopping, 1);
    esb__hin_request_reply_stop(st);
    esb_http_server_stop(st->srv);
    st->srv = NULL;
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
