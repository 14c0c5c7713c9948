/* http_in_wait.c - http-in's parked requests: a request whose body is
 * complete is registered with the runtime and parked; the bus's completion
 * (one-way: 202 once durable) or the route's result (request-reply)
 * resumes it and the loop answers. See http_in_internal.h. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "http_in_internal.h"
#include "log.h"
#include "runtime.h"

/* ---- request-reply ---- */

static void rw_unref(struct reply_wait *rw)
{
    if (atomic_fetch_sub(&rw->refs, 1) != 1) return;
    esb_msg_unref(rw->final);
    free(rw->error);
    pthread_mutex_destroy(&rw->lock);
    free(rw);
}

/* The runtime's answer (esb_reply_fn): store it and wake the connection.
 * Called exactly once, from a worker or the timeout thread. */
static void on_reply(void *ctx, const struct esb_msg *final, int status, const char *error)
{
    struct reply_wait *rw = ctx;
    pthread_mutex_lock(&rw->lock);
    if (!rw->answered && !rw->gone) {
        rw->answered = 1;
        rw->status = status;
        rw->final = final ? esb_msg_ref((struct esb_msg *) final) : NULL;
        rw->error = error ? esb_strdup(error) : NULL;
        if (rw->suspended) {
            rw->suspended = 0;
            esb_http_resume(rw->conn); /* its loop answers */
        }
    }
    pthread_mutex_unlock(&rw->lock);
    rw_unref(rw);
}

/* A one-way accept is durable (rc 0) or failed: store the answer and wake
 * the connection. Called exactly once, from the bus writer thread. */
static void on_accepted(void *ctx, int rc)
{
    struct reply_wait *rw = ctx;
    pthread_mutex_lock(&rw->lock);
    if (!rw->answered && !rw->gone) {
        rw->answered = 1;
        rw->status = rc == 0 ? 202 : 503;
        if (rc < 0) esb_warn("http-in accept of id=%s failed: %s", rw->id, esb_strerror(rc));
        if (rw->suspended) {
            rw->suspended = 0;
            esb_http_resume(rw->conn);
        }
    }
    pthread_mutex_unlock(&rw->lock);
    rw_unref(rw);
}

/* The one-way accepts of the current loop pass, chained through
 * reply_wait.pass_next (each loop thread serves one endpoint, so this is
 * per endpoint too). */
static _Thread_local struct {
    struct esb_accept_batch *b;
    struct reply_wait *head, **tail;
} tl_pass;

/* The batch of a pass is durable (rc 0) or failed: ctx is its first wait. */
static void on_pass_accepted(void *ctx, int rc)
{
    for (struct reply_wait *rw = ctx, *next; rw; rw = next) {
        next = rw->pass_next;
        on_accepted(rw, rc);
    }
}

void esb__hin_pass_end(void)
{
    if (!tl_pass.b) return;
    struct esb_accept_batch *b = tl_pass.b;
    struct reply_wait *head = tl_pass.head;
    tl_pass.b = NULL;
    tl_pass.head = NULL;
    tl_pass.tail = NULL;
    struct esb_err err = {0, ""};
    int rc = esb_runtime_batch_commit(b, on_pass_accepted, head, 1 /* quick: on the writer */, &err);
    if (rc == 0 || !head) return; /* durable soon, or empty (every add refused) */
    /* Refused at once (back-pressure, stopping): nothing was stored; each
     * parked request is answered 503 with the reason. */
    size_t n = 0;
    for (struct reply_wait *rw = head, *next; rw; rw = next, n++) {
        next = rw->pass_next;
        pthread_mutex_lock(&rw->lock);
        if (!rw->answered && !rw->gone) {
            rw->answered = 1;
            rw->status = 503;
            rw->error = esb_strdup(err.msg[0] ? err.msg : "busy, retry later");
            if (rw->suspended) {
                rw->suspended = 0;
                esb_http_resume(rw->conn);
            }
        }
        pthread_mutex_unlock(&rw->lock);
        rw_unref(rw); /* the runtime's reference: no callback will come */
    }
    if (rc != ESB_EFULL) esb_warn("http-in: a batch of %zu accepts failed: %s", n, err.msg);
}

/* A header name a route may set on the response: a token, and not one
 * that frames the response or that we set ourselves. */
