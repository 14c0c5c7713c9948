/* http_out.c - the http-out connector on the libcurl multi interface.
 *
 * One delivery thread per endpoint, started by the first deliver_async,
 * owns a CURLM handle (its connection cache gives keep-alive reuse), a pool
 * of easy handles and every request from the moment it is put on the wire.
 * deliver_async() only takes over the caller's message reference, queues the request
 * under the endpoint's lock and wakes the thread (curl_multi_wakeup). The
 * thread moves queued requests onto the wire while fewer than max-in-flight
 * are there, renders the URL and headers, runs the transfers, classifies
 * each result and calls done() exactly once, without holding any lock.
 *
 * Contract the runtime relies on:
 *  - deliver_async returns 0, owns the caller's reference to m from then on
 *    (it drops it after done), and done(ctx, result) is called exactly
 *    once, later, from the endpoint's thread (never from inside
 *    deliver_async); or it returns an error (ESB_ECLOSED after destroy
 *    began, ESB_EFULL over HTTP_OUT_QUEUE_MAX waiting requests, a thread
 *    that cannot start), the caller keeps its reference and done is never
 *    called. result is valid only during done. done may call
 *    deliver_async again.
 *  - at most max-in-flight requests are on the wire; more wait, in order.
 *  - destroy stops the thread: every request still queued or on the wire
 *    gets done(RETRY, "shutting down") from that thread before destroy
 *    returns. The caller must not hold a lock done() takes, must not call
 *    destroy from done(), and must not call deliver_async concurrently
 *    with it. destroy may be called again (a no-op); deliver_async after
 *    it fails with ESB_ECLOSED. So a runtime may destroy an endpoint early
 *    to cut its open requests short at shutdown.
 *  - deliver (blocking) wraps deliver_async and waits; never call it from
 *    a done() callback. */
#include "config.h"

#include "http_out.h"

#include <curl/curl.h>
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http_out_internal.h"
#include "log.h"
#include "msg.h"

#define CONF(ep) ((const struct esb_http_out_conf *)(ep)->conf)

#define HTTP_OUT_EXCERPT_MAX 200   /* response body bytes kept for the reason */
#define HTTP_OUT_QUEUE_MAX   65536 /* requests waiting beyond max-in-flight */
#define HTTP_OUT_MAX_REDIRS  5L    /* redirects followed (follow-redirects) */

