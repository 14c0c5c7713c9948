/* esbctl_admin.c - the esbctl commands that talk to a running esbd through
 * its admin API (docs/admin-api.md) with libcurl: status, queues (without
 * --data), dlq list|show|replay|purge, reload.
 *
 * Where: --admin URL, else the <admin listen> of --config FILE, else
 * http://127.0.0.1:9090. The token: --token-file F, else the config's
 * <admin token-file>, else var/admin.token (relative to the working
 * directory, as esbd reads it).
 *
 * Exit codes: 0 ok, 1 failed (unreachable, 401, refused, busy), 2 usage,
 * 3 not found (no such queue or entry). */
#include "config.h"

#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "conf_attr.h"
#include "config.h"
#include "esbctl.h"
#include "util.h"

#define DEFAULT_ADMIN      "http://127.0.0.1:9090"
#define DEFAULT_TOKEN_FILE "var/admin.token"
#define TOKEN_FILE_MAX     4096
#define REPLY_MAX          (512u * 1024 * 1024) /* a whole dead letter may be large */
#define REASON_COLUMN_MAX  120

/* ---- where and how ---- */

struct target {
    char *url;        /* base, no trailing '/' */
    char *token_file; /* for messages */
    char *auth;       /* "Authorization: Bearer ..." */
};

static void target_free(struct target *t)
{
    free(t->url);
    free(t->token_file);
    if (t->auth) memset(t->auth, 0, strlen(t->auth));
    free(t->auth);
}

/* <admin listen/token-file> of path, read without the full checks (a
 * config with errors elsewhere still names its admin API). 0, or -1 with a
 * message printed. *listen NULL: no <admin> element. */
static int scan_config(const char *path, char **listen, char **token_file)
{
    struct esb_config *cfg = NULL;
    *listen = *token_file = NULL;
    if (esb_config_load(path, &cfg, NULL) == 0) {
        if (cfg->admin.enabled) {
            *listen = esb_strdup(cfg->admin.listen);
            *token_file = esb_strdup(cfg->admin.token_file);
        }
        esb_config_unref(cfg);
        return 0;
    }
    xmlDoc *doc =
        xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root) {
        fprintf(stderr, "esbctl: cannot read the config %s (esbctl check %s says why)\n", path,
                path);
        xmlFreeDoc(doc);
        return -1;
    }
    for (xmlNode *n = root->children; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE || strcmp((const char *)n->name, "admin") != 0) continue;
        xmlChar *l = xmlGetNoNsProp(n, (const xmlChar *)"listen");
        xmlChar *t = xmlGetNoNsProp(n, (const xmlChar *)"token-file");
        *listen = esb_strdup(l ? (const char *)l : "127.0.0.1:9090");
        *token_file = esb_strdup(t ? (const char *)t : DEFAULT_TOKEN_FILE);
        xmlFree(l);
        xmlFree(t);
        break;
    }
    xmlFreeDoc(doc);
    return 0;
}

/* The URL a client uses for a listen address (a wildcard means this host). */
static char *url_of_listen(const char *listen)
{
    char *host = NULL, buf[300];
    unsigned port = 0;
    if (esb_parse_listen(listen, &host, &port) != 0) return NULL;
    const char *h = host;
    if (strcmp(h, "localhost") == 0 || strcmp(h, "0.0.0.0") == 0) h = "127.0.0.1";
    if (strcmp(h, "::") == 0) h = "::1";
    if (strchr(h, ':'))
        snprintf(buf, sizeof(buf), "http://[%s]:%u", h, port);
    else
        snprintf(buf, sizeof(buf), "http://%s:%u", h, port);
    free(host);
    return esb_strdup(buf);
}