static int reply_header_ok(const char *name, const char *value)
{
    static const char *const framing[] = {
        "connection",     "keep-alive",   "transfer-encoding", "te", "trailer", "upgrade",
        "content-length", "content-type", "esb-message-id",    NULL,
    };
    if (!*name || strncasecmp(name, "proxy-", 6) == 0) return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p)) return 0;
    for (size_t i = 0; framing[i]; i++)
        if (strcasecmp(name, framing[i]) == 0) return 0;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f) return 0;
    return 1;
}

/* Answer with the stored answer of rw (lock held or rw no longer shared). */
static void respond_accepted(struct esb_http_conn *c, const char *id)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
    esb__hin_respond(c, 202, body, "esb-message-id", id);
}

static void respond_reply(struct esb_http_conn *c, const struct reply_wait *rw)
{
    if (rw->oneway) {
        if (rw->status == 202)
            respond_accepted(c, rw->id);
        else
            esb__hin_respond_error(c, 503, rw->error ? rw->error : "not accepted, retry later",
                                   "Retry-After", "1");
        return;
    }
    const struct esb_msg *f = rw->final;
    int empty = rw->status == 204 || rw->status == 304;
    if (!f && !empty) {
        char esc[1200], body[1300];
        esb__hin_json_escape(esc, sizeof(esc), rw->error ? rw->error : "no reply");
        snprintf(body, sizeof(body), "{\"error\":\"%s\",\"id\":\"%s\"}", esc, rw->id);
        esb__hin_respond(c, (unsigned)rw->status, body, "esb-message-id", rw->id);
        return;
    }
    size_t nh = 0, cap = (f ? f->nheaders : 0) + 2;
    struct esb_http_hdr *h = esb_calloc(cap, sizeof(*h));
    if (f) {
        if (f->content_type[0] && !empty)
            h[nh++] = (struct esb_http_hdr){"Content-Type", f->content_type};
        for (size_t i = 0; i < f->nheaders; i++) {
            const char *n = f->headers[i].name;
            if (strncasecmp(n, "esb-reply-header-", 17) != 0) continue;
            if (reply_header_ok(n + 17, f->headers[i].value))
                h[nh++] = (struct esb_http_hdr){n + 17, f->headers[i].value};
            else
                esb_warn("request-reply id=%s: response header '%.64s' not sent (not a token, "
                         "a framing header, or a control character in the value)",
                         rw->id, n + 17);
        }
    }
    h[nh++] = (struct esb_http_hdr){"esb-message-id", rw->id};
    esb_http_respond(c, (unsigned)rw->status, h, nh, f && !empty ? (const void *)f->body->data : "",
                     f && !empty ? f->body->len : 0);
    free(h);
}

/* The last call in request-reply mode: register m (durable, like accept)
 * and suspend the connection until on_reply resumes it - unless the
 * answer is there already or the endpoint is stopping. Takes m. */
void esb__hin_request_reply(struct esb_endpoint *ep, struct http_in_state *st,
                            struct esb_http_conn *c, const char *url, struct http_req *req,
                            struct esb_msg *m, int oneway)
{
    struct reply_wait *rw = esb_calloc(1, sizeof(*rw));
    rw->oneway = oneway;
    pthread_mutex_init(&rw->lock, NULL);
    atomic_store(&rw->refs, 2); /* this connection's, the runtime's */
    snprintf(rw->id, sizeof(rw->id), "%s", m->id_text);
    pthread_mutex_lock(&st->waits_lock);
    rw->next = st->waits;
    if (st->waits) st->waits->prev = rw;
    st->waits = rw;
    pthread_mutex_unlock(&st->waits_lock);
    req->rw = rw;

