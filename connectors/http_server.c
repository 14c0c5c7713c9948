/* http_server.c - http-in's HTTP/1.1 server. See http_server.h.
 *
 * Each loop owns its connections outright: one thread reads, parses,
 * calls the application and writes, so a connection needs no lock. The
 * one way in from other threads is the resume queue (a mutex-protected
 * list and an eventfd written only when the list was empty). Sockets are
 * registered once, edge-triggered for input and output, and never
 * modified: a parked connection is simply not read until it is resumed,
 * and `readable` remembers an input edge that came meanwhile. */
#include "config.h"

#include "http_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "http_ipcount.h"
#include "log.h"

#define LOOP_EVENTS     128
#define ACCEPT_BATCH    32
#define LINGER_MS       2000          /* reading away a refused body at most this long */
#define LINGER_BYTES    (1024 * 1024) /* or this much */
#define STOP_FLUSH_MS   1000          /* stop: time for answers already given to go out */
#define ACCEPT_PAUSE_MS 100           /* out of descriptors: accept again after this */

enum conn_state {
    C_HEAD,   /* reading a request head */
    C_BODY,   /* reading its body */
    C_APP,    /* the application has the request (inside complete/resumed) */
    C_PARKED, /* parked until esb_http_resume() */
    C_LINGER, /* answered early: reading away the rest, then close */
};

struct loop;

struct esb_http_conn {
    struct loop *lp;
    int fd;
    enum conn_state state;
    int readable;   /* an input edge not yet read to EAGAIN */
    int in_request; /* head() was called, done() not yet */
    int answered;   /* esb_http_respond() was called for the current request */
    int body_done;  /* the current request's body has been read whole */
    int keep_alive; /* the current request allows another after it */
    int head_req;   /* the current request is a HEAD */
    int minor;
    int chunked;
    int broken; /* close now (writing failed, or done) */
    uint64_t body_left;
    struct esb_http_chunked ch;
    void *ctx;
    /* input: rbuf[rpos..rlen) not yet consumed */
    char *rbuf;
    size_t rlen, rpos, scan;
    size_t lingered;
    /* output not yet written */
    char *wbuf;
    size_t wlen, wpos;
    uint64_t last_ms;      /* last progress (idle timeout) */
    uint64_t linger_until; /* C_LINGER: close by then */
    struct esb_ipkey ip;
    struct esb_http_conn *prev, *next, *qnext;
};

struct loop {
    struct esb_http_server *srv;
    pthread_t tid;
    int started;
    int epfd, lfd, efd;
    struct esb_http_conn *conns; /* every connection of this loop */
    pthread_mutex_t qlock;
    struct esb_http_conn *queue; /* resumed, for this loop */
    uint64_t now_ms;
    uint64_t accept_paused_until; /* 0, or when to put the listener back */
    uint64_t warned_ms;
    time_t date_sec;
    char date[40];
    unsigned idx;
};