static const struct esb_attr_spec http_out_attrs[] = {
#define A(name, type, def, field, min, max, vals, doc)                                             \
    {                                                                                              \
        name, type, def, offsetof(struct esb_http_out_conf, field), 0, min, max, vals, doc         \
    }
    A("id", ESB_ATTR_STRING, NULL, id, 0, 0, NULL, "Endpoint id, used in to uri=\"http-out:ID\"."),
    {"url", ESB_ATTR_STRING, NULL, offsetof(struct esb_http_out_conf, url), 1, 0, 0, NULL,
     "Target URL template, http:// or https:// only; {id}, {header:NAME}, {content-type}, "
     "{date:FMT} and {route} may appear after the host and are URL-encoded."},
    A("method", ESB_ATTR_ENUM, "POST", method, 0, 0, esb__http_out_methods,
      "HTTP method of each request; the message body is the request body."),
    A("headers", ESB_ATTR_STRING, NULL, headers, 0, 0, NULL,
      "Fixed request headers, \"Name: value; Name2: value\" (';' separates; values cannot "
      "contain ';')."),
    A("forward-headers", ESB_ATTR_STRING, "", forward_headers, 0, 0, NULL,
      "Comma-separated globs of message header names to send along, e.g. \"x-*,accept\"; "
      "none by default."),
    A("propagate-traceparent", ESB_ATTR_BOOL, "true", propagate_traceparent, 0, 0, NULL,
      "Send the message's W3C traceparent (and tracestate) headers."),
    A("idempotency-header", ESB_ATTR_STRING, "Idempotency-Key", idempotency_header, 0, 0, NULL,
      "Header that carries the message id so the receiver can drop redeliveries; empty to "
      "send none."),
    A("connect-timeout", ESB_ATTR_DURATION, "5s", connect_timeout, 1, UINT64_C(3600000), NULL,
      "Longest wait for the TCP (and TLS) connection."),
    A("timeout", ESB_ATTR_DURATION, "30s", timeout, 1, UINT64_C(86400000), NULL,
      "Longest time for a whole request, connection included; then the delivery is retried."),
    A("low-speed-limit", ESB_ATTR_SIZE, "1", low_speed_limit, 0, UINT64_C(1) << 30, NULL,
      "Bytes per second below which a transfer counts as stalled; 0 turns the check off."),
    A("low-speed-time", ESB_ATTR_DURATION, "30s", low_speed_time, 1000, UINT64_C(86400000), NULL,
      "How long a transfer may stay below low-speed-limit before it is aborted (whole "
      "seconds)."),
    A("max-in-flight", ESB_ATTR_UINT, "64", max_in_flight, 1, 4096, NULL,
      "Most requests on the wire at once, and most kept-alive connections to the host."),
    A("tls-verify", ESB_ATTR_BOOL, "true", tls_verify, 0, 0, NULL,
      "Verify the server certificate and host name (https)."),
    A("ca-file", ESB_ATTR_STRING, NULL, ca_file, 0, 0, NULL,
      "PEM file of CA certificates to trust instead of the system's."),
    A("client-cert", ESB_ATTR_STRING, NULL, client_cert, 0, 0, NULL,
      "PEM client certificate for mutual TLS."),
    A("client-key", ESB_ATTR_STRING, NULL, client_key, 0, 0, NULL,
      "PEM private key of client-cert (if not in the same file)."),
    A("follow-redirects", ESB_ATTR_BOOL, "false", follow_redirects, 0, 0, NULL,
      "Follow 3xx redirects (at most 5, to http/https URLs only); if false a 3xx is not "
      "success."),
    A("retry-status", ESB_ATTR_STRING, "408,425,429,500-599", retry_status, 0, 0, NULL,
      "HTTP statuses (300-599; single codes or ranges) that mean retry later; 2xx is success "
      "and every other status dead-letters."),
    A("breaker-failures", ESB_ATTR_UINT, "5", breaker_failures, 0, 1000000, NULL,
      "Circuit breaker: after this many consecutive deliveries failed with a retryable error "
      "(a retry-status, a timeout, a connection error), nothing new is sent to the endpoint "
      "for breaker-cooldown (messages wait on the bus), then one probe: its success closes "
      "the breaker, its failure opens it again. 0 turns the breaker off."),
    A("breaker-cooldown", ESB_ATTR_DURATION, "30s", breaker_cooldown, 1, UINT64_C(86400000), NULL,
      "How long the open circuit breaker sends nothing before its probe."),
#undef A
    ESB_ATTR_END,
};

/* ---- runtime state ---- */

struct req {
    struct req *next, *prev; /* queue (next only) or the active list */
    struct esb_msg *m;
    esb_delivery_done_fn done;
    void *ctx;
    CURL *easy;
    struct curl_slist *hdrs;
    char *url; /* rendered, for reasons */
    char excerpt[HTTP_OUT_EXCERPT_MAX];
    size_t nexcerpt;
    char retry_after[64];
    char errbuf[CURL_ERROR_SIZE];
};

struct http_out_state {
    struct esb_endpoint *ep;
    struct esb__http_out_compiled c;
    unsigned max;
    pthread_mutex_t lock; /* guards the fields below up to the thread-only part */
    struct req *qhead, *qtail;
    size_t nqueued;
    int started, stopping;
    pthread_t thread;
    CURLM *multi;
    /* Owned by the delivery thread. */
    struct req *active;
    unsigned nactive;
    CURL **pool;
    unsigned npool;
    char *value; /* one rendered placeholder */
    char *urlbuf;
};

static void state_free(struct http_out_state *st)
{
    if (!st) return;
    for (unsigned i = 0; i < st->npool; i++) curl_easy_cleanup(st->pool[i]);
    free(st->pool);
    if (st->multi) curl_multi_cleanup(st->multi);
    esb__http_out_compiled_free(&st->c);
    pthread_mutex_destroy(&st->lock);
    free(st->value);
    free(st->urlbuf);
    free(st);
    curl_global_cleanup();
}

/* ep->state after destroy: deliveries are refused, destroy is a no-op. */
static char destroyed_marker;
#define DESTROYED ((void *)&destroyed_marker)

/* The endpoint's state, made on first use (any thread; one wins); NULL with
 * err set if it cannot be made or the endpoint was destroyed. */