/* Read and trim the token. 0, or -1 with a message printed. */
static int read_token(const char *path, char **out)
{
    char buf[TOKEN_FILE_MAX + 1];
    FILE *f = fopen(path, "re");
    if (!f) {
        fprintf(stderr,
                "esbctl: cannot read the admin token file %s: %s\n"
                "(esbd creates it when it starts with <admin>; run esbctl where esbd runs, or "
                "pass --token-file F or --config FILE)\n",
                path, strerror(errno));
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf), f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > TOKEN_FILE_MAX) {
        fprintf(stderr, "esbctl: cannot read the admin token file %s: %s\n", path,
                bad ? "read error" : "larger than 4096 bytes");
        return -1;
    }
    buf[n] = '\0';
    char *s = buf, *e = buf + n;
    while (s < e && isspace((unsigned char)*s)) s++;
    while (e > s && isspace((unsigned char)e[-1])) e--;
    *e = '\0';
    if (!*s || strpbrk(s, "\r\n")) {
        fprintf(stderr, "esbctl: the admin token file %s holds no token\n", path);
        return -1;
    }
    size_t len = strlen(s) + sizeof("Authorization: Bearer ");
    *out = esb_malloc(len);
    snprintf(*out, len, "Authorization: Bearer %s", s);
    memset(buf, 0, sizeof(buf));
    return 0;
}

/* Resolve the admin URL and read the token. 0, or an exit code. */
static int target_get(struct target *t)
{
    char *listen = NULL, *tf = NULL;
    memset(t, 0, sizeof(*t));
    if (esbctl_conn.config) {
        if (scan_config(esbctl_conn.config, &listen, &tf) < 0) return ESBCTL_EXIT_FAIL;
        if (!listen && !esbctl_conn.admin) {
            fprintf(stderr, "esbctl: %s has no <admin> element: esbd serves no admin API\n",
                    esbctl_conn.config);
            return ESBCTL_EXIT_FAIL;
        }
    }
    if (esbctl_conn.admin) {
        const char *a = esbctl_conn.admin;
        size_t n = strlen(a);
        while (n > 0 && a[n - 1] == '/') n--;
        int scheme = strstr(a, "://") != NULL;
        t->url = esb_malloc(n + 8);
        snprintf(t->url, n + 8, "%s%.*s", scheme ? "" : "http://", (int)n, a);
    } else if (listen) {
        t->url = url_of_listen(listen);
        if (!t->url) {
            fprintf(stderr, "esbctl: %s: <admin listen=\"%s\"> is not IP:PORT\n",
                    esbctl_conn.config, listen);
            free(listen);
            free(tf);
            return ESBCTL_EXIT_FAIL;
        }
    } else {
        t->url = esb_strdup(DEFAULT_ADMIN);
    }
    t->token_file = esb_strdup(esbctl_conn.token_file ? esbctl_conn.token_file
                               : tf                   ? tf
                                                      : DEFAULT_TOKEN_FILE);
    free(listen);
    free(tf);
    return read_token(t->token_file, &t->auth) < 0 ? ESBCTL_EXIT_FAIL : 0;
}

/* ---- HTTP ---- */

struct reply {
    long status;
    struct esb_buf body;
    json_t *json; /* parsed body when it is JSON, else NULL */
};

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
    struct esb_buf *b = ctx;
    return esb_buf_add(b, p, size * n) == 0 ? size * n : 0;
}

/* method path (already escaped) with an optional JSON body. 0 once an
 * answer came (any status), else an exit code with the message printed. */
static int http(const struct target *t, const char *method, const char *path, const char *body,
                struct reply *r)
{
    char url[8192], errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hs = NULL;
    int rc = 0;
    memset(r, 0, sizeof(*r));
    esb_buf_init(&r->body, REPLY_MAX);
    if ((size_t)snprintf(url, sizeof(url), "%s%s", t->url, path) >= sizeof(url)) {
        fprintf(stderr, "esbctl: URL too long\n");
        return ESBCTL_EXIT_USAGE;
    }
    CURL *h = curl_easy_init();
    if (!h) {
        fprintf(stderr, "esbctl: cannot initialise libcurl\n");
        return ESBCTL_EXIT_FAIL;
    }
    hs = curl_slist_append(hs, t->auth);
    hs = curl_slist_append(hs, "Accept: application/json");
    if (body) hs = curl_slist_append(hs, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        fprintf(stderr, "esbctl: cannot reach esbd admin API at %s: %s\n", t->url,
                errbuf[0] ? errbuf : curl_easy_strerror(cc));
        rc = ESBCTL_EXIT_FAIL;
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    r->json = json_loadb((const char *)r->body.data, r->body.len, 0, NULL);
out:
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
    return rc;
}

static void reply_free(struct reply *r)
{
    json_decref(r->json);
    esb_buf_free(&r->body);
}

/* Map a non-2xx answer to a message and an exit code; 0 for 2xx. */
static int failed(const struct target *t, const struct reply *r, const char *what)
{
    if (r->status >= 200 && r->status < 300) return 0;
    const char *msg = json_string_value(json_object_get(r->json, "error"));
    if (r->status == 401) {
        fprintf(stderr, "esbctl: 401: wrong token (token file %s)\n", t->token_file);
        return ESBCTL_EXIT_FAIL;
    }
    fprintf(stderr, "esbctl: %s: %ld: %s\n", what, r->status,
            msg ? msg : "unexpected answer from the admin API");
    return r->status == 404 ? ESBCTL_EXIT_NOTFOUND : ESBCTL_EXIT_FAIL;
}

static char *escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    if (!e) abort();
    char *out = esb_strdup(e);
    curl_free(e);
    return out;
}

