/* http-sink.c - a small real HTTP server that tests use as the destination
 * system of http-out (libmicrohttpd, thread per connection, 127.0.0.1 only).
 *
 * Usage: http-sink [--port N] [--log FILE] [N]
 *   Port 0 (the default) picks a free one. The first line on stdout is
 *   "port=N". SIGTERM or SIGINT stops it.
 *
 * Every request except the two below is recorded as one JSON line appended
 * to FILE (flushed per line):
 *   {"t":MS,"method":"POST","path":"/raw/path","query":"a=b&c","status":200,
 *    "idempotency_key":"...","traceparent":"...","content_type":"...",
 *    "headers":{"lowercased-name":"value",...},"body":"..."}
 * The path and query are logged as sent (not percent-decoded). "status" is
 * the answer, or "hang"/"close". A body that is not UTF-8 is logged as
 * "body_hex". Bodies over 1 MiB are not kept (413).
 *
 * POST /_control with a JSON object sets how requests are answered:
 *   {"mode":"200"|"503"|"429"|"400"|any 3-digit status|"hang"|"close"|"slow",
 *    "retry_after":"2",       Retry-After header of the answer
 *    "location":"URL",        Location header (for 3xx)
 *    "body":"text",           answer body (default "sink: MODE")
 *    "delay_ms":N,            wait before answering
 *    "until":EPOCH_MS,        the rule applies until then
 *    "match":"substring",     only to requests whose body contains it
 *    "count":N,               only to the next N requests it matches
 *    "add":true,              append to the rules instead of replacing them
 *    "reset_stats":true}      zero the counters
 *   The first rule that applies decides; none applies: 200. "hang" never
 *   answers (the connection stays open until the client gives up), "close"
 *   drops the connection without an answer, "slow" answers 200 and then
 *   sends its body one byte per second.
 * GET /_stats answers {"requests":N,"connections":M,"max_concurrent":K,
 *   "in_flight":I}: connections are TCP connections accepted (keep-alive
 *   reuse keeps it low); max_concurrent the most requests open at once. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX    (1024 * 1024)
#define CONTROL_MAX (64 * 1024)
#define RULES_MAX   16
#define HEADERS_MAX 64
#define HANG_MAX_MS 120000
#define SLOW_BYTES  60

struct rule {
    char mode[16];
    char retry_after[64];
    char location[1024];
    char body[1024];
    char match[256];
    long delay_ms;
    uint64_t until;
    long count; /* 0: unlimited */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[RULES_MAX];
static size_t nrules;
static FILE *log_file;
static long requests, connections, in_flight, max_concurrent;
static atomic_int stopping;

