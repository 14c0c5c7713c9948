/* admin_views.c - the admin API's endpoints over the bus and the dead
 * letters (admin_internal.h): queue listing, entry browse and show, replay
 * and purge (through the runtime, which takes each entry before changing
 * it), and the Prometheus metrics. Runs on the admin API's MHD threads. */
#include "config.h"

#include "conf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_internal.h"
#include "bus.h"
#include "log.h"
#include "msg.h"
#include "queue_list.h"
#include "runtime.h"

#define EXCERPT_MAX   1024 /* body bytes shown in a listing */
#define LIMIT_DEFAULT 100
#define LIMIT_MAX     10000
#define METRICS_MAX   (64u * 1024 * 1024)
#define ARG_MAX       ESB__ADMIN_ARG_MAX

/* ---- entries ---- */

static char *base64(const uint8_t *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = esb_malloc((n + 2) / 3 * 4 + 1), *w = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *w++ = tab[v >> 18], *w++ = tab[(v >> 12) & 63], *w++ = tab[(v >> 6) & 63];
        *w++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *w++ = tab[v >> 18], *w++ = tab[(v >> 12) & 63];
        *w++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *w++ = '=';
    }
    *w = '\0';
    return out;
}

json_t *esb_admin_history_json(const struct esb_entry *e)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < e->ntries; i++) {
        const struct esb_try *t = &e->tries[i];
        char when[ESB_TIME_ISO_SIZE];
        esb_time_iso(t->at_ms, when);
        json_t *o = json_object();
        json_object_set_new(o, "time", json_string(when));
        json_object_set_new(o, "class", esb__admin_string(t->cls));
        json_object_set_new(o, "error", esb__admin_string(t->text));
        json_array_append_new(a, o);
    }
    return a;
}

/* An entry as JSON; full: the whole body (string or body_base64), else an
 * excerpt of EXCERPT_MAX bytes with non-printable bytes as '.'. */
static json_t *entry_json(const struct esb_entry *e, int full)
{
    const struct esb_msg *m = e->msg;
    json_t *o = json_object(), *h = json_object();
    json_object_set_new(o, "seq", json_integer((json_int_t)e->seq));
    json_object_set_new(o, "id", json_string(m->id_text));
    json_object_set_new(o, "queue", esb__admin_string(e->queue));
    json_object_set_new(o, "attempt", json_integer(e->attempt));
    json_object_set_new(o, "enqueued", json_integer((json_int_t)e->enqueued_ms));
    json_object_set_new(o, "reason", e->reason ? esb__admin_string(e->reason) : json_null());
    json_object_set_new(o, "dead_from",
                        e->dead_from ? esb__admin_string(e->dead_from) : json_null());
    json_object_set_new(o, "history", esb_admin_history_json(e));
    json_object_set_new(o, "content_type", esb__admin_string(m->content_type));
    for (size_t i = 0; i < m->nheaders; i++) {
        json_t *name = esb__admin_string(m->headers[i].name);
        const char *key = json_string_value(name);
        json_t *prev = json_object_get(h, key);
        if (prev) { /* a repeated header: values joined as HTTP does */
            size_t pl = json_string_length(prev), vl = strlen(m->headers[i].value);
            char *j = esb_malloc(pl + vl + 3);
            memcpy(j, json_string_value(prev), pl);
            memcpy(j + pl, ", ", 2);
            memcpy(j + pl + 2, m->headers[i].value, vl + 1);
            json_object_set_new(h, key, esb__admin_string(j));
            free(j);
        } else {
            json_object_set_new(h, key, esb__admin_string(m->headers[i].value));
        }
        json_decref(name);
    }
    json_object_set_new(o, "headers", h);
    const uint8_t *b = m->body->data;
    size_t n = m->body->len;
    json_object_set_new(o, "body_bytes", json_integer((json_int_t)n));
    if (full) {
        json_t *s = esb__admin_utf8_valid(b, n) ? json_stringn((const char *)b, n) : NULL;
        if (s) {
            json_object_set_new(o, "body", s);
        } else {
            char *b64 = base64(b, n);
            json_object_set_new(o, "body_base64", json_string(b64));
            free(b64);
        }
        return o;
    }
    size_t k = n < EXCERPT_MAX ? n : EXCERPT_MAX;
    char *ex = esb_malloc(k + 1);
    for (size_t i = 0; i < k; i++) ex[i] = b[i] >= 0x20 && b[i] < 0x7f ? (char)b[i] : '.';
    ex[k] = '\0';
    json_object_set_new(o, "body", json_stringn(ex, k));
    free(ex);
    return o;
}

struct browse_ctx {
    json_t *out; /* array (list) or the entry found (one) */
    const char *filter;
    uint64_t seq;
    long limit, n;
};