/* ---- status, queues, reload ---- */

/* Parse the options of a command that takes only the connection options and
 * no arguments. */
static void conn_options_only(int argc, char **argv)
{
    static const struct option conn_only[] = {
        ESBCTL_CONN_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char what[64];
    esbctl_opts_begin();
    if (esbctl_getopt(argc, argv, ":h", conn_only) != -1 || optind < argc) {
        snprintf(what, sizeof(what), "%s takes no arguments", argv[0]);
        esbctl_usage_error(what, argv[optind]);
    }
}

/* The string member k of o, "" if none. */
static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

int esbctl_cmd_status(int argc, char **argv)
{
    struct target t;
    struct reply r = {0};
    conn_options_only(argc, argv);
    int rc = target_get(&t);
    if (rc == 0) rc = http(&t, "GET", "/v1/health", NULL, &r);
    if (rc == 0 && (r.status == 200 || r.status == 503)) {
        json_t *j = r.json;
        printf("esbd at %s: %s (esbd %s, pid %" JSON_INTEGER_FORMAT ")\n", t.url, jstr(j, "status"),
               jstr(j, "version"), json_integer_value(json_object_get(j, "pid")));
        rc = r.status == 200 ? esbctl_flush_stdout() : ESBCTL_EXIT_FAIL;
    } else if (rc == 0) {
        rc = failed(&t, &r, "status");
        if (rc == 0) rc = ESBCTL_EXIT_FAIL;
    }
    reply_free(&r);
    target_free(&t);
    return rc;
}

int esbctl_queues_online(void)
{
    struct target t;
    struct reply r = {0};
    int rc = target_get(&t);
    if (rc == 0) rc = http(&t, "GET", "/v1/queues", NULL, &r);
    if (rc == 0) rc = failed(&t, &r, "queues");
    if (rc == 0 && !json_is_array(r.json)) {
        fprintf(stderr, "esbctl: queues: unexpected answer from the admin API\n");
        rc = ESBCTL_EXIT_FAIL;
    }
    if (rc == 0) {
        size_t i;
        json_t *q;
        int w = (int)strlen("QUEUE");
        json_array_foreach(r.json, i, q)
        {
            size_t len = json_string_length(json_object_get(q, "name"));
            if (len > (size_t)w) w = len > 200 ? 200 : (int)len;
        }
        printf("%-*s %10s %10s %10s %10s %14s\n", w, "QUEUE", "ENTRIES", "READY", "INFLIGHT",
               "WAITING", "BYTES");
        json_array_foreach(r.json, i, q)
        {
            printf("%-*s %10" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT
                   " %10" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT " %14" JSON_INTEGER_FORMAT
                   "\n",
                   w, jstr(q, "name"), json_integer_value(json_object_get(q, "entries")),
                   json_integer_value(json_object_get(q, "ready")),
                   json_integer_value(json_object_get(q, "inflight")),
                   json_integer_value(json_object_get(q, "waiting")),
                   json_integer_value(json_object_get(q, "bytes")));
        }
        rc = esbctl_flush_stdout();
    }
    reply_free(&r);
    target_free(&t);
    return rc;
}

int esbctl_cmd_reload(int argc, char **argv)
{
    struct target t;
    struct reply r = {0};
    conn_options_only(argc, argv);
    int rc = target_get(&t);
    if (rc == 0) rc = http(&t, "POST", "/v1/reload", "{}", &r);
    if (rc == 0 && r.status == 400 && json_is_array(json_object_get(r.json, "errors"))) {
        size_t i;
        json_t *e;
        fprintf(stderr, "esbctl: reload refused; the running config stays in force:\n");
        json_array_foreach(json_object_get(r.json, "errors"), i, e)
            fprintf(stderr, "%s\n", json_is_string(e) ? json_string_value(e) : "?");
        rc = ESBCTL_EXIT_FAIL;
    } else if (rc == 0) {
        rc = failed(&t, &r, "reload");
        if (rc == 0) printf("reloaded\n");
        if (rc == 0) rc = esbctl_flush_stdout();
    }
    reply_free(&r);
    target_free(&t);
    return rc;
}

/* ---- dlq ---- */

/* "5s", "3m", "2h", "4d" since ms. */
static void age(uint64_t ms, char *buf, size_t n)
{
    uint64_t now = esb_now_ms(), s = now > ms ? (now - ms) / 1000 : 0;
    if (s < 120)
        snprintf(buf, n, "%" PRIu64 "s", s);
    else if (s < 7200)
        snprintf(buf, n, "%" PRIu64 "m", s / 60);
    else if (s < 172800)
        snprintf(buf, n, "%" PRIu64 "h", s / 3600);
    else
        snprintf(buf, n, "%" PRIu64 "d", s / 86400);
}

/* Print s with control characters (but newline and tab when multiline)
 * as '.', so that a message cannot drive the terminal. */
static void put_safe(const char *s, size_t n, int multiline)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && !(multiline && (c == '\n' || c == '\t'))) || c == 0x7f) c = '.';
        putchar(c);
    }
}

