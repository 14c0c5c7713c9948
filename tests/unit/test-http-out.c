/* test-http-out.c - the http-out connector against a real HTTP server (the
 * tests/tools/http-sink child process on loopback): classification of
 * answers and failures, Retry-After, the headers that arrive (idempotency
 * key, traceparent, content type, fixed and forwarded headers), URL
 * templates with hostile values, redirects, the in-flight bound with
 * keep-alive reuse, the blocking deliver, config checks, and a shutdown
 * with requests in flight. */
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <libxml/parser.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tap.h"
#include "http_out.h"
#include "log.h"
#include "msg.h"

static char sink_bin[PATH_MAX], log_path[PATH_MAX];
static pid_t sink_pid = -1;
static unsigned port;

/* ---- the sink ---- */

static void find_sink(const char *argv0)
{
    char self[PATH_MAX];
    snprintf(self, sizeof(self), "%s", argv0);
    snprintf(sink_bin, sizeof(sink_bin), "%s/../tools/http-sink", dirname(self));
    if (access(sink_bin, X_OK) == 0) return;
    const char *top = getenv("top_builddir");
    snprintf(sink_bin, sizeof(sink_bin), "%s/tests/tools/http-sink", top ? top : ".");
    if (access(sink_bin, X_OK) != 0) bail("cannot find tests/tools/http-sink");
}

static void sink_start(unsigned want_port)
{
    int fds[2];
    if (pipe(fds) != 0) bail("pipe: %s", strerror(errno));
    sink_pid = fork();
    if (sink_pid < 0) bail("fork: %s", strerror(errno));
    if (sink_pid == 0) {
        char p[16];
        snprintf(p, sizeof(p), "%u", want_port);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* no stray sink if the test dies */
        execl(sink_bin, sink_bin, "--log", log_path, "--port", p, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[64] = "";
    if (!fgets(line, sizeof(line), f) || sscanf(line, "port=%u", &port) != 1)
        bail("the sink did not start");
    fclose(f);
}

static void sink_stop(void)
{
    if (sink_pid <= 0) return;
    kill(sink_pid, SIGTERM);
    waitpid(sink_pid, NULL, 0);
    sink_pid = -1;
}

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    struct esb_buf *b = arg;
    return esb_buf_add(b, p, size * n) == 0 ? size * n : 0;
}

/* GET (body NULL) or POST to the sink; returns the answer body (malloc'd). */
static char *sink_call(const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    struct esb_buf b;
    esb_buf_init(&b, 1 << 20);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (cc != CURLE_OK || esb_buf_add(&b, "", 1) != 0) bail("sink call %s failed", path);
    return (char *)b.data;
}

static void sink_mode(const char *json)
{
    free(sink_call("/_control", json));
}

/* The sink's counters (this call opens one connection of its own). */
struct stats {
    long requests, connections, max_concurrent, in_flight;
};

static struct stats sink_stats(void)
{
    char *s = sink_call("/_stats", NULL);
    json_t *o = json_loads(s, 0, NULL);
    struct stats st = {(long)json_integer_value(json_object_get(o, "requests")),
                       (long)json_integer_value(json_object_get(o, "connections")),
                       (long)json_integer_value(json_object_get(o, "max_concurrent")),
                       (long)json_integer_value(json_object_get(o, "in_flight"))};
    json_decref(o);
    free(s);
    return st;
}

/* The last logged request whose idempotency key (or body if key is NULL)
 * is want; a new reference or NULL. */
static json_t *sink_find(const char *field, const char *want)
{
    FILE *f = fopen(log_path, "r");
    json_t *found = NULL;
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *v = json_object_get(o, field);
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0) {
            json_decref(found);
            found = o;
        } else {
            json_decref(o);
        }
    }
    free(line);
    if (f) fclose(f);
    return found;
}