static int list_fn(void *ctx, const struct esb_entry *e)
{
    struct browse_ctx *b = ctx;
    if (b->filter && (!e->reason || !strstr(e->reason, b->filter))) return 0;
    json_array_append_new(b->out, entry_json(e, 0));
    return ++b->n >= b->limit;
}

static int find_fn(void *ctx, const struct esb_entry *e)
{
    struct browse_ctx *b = ctx;
    if (e->seq != b->seq) return 0;
    b->out = entry_json(e, 1);
    return 1;
}

/* ---- queues ---- */

enum MHD_Result esb__admin_queues(struct esb__admin_call *k)
{
    struct esb_queue_list l = {0};
    esb_queue_list_get(esb_runtime_bus(k->a->rt), &l);
    json_t *arr = json_array();
    for (size_t i = 0; i < l.n; i++) {
        const struct esb_queue_info *q = &l.v[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", esb__admin_string(q->name));
        json_object_set_new(o, "entries", json_integer((json_int_t)q->entries));
        json_object_set_new(o, "ready", json_integer((json_int_t)q->ready));
        json_object_set_new(o, "inflight", json_integer((json_int_t)q->inflight));
        json_object_set_new(o, "waiting", json_integer((json_int_t)q->waiting));
        json_object_set_new(o, "bytes", json_integer((json_int_t)q->bytes));
        json_array_append_new(arr, o);
    }
    esb_queue_list_free(&l);
    return esb__admin_send_json(k->c, MHD_HTTP_OK, arr);
}

/* A query argument, decoded into buf; NULL if absent; -1 in *bad if malformed. */
static const char *query_arg(struct MHD_Connection *c, const char *name, char *buf, size_t n,
                             int *bad)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (!v) return NULL;
    if (strlen(v) >= n) {
        *bad = 1;
        return NULL;
    }
    strcpy(buf, v);
    if (esb__admin_pct_decode(buf, 1) < 0) *bad = 1;
    return buf;
}

enum MHD_Result esb__admin_entries(struct esb__admin_call *k)
{
    char lim[32], filter[ARG_MAX + 1];
    int bad = 0;
    uint64_t limit = LIMIT_DEFAULT;
    const char *l = query_arg(k->c, "limit", lim, sizeof(lim), &bad);
    const char *f = query_arg(k->c, "filter", filter, sizeof(filter), &bad);
    if (bad || (l && esb__admin_parse_u64(l, LIMIT_MAX, &limit) < 0))
        return esb__admin_send_error(k->c, MHD_HTTP_BAD_REQUEST,
                                     "bad query: limit must be 1..%d, filter at most %d bytes",
                                     LIMIT_MAX, ARG_MAX);
    struct browse_ctx b = {.out = json_array(), .filter = f && *f ? f : NULL, .limit = (long)limit};
    int rc = esb_bus_browse(esb_runtime_bus(k->a->rt), k->args[0], list_fn, &b);
    if (rc < 0) {
        json_decref(b.out);
        if (rc == ESB_ENOTFOUND)
            return esb__admin_send_error(k->c, MHD_HTTP_NOT_FOUND, "no queue %s", k->args[0]);
        return esb__admin_send_error(k->c, esb__admin_status_of(rc), "browse %s: %s", k->args[0],
                                     esb_strerror(rc));
    }
    return esb__admin_send_json(k->c, MHD_HTTP_OK, b.out);
}

enum MHD_Result esb__admin_entry(struct esb__admin_call *k)
{
    struct browse_ctx b = {0};
    if (esb__admin_parse_u64(k->args[1], UINT64_MAX, &b.seq) < 0)
        return esb__admin_send_error(k->c, MHD_HTTP_BAD_REQUEST,
                                     "entry seq must be a positive number");
    int rc = esb_bus_browse(esb_runtime_bus(k->a->rt), k->args[0], find_fn, &b);
    if (rc == ESB_ENOTFOUND)
        return esb__admin_send_error(k->c, MHD_HTTP_NOT_FOUND, "no queue %s", k->args[0]);
    if (rc < 0)
        return esb__admin_send_error(k->c, esb__admin_status_of(rc), "browse: %s",
                                     esb_strerror(rc));
    if (!b.out)
        return esb__admin_send_error(k->c, MHD_HTTP_NOT_FOUND, "no entry %" PRIu64 " in %s", b.seq,
                                     k->args[0]);
    return esb__admin_send_json(k->c, MHD_HTTP_OK, b.out);
}

/* The selection of a replay/purge request body:
 * {"seq":N} or {"all":true[,"filter":"text"]}, plus "to" for a replay. */
struct selection {
    uint64_t seq;
    const char *filter, *to; /* borrowed from the parsed JSON */
};