static struct http_out_state *get_state(struct esb_endpoint *ep, struct esb_err *err)
{
    struct http_out_state *st = esb_endpoint_state(ep);
    if (st == DESTROYED) {
        esb_err_set(err, ESB_ECLOSED, "http-out '%s': shutting down", ep->id);
        return NULL;
    }
    if (st) return st;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        esb_err_set(err, ESB_EFAILED, "http-out '%s': libcurl failed to initialise", ep->id);
        return NULL;
    }
    st = esb_calloc(1, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    st->ep = ep;
    if (esb__http_out_compile(ep, &st->c, err) != 0) {
        state_free(st);
        return NULL;
    }
    st->max = (unsigned)CONF(ep)->max_in_flight;
    st->pool = esb_calloc(st->max, sizeof(*st->pool));
    st->value = esb_malloc(ESB__HTTP_OUT_VALUE_MAX);
    st->urlbuf = esb_malloc(ESB__HTTP_OUT_URL_MAX + 1);
    st->multi = curl_multi_init();
    if (!st->multi) abort();
    curl_multi_setopt(st->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)st->max);
    curl_multi_setopt(st->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)st->max);
    curl_multi_setopt(st->multi, CURLMOPT_MAXCONNECTS, (long)st->max);
    struct http_out_state *won = esb_endpoint_state_install(ep, st);
    if (won != st) state_free(st);
    return won;
}

/* ---- building a request (delivery thread) ---- */

static struct curl_slist *add_header(struct curl_slist *l, const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = esb_malloc(n);
    snprintf(line, n, "%s: %s", name, value);
    struct curl_slist *r = curl_slist_append(l, line);
    free(line);
    if (!r) abort();
    return r;
}

static struct curl_slist *build_headers(const struct http_out_state *st, const struct esb_msg *m)
{
    const struct esb_http_out_conf *conf = CONF(st->ep);
    const char *ih = conf->idempotency_header;
    struct curl_slist *l = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
    if (!l) abort();
    for (size_t i = 0; i < st->c.nfixed; i++)
        if (!(l = curl_slist_append(l, st->c.fixed[i]))) abort();
    if (!st->c.fixed_ct)
        l = add_header(l, "Content-Type",
                       *m->content_type && esb__http_out_value_ok(m->content_type)
                           ? m->content_type
                           : "application/octet-stream");
    if (ih && *ih && !esb__http_out_fixed_has(&st->c, ih)) l = add_header(l, ih, m->id_text);
    if (conf->propagate_traceparent) {
        const char *tp = esb_msg_header(m, "traceparent"), *ts = esb_msg_header(m, "tracestate");
        if (tp && esb__http_out_value_ok(tp)) {
            l = add_header(l, "traceparent", tp);
            if (ts && esb__http_out_value_ok(ts)) l = add_header(l, "tracestate", ts);
        }
    }
    for (size_t i = 0; i < m->nheaders && st->c.nglobs; i++) {
        const struct esb_header *h = &m->headers[i];
        if (!esb__http_out_is_token(h->name, strlen(h->name)) || esb__http_out_managed(h->name) ||
            strcasecmp(h->name, "content-type") == 0 || (ih && strcasecmp(h->name, ih) == 0) ||
            esb__http_out_fixed_has(&st->c, h->name) || !esb__http_out_forwarded(&st->c, h->name))
            continue;
        if (!esb__http_out_value_ok(h->value)) {
            esb_debug("http-out=%s id=%s header=%s not forwarded: control character", st->ep->id,
                      m->id_text, h->name);
            continue;
        }
        l = add_header(l, h->name, h->value);
    }
    return l;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct req *r = arg;
    size_t n = size * nmemb, room = HTTP_OUT_EXCERPT_MAX - r->nexcerpt;
    memcpy(r->excerpt + r->nexcerpt, p, n < room ? n : room);
    r->nexcerpt += n < room ? n : room;
    return n; /* the rest is read and dropped */
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    struct req *r = arg;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new response (after 1xx or a redirect) */
        r->retry_after[0] = '\0';
        r->nexcerpt = 0;
    } else if (n > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        const char *s = p + 12, *e = p + n;
        esb__http_out_trim(&s, &e);
        while (e > s && (e[-1] == '\r' || e[-1] == '\n')) e--;
        size_t l = (size_t)(e - s) < sizeof(r->retry_after) - 1 ? (size_t)(e - s)
                                                                : sizeof(r->retry_after) - 1;
        memcpy(r->retry_after, s, l);
        r->retry_after[l] = '\0';
    }
    return n;
}

static CURL *easy_get(struct http_out_state *st)
{
    if (st->npool) return st->pool[--st->npool];
    CURL *e = curl_easy_init();
    if (!e) abort();
    return e;
}