    struct esb_err err = {0, ""};
    /* One-way: the message joins the loop pass's batch (committed at the
     * pass's end, esb__hin_pass_end); the thread is free while the bus makes
     * it durable and the 202 comes from on_accepted. Request-reply: on_reply
     * brings the route's result. */
    int rc;
    if (oneway) {
        if (!tl_pass.b) {
            tl_pass.b = esb_runtime_batch_new(st->rt);
            tl_pass.tail = &tl_pass.head;
        }
        rc = esb_runtime_batch_add(tl_pass.b, ep, url, m, &err);
        if (rc == 0) {
            *tl_pass.tail = rw;
            tl_pass.tail = &rw->pass_next;
        }
    } else {
        rc = esb_runtime_request(st->rt, ep, url, m, CONF(ep)->reply_timeout, on_reply, rw, &err);
    }
    if (rc < 0) {
        atomic_fetch_sub(&rw->refs, 1); /* no callback will be called */
        pthread_mutex_lock(&rw->lock);
        rw->answered = 1; /* answered here, with no stored answer (status 0) */
        pthread_mutex_unlock(&rw->lock);
        esb__hin_respond_not_accepted(ep, c, url, rc, &err);
        esb_msg_unref(m);
        return;
    }
    esb_msg_unref(m);
    pthread_mutex_lock(&rw->lock);
    if (!rw->answered && !oneway && atomic_load(&st->stopping)) {
        rw->answered = 1;
        rw->status = 503;
        rw->error = esb_strdup("esbd is stopping before the reply; the message is stored and "
                               "will be processed");
    }
    if (rw->answered) {
        respond_reply(c, rw);
    } else {
        esb_http_park(c);
        rw->conn = c;
        rw->suspended = 1;
    }
    pthread_mutex_unlock(&rw->lock);
}

/* A parked request was resumed by on_reply, on_accepted or stop. */
void esb__hin_request_reply_again(struct esb_http_conn *c, struct reply_wait *rw)
{
    pthread_mutex_lock(&rw->lock);
    if (rw->answered && rw->status)
        respond_reply(c, rw);
    else
        esb__hin_respond_error(c, 503, "not answered, retry later", "Retry-After", "1");
    pthread_mutex_unlock(&rw->lock);
}

/* The connection of rw ended: drop it from the endpoint's list; a reply
 * that comes later is dropped. */
void esb__hin_request_reply_done(struct http_in_state *st, struct reply_wait *rw)
{
    pthread_mutex_lock(&st->waits_lock);
    if (rw->prev)
        rw->prev->next = rw->next;
    else
        st->waits = rw->next;
    if (rw->next) rw->next->prev = rw->prev;
    pthread_mutex_unlock(&st->waits_lock);
    pthread_mutex_lock(&rw->lock);
    rw->gone = 1;
    rw->conn = NULL;
    pthread_mutex_unlock(&rw->lock);
    rw_unref(rw);
}

/* Stopping: resume every parked request with a 503 for the client, and
 * wait up to HTTP_IN_STOP_DRAIN_MS for the answers to be given. */
void esb__hin_request_reply_stop(struct http_in_state *st)
{
    /* One-way accepts in flight finish within a group commit: let them
     * (their 202 is true) before answering whatever is left with 503. */
    for (int i = 0; i < HTTP_IN_STOP_DRAIN_MS / 10; i++) {
        int open = 0;
        pthread_mutex_lock(&st->waits_lock);
        for (struct reply_wait *rw = st->waits; rw && !open; rw = rw->next) {
            pthread_mutex_lock(&rw->lock);
            open = rw->oneway && !rw->answered;
            pthread_mutex_unlock(&rw->lock);
        }
        pthread_mutex_unlock(&st->waits_lock);
        if (!open) break;
        usleep(10 * 1000);
    }
    pthread_mutex_lock(&st->waits_lock);
    for (struct reply_wait *rw = st->waits; rw; rw = rw->next) {
        pthread_mutex_lock(&rw->lock);
        if (rw->suspended) {
            if (!rw->answered) {
                rw->answered = 1;
                rw->status = 503;
                rw->error = esb_strdup("esbd is stopping before the reply; the message is "
                                       "stored and will be processed");
            }
            rw->suspended = 0;
            esb_http_resume(rw->conn);
        }
        pthread_mutex_unlock(&rw->lock);
    }
    pthread_mutex_unlock(&st->waits_lock);
    /* Give the server threads a moment to send the answers (each request
     * leaves the list once its answer is sent). */
    for (int i = 0; i < HTTP_IN_STOP_DRAIN_MS / 10; i++) {
        int pending = 0;
        pthread_mutex_lock(&st->waits_lock);
        for (struct reply_wait *rw = st->waits; rw && !pending; rw = rw->next) {
            pthread_mutex_lock(&rw->lock);
            pending = rw->answered && rw->status;
            pthread_mutex_unlock(&rw->lock);
        }
        pthread_mutex_unlock(&st->waits_lock);
        if (!pending) break;
        usleep(10 * 1000);
    }
}