struct request {
    int control, stats, counted;
    size_t len;
    int too_large;
    char *body;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    while (ms > 0 && !stopping) {
        long step = ms > 20 ? 20 : ms;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static void copy_str(char *dst, size_t cap, json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        snprintf(dst, cap, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(dst, cap, "%lld", (long long)json_integer_value(v));
}

/* Apply a control object; returns NULL or an error text. */
static const char *control(const char *data, size_t len)
{
    json_error_t je;
    json_t *o = json_loadb(data, len, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return "expected a JSON object";
    }
    struct rule r;
    memset(&r, 0, sizeof(r));
    snprintf(r.mode, sizeof(r.mode), "200");
    copy_str(r.mode, sizeof(r.mode), o, "mode");
    copy_str(r.retry_after, sizeof(r.retry_after), o, "retry_after");
    copy_str(r.location, sizeof(r.location), o, "location");
    copy_str(r.body, sizeof(r.body), o, "body");
    copy_str(r.match, sizeof(r.match), o, "match");
    r.delay_ms = (long)json_integer_value(json_object_get(o, "delay_ms"));
    json_t *until = json_object_get(o, "until");
    if (json_is_string(until)) r.until = strtoull(json_string_value(until), NULL, 10);
    if (json_is_integer(until)) r.until = (uint64_t)json_integer_value(until);
    r.count = (long)json_integer_value(json_object_get(o, "count"));
    int add = json_is_true(json_object_get(o, "add"));
    int reset = json_is_true(json_object_get(o, "reset_stats"));
    json_decref(o);
    int known = !strcmp(r.mode, "hang") || !strcmp(r.mode, "close") || !strcmp(r.mode, "slow") ||
                (strlen(r.mode) == 3 && atoi(r.mode) >= 100 && atoi(r.mode) <= 599);
    if (!known) return "unknown mode";
    pthread_mutex_lock(&lock);
    if (!add) nrules = 0;
    if (nrules < RULES_MAX) rules[nrules++] = r;
    if (reset) requests = connections = max_concurrent = 0;
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* The rule for a request with this body (a copy), default 200. */
static struct rule pick(const char *body)
{
    struct rule r;
    memset(&r, 0, sizeof(r));
    snprintf(r.mode, sizeof(r.mode), "200");
    uint64_t now = now_ms();
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nrules; i++) {
        struct rule *x = &rules[i];
        if (x->until && now >= x->until) continue;
        if (x->match[0] && !strstr(body, x->match)) continue;
        if (x->count < 0) continue; /* used up */
        if (x->count > 0 && --x->count == 0) x->count = -1;
        r = *x;
        break;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    json_t *h = cls;
    if (json_object_size(h) >= HEADERS_MAX) return MHD_NO;
    char name[256];
    size_t n = 0;
    for (; key[n] && n < sizeof(name) - 1; n++)
        name[n] = (char)((key[n] >= 'A' && key[n] <= 'Z') ? key[n] + 32 : key[n]);
    name[n] = '\0';
    json_t *v = json_string(value ? value : "");
    if (v) json_object_set_new(h, name, v);
    return MHD_YES;
}

struct query {
    char buf[4096];
    size_t n;
};

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    (void)kind;
    struct query *q = cls;
    int w = snprintf(q->buf + q->n, sizeof(q->buf) - q->n, "%s%s%s%s", q->n ? "&" : "", key,
                     value ? "=" : "", value ? value : "");
    if (w > 0) q->n += (size_t)w < sizeof(q->buf) - q->n ? (size_t)w : sizeof(q->buf) - q->n - 1;
    return MHD_YES;
}

/* A JSON string of s, or "?" if s is not UTF-8. */
static json_t *jstr(const char *s)
{
    json_t *v = json_string(s);
    return v ? v : json_string("?");
}

static void record(struct MHD_Connection *c, const char *method, const char *url,
                   const struct request *rq, const char *status)
{
    json_t *o = json_object(), *h = json_object();
    struct query q = {.n = 0};
    q.buf[0] = '\0';
    MHD_get_connection_values(c, MHD_HEADER_KIND, add_header, h);
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, &q);
    json_object_set_new(o, "t", json_integer((json_int_t)now_ms()));
    json_object_set_new(o, "method", json_string(method));
    json_object_set_new(o, "path", jstr(url));
    json_object_set_new(o, "query", jstr(q.buf));
    char *end;
    long st = strtol(status, &end, 10);
    json_object_set_new(o, "status", *end ? json_string(status) : json_integer(st));
    const char *keys[][2] = {{"idempotency_key", "idempotency-key"},
                             {"traceparent", "traceparent"},
                             {"content_type", "content-type"}};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(h, keys[i][1]);
        json_object_set(o, keys[i][0], v ? v : json_null());
    }
    json_object_set_new(o, "headers", h);
    json_t *b = json_stringn(rq->body ? rq->body : "", rq->len);
    if (b) {
        json_object_set_new(o, "body", b);
    } else {
        char *hex = malloc(rq->len * 2 + 1);
        for (size_t i = 0; i < rq->len; i++)
            sprintf(hex + 2 * i, "%02x", (unsigned char)rq->body[i]);
        hex[rq->len * 2] = '\0';
        json_object_set_new(o, "body_hex", json_string(hex));
        free(hex);
    }
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    pthread_mutex_lock(&lock);
    if (log_file && line) {
        fputs(line, log_file);
        fputc('\n', log_file);
        fflush(log_file);
    }
    pthread_mutex_unlock(&lock);
    free(line);
}

static enum MHD_Result answer_text(struct MHD_Connection *c, unsigned status, const char *text,
                                   const struct rule *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/plain");
    if (r && r->retry_after[0]) MHD_add_response_header(resp, "Retry-After", r->retry_after);
    if (r && r->location[0]) MHD_add_response_header(resp, "Location", r->location);
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Wait until the client closes the connection (or a long time passes). */
static void hang(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd = ci ? ci->connect_fd : -1;
    for (long waited = 0; waited < HANG_MAX_MS && !stopping; waited += 20) {
        struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
        if (fd >= 0 && poll(&p, 1, 20) > 0) {
            char ch;
            if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return;
            if (recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) == 0) return;
            sleep_ms(20); /* pipelined bytes: keep waiting */
        } else if (fd < 0) {
            sleep_ms(20);
        }
    }
}

static ssize_t slow_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)max;
    if (stopping) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (pos > 0) sleep_ms(1000);
    if (stopping) return MHD_CONTENT_READER_END_WITH_ERROR;
    buf[0] = 'x';
    return 1;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **con_cls)
{
    (void)cls;
    (void)version;
    struct request *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof(*rq));
        if (!rq) return MHD_NO;
        rq->control = strcmp(url, "/_control") == 0;
        rq->stats = strcmp(url, "/_stats") == 0;
        if (!rq->control && !rq->stats) {
            rq->counted = 1;
            pthread_mutex_lock(&lock);
            requests++;
            if (++in_flight > max_concurrent) max_concurrent = in_flight;
            pthread_mutex_unlock(&lock);
        }
        *con_cls = rq;
        return MHD_YES;
    }
    if (*size) {
        size_t cap = rq->control ? CONTROL_MAX : BODY_MAX;
        if (rq->len + *size > cap) {
            rq->too_large = 1;
        } else {
            char *nb = realloc(rq->body, rq->len + *size + 1);
            if (!nb) return MHD_NO;
            rq->body = nb;
            memcpy(rq->body + rq->len, data, *size);
            rq->len += *size;
            rq->body[rq->len] = '\0';
        }
        *size = 0;
        return MHD_YES;
    }
    if (rq->stats) {
        char buf[256];
        pthread_mutex_lock(&lock);
        snprintf(buf, sizeof(buf),
                 "{\"requests\":%ld,\"connections\":%ld,\"max_concurrent\":%ld,\"in_flight\":%ld}",
                 requests, connections, max_concurrent, in_flight);
        pthread_mutex_unlock(&lock);
        return answer_text(c, 200, buf, NULL);
    }
    if (rq->control) {
        const char *e = rq->too_large ? "too large" : control(rq->body ? rq->body : "", rq->len);
        return answer_text(c, e ? 400 : 200, e ? e : "ok", NULL);
    }
    if (rq->too_large) {
        record(c, method, url, rq, "413");
        return answer_text(c, 413, "sink: body too large", NULL);
    }
    struct rule r = pick(rq->body ? rq->body : "");
    record(c, method, url, rq, r.mode);
    if (strcmp(r.mode, "hang") == 0) {
        hang(c);
        return MHD_NO;
    }
    sleep_ms(r.delay_ms);
    if (strcmp(r.mode, "close") == 0) return MHD_NO;
    if (strcmp(r.mode, "slow") == 0) {
        struct MHD_Response *resp =
            MHD_create_response_from_callback(SLOW_BYTES, 1, slow_body, NULL, NULL);
        if (!resp) return MHD_NO;
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    char text[1100];
    snprintf(text, sizeof(text), "%s", r.body[0] ? r.body : "");
    if (!r.body[0]) snprintf(text, sizeof(text), "sink: %s", r.mode);
    return answer_text(c, (unsigned)atoi(r.mode), text, &r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct request *rq = *con_cls;
    if (!rq) return;
    if (rq->counted) {
        pthread_mutex_lock(&lock);
        in_flight--;
        pthread_mutex_unlock(&lock);
    }
    free(rq->body);
    free(rq);
    *con_cls = NULL;
}

static void notify_conn(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    (void)c;
    (void)socket_context;
    if (toe != MHD_CONNECTION_NOTIFY_STARTED) return;
    pthread_mutex_lock(&lock);
    connections++;
    pthread_mutex_unlock(&lock);
}

/* Keep the request target as sent (no percent-decoding). */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

int main(int argc, char **argv)
{
    unsigned port = 0;
    const char *log_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--log") == 0 && i + 1 < argc)
            log_path = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = (unsigned)atoi(argv[++i]);
        else if (argv[i][0] >= '0' && argv[i][0] <= '9')
            port = (unsigned)atoi(argv[i]);
        else {
            fprintf(stderr, "usage: http-sink [--port N] [--log FILE] [N]\n");
            return 2;
        }
    }
    if (log_path && !(log_file = fopen(log_path, "a"))) {
        fprintf(stderr, "http-sink: %s: %s\n", log_path, strerror(errno));
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits it */
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD, (uint16_t)port, NULL, NULL,
        handle, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)1000, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)180, MHD_OPTION_NOTIFY_COMPLETED,
        completed, NULL, MHD_OPTION_NOTIFY_CONNECTION, notify_conn, NULL,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "http-sink: cannot listen on 127.0.0.1:%u\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("port=%u\n", di ? (unsigned)di->port : port);
    fflush(stdout);

    int sig = 0;
    sigwait(&set, &sig);
    stopping = 1;
    MHD_stop_daemon(d);
    if (log_file) fclose(log_file);
    return 0;
}