static void easy_put(struct http_out_state *st, CURL *e)
{
    curl_easy_reset(e);
    if (st->npool < st->max)
        st->pool[st->npool++] = e;
    else
        curl_easy_cleanup(e);
}

/* Set up r's easy handle; 0, or ESB_EFULL when the URL is too long. */
static int setup(struct http_out_state *st, struct req *r)
{
    const struct esb_http_out_conf *conf = CONF(st->ep);
    if (esb__http_out_render_url(&st->c, r->m, st->value, st->urlbuf) != 0) return ESB_EFULL;
    r->url = esb_strdup(st->urlbuf);
    r->hdrs = build_headers(st, r->m);
    CURL *e = r->easy = easy_get(st);
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, conf->follow_redirects ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, HTTP_OUT_MAX_REDIRS);
    curl_easy_setopt(e, CURLOPT_POSTREDIR, (long)(CURL_REDIR_POST_301 | CURL_REDIR_POST_302));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)r->m->body->data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->m->body->len);
    if (conf->method != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, esb__http_out_methods[conf->method]);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "esb-http-out/" PACKAGE_VERSION);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)conf->connect_timeout);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)conf->timeout);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long)conf->low_speed_limit);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
                     conf->low_speed_limit ? (long)((conf->low_speed_time + 999) / 1000) : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, conf->tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, conf->tls_verify ? 2L : 0L);
    if (conf->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, conf->ca_file);
    if (conf->client_cert) curl_easy_setopt(e, CURLOPT_SSLCERT, conf->client_cert);
    if (conf->client_key) curl_easy_setopt(e, CURLOPT_SSLKEY, conf->client_key);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    return 0;
}

/* ---- results ---- */

/* Errors that another attempt cannot fix. Everything else (DNS, connect,
 * send/receive, timeouts, TLS handshake or certificate trouble an operator
 * can fix) is retried. */
static int permanent_curl_error(CURLcode cc)
{
    return cc == CURLE_UNSUPPORTED_PROTOCOL || cc == CURLE_URL_MALFORMAT ||
           cc == CURLE_TOO_MANY_REDIRECTS;
}

/* What went wrong, in words and as a failure class. */
static const char *curl_error_kind(CURLcode cc, enum esb_fail *fail)
{
    *fail = ESB_FAIL_CONNECT;
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        *fail = ESB_FAIL_TIMEOUT;
        return "timed out";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return "connection error";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        *fail = ESB_FAIL_TLS;
        return "TLS error";
    case CURLE_UNSUPPORTED_PROTOCOL:
        *fail = ESB_FAIL_INVALID;
        return "refused: not an http or https URL";
    case CURLE_TOO_MANY_REDIRECTS:
        *fail = ESB_FAIL_INVALID;
        return "too many redirects";
    case CURLE_URL_MALFORMAT:
        *fail = ESB_FAIL_INVALID;
        return "malformed URL";
    default:
        *fail = ESB_FAIL_ERROR;
        return "transfer error";
    }
}

static void classify(const struct http_out_state *st, struct req *r, CURLcode cc,
                     struct esb_delivery *out)
{
    char url[ESB__HTTP_OUT_REASON_URL + 64];
    esb__http_out_safe_url(r->url, url, sizeof(url));
    memset(out, 0, sizeof(*out));
    if (cc != CURLE_OK) {
        out->outcome = permanent_curl_error(cc) ? ESB_REJECT : ESB_RETRY;
        const char *kind = curl_error_kind(cc, &out->fail);
        esb_err_set(&out->err, cc == CURLE_OPERATION_TIMEDOUT ? ESB_ETIMEDOUT : ESB_EFAILED,
                    "%s: %s (%s)", kind, r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc), url);
        return;
    }
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    out->status = (int)status;
    if (status >= 200 && status <= 299) {
        out->outcome = ESB_DONE;
        return;
    }
    int retry = esb__http_out_retry_status(&st->c, status);
    out->outcome = retry ? ESB_RETRY : ESB_REJECT;
    out->fail = ESB_FAIL_STATUS;
    if (retry) out->retry_after_ms = esb__http_out_retry_after_ms(r->retry_after);
    char body[HTTP_OUT_EXCERPT_MAX + 1];
    size_t n = 0;
    for (size_t i = 0; i < r->nexcerpt; i++) {
        unsigned char c = (unsigned char)r->excerpt[i];
        if (c == '\r' || c == '\n' || c == '\t') c = ' ';
        if (c == ' ' && n && body[n - 1] == ' ') continue;
        body[n++] = c >= 0x20 && c < 0x7f ? (char)c : '.';
    }
    body[n] = '\0';
    esb_err_set(&out->err, ESB_EFAILED, "HTTP %ld from %s: %s", status, url,
                n ? body : "(empty body)");
}