struct esb_http_server {
    struct esb_http_server_conf conf;
    char *name;
    _Atomic int stopping;
    _Atomic unsigned nconns;
    struct esb_ipcount *ips;
    struct loop *loops;
    unsigned nloops;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- output ---- */

/* A growing text buffer, on the stack while it fits. */
struct out {
    char *p;
    size_t len, cap;
    char stack[1024];
};

static void out_init(struct out *o)
{
    o->p = o->stack;
    o->len = 0;
    o->cap = sizeof(o->stack);
}

static void out_add(struct out *o, const char *s, size_t n)
{
    if (o->len + n > o->cap) {
        size_t cap = o->cap * 2;
        while (cap < o->len + n) cap *= 2;
        char *p = esb_malloc(cap);
        memcpy(p, o->p, o->len);
        if (o->p != o->stack) free(o->p);
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void out_str(struct out *o, const char *s)
{
    out_add(o, s, strlen(s));
}

static void out_u64(struct out *o, uint64_t v)
{
    char d[24];
    size_t i = sizeof(d);
    do d[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    out_add(o, d + i, sizeof(d) - i);
}

static void out_free(struct out *o)
{
    if (o->p != o->stack) free(o->p);
}

static const char *date_now(struct loop *lp)
{
    time_t now = time(NULL);
    if (now != lp->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(lp->date, sizeof(lp->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        lp->date_sec = now;
    }
    return lp->date;
}

/* Write as much of iov as the socket takes; keep the rest in c->wbuf.
 * -1: the connection failed. */
static int send_iov(struct esb_http_conn *c, struct iovec *iov, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    ssize_t w = 0;
    if (c->wlen == c->wpos) { /* nothing queued before: try at once */
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        do w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (w < 0 && errno == EINTR);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
            w = 0;
        }
    }
    if ((size_t)w == total) return 0;
    size_t rest = total - (size_t)w, have = c->wlen - c->wpos;
    char *nb = esb_malloc(have + rest);
    if (have) memcpy(nb, c->wbuf + c->wpos, have);
    size_t o = have, skip = (size_t)w;
    for (int i = 0; i < n; i++) {
        size_t l = iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(nb + o, (char *)iov[i].iov_base + skip, l - skip);
        o += l - skip;
        skip = 0;
    }
    free(c->wbuf);
    c->wbuf = nb;
    c->wpos = 0;
    c->wlen = o;
    return 0;
}

/* Write queued output. 1: all written, 0: the socket is full, -1: failed. */
static int flush(struct esb_http_conn *c)
{
    while (c->wpos < c->wlen) {
        ssize_t w = send(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        c->wpos += (size_t)w;
        c->last_ms = c->lp->now_ms;
    }
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = c->wpos = 0;
    return 1;
}

static int safe_field(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

void esb_http_respond(struct esb_http_conn *c, unsigned status, const struct esb_http_hdr *hdrs,
                      size_t nhdrs, const void *body, size_t len)
{
    if (c->answered) return; /* one answer per request */
    c->answered = 1;
    if (status < 200 || status > 599) status = 500;
    int no_body = status == 204 || status == 304;
    /* An answer before the body was read whole ends the connection. */
    if (!c->body_done || atomic_load(&c->lp->srv->stopping)) c->keep_alive = 0;
    struct out o;
    out_init(&o);
    out_str(&o, "HTTP/1.1 ");
    out_u64(&o, status);
    out_str(&o, " ");
    out_str(&o, esb_http_reason(status));
    out_str(&o, "\r\nDate: ");
    out_str(&o, date_now(c->lp));
    if (!no_body) {
        out_str(&o, "\r\nContent-Length: ");
        out_u64(&o, len);
    }
    if (!c->keep_alive)
        out_str(&o, "\r\nConnection: close");
    else if (c->minor == 0)
        out_str(&o, "\r\nConnection: keep-alive");
    for (size_t i = 0; i < nhdrs; i++) {
        if (!safe_field(hdrs[i].name) || !safe_field(hdrs[i].value)) continue;
        out_str(&o, "\r\n");
        out_str(&o, hdrs[i].name);
        out_str(&o, ": ");
        out_str(&o, hdrs[i].value);
    }
    out_str(&o, "\r\n\r\n");
    struct iovec iov[2] = {{o.p, o.len}, {(void *)body, len}};
    int n = (no_body || c->head_req || len == 0) ? 1 : 2;
    if (send_iov(c, iov, n) != 0) c->broken = 1;
    out_free(&o);
}

/* ---- connections ---- */

static void conn_close(struct esb_http_conn *c)
{
    struct loop *lp = c->lp;
    if (c->in_request) {
        c->in_request = 0;
        lp->srv->conf.ops->done(lp->srv->conf.app, c);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        lp->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    close(c->fd); /* also leaves the epoll set */
    esb_ipcount_release(lp->srv->ips, &c->ip);
    atomic_fetch_sub(&lp->srv->nconns, 1);
    free(c->rbuf);
    free(c->wbuf);
    free(c);
}

/* Read more input. 1: got bytes, 0: none now, -1: closed or failed. */
static int fill(struct esb_http_conn *c)
{
    size_t cap = c->lp->srv->conf.head_max;
    if (c->rpos > 0 && c->rpos == c->rlen) c->rpos = c->rlen = c->scan = 0;
    if (c->rlen == cap && c->rpos > 0) { /* make room: keep what is unread */
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->scan = c->scan > c->rpos ? c->scan - c->rpos : 0;
        c->rpos = 0;
    }
    if (!c->readable || c->rlen == cap) return 0;
    size_t room = cap - c->rlen;
    ssize_t r;
    do r = recv(c->fd, c->rbuf + c->rlen, room, 0);
    while (r < 0 && errno == EINTR);
    if (r > 0) {
        c->rlen += (size_t)r;
        if ((size_t)r < room) c->readable = 0; /* drained: the next edge tells */
        c->last_ms = c->lp->now_ms;
        return 1;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->readable = 0;
        return 0;
    }
    return -1;
}

/* Answer a protocol error found by the server itself. */
static void respond_error(struct esb_http_conn *c, unsigned status, const char *why)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}", why);
    static const struct esb_http_hdr ct = {"Content-Type", "application/json"};
    c->body_done = 0; /* the connection ends after it */
    esb_http_respond(c, status, &ct, 1, body, (size_t)n);
}

static int body_sink(void *ctx, const char *data, size_t n)
{
    struct esb_http_conn *c = ctx;
    struct esb_http_server *s = c->lp->srv;
    return n ? s->conf.ops->body(s->conf.app, c, data, n) : 0;
}

/* The request head is in rbuf at rpos. */
static void start_request(struct esb_http_conn *c, const struct esb_http_head *h)
{
    struct esb_http_server *s = c->lp->srv;
    c->rpos += h->head_len;
    c->scan = c->rpos;
    c->in_request = 1;
    c->answered = 0;
    c->ctx = NULL;
    c->keep_alive = h->keep_alive;
    c->minor = h->minor;
    c->head_req = h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0;
    c->chunked = h->chunked;
    c->body_left = h->has_length ? h->length : 0;
    memset(&c->ch, 0, sizeof(c->ch));
    c->body_done = !c->chunked && c->body_left == 0;
    s->conf.ops->head(s->conf.app, c, h);
    if (c->answered) return;
    c->state = C_BODY;
    if (h->expect_continue && !c->body_done) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        struct iovec iov = {(void *)cont, sizeof(cont) - 1};
        if (send_iov(c, &iov, 1) != 0) c->broken = 1;
    }
}

/* Feed the buffered body bytes. 1: the body is complete. */
static int feed_body(struct esb_http_conn *c)
{
    size_t avail = c->rlen - c->rpos;
    if (c->chunked) {
        int done = 0;
        const char *why = NULL;
        ssize_t k =
            esb_http_chunked_decode(&c->ch, c->rbuf + c->rpos, avail, body_sink, c, &done, &why);
        if (k == -1) {
            respond_error(c, 400, why);
            return 0;
        }
        if (k == -2) { /* the application answered */
            c->body_done = 0;
            return 0;
        }
        c->rpos += (size_t)k;
        c->body_done = done;
        return done;
    }
    size_t k = avail < c->body_left ? avail : (size_t)c->body_left;
    if (k && body_sink(c, c->rbuf + c->rpos, k) != 0) return 0;
    c->rpos += k;
    c->body_left -= k;
    c->body_done = c->body_left == 0;
    return c->body_done;
}

/* After the application had its turn: answered, parked, or neither. */
static void after_app(struct esb_http_conn *c)
{
    if (c->state == C_PARKED) return;
    if (!c->answered) respond_error(c, 500, "the request was not answered");
    c->state = C_HEAD;
}

/* The request was answered: end it, and set up the next one or the close. */
static void end_request(struct esb_http_conn *c)
{
    struct esb_http_server *s = c->lp->srv;
    c->in_request = 0;
    c->answered = 0;
    c->head_req = 0; /* an error answer to the next head is no HEAD answer */
    s->conf.ops->done(s->conf.app, c);
    c->ctx = NULL;
    if (c->keep_alive) {
        c->state = C_HEAD;
        c->scan = c->rpos;
    } else if (c->body_done && c->rpos == c->rlen && !c->readable) {
        c->broken = 1; /* read whole, nothing more sent: close at once */
    } else if (c->state != C_LINGER) {
        c->state = C_LINGER; /* unread input: read it away before closing */
        c->lingered = 0;
    }
}

/* Run the connection as far as it goes without waiting. */
static void conn_run(struct esb_http_conn *c)
{
    struct esb_http_server *s = c->lp->srv;
    for (;;) {
        if (c->broken) goto close;
        if (c->wpos < c->wlen) {
            int f = flush(c);
            if (f < 0) goto close;
            if (f == 0) return; /* the output edge brings us back */
        }
        if (c->in_request && c->answered) {
            end_request(c);
            continue;
        }
        switch (c->state) {
        case C_PARKED:
        case C_APP:
            return;
        case C_LINGER: {
            if (c->lingered == 0) {
                shutdown(c->fd, SHUT_WR);
                c->linger_until = c->lp->now_ms + LINGER_MS;
            }
            c->rpos = c->rlen = 0;
            int r = fill(c);
            if (r < 0 || c->lingered >= LINGER_BYTES) goto close;
            if (r == 0) {
                if (c->lingered == 0) c->lingered = 1;
                return;
            }
            c->lingered += c->rlen;
            continue;
        }
        case C_HEAD: {
            size_t skip = esb_http_skip_empty(c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rpos += skip;
            if (c->scan < c->rpos) c->scan = c->rpos;
            size_t scan = c->scan - c->rpos;
            size_t end = esb_http_head_end(c->rbuf + c->rpos, c->rlen - c->rpos, &scan);
            c->scan = c->rpos + scan;
            if (end == 0) {
                if (c->rlen - c->rpos == s->conf.head_max) {
                    c->in_request = 1; /* for done() symmetry: an answered request */
                    respond_error(c, 431, "request head too large");
                    continue;
                }
                int r = fill(c);
                if (r < 0) goto close;
                if (r == 0) return;
                continue;
            }
            struct esb_http_head h;
            const char *why = "bad request";
            int rc = esb_http_parse_head(c->rbuf + c->rpos, end, &h, &why);
            if (rc != 0) {
                c->in_request = 1;
                c->keep_alive = 0;
                respond_error(c, (unsigned)rc, why);
                continue;
            }
            if (atomic_load(&s->stopping)) {
                c->in_request = 1;
                c->rpos += h.head_len;
                respond_error(c, 503, "shutting down");
                continue;
            }
            start_request(c, &h);
            continue;
        }
        case C_BODY: {
            if (!c->body_done && !feed_body(c)) {
                if (c->answered) continue;
                int r = fill(c);
                if (r < 0) goto close;
                if (r == 0) return;
                continue;
            }
            c->state = C_APP;
            s->conf.ops->complete(s->conf.app, c);
            after_app(c);
            continue;
        }
        }
    }
close:
    conn_close(c);
}

void **esb_http_ctx(struct esb_http_conn *c)
{
    return &c->ctx;
}

void esb_http_park(struct esb_http_conn *c)
{
    c->state = C_PARKED;
}

void esb_http_resume(struct esb_http_conn *c)
{
    struct loop *lp = c->lp;
    pthread_mutex_lock(&lp->qlock);
    int was_empty = lp->queue == NULL;
    c->qnext = lp->queue;
    lp->queue = c;
    pthread_mutex_unlock(&lp->qlock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(lp->efd, &one, sizeof(one));
        (void)w; /* a full counter still wakes the loop */
    }
}

/* Serve the resumed connections. */
static void run_queue(struct loop *lp)
{
    pthread_mutex_lock(&lp->qlock);
    struct esb_http_conn *q = lp->queue;
    lp->queue = NULL;
    pthread_mutex_unlock(&lp->qlock);
    /* The list is newest first: answer in the order of resumption. */
    struct esb_http_conn *rev = NULL;
    while (q) {
        struct esb_http_conn *n = q->qnext;
        q->qnext = rev;
        rev = q;
        q = n;
    }
    struct esb_http_server *s = lp->srv;
    for (struct esb_http_conn *c = rev, *n; c; c = n) {
        n = c->qnext;
        c->state = C_APP;
        c->last_ms = lp->now_ms;
        s->conf.ops->resumed(s->conf.app, c);
        after_app(c);
        conn_run(c);
    }
}

/* ---- accepting ---- */

static void accept_some(struct loop *lp)
{
    struct esb_http_server *s = lp->srv;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(lp->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The listener is level-triggered: take it out of the set
                 * for a moment instead of spinning on it. */
                if (lp->now_ms >= lp->warned_ms + 10000) {
                    esb_warn("http-in=%s accept: %s; pausing accepts for %d ms", s->name,
                             strerror(errno), ACCEPT_PAUSE_MS);
                    lp->warned_ms = lp->now_ms;
                }
                (void)epoll_ctl(lp->epfd, EPOLL_CTL_DEL, lp->lfd, NULL);
                lp->accept_paused_until = lp->now_ms + ACCEPT_PAUSE_MS;
            }
            return; /* EAGAIN: no more for now */
        }
        struct esb_ipkey ip;
        esb_ipkey_from(&ip, (struct sockaddr *)&ss);
        if (atomic_fetch_add(&s->nconns, 1) >= s->conf.max_connections) {
            atomic_fetch_sub(&s->nconns, 1);
            close(fd);
            continue;
        }
        if (esb_ipcount_take(s->ips, &ip, s->conf.per_ip_connections) != 0) {
            atomic_fetch_sub(&s->nconns, 1);
            close(fd);
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct esb_http_conn *c = esb_calloc(1, sizeof(*c));
        c->lp = lp;
        c->fd = fd;
        c->ip = ip;
        c->readable = 1;
        c->keep_alive = 1;
        c->state = C_HEAD;
        c->last_ms = lp->now_ms;
        c->rbuf = esb_malloc(s->conf.head_max);
        c->next = lp->conns;
        if (lp->conns) lp->conns->prev = c;
        lp->conns = c;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_close(c);
            continue;
        }
        conn_run(c);
    }
}

/* Close connections idle past the timeout and lingering ones past their
 * deadline. Parked and application-held requests are not timed out. */
static void sweep(struct loop *lp)
{
    uint64_t idle = lp->srv->conf.idle_timeout_ms;
    for (struct esb_http_conn *c = lp->conns, *n; c; c = n) {
        n = c->next;
        if (c->state == C_PARKED || c->state == C_APP) continue;
        int expired = c->state == C_LINGER && c->lingered ? lp->now_ms >= c->linger_until
                                                          : lp->now_ms - c->last_ms >= idle;
        if (expired) conn_close(c);
    }
}

/* ---- loops ---- */

static void *loop_main(void *arg)
{
    struct loop *lp = arg;
    struct esb_http_server *s = lp->srv;
    esb_thread_name("esb-http-%u", lp->idx);
    if (s->conf.nice) {
        errno = 0;
        int base = getpriority(PRIO_PROCESS, 0); /* -1 is a valid answer */
        int want = (errno ? 0 : base) + s->conf.nice;
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), want > 19 ? 19 : want);
    }
    struct epoll_event ev[LOOP_EVENTS];
    uint64_t next_sweep = 0, stop_at = 0;
    for (;;) {
        int wait = stop_at ? 10 : lp->accept_paused_until ? ACCEPT_PAUSE_MS : 1000;
        int n = epoll_wait(lp->epfd, ev, LOOP_EVENTS, wait);
        lp->now_ms = mono_ms();
        if (lp->accept_paused_until && lp->now_ms >= lp->accept_paused_until && !stop_at) {
            struct epoll_event l = {.events = EPOLLIN, .data.ptr = &lp->lfd};
            lp->accept_paused_until = 0;
            (void)epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->lfd, &l);
        }
        for (int i = 0; i < n; i++) {
            void *p = ev[i].data.ptr;
            if (p == &lp->lfd) {
                if (!atomic_load(&s->stopping)) accept_some(lp);
            } else if (p == &lp->efd) {
                uint64_t v;
                ssize_t r = read(lp->efd, &v, sizeof(v));
                (void)r;
            } else {
                struct esb_http_conn *c = p;
                if (ev[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) c->readable = 1;
                if (c->state != C_PARKED) conn_run(c);
            }
        }
        run_queue(lp);
        if (s->conf.ops->pass_end) s->conf.ops->pass_end(s->conf.app);
        if (atomic_load(&s->stopping)) {
            if (!stop_at) {
                stop_at = lp->now_ms + STOP_FLUSH_MS;
                if (lp->lfd >= 0) close(lp->lfd);
                lp->lfd = -1;
            }
            int pending = 0;
            for (struct esb_http_conn *c = lp->conns, *nx; c; c = nx) {
                nx = c->next;
                if (c->wpos < c->wlen || c->state == C_PARKED || c->state == C_APP)
                    pending = 1; /* an answer to write, or one to come (http-in resumes all) */
                else
                    conn_close(c); /* idle, reading, or answered and written */
            }
            if (!pending || lp->now_ms >= stop_at) break;
            continue;
        }
        if (lp->now_ms >= next_sweep) {
            sweep(lp);
            next_sweep = lp->now_ms + 1000;
        }
    }
    while (lp->conns) conn_close(lp->conns);
    return NULL;
}

/* A listening socket for one loop. -errno. */
static int listen_on(const struct esb_http_server_conf *conf, int reuseport)
{
    int fd = socket(conf->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (bind(fd, conf->addr, conf->addr_len) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* Several loops share the address through SO_REUSEPORT, which would also
 * let them share it with another process that listens there already. A
 * plain socket bound first fails when anyone holds the address. */
static int probe_listen(const struct esb_http_server_conf *conf)
{
    int fd = listen_on(conf, 0);
    if (fd < 0) return fd;
    close(fd);
    return 0;
}

static void loops_free(struct esb_http_server *s)
{
    for (unsigned i = 0; i < s->nloops; i++) {
        struct loop *lp = &s->loops[i];
        if (lp->started) pthread_join(lp->tid, NULL);
        if (lp->lfd >= 0) close(lp->lfd);
        if (lp->epfd >= 0) close(lp->epfd);
        if (lp->efd >= 0) close(lp->efd);
        pthread_mutex_destroy(&lp->qlock);
    }
    free(s->loops);
    esb_ipcount_free(s->ips);
    free(s->name);
    free(s);
}

int esb_http_server_start(const struct esb_http_server_conf *conf, struct esb_http_server **out,
                          struct esb_err *err)
{
    struct esb_http_server *s = esb_calloc(1, sizeof(*s));
    s->conf = *conf;
    s->name = esb_strdup(conf->name);
    s->conf.name = s->name;
    s->ips = esb_ipcount_new();
    s->loops = esb_calloc(conf->threads, sizeof(*s->loops));
    int rc = conf->threads > 1 ? probe_listen(conf) : 0;
    for (unsigned i = 0; rc == 0 && i < conf->threads; i++) {
        struct loop *lp = &s->loops[i];
        lp->srv = s;
        lp->idx = i;
        lp->epfd = lp->efd = -1;
        pthread_mutex_init(&lp->qlock, NULL);
        s->nloops++;
        lp->lfd = listen_on(conf, conf->threads > 1);
        if (lp->lfd < 0) {
            rc = lp->lfd;
            break;
        }
        lp->epfd = epoll_create1(EPOLL_CLOEXEC);
        lp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (lp->epfd < 0 || lp->efd < 0) {
            rc = -errno;
            break;
        }
        struct epoll_event l = {.events = EPOLLIN, .data.ptr = &lp->lfd};
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &lp->efd};
        if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->lfd, &l) != 0 ||
            epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->efd, &e) != 0) {
            rc = -errno;
            break;
        }
    }
    for (unsigned i = 0; rc == 0 && i < s->nloops; i++) {
        struct loop *lp = &s->loops[i];
        int e = pthread_create(&lp->tid, NULL, loop_main, lp);
        if (e != 0) {
            rc = -e;
            break;
        }
        lp->started = 1;
    }
    if (rc != 0) {
        esb_http_server_stop(s);
        return esb_err_set(err, ESB_EFAILED, "%s", strerror(-rc));
    }
    *out = s;
    return 0;
}

void esb_http_server_stop(struct esb_http_server *s)
{
    if (!s) return;
    atomic_store(&s->stopping, 1);
    for (unsigned i = 0; i < s->nloops; i++) {
        uint64_t one = 1;
        if (s->loops[i].efd >= 0) {
            ssize_t w = write(s->loops[i].efd, &one, sizeof(one));
            (void)w;
        }
    }
    loops_free(s);
}