static const char *jget(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *jheader(json_t *o, const char *name)
{
    return jget(json_object_get(o, "headers"), name);
}

/* ---- endpoints ---- */

struct fixture {
    struct esb_endpoint ep;
};

/* An http-out endpoint from the attributes in attrs ("@P@" = sink port).
 * Returns 0, or the check/parse error with err filled. */
static int ep_make(struct fixture *f, const char *attrs, struct esb_err *err)
{
    char xml[4096], a[3000], p[16];
    size_t n = 0, pl = (size_t)snprintf(p, sizeof(p), "%u", port);
    for (const char *s = attrs; *s && n + pl < sizeof(a) - 1;) {
        if (strncmp(s, "@P@", 3) == 0) {
            memcpy(a + n, p, pl);
            n += pl;
            s += 3;
        } else {
            a[n++] = *s++;
        }
    }
    a[n] = '\0';
    snprintf(xml, sizeof(xml), "<connectors>\n<http-out id=\"t\" %s/>\n</connectors>\n", a);
    memset(f, 0, sizeof(*f));
    xmlDoc *doc = xmlReadMemory(xml, (int)strlen(xml), "test.xml", NULL, XML_PARSE_NONET);
    if (!doc) bail("bad test XML: %s", xml);
    xmlNode *el = xmlDocGetRootElement(doc)->children;
    while (el && el->type != XML_ELEMENT_NODE) el = el->next;
    f->ep.id = esb_strdup("t");
    f->ep.ops = &esb_http_out_ops;
    f->ep.file = esb_strdup("test.xml");
    f->ep.line = (int)xmlGetLineNo(el);
    f->ep.conf = esb_calloc(1, esb_http_out_ops.conf_size);
    int rc = esb_attrs_parse(esb_http_out_ops.attrs, el, "test.xml", f->ep.conf, err);
    if (rc == 0) rc = esb_http_out_ops.check(&f->ep, err);
    xmlFreeDoc(doc);
    return rc;
}

static void ep_free(struct fixture *f)
{
    esb_http_out_ops.destroy(&f->ep);
    esb_http_out_ops.destroy(&f->ep); /* idempotent */
    esb_attrs_free(esb_http_out_ops.attrs, f->ep.conf);
    free(f->ep.conf);
    free(f->ep.id);
    free(f->ep.file);
}

static void ep_must(struct fixture *f, const char *attrs)
{
    struct esb_err err = {0, ""};
    if (ep_make(f, attrs, &err) != 0) bail("endpoint: %s", err.msg);
}

/* ---- deliveries ---- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int finished;

struct slot {
    int calls;
    struct esb_delivery res;
};

static void on_done(void *ctx, const struct esb_delivery *res)
{
    struct slot *s = ctx;
    pthread_mutex_lock(&lock);
    s->calls++;
    s->res = *res;
    finished++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

/* Wait until n deliveries finished since the last reset; 0 or -1 on timeout. */
static int wait_finished(int n, int secs)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += secs;
    int rc = 0;
    pthread_mutex_lock(&lock);
    while (finished < n && rc == 0) rc = pthread_cond_timedwait(&cond, &lock, &ts);
    pthread_mutex_unlock(&lock);
    return finished >= n ? 0 : -1;
}

static struct esb_msg *msg_new(const char *body, const char *ct)
{
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_body(m, body, strlen(body));
    esb_msg_set_content_type(m, ct);
    return m;
}

/* Deliver one message and wait for its result. */
static struct slot deliver1(struct fixture *f, struct esb_msg *m)
{
    struct slot s = {0};
    struct esb_err err = {0, ""};
    finished = 0;
    if (esb_http_out_ops.deliver_async(&f->ep, m, on_done, &s, &err) != 0)
        bail("deliver_async: %s", err.msg); /* on success the connector owns m */
    if (wait_finished(1, 30) != 0) bail("no result within 30 s");
    return s;
}

static struct slot deliver_body(struct fixture *f, const char *body)
{
    return deliver1(f, msg_new(body, "text/plain"));
}

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- tests ---- */