/* Take r off the wire (if it was on), call done and free it. */
static void finish(struct http_out_state *st, struct req *r, const struct esb_delivery *res)
{
    if (r->easy) {
        curl_multi_remove_handle(st->multi, r->easy);
        easy_put(st, r->easy);
        if (r->prev)
            r->prev->next = r->next;
        else
            st->active = r->next;
        if (r->next) r->next->prev = r->prev;
        st->nactive--;
    }
    esb_debug("http-out=%s id=%s outcome=%s status=%d", st->ep->id, r->m->id_text,
              res->outcome == ESB_DONE    ? "done"
              : res->outcome == ESB_RETRY ? "retry"
                                          : "reject",
              res->status);
    r->done(r->ctx, res);
    esb_msg_unref(r->m);
    curl_slist_free_all(r->hdrs);
    free(r->url);
    free(r);
}

static void start(struct http_out_state *st, struct req *r)
{
    if (setup(st, r) != 0) {
        struct esb_delivery res = {.outcome = ESB_REJECT, .fail = ESB_FAIL_INVALID};
        esb_err_set(&res.err, ESB_EINVAL, "http-out '%s': the URL is longer than %d bytes",
                    st->ep->id, ESB__HTTP_OUT_URL_MAX);
        finish(st, r, &res);
        return;
    }
    r->prev = NULL;
    r->next = st->active;
    if (st->active) st->active->prev = r;
    st->active = r;
    st->nactive++;
    if (curl_multi_add_handle(st->multi, r->easy) != CURLM_OK) abort();
}

static void shutting_down(struct http_out_state *st, struct req *r)
{
    struct esb_delivery res = {.outcome = ESB_RETRY, .fail = ESB_FAIL_ERROR};
    esb_err_set(&res.err, ESB_ECLOSED, "http-out '%s': shutting down", st->ep->id);
    finish(st, r, &res);
}

static void *run(void *arg)
{
    struct http_out_state *st = arg;
    esb_thread_name("esb-curl-%s", st->ep->id);
    for (;;) {
        pthread_mutex_lock(&st->lock);
        int stopping = st->stopping;
        struct req *batch = NULL, **tail = &batch;
        unsigned nbatch = 0;
        while (!stopping && st->qhead && st->nactive + nbatch < st->max) {
            struct req *r = st->qhead;
            st->qhead = r->next;
            if (!st->qhead) st->qtail = NULL;
            st->nqueued--;
            r->next = NULL;
            *tail = r;
            tail = &r->next;
            nbatch++;
        }
        size_t waiting = st->nqueued;
        pthread_mutex_unlock(&st->lock);
        if (stopping) break;
        while (batch) {
            struct req *r = batch;
            batch = r->next;
            start(st, r);
        }
        int running = 0;
        curl_multi_perform(st->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(st->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) continue;
            char *priv = NULL;
            CURLcode cc = msg->data.result;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            struct req *r = (struct req *)(void *)priv;
            struct esb_delivery res;
            classify(st, r, cc, &res);
            finish(st, r, &res);
        }
        int more = waiting && st->nactive < st->max;
        curl_multi_poll(st->multi, NULL, 0, more ? 0 : 1000, NULL);
    }
    while (st->active) shutting_down(st, st->active);
    pthread_mutex_lock(&st->lock);
    struct req *q = st->qhead;
    st->qhead = st->qtail = NULL;
    st->nqueued = 0;
    pthread_mutex_unlock(&st->lock);
    while (q) {
        struct req *r = q;
        q = q->next;
        shutting_down(st, r);
    }
    return NULL;
}

/* ---- the connector interface ---- */