static int parse_selection(json_t *o, int replay, struct selection *s, char *why, size_t n)
{
    const char *key;
    json_t *v;
    int all = 0;
    if (!json_is_object(o)) {
        snprintf(why, n, "the body must be a JSON object: {\"seq\":N} or {\"all\":true}");
        return -1;
    }
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "seq") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1) {
                snprintf(why, n, "\"seq\" must be a positive integer");
                return -1;
            }
            s->seq = (uint64_t)json_integer_value(v);
        } else if (strcmp(key, "all") == 0) {
            if (!json_is_true(v)) {
                snprintf(why, n, "\"all\" must be true (or left out)");
                return -1;
            }
            all = 1;
        } else if (strcmp(key, "filter") == 0 || (replay && strcmp(key, "to") == 0)) {
            int ctl = 0;
            for (const char *p = json_is_string(v) ? json_string_value(v) : ""; *p; p++)
                ctl |= (unsigned char)*p < 0x20 || *p == 0x7f;
            if (!json_is_string(v) || json_string_length(v) > ARG_MAX || ctl ||
                strlen(json_string_value(v)) != json_string_length(v)) {
                snprintf(why, n,
                         "\"%s\" must be a string of at most %d bytes without control "
                         "characters",
                         key, ARG_MAX);
                return -1;
            }
            if (key[0] == 'f')
                s->filter = json_string_length(v) ? json_string_value(v) : NULL;
            else
                s->to = json_string_value(v);
        } else {
            snprintf(why, n, "unknown field \"%.100s\" (known: seq, all, filter%s)", key,
                     replay ? ", to" : "");
            return -1;
        }
    }
    if (!!s->seq == all) {
        snprintf(why, n, "give exactly one of \"seq\":N or \"all\":true");
        return -1;
    }
    if (s->seq && s->filter) {
        snprintf(why, n, "\"filter\" goes with \"all\", not with \"seq\"");
        return -1;
    }
    if (s->to && !s->to[0]) {
        snprintf(why, n, "\"to\" must name a queue");
        return -1;
    }
    return 0;
}

static enum MHD_Result h_replay_purge(struct esb__admin_call *k, int replay)
{
    const char *what = replay ? "replay" : "purge";
    struct selection s = {0};
    json_error_t jerr;
    char why[300];
    json_t *o = json_loadb((const char *)k->req->body.data, k->req->body.len,
                           JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        return esb__admin_send_error(k->c, MHD_HTTP_BAD_REQUEST, "the body is not JSON: %s",
                                     jerr.text);
    if (parse_selection(o, replay, &s, why, sizeof(why)) < 0) {
        json_decref(o);
        return esb__admin_send_error(k->c, MHD_HTTP_BAD_REQUEST, "%s", why);
    }
    struct esb_err err = {0};
    const char *q = k->args[0];
    int rc = replay ? esb_runtime_replay(k->a->rt, q, s.seq, s.filter, s.to, &err)
                    : esb_runtime_purge(k->a->rt, q, s.seq, s.filter, &err);
    if (rc == 0 && s.seq) rc = ESB_ENOTFOUND; /* defensive: the runtime says so itself */
    if (rc < 0) {
        esb_info("admin %s queue=%s seq=%" PRIu64 " refused: %s", what, q, s.seq,
                 err.msg[0] ? err.msg : esb_strerror(rc));
        if (err.msg[0]) {
            json_decref(o);
            return esb__admin_send_error(k->c, esb__admin_status_of(rc), "%s", err.msg);
        }
        enum MHD_Result ret =
            rc == ESB_ENOTFOUND && s.seq
                ? esb__admin_send_error(k->c, MHD_HTTP_NOT_FOUND, "no entry %" PRIu64 " in %s",
                                        s.seq, q)
            : rc == ESB_ENOTFOUND
                ? esb__admin_send_error(k->c, MHD_HTTP_NOT_FOUND, "no queue %s", q)
            : rc == ESB_EBUSY
                ? esb__admin_send_error(k->c, MHD_HTTP_CONFLICT, "entry held right now; try again")
                : esb__admin_send_error(k->c, esb__admin_status_of(rc), "%s: %s", what,
                                        esb_strerror(rc));
        json_decref(o);
        return ret;
    }
    esb_info("admin %s queue=%s seq=%" PRIu64 " filter=%s to=%s count=%d", what, q, s.seq,
             s.filter ? s.filter : "-", s.to ? s.to : "-", rc);
    json_decref(o);
    return esb__admin_send_json(k->c, MHD_HTTP_OK,
                                json_pack("{s:i}", replay ? "replayed" : "purged", rc));
}

enum MHD_Result esb__admin_replay(struct esb__admin_call *k)
{
    return h_replay_purge(k, 1);
}

enum MHD_Result esb__admin_purge(struct esb__admin_call *k)
{
    return h_replay_purge(k, 0);
}

/* Append printf output to b (capped; output past the cap is dropped). */
static void bprintf(struct esb_buf *b, const char *fmt, ...) ESB_PRINTF(2, 3);
static void bprintf(struct esb_buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof(tmp)) n = sizeof(tmp) - 1;
    if (esb_buf_add(b, tmp, (size_t)n) != 0) return;
}