static int dlq_list(const struct target *t, const char *q, const char *filter, long limit)
{
    char path[4096];
    char *eq = escape(q), *ef = filter ? escape(filter) : NULL;
    struct reply r = {0};
    snprintf(path, sizeof(path), "/v1/queues/%s/entries?limit=%ld%s%s", eq, limit,
             ef ? "&filter=" : "", ef ? ef : "");
    free(eq);
    free(ef);
    int rc = http(t, "GET", path, NULL, &r);
    if (rc == 0) rc = failed(t, &r, "dlq list");
    if (rc == 0) {
        size_t i;
        json_t *e;
        printf("%-10s %-36s %8s %6s  %s\n", "SEQ", "ID", "ATTEMPTS", "AGE", "REASON");
        json_array_foreach(r.json, i, e)
        {
            char a[32];
            const char *reason = jstr(e, "reason");
            age((uint64_t)json_integer_value(json_object_get(e, "enqueued")), a, sizeof(a));
            printf("%-10" JSON_INTEGER_FORMAT " %-36s %8" JSON_INTEGER_FORMAT " %6s  ",
                   json_integer_value(json_object_get(e, "seq")), jstr(e, "id"),
                   json_integer_value(json_object_get(e, "attempt")), a);
            size_t rl = strlen(reason);
            put_safe(reason, rl > REASON_COLUMN_MAX ? REASON_COLUMN_MAX : rl, 0);
            printf("%s\n", rl > REASON_COLUMN_MAX ? "..." : "");
        }
        if (json_array_size(r.json) == 0) printf("(no entries%s)\n", filter ? " match" : "");
        rc = esbctl_flush_stdout();
    }
    reply_free(&r);
    return rc;
}

/* The "history" of entry e: one line per attempt kept, numbered from the
 * attempts made ("attempt"), with a note on earlier ones not kept. */
static void print_history(json_t *e)
{
    json_t *h = json_object_get(e, "history"), *t;
    size_t n = json_array_size(h), i;
    if (n == 0) return;
    json_int_t made = json_integer_value(json_object_get(e, "attempt"));
    json_int_t first = made > (json_int_t)n ? made - (json_int_t)n + 1 : 1;
    printf("\nhistory:");
    if (first > 1)
        printf("      (attempts 1..%" JSON_INTEGER_FORMAT " not kept: the last %zu are)", first - 1,
               n);
    json_array_foreach(h, i, t)
    {
        printf("\n  %3" JSON_INTEGER_FORMAT "  ", first + (json_int_t)i);
        put_safe(jstr(t, "time"), strlen(jstr(t, "time")), 0);
        const char *cls = jstr(t, "class");
        size_t cl = strlen(cls);
        printf("  ");
        put_safe(cls, cl, 0);
        printf("%*s  ", cl < 11 ? (int)(11 - cl) : 0, "");
        put_safe(jstr(t, "error"), strlen(jstr(t, "error")), 0);
    }
}