static int http_out_deliver_async(struct esb_endpoint *ep, struct esb_msg *m,
                                  esb_delivery_done_fn done, void *ctx, struct esb_err *err)
{
    struct http_out_state *st = get_state(ep, err);
    if (!st) return err && err->code ? err->code : ESB_EFAILED;
    int rc = 0, wake = 0;
    pthread_mutex_lock(&st->lock);
    if (st->stopping) {
        rc = esb_err_set(err, ESB_ECLOSED, "http-out '%s': shutting down", ep->id);
        goto out;
    }
    if (st->nqueued >= HTTP_OUT_QUEUE_MAX) {
        rc = esb_err_set(err, ESB_EFULL, "http-out '%s': %d requests already waiting", ep->id,
                         HTTP_OUT_QUEUE_MAX);
        goto out;
    }
    if (!st->started) {
        int e = pthread_create(&st->thread, NULL, run, st);
        if (e != 0) {
            rc = esb_err_set(err, -e, "http-out '%s': cannot start its thread: %s", ep->id,
                             strerror(e));
            goto out;
        }
        st->started = 1;
        esb_info("http-out=%s started max-in-flight=%u%s", ep->id, st->max,
                 CONF(ep)->tls_verify ? "" : " tls-verify=false");
    }
    struct req *r = esb_calloc(1, sizeof(*r));
    r->m = m; /* the caller's reference, ours from here on */
    r->done = done;
    r->ctx = ctx;
    /* The thread takes every queued request it has room for each time it
     * wakes, and a queue left behind for lack of room is taken when a
     * request finishes: only the first request of an empty queue needs to
     * wake it (one write to libcurl's wake-up socket, not one per request). */
    wake = !st->qhead;
    if (st->qtail)
        st->qtail->next = r;
    else
        st->qhead = r;
    st->qtail = r;
    st->nqueued++;
out:
    pthread_mutex_unlock(&st->lock);
    if (rc == 0 && wake) curl_multi_wakeup(st->multi);
    return rc;
}

struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int finished;
    struct esb_delivery res;
};

static void sync_done(void *ctx, const struct esb_delivery *res)
{
    struct sync_wait *w = ctx;
    pthread_mutex_lock(&w->lock);
    w->res = *res;
    w->finished = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static enum esb_outcome http_out_deliver(struct esb_endpoint *ep, const struct esb_msg *m,
                                         struct esb_err *err)
{
    struct sync_wait w = {.finished = 0};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    /* A reference of our own for deliver_async to take over (refcounts
     * are atomic; the message itself is not changed). */
    struct esb_msg *ref = esb_msg_ref((struct esb_msg *)m);
    if (http_out_deliver_async(ep, ref, sync_done, &w, err) != 0) {
        esb_msg_unref(ref);
        w.res.outcome = ESB_RETRY;
    } else {
        pthread_mutex_lock(&w.lock);
        while (!w.finished) pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        if (err && w.res.outcome != ESB_DONE) *err = w.res.err;
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return w.res.outcome;
}

static unsigned http_out_max_in_flight(const struct esb_endpoint *ep)
{
    return (unsigned)CONF(ep)->max_in_flight;
}

static void http_out_breaker(const struct esb_endpoint *ep, struct esb_breaker_conf *out)
{
    out->failures = (unsigned)CONF(ep)->breaker_failures;
    out->cooldown_ms = CONF(ep)->breaker_cooldown;
}

static int http_out_check(struct esb_endpoint *ep, struct esb_err *err)
{
    struct esb__http_out_compiled c;
    int rc = esb__http_out_compile(ep, &c, err);
    if (rc == 0) esb__http_out_compiled_free(&c);
    return rc;
}

static void http_out_destroy(struct esb_endpoint *ep)
{
    if (!ep || ep->state == DESTROYED) return;
    struct http_out_state *st = ep->state;
    ep->state = DESTROYED;
    if (!st) return;
    pthread_mutex_lock(&st->lock);
    st->stopping = 1;
    int started = st->started;
    pthread_mutex_unlock(&st->lock);
    if (started) {
        curl_multi_wakeup(st->multi);
        pthread_join(st->thread, NULL);
    }
    state_free(st);
}

const struct esb_connector_ops esb_http_out_ops = {
    .element = "http-out",
    .dir = ESB_OUTBOUND,
    .summary = "Sends each message as an HTTP request (libcurl multi, keep-alive, bounded "
               "in-flight); 2xx confirms, 408/425/429/5xx and network errors retry, other "
               "statuses dead-letter.",
    .attrs = http_out_attrs,
    .conf_size = sizeof(struct esb_http_out_conf),
    .check = http_out_check,
    .deliver = http_out_deliver,
    .deliver_async = http_out_deliver_async,
    .max_in_flight = http_out_max_in_flight,
    .breaker = http_out_breaker,
    .destroy = http_out_destroy,
};