/* A Prometheus label value: \ " and newline escaped. */
static void label_value(const char *s, char *out, size_t n)
{
    size_t w = 0;
    for (; *s && w + 3 < n; s++) {
        if (*s == '\\' || *s == '"')
            out[w++] = '\\', out[w++] = *s;
        else if (*s == '\n')
            out[w++] = '\\', out[w++] = 'n';
        else
            out[w++] = *s;
    }
    out[w] = '\0';
}

enum MHD_Result esb__admin_metrics(struct esb__admin_call *k)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"esb_bus_commits_total", "Transactions made durable.",
         offsetof(struct esb_bus_stats, commits)},
        {"esb_bus_records_total", "Log records written.", offsetof(struct esb_bus_stats, records)},
        {"esb_bus_batches_total", "Group-commit batches written.",
         offsetof(struct esb_bus_stats, batches)},
        {"esb_bus_syncs_total", "fdatasync calls on the log.",
         offsetof(struct esb_bus_stats, syncs)},
        {"esb_bus_bytes_total", "Bytes written to the log.", offsetof(struct esb_bus_stats, bytes)},
        {"esb_bus_refused_full_total", "Appends refused by a queue or disk limit.",
         offsetof(struct esb_bus_stats, refused_full)},
        {"esb_bus_segments_deleted_total", "Log segments deleted after every entry was resolved.",
         offsetof(struct esb_bus_stats, segments_deleted)},
        {"esb_bus_marks_forgotten_total",
         "Idempotency marks forgotten to keep a bounded set (dedupe max-keys) in its bound.",
         offsetof(struct esb_bus_stats, marks_forgotten)},
    };
    static const struct {
        const char *name, *help;
        size_t off;
    } gauges[] = {
        {"esb_queue_entries", "Unresolved entries of a bus queue.",
         offsetof(struct esb_queue_info, entries)},
        {"esb_queue_ready", "Entries a consumer could take now.",
         offsetof(struct esb_queue_info, ready)},
        {"esb_queue_inflight", "Entries held by a consumer now.",
         offsetof(struct esb_queue_info, inflight)},
        {"esb_queue_waiting", "Entries waiting for a retry or behind their ordering key.",
         offsetof(struct esb_queue_info, waiting)},
        {"esb_queue_bytes", "Bytes held by a queue's entries.",
         offsetof(struct esb_queue_info, bytes)},
    };
    struct esb_bus *bus = esb_runtime_bus(k->a->rt);
    struct esb_bus_stats st;
    struct esb_buf b;
    struct esb_queue_list l = {0};
    char label[2 * ARG_MAX + 1];

    esb_bus_get_stats(bus, &st);
    esb_buf_init(&b, METRICS_MAX);
    for (size_t i = 0; i < ESB_ARRAY_LEN(counters); i++)
        bprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", counters[i].name,
                counters[i].help, counters[i].name, counters[i].name,
                *(const uint64_t *)(const void *)((const char *)&st + counters[i].off));
    bprintf(&b,
            "# HELP esb_bus_marks Idempotency marks held.\n# TYPE esb_bus_marks gauge\n"
            "esb_bus_marks %" PRIu64 "\n# HELP esb_bus_failed 1 once the bus failed fatally.\n"
            "# TYPE esb_bus_failed gauge\nesb_bus_failed %d\n",
            st.marks, esb_bus_failed(bus) ? 1 : 0);
    esb_queue_list_get(bus, &l);
    for (size_t g = 0; g < ESB_ARRAY_LEN(gauges); g++) {
        bprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g].name, gauges[g].help,
                gauges[g].name);
        for (size_t i = 0; i < l.n; i++) {
            label_value(l.v[i].name, label, sizeof(label));
            bprintf(&b, "%s{queue=\"%s\"} %" PRIu64 "\n", gauges[g].name, label,
                    *(const uint64_t *)(const void *)((const char *)&l.v[i] + gauges[g].off));
        }
    }
    esb_queue_list_free(&l);
    char *text = esb_strndup((const char *)b.data, b.len);
    esb_buf_free(&b);
    return esb__admin_send_text(k->c, MHD_HTTP_OK, text,
                                "text/plain; version=0.0.4; charset=utf-8");
}