static void test_check(void)
{
    struct fixture f;
    struct esb_err err = {0, ""};
    static const struct {
        const char *attrs, *want;
    } bad[] = {
        {"url=\"ftp://127.0.0.1:@P@/x\"", "http:// or https://"},
        {"url=\"file:///etc/passwd\"", "http:// or https://"},
        {"url=\"http://{header:x-host}/x\"", "scheme or host"},
        {"url=\"http://127.0.0.1:@P@/{bogus}\"", "unknown placeholder"},
        {"url=\"http://127.0.0.1:@P@/{id\"", "unclosed"},
        {"url=\"http://127.0.0.1:@P@/a b\"", "space"},
        {"url=\"http://127.0.0.1:@P@/\" retry-status=\"200,500\"", "300-599"},
        {"url=\"http://127.0.0.1:@P@/\" retry-status=\"5xx\"", "ranges"},
        {"url=\"http://127.0.0.1:@P@/\" headers=\"Host: evil\"", "set by the connector"},
        {"url=\"http://127.0.0.1:@P@/\" headers=\"X-A: 1; nonsense\"", "Name: value"},
        {"url=\"http://127.0.0.1:@P@/\" idempotency-header=\"bad name\"", "header name"},
        {"url=\"http://127.0.0.1:@P@/\" client-key=\"/dev/null\"", "needs client-cert"},
        {"url=\"http://127.0.0.1:@P@/\" ca-file=\"/nonexistent/ca.pem\"", "cannot read"},
        {"url=\"http://127.0.0.1:@P@/\" method=\"GET\"", "method"},
        {"url=\"http://127.0.0.1:@P@/\" max-in-flight=\"0\"", "max-in-flight"},
        {"url=\"http://127.0.0.1:@P@/\" breaker-cooldown=\"0s\"", "breaker-cooldown"},
        {"url=\"http://127.0.0.1:@P@/\" breaker-failures=\"-1\"", "breaker-failures"},
    };
    for (size_t i = 0; i < ESB_ARRAY_LEN(bad); i++) {
        err.msg[0] = '\0';
        int rc = ep_make(&f, bad[i].attrs, &err);
        ok(rc != 0 && strstr(err.msg, bad[i].want) && strstr(err.msg, "test.xml:2"),
           "config refused: %s (%s)", bad[i].attrs, err.msg);
        ep_free(&f);
    }
    int rc = ep_make(&f,
                     "url=\"https://127.0.0.1:@P@/o/{header:x}?id={id}&amp;d={date:%Y}\" "
                     "method=\"PUT\" headers=\"X-A: 1; X-B: two words;\" "
                     "forward-headers=\"x-*, accept\" retry-status=\"409, 500-504\"",
                     &err);
    ok(rc == 0, "a full valid config passes check (%s)", rc ? err.msg : "");
    ok(esb_http_out_ops.max_in_flight(&f.ep) == 64, "max-in-flight defaults to 64");
    struct esb_breaker_conf b = {0};
    esb_http_out_ops.breaker(&f.ep, &b);
    ok(b.failures == ESB_BREAKER_FAILURES && b.cooldown_ms == ESB_BREAKER_COOLDOWN_MS &&
           b.failures == 5 && b.cooldown_ms == 30000,
       "the circuit breaker defaults to 5 failures, 30 s cool-down");
    ep_free(&f);
    rc = ep_make(&f,
                 "url=\"http://127.0.0.1:@P@/\" breaker-failures=\"0\" breaker-cooldown=\"250ms\"",
                 &err);
    esb_http_out_ops.breaker(&f.ep, &b);
    ok(rc == 0 && b.failures == 0 && b.cooldown_ms == 250,
       "breaker-failures=0 (no breaker) and breaker-cooldown=250ms are taken");
    ep_free(&f);
    ok(esb_connector_find("http-out") == &esb_http_out_ops, "http-out is registered");
}