static int dlq_show(const struct target *t, const char *q, const char *seq, int as_json)
{
    char path[4096];
    struct reply r = {0};
    char *end;
    errno = 0;
    uint64_t sv = strtoull(seq, &end, 10);
    if (errno || *end || sv == 0 || !isdigit((unsigned char)seq[0]))
        esbctl_usage_error("dlq show needs an entry's SEQ (a positive number)", seq);
    char *eq = escape(q);
    snprintf(path, sizeof(path), "/v1/queues/%s/entries/%" PRIu64, eq, sv);
    free(eq);
    int rc = http(t, "GET", path, NULL, &r);
    if (rc == 0) rc = failed(t, &r, "dlq show");
    if (rc == 0 && as_json) {
        fwrite(r.body.data, 1, r.body.len, stdout);
    } else if (rc == 0) {
        json_t *e = r.json;
        char a[32];
        time_t secs = (time_t)(json_integer_value(json_object_get(e, "enqueued")) / 1000);
        struct tm tm;
        char when[64] = "?";
        if (gmtime_r(&secs, &tm)) strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        age((uint64_t)json_integer_value(json_object_get(e, "enqueued")), a, sizeof(a));
        printf("seq:          %" JSON_INTEGER_FORMAT "\nid:           %s\nqueue:        ",
               json_integer_value(json_object_get(e, "seq")), jstr(e, "id"));
        put_safe(jstr(e, "queue"), strlen(jstr(e, "queue")), 0);
        printf("\ndead from:    ");
        put_safe(jstr(e, "dead_from"), strlen(jstr(e, "dead_from")), 0);
        printf("\nattempts:     %" JSON_INTEGER_FORMAT
               "\nenqueued:     %s (%s ago)\nreason:       ",
               json_integer_value(json_object_get(e, "attempt")), when, a);
        put_safe(jstr(e, "reason"), strlen(jstr(e, "reason")), 1);
        print_history(e);
        printf("\ncontent type: ");
        put_safe(jstr(e, "content_type"), strlen(jstr(e, "content_type")), 0);
        printf("\nheaders:\n");
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(e, "headers"), k, v)
        {
            printf("  ");
            put_safe(k, strlen(k), 0);
            printf(": ");
            put_safe(json_is_string(v) ? json_string_value(v) : "", json_string_length(v), 0);
            printf("\n");
        }
        json_t *body = json_object_get(e, "body"), *b64 = json_object_get(e, "body_base64");
        json_int_t n = json_integer_value(json_object_get(e, "body_bytes"));
        if (body) {
            printf("body (%" JSON_INTEGER_FORMAT " bytes):\n", n);
            put_safe(json_string_value(body), json_string_length(body), 1);
        } else {
            printf("body (%" JSON_INTEGER_FORMAT " bytes, not UTF-8, base64):\n%s", n,
                   json_is_string(b64) ? json_string_value(b64) : "");
        }
        printf("\n");
    }
    if (rc == 0) rc = esbctl_flush_stdout();
    reply_free(&r);
    return rc;
}