static void test_basic(void)
{
    struct fixture f;
    ep_must(&f, "url=\"http://127.0.0.1:@P@/orders\"");
    sink_mode("{\"mode\":\"200\"}");
    struct esb_msg *m = msg_new("{\"order\":1}", "application/json");
    esb_msg_set_header(m, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    esb_msg_set_header(m, "authorization", "Bearer must-not-leak");
    char id[64];
    snprintf(id, sizeof(id), "%s", m->id_text);
    struct esb_msg *kept = esb_msg_ref(m); /* to see the connector drop the one it took */
    struct slot s = deliver1(&f, m);
    ok(s.calls == 1 && s.res.outcome == ESB_DONE && s.res.status == 200, "200 -> DONE");
    json_t *r = sink_find("idempotency_key", id);
    ok(r != NULL, "Idempotency-Key = message id arrives at the sink");
    ok(r && strcmp(jget(r, "method"), "POST") == 0 && strcmp(jget(r, "path"), "/orders") == 0,
       "POST to the URL's path");
    ok(r && strcmp(jget(r, "body"), "{\"order\":1}") == 0, "body arrives byte for byte");
    ok(r && jget(r, "content_type") && strcmp(jget(r, "content_type"), "application/json") == 0,
       "the message content type is the Content-Type");
    ok(r && jget(r, "traceparent") &&
           strcmp(jget(r, "traceparent"),
                  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == 0,
       "traceparent propagated");
    ok(r && !jheader(r, "authorization") && !jheader(r, "expect"),
       "message headers are not forwarded by default; no Expect: 100-continue");
    json_decref(r);

    /* the blocking deliver */
    m = msg_new("sync", "");
    snprintf(id, sizeof(id), "%s", m->id_text);
    struct esb_err err = {0, ""};
    enum esb_outcome o = esb_http_out_ops.deliver(&f.ep, m, &err);
    esb_msg_unref(m);
    r = sink_find("idempotency_key", id);
    ok(o == ESB_DONE && r, "blocking deliver -> DONE");
    ok(r && strcmp(jget(r, "content_type"), "application/octet-stream") == 0,
       "no content type -> application/octet-stream");
    json_decref(r);
    sink_mode("{\"mode\":\"400\",\"body\":\"order rejected: missing customer\"}");
    m = msg_new("x", "");
    o = esb_http_out_ops.deliver(&f.ep, m, &err);
    esb_msg_unref(m);
    ok(o == ESB_REJECT && strstr(err.msg, "HTTP 400") && strstr(err.msg, "missing customer"),
       "blocking deliver -> REJECT with the reason (%s)", err.msg);
    ep_free(&f);
    ok(atomic_load(&kept->refs) == 1,
       "deliver_async took over the caller's reference and dropped it");
    esb_msg_unref(kept);
}

static void test_classification(void)
{
    struct fixture f;
    ep_must(&f, "url=\"http://user:secret@127.0.0.1:@P@/in?token=abc\" timeout=\"1s\"");

    sink_mode("{\"mode\":\"503\",\"retry_after\":\"2\",\"body\":\"down for maintenance\"}");
    struct slot s = deliver_body(&f, "a");
    ok(s.res.outcome == ESB_RETRY && s.res.status == 503 && s.res.retry_after_ms == 2000,
       "503 + Retry-After: 2 -> RETRY after 2000 ms (got %d, %llu)", s.res.status,
       (unsigned long long)s.res.retry_after_ms);
    ok(s.res.fail == ESB_FAIL_STATUS && strcmp(esb_fail_name(s.res.fail, 0), "http-status") == 0,
       "an error status is of class http-status");
    char want[128];
    snprintf(want, sizeof(want), "HTTP 503 from http://127.0.0.1:%u/in: down for maintenance",
             port);
    ok(strcmp(s.res.err.msg, want) == 0, "reason: status, URL and body (%s)", s.res.err.msg);
    ok(!strstr(s.res.err.msg, "secret") && !strstr(s.res.err.msg, "token"),
       "the reason leaves out user info and query");

    sink_mode("{\"mode\":\"429\"}");
    s = deliver_body(&f, "b");
    ok(s.res.outcome == ESB_RETRY && s.res.status == 429 && s.res.retry_after_ms == 0,
       "429 -> RETRY (policy delay)");

    sink_mode("{\"mode\":\"503\",\"retry_after\":\"999999\"}");
    s = deliver_body(&f, "b2");
    ok(s.res.retry_after_ms == 3600 * 1000, "Retry-After is capped at 1 h");

    char date[64], ctl[160];
    time_t later = time(NULL) + 10;
    struct tm tm;
    gmtime_r(&later, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(ctl, sizeof(ctl), "{\"mode\":\"503\",\"retry_after\":\"%s\"}", date);
    sink_mode(ctl);
    s = deliver_body(&f, "b3");
    ok(s.res.retry_after_ms >= 8000 && s.res.retry_after_ms <= 11000,
       "Retry-After as an HTTP-date (%llu ms)", (unsigned long long)s.res.retry_after_ms);

    sink_mode("{\"mode\":\"400\",\"body\":\"bad\\r\\nrequest\\u0001: field x\"}");
    s = deliver_body(&f, "c");
    ok(s.res.outcome == ESB_REJECT && s.res.status == 400 && strstr(s.res.err.msg, "HTTP 400") &&
           strstr(s.res.err.msg, "bad request.: field x"),
       "400 -> REJECT with status and printable body excerpt (%s)", s.res.err.msg);

    sink_mode("{\"mode\":\"404\"}");
    s = deliver_body(&f, "d");
    ok(s.res.outcome == ESB_REJECT && s.res.status == 404, "404 -> REJECT");
    sink_mode("{\"mode\":\"408\"}");
    s = deliver_body(&f, "d2");
    ok(s.res.outcome == ESB_RETRY, "408 -> RETRY");
    sink_mode("{\"mode\":\"302\",\"location\":\"http://127.0.0.1:1/\"}");
    s = deliver_body(&f, "d3");
    ok(s.res.outcome == ESB_REJECT && s.res.status == 302,
       "a redirect is not followed by default and is not success");

    sink_mode("{\"mode\":\"hang\"}");
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    s = deliver_body(&f, "e");
    double t = elapsed_s(&t0);
    ok(s.res.outcome == ESB_RETRY && strstr(s.res.err.msg, "timed out") && t < 3.0,
       "hang with timeout=1s -> RETRY 'timed out' after %.1f s (%s)", t, s.res.err.msg);
    ok(s.res.fail == ESB_FAIL_TIMEOUT, "of class timeout");

    sink_mode("{\"mode\":\"close\"}");
    s = deliver_body(&f, "f");
    ok(s.res.outcome == ESB_RETRY && strstr(s.res.err.msg, "connection error"),
       "connection closed without an answer -> RETRY (%s)", s.res.err.msg);
    ok(s.res.fail == ESB_FAIL_CONNECT, "of class connect");
    sink_mode("{\"mode\":\"200\"}");
    ep_free(&f);

    /* a per-endpoint table */
    ep_must(&f, "url=\"http://127.0.0.1:@P@/in\" retry-status=\"409\"");
    sink_mode("{\"mode\":\"409\"}");
    s = deliver_body(&f, "g");
    ok(s.res.outcome == ESB_RETRY, "retry-status=409: 409 -> RETRY");
    sink_mode("{\"mode\":\"503\"}");
    s = deliver_body(&f, "h");
    ok(s.res.outcome == ESB_REJECT, "retry-status=409: 503 -> REJECT");
    sink_mode("{\"mode\":\"200\"}");
    ep_free(&f);
}

static void test_headers(void)
{
    struct fixture f;
    ep_must(&f, "url=\"http://127.0.0.1:@P@/h\" method=\"PUT\" headers=\"X-Api-Key: k1; "
                "X-Env: test env\" forward-headers=\"x-*\" idempotency-header=\"X-Request-Id\" "
                "propagate-traceparent=\"false\"");
    struct esb_msg *m = msg_new("hdr", "text/csv");
    esb_msg_set_header(m, "x-tenant", "t1");
    esb_msg_set_header(m, "x-env", "from-message");
    esb_msg_set_header(m, "x-evil", "a\r\nInjected: 1");
    esb_msg_set_header(m, "authorization", "Bearer z");
    esb_msg_set_header(m, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    char id[64];
    snprintf(id, sizeof(id), "%s", m->id_text);
    struct slot s = deliver1(&f, m);
    json_t *r = sink_find("body", "hdr");
    ok(s.res.outcome == ESB_DONE && r && strcmp(jget(r, "method"), "PUT") == 0, "method PUT");
    ok(r && jheader(r, "x-request-id") && strcmp(jheader(r, "x-request-id"), id) == 0 &&
           !jheader(r, "idempotency-key"),
       "idempotency-header names the header that carries the id");
    ok(r && jheader(r, "x-api-key") && strcmp(jheader(r, "x-api-key"), "k1") == 0 &&
           jheader(r, "x-env") && strcmp(jheader(r, "x-env"), "test env") == 0,
       "fixed headers arrive and win over message headers of the same name");
    ok(r && jheader(r, "x-tenant") && strcmp(jheader(r, "x-tenant"), "t1") == 0,
       "forward-headers=x-* forwards x-tenant");
    ok(r && !jheader(r, "authorization") && !jheader(r, "x-evil") && !jheader(r, "injected"),
       "other headers and values with CR/LF are not forwarded");
    ok(r && !jheader(r, "traceparent"), "propagate-traceparent=false");
    ok(r && strcmp(jget(r, "content_type"), "text/csv") == 0, "content type passed through");
    json_decref(r);
    ep_free(&f);

    ep_must(&f, "url=\"http://127.0.0.1:@P@/h\" idempotency-header=\"\"");
    deliver_body(&f, "noidem");
    r = sink_find("body", "noidem");
    ok(r && !jheader(r, "idempotency-key"), "idempotency-header=\"\" sends no key");
    json_decref(r);
    ep_free(&f);
}

static void test_url_template(void)
{
    struct fixture f;
    ep_must(&f, "url=\"http://127.0.0.1:@P@/items/{header:x-name}/{header:x-dots}"
                "?q={header:x-q}&amp;id={id}\"");
    struct esb_msg *m = msg_new("tpl", "");
    esb_msg_set_header(m, "x-name", "a/../b?c=d#e f\r\nX: y");
    esb_msg_set_header(m, "x-dots", "..");
    esb_msg_set_header(m, "x-q", "1&admin=true");
    char id[64], want[128];
    snprintf(id, sizeof(id), "%s", m->id_text);
    struct slot s = deliver1(&f, m);
    json_t *r = sink_find("body", "tpl");
    ok(s.res.outcome == ESB_DONE && r, "templated URL delivered");
    const char *path = r ? jget(r, "path") : "";
    ok(strcmp(path, "/items/a%2F..%2Fb%3Fc%3Dd%23e%20f%0D%0AX%3A%20y/%2E%2E") == 0,
       "hostile header values are URL-encoded, '..' cannot climb (%s)", path);
    snprintf(want, sizeof(want), "q=1%%26admin%%3Dtrue&id=%s", id);
    ok(r && strcmp(jget(r, "query"), want) == 0, "query values encoded, {id} substituted (%s)",
       r ? jget(r, "query") : "");
    json_decref(r);
    ep_free(&f);
}

static void test_redirects(void)
{
    struct fixture f;
    ep_must(&f, "url=\"http://127.0.0.1:@P@/r\" follow-redirects=\"true\"");
    sink_mode("{\"mode\":\"302\",\"location\":\"file:///etc/passwd\"}");
    struct slot s = deliver_body(&f, "redir1");
    ok(s.res.outcome == ESB_REJECT && strstr(s.res.err.msg, "not an http or https URL"),
       "redirect to file:// refused -> REJECT (%s)", s.res.err.msg);
    ok(s.res.fail == ESB_FAIL_INVALID, "of class invalid");
    sink_mode("{\"mode\":\"307\",\"location\":\"gopher://127.0.0.1:1/\"}");
    s = deliver_body(&f, "redir2");
    ok(s.res.outcome == ESB_REJECT, "redirect to gopher:// refused");
    char ctl[200];
    snprintf(ctl, sizeof(ctl),
             "{\"mode\":\"302\",\"location\":\"http://127.0.0.1:%u/final\","
             "\"count\":1}",
             port);
    sink_mode(ctl);
    s = deliver_body(&f, "redir3");
    json_t *r = sink_find("path", "/final");
    ok(s.res.outcome == ESB_DONE && r && strcmp(jget(r, "method"), "POST") == 0 &&
           strcmp(jget(r, "body"), "redir3") == 0,
       "an http redirect is followed with the same POST and body");
    json_decref(r);
    sink_mode("{\"mode\":\"200\"}");
    ep_free(&f);
}

static void test_in_flight(void)
{
    enum { N = 200 };
    struct fixture f;
    ep_must(&f, "url=\"http://127.0.0.1:@P@/many\" max-in-flight=\"16\"");
    sink_mode("{\"mode\":\"200\",\"delay_ms\":20,\"reset_stats\":true}");
    static struct slot slots[N];
    memset(slots, 0, sizeof(slots));
    finished = 0;
    int started = 0;
    for (int i = 0; i < N; i++) {
        struct esb_err err = {0, ""};
        struct esb_msg *m = msg_new("many", "text/plain");
        if (esb_http_out_ops.deliver_async(&f.ep, m, on_done, &slots[i], &err) == 0)
            started++;
        else
            esb_msg_unref(m);
    }
    int rc = wait_finished(N, 60);
    int once = 1, done = 0;
    for (int i = 0; i < N; i++) {
        if (slots[i].calls != 1) once = 0;
        if (slots[i].res.outcome == ESB_DONE) done++;
    }
    ok(started == N && rc == 0 && once && done == N, "%d concurrent deliveries all DONE once", N);
    struct stats st = sink_stats();
    long maxc = st.max_concurrent, conns = st.connections - 1, reqs = st.requests;
    ok(maxc <= 16 && maxc >= 4, "never more than 16 in flight at the sink (max %ld)", maxc);
    ok(conns <= 16 + 1, "keep-alive: %ld connections for %d requests", conns, N);
    ok(reqs == N, "the sink saw every request once (%ld)", reqs);
    sink_mode("{\"mode\":\"200\"}");
    ep_free(&f);
}

static void test_shutdown(void)
{
    enum { N = 5 };
    struct fixture f;
    ep_must(&f, "url=\"http://127.0.0.1:@P@/hang\" max-in-flight=\"2\" timeout=\"30s\"");
    sink_mode("{\"mode\":\"hang\",\"reset_stats\":true}");
    struct slot slots[N];
    memset(slots, 0, sizeof(slots));
    finished = 0;
    for (int i = 0; i < N; i++) {
        struct esb_err err = {0, ""};
        struct esb_msg *m = msg_new("hang", "");
        if (esb_http_out_ops.deliver_async(&f.ep, m, on_done, &slots[i], &err) != 0)
            bail("deliver_async: %s", err.msg);
    }
    for (int i = 0; i < 100 && sink_stats().in_flight < 2; i++) usleep(20000);
    ok(sink_stats().in_flight == 2 && finished == 0, "2 requests hang at the sink, 3 wait");
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ep_free(&f);
    double t = elapsed_s(&t0);
    int once = 1, shut = 1;
    for (int i = 0; i < N; i++) {
        if (slots[i].calls != 1) once = 0;
        if (slots[i].res.outcome != ESB_RETRY || !strstr(slots[i].res.err.msg, "shutting down"))
            shut = 0;
    }
    ok(finished == N && once && shut && t < 2.0,
       "destroy with requests in flight: done(RETRY 'shutting down') once each, in %.2f s", t);
    /* destroyed early (as a runtime may at shutdown): later deliveries are refused */
    ep_must(&f, "url=\"http://127.0.0.1:@P@/late\"");
    esb_http_out_ops.destroy(&f.ep);
    struct esb_err err = {0, ""};
    struct esb_msg *m = msg_new("late", "");
    struct slot late = {0};
    int rc = esb_http_out_ops.deliver_async(&f.ep, m, on_done, &late, &err);
    ok(rc == ESB_ECLOSED && late.calls == 0,
       "deliver_async after destroy -> ESB_ECLOSED, no done (rc %d, %d calls)", rc, late.calls);
    esb_msg_unref(m); /* refused: still ours */
    ep_free(&f);
    sink_mode("{\"mode\":\"200\"}");
}

static void test_refused(void)
{
    struct fixture f;
    ep_must(&f, "url=\"http://127.0.0.1:@P@/gone\" connect-timeout=\"2s\"");
    sink_stop();
    struct slot s = deliver_body(&f, "nobody home");
    ok(s.res.outcome == ESB_RETRY && strstr(s.res.err.msg, "connection error") && s.res.status == 0,
       "connection refused -> RETRY (%s)", s.res.err.msg);
    ep_free(&f);
}

int main(int argc, char **argv)
{
    (void)argc;
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    esb_log_set_level(ESB_LOG_WARN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    find_sink(argv[0]);
    char dir[] = "/tmp/esb-http-out-XXXXXX";
    if (!mkdtemp(dir)) bail("mkdtemp: %s", strerror(errno));
    snprintf(log_path, sizeof(log_path), "%s/sink.log", dir);
    sink_start(0);
    atexit(sink_stop); /* also after a bail */

    test_check();
    test_basic();
    test_classification();
    test_headers();
    test_url_template();
    test_redirects();
    test_in_flight();
    test_shutdown();
    test_refused();

    sink_stop();
    unlink(log_path);
    rmdir(dir);
    curl_global_cleanup();
    xmlCleanupParser();
    return tap_done();
}