/* replay or purge: POST {"seq":N} or {"all":true,...}. */
static int dlq_change(const struct target *t, const char *what, const char *q, const char *id,
                      const char *filter, const char *to)
{
    char path[4096];
    char *eq = escape(q);
    struct reply r = {0};
    uint64_t seq = 0;
    json_t *o = json_object();
    if (id) {
        char *end;
        errno = 0;
        seq = strtoull(id, &end, 10);
        if (errno || *end || seq == 0 || !isdigit((unsigned char)id[0]))
            esbctl_usage_error("--id needs an entry's seq (a positive number)", id);
        json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    } else {
        json_object_set_new(o, "all", json_true());
        if (filter) json_object_set_new(o, "filter", json_string(filter));
    }
    if (to) json_object_set_new(o, "to", json_string(to));
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!body) esbctl_usage_error("--filter and --to must be UTF-8 text", NULL);
    snprintf(path, sizeof(path), "/v1/queues/%s/%s", eq, what);
    free(eq);
    int rc = http(t, "POST", path, body, &r);
    free(body);
    if (rc == 0) rc = failed(t, &r, what[0] == 'r' ? "dlq replay" : "dlq purge");
    if (rc == 0) {
        json_t *n = json_object_get(r.json, what[0] == 'r' ? "replayed" : "purged");
        printf("%s %" JSON_INTEGER_FORMAT "\n", what[0] == 'r' ? "replayed" : "purged",
               json_integer_value(n));
        rc = esbctl_flush_stdout();
    }
    reply_free(&r);
    return rc;
}

int esbctl_cmd_dlq(int argc, char **argv)
{
    enum { OPT_FILTER = 256, OPT_LIMIT, OPT_ID, OPT_ALL, OPT_TO, OPT_JSON };
    static const struct option opts[] = {
        ESBCTL_CONN_OPTIONS,
        {"filter", required_argument, NULL, OPT_FILTER},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"id", required_argument, NULL, OPT_ID},
        {"all", no_argument, NULL, OPT_ALL},
        {"to", required_argument, NULL, OPT_TO},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *filter = NULL, *id = NULL, *to = NULL;
    long limit = 100;
    int all = 0, as_json = 0, c;

    if (argc < 2) esbctl_usage_error("dlq needs list, show, replay or purge", NULL);
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        esbctl_usage(stdout);
        return 0;
    }
    esbctl_opts_begin();
    while ((c = esbctl_getopt(argc - 1, argv + 1, ":h", opts)) != -1) {
        switch (c) {
        case OPT_FILTER:
            filter = optarg[0] ? optarg : NULL;
            break;
        case OPT_LIMIT: {
            char *end;
            limit = strtol(optarg, &end, 10);
            if (*end || limit < 1 || limit > 10000)
                esbctl_usage_error("--limit needs a number 1..10000", optarg);
            break;
        }
        case OPT_ID:
            id = optarg;
            break;
        case OPT_ALL:
            all = 1;
            break;
        case OPT_TO:
            if (!optarg[0]) esbctl_usage_error("--to needs a queue", NULL);
            to = optarg;
            break;
        case OPT_JSON:
            as_json = 1;
            break;
        default:
            esbctl_usage_error("unknown option", argv[optind]);
        }
    }
    int nargs = argc - 1 - optind;
    char **args = argv + 1 + optind;
    int is_list = strcmp(sub, "list") == 0, is_show = strcmp(sub, "show") == 0;
    int is_replay = strcmp(sub, "replay") == 0, is_purge = strcmp(sub, "purge") == 0;
    if (!is_list && !is_show && !is_replay && !is_purge)
        esbctl_usage_error("unknown dlq command (want list, show, replay or purge)", sub);
    if (nargs != (is_show ? 2 : 1))
        esbctl_usage_error(is_show ? "dlq show takes QUEUE and SEQ" : "dlq takes one QUEUE", NULL);
    if ((id || all || to) && (is_list || is_show))
        esbctl_usage_error("--id, --all and --to go with replay and purge", NULL);
    if (as_json && !is_show) esbctl_usage_error("--json goes with dlq show", NULL);
    if ((is_replay || is_purge) && !!id == all)
        esbctl_usage_error("give exactly one of --id SEQ or --all", NULL);
    if (id && filter) esbctl_usage_error("--filter goes with --all (or list), not --id", NULL);
    if (to && is_purge) esbctl_usage_error("--to goes with replay", NULL);
    if (filter && is_show) esbctl_usage_error("--filter goes with list, replay or purge", NULL);

    struct target t;
    int rc = target_get(&t);
    if (rc == 0) {
        if (is_list)
            rc = dlq_list(&t, args[0], filter, limit);
        else if (is_show)
            rc = dlq_show(&t, args[0], args[1], as_json);
        else
            rc = dlq_change(&t, is_replay ? "replay" : "purge", args[0], id, filter, to);
    }
    target_free(&t);
    return rc;
}
