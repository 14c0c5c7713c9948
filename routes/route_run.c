/* route_run.c - run a compiled route on one message (see route.h).
 *
 * The message flows through the steps by reference. It is copied (header
 * copy, body shared) only when a step changes a header and the current
 * reference may be seen by someone else: the input, or a message already
 * handed to an output or a multicast branch. Predicates parse the body at
 * most once per format per run (esb_pred_run). On a routing error the
 * outputs made so far are dropped: the runtime dead-letters the input
 * instead of committing them.
 *
 * A Lua transform replaces the message, drops it (like a filter), or splits
 * it into several: then each part runs the rest of the flow on its own - the
 * steps after the transform, then after each enclosing choice - through the
 * continuation esb__route_run_steps keeps in run->k. A multicast branch's
 * continuation ends with the branch. */
#include "config.h"

#include "log.h"
#include "lua_host.h"
#include "msg.h"
#include "route_internal.h"
#include "template.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define LOG_LINE_MAX 1024

/* Report an event to the scratch's trace callback, if any (dry runs). */
#define TRACE(run, ...)                                                                            \
    do {                                                                                           \
        if ((run)->s->trace) {                                                                     \
            struct esb_route_trace t_ = {__VA_ARGS__};                                             \
            (run)->s->trace((run)->s->trace_ctx, &t_);                                             \
        }                                                                                          \
    } while (0)

ESB_PRINTF(5, 6)
static int fail(struct esb__run *run, int num, const char *what, int line, const char *fmt, ...)
{
    struct esb_route_result *res = run->res;
    if (res->error) return ESB__ERROR;
    res->error = 1;
    int n = snprintf(res->reason, sizeof(res->reason), "step %d (%s, line %d): ", num, what, line);
    if (n < 0 || (size_t)n >= sizeof(res->reason)) return ESB__ERROR;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->reason + n, sizeof(res->reason) - (size_t)n, fmt, ap);
    va_end(ap);
    return ESB__ERROR;
}

/* Make f->cur ours to change. */
static void writable(struct esb__flow *f)
{
    if (f->priv) return;
    struct esb_msg *m = esb_msg_clone(f->cur);
    esb_msg_unref(f->cur);
    f->cur = m;
    f->priv = 1;
}

/* Run steps from index from; after them comes up. */
static int run_from(struct esb__run *run, const struct esb__steps *steps, size_t from,
                    const struct esb__cont *up, struct esb__flow *f)
{
    const struct esb__cont *saved = run->k;
    int rc = ESB__GO;
    for (size_t i = from; i < steps->n && rc == ESB__GO; i++) {
        struct esb__cont k = {steps, i + 1, up};
        run->k = &k;
        TRACE(run, .kind = ESB_TRACE_STEP, .step = steps->v[i].num, .line = steps->v[i].line,
              .what = steps->v[i].what, .msg = f->cur);
        rc = steps->v[i].ops->run(run, &steps->v[i], f);
    }
    run->k = saved;
    return rc;
}

int esb__route_run_steps(struct esb__run *run, const struct esb__steps *steps, struct esb__flow *f)
{
    return run_from(run, steps, 0, run->k, f);
}

/* f reached the end of the route's top-level step list: it is the final
 * message so far (a later split part replaces it). */
static void set_final(struct esb__run *run, struct esb_msg *m)
{
    esb_msg_unref(run->res->final);
    run->res->final = esb_msg_ref(m);
}

/* Run the continuation k on f: the rest of each list, innermost first. */
static int run_cont(struct esb__run *run, const struct esb__cont *k, struct esb__flow *f)
{
    const struct esb__steps *outer = NULL;
    for (; k; k = k->up) {
        int rc = run_from(run, k->steps, k->next, k->up, f);
        if (rc != ESB__GO) return rc; /* ESB__DONE: a nested split ran the rest */
        outer = k->steps;
    }
    /* A split part that ran to the end of the top-level list (not just to
     * the end of a multicast branch, whose continuation ends there). */
    if (outer == &run->r->steps) set_final(run, f->cur);
    return ESB__GO;
}

/* 1, 0, or ESB__ERROR with the reason set. */
static int test(struct esb__run *run, const struct esb_pred *p, const struct esb__flow *f, int num,
                const char *what, int line)
{
    struct esb_err err = {0};
    int v = esb_pred_eval(p, &run->pr, f->cur, &err);
    if (v < 0) return fail(run, num, what, line, "%s", err.msg);
    return v;
}

int esb__run_choice(struct esb__run *run, const struct esb__step *st, struct esb__flow *f)
{
    for (size_t i = 0; i < st->u.choice.nwhens; i++) {
        const struct esb__when *w = &st->u.choice.whens[i];
        int v = test(run, w->pred, f, st->num, w->what, w->line);
        if (v < 0) return ESB__ERROR;
        if (v) {
            TRACE(run, .kind = ESB_TRACE_BRANCH, .step = st->num, .line = w->line, .what = w->what,
                  .msg = f->cur, .branch = (int)i);
            return esb__route_run_steps(run, &w->steps, f);
        }
    }
    TRACE(run, .kind = ESB_TRACE_BRANCH, .step = st->num, .line = st->line, .what = st->what,
          .msg = f->cur, .branch = st->u.choice.has_otherwise ? -1 : -2);
    if (st->u.choice.has_otherwise) return esb__route_run_steps(run, &st->u.choice.otherwise, f);
    return ESB__GO;
}

int esb__run_filter(struct esb__run *run, const struct esb__step *st, struct esb__flow *f)
{
    int v = test(run, st->u.filter, f, st->num, st->what, st->line);
    if (v < 0) return ESB__ERROR;
    TRACE(run, .kind = ESB_TRACE_FILTER, .step = st->num, .line = st->line, .what = st->what,
          .msg = f->cur, .result = v);
    return v ? ESB__GO : ESB__STOP;
}

int esb__run_set_header(struct esb__run *run, const struct esb__step *st, struct esb__flow *f)
{
    struct esb_route_scratch *s = run->s;
    struct esb_template_env env = {f->cur, run->r->id, 0};
    size_t len;
    if (esb_template_render(st->u.set_header.value, &env, s->buf, s->bufcap, &len) != 0)
        return fail(run, st->num, st->what, st->line, "the value is longer than %zu bytes",
                    s->bufcap - 1);
    writable(f);
    if (st->u.set_header.content_type) {
        if (len > ESB_MSG_MAX_NAME)
            return fail(run, st->num, st->what, st->line,
                        "the content type is longer than %d bytes", ESB_MSG_MAX_NAME);
        esb_msg_set_content_type(f->cur, s->buf);
    } else {
        esb_msg_set_header(f->cur, st->u.set_header.name, s->buf);
    }
    return ESB__GO;
}

int esb__run_log(struct esb__run *run, const struct esb__step *st, struct esb__flow *f)
{
    enum esb_log_level level = (enum esb_log_level)st->u.log.level;
    if (level < esb_log_get_level()) return ESB__GO;
    char line[LOG_LINE_MAX];
    size_t len;
    struct esb_template_env env = {f->cur, run->r->id, 0};
    int cut = esb_template_render(st->u.log.message, &env, line, sizeof(line), &len);
    (void)cut;                       /* a long line is cut, that is fine */
    for (size_t i = 0; i < len; i++) /* one event, one line: no forged lines from headers */
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f) line[i] = '?';
    esb_log(level, "[route:%s step:%d] %s", run->r->id, st->num, line);
    return ESB__GO;
}

int esb__run_multicast(struct esb__run *run, const struct esb__step *st, struct esb__flow *f)
{
    f->priv = 0; /* branches hold references to it from now on */
    const struct esb__cont *saved = run->k;
    for (size_t i = 0; i < st->u.multicast.n; i++) {
        const struct esb__step *b = &st->u.multicast.v[i];
        struct esb__flow bf = {esb_msg_ref(f->cur), 0};
        run->k = NULL; /* a branch ends with itself */
        int rc = b->ops->run(run, b, &bf);
        run->k = saved;
        esb_msg_unref(bf.cur);
        if (rc == ESB__ERROR) return rc; /* ESB__STOP/DONE end only the branch */
    }
    return ESB__GO;
}

int esb__run_to(struct esb__run *run, const struct esb__step *st, struct esb__flow *f)
{
    const struct esb__target *t = &run->r->targets[st->u.to];
    struct esb_route_result *res = run->res;
    if (t->kind == ESB_URI_ENDPOINT) { /* deliveries say which route's retry policy applies */
        const char *h = esb_msg_header(f->cur, "esb-route");
        if (!h || strcmp(h, run->r->id) != 0) {
            writable(f);
            esb_msg_set_header(f->cur, "esb-route", run->r->id);
        }
    }
    if (res->nout == res->cap) {
        res->cap = res->cap ? res->cap * 2 : 4;
        res->out = esb_realloc(res->out, res->cap * sizeof(*res->out));
    }
    char *key = NULL;
    if (run->r->ordering_key) {
        struct esb_template_env env = {f->cur, run->r->id, 0};
        size_t len;
        if (esb_template_render(run->r->ordering_key, &env, run->s->buf, run->s->bufcap, &len) !=
                0 ||
            len > 255)
            return fail(run, st->num, st->what, st->line,
                        "the ordering key is longer than 255 bytes");
        if (len) key = esb_strndup(run->s->buf, len);
    }
    res->out[res->nout++] =
        (struct esb_route_output){t->kind, t->bus_name, esb_msg_ref(f->cur), key};
    TRACE(run, .kind = ESB_TRACE_TO, .step = st->num, .line = st->line, .what = st->what,
          .msg = f->cur, .target = t->bus_name);
    f->priv = 0;
    return ESB__GO;
}

int esb__run_dedupe(struct esb__run *run, const struct esb__step *st, struct esb__flow *f)
{
    struct esb_route_scratch *s = run->s;
    struct esb_template_env env = {f->cur, run->r->id, 0};
    size_t len;
    if (esb_template_render(st->u.dedupe.key, &env, s->buf, s->bufcap, &len) != 0 || len > 900)
        return fail(run, st->num, st->what, st->line, "the dedupe key is longer than 900 bytes");
    if (len == 0) return ESB__GO; /* no key: not deduplicated */
    free(run->res->dedupe_key);
    size_t n = strlen(run->r->id) + 1 + len + 1;
    run->res->dedupe_key = esb_malloc(n);
    snprintf(run->res->dedupe_key, n, "%s:%s", run->r->id, s->buf);
    run->res->dedupe_window_ms = st->u.dedupe.window_ms;
    run->res->dedupe_max_keys = st->u.dedupe.max_keys;
    return ESB__GO;
}

int esb__run_transform(struct esb__run *run, const struct esb__step *st, struct esb__flow *f)
{
    struct esb_msg **outs;
    size_t n;
    char reason[sizeof(run->res->reason)];
    if (esb_lua_transform(run->s->lua, st->u.transform, f->cur, &outs, &n, reason, sizeof(reason)) <
        0)
        return fail(run, st->num, st->what, st->line, "%s", reason);
    if (n <= 1)
        TRACE(run, .kind = ESB_TRACE_TRANSFORM, .step = st->num, .line = st->line, .what = st->what,
              .msg = n ? outs[0] : NULL, .count = n);
    if (n == 0) {
        esb_debug("[route:%s step:%d] transform dropped id=%s", run->r->id, st->num,
                  f->cur->id_text);
        free(outs);
        return ESB__STOP;
    }
    if (n == 1) {
        esb_msg_unref(f->cur);
        f->cur = outs[0]; /* new, seen by nobody else */
        f->priv = 1;
        free(outs);
        return ESB__GO;
    }
    const struct esb__cont *k = run->k;
    int rc = ESB__DONE;
    size_t stopped = 0;
    for (size_t i = 0; i < n; i++) {
        struct esb__flow part = {outs[i], 1};
        TRACE(run, .kind = ESB_TRACE_TRANSFORM, .step = st->num, .line = st->line, .what = st->what,
              .msg = outs[i], .index = i, .count = n);
        int r = rc == ESB__ERROR ? ESB__ERROR : run_cont(run, k, &part);
        esb_msg_unref(part.cur);
        if (r == ESB__ERROR) rc = ESB__ERROR;
        if (r == ESB__STOP) stopped++;
    }
    free(outs);
    if (rc == ESB__ERROR) return ESB__ERROR;
    return stopped == n ? ESB__STOP : ESB__DONE;
}

struct esb_route_scratch *esb_route_scratch_new(void)
{
    struct esb_route_scratch *s = esb_calloc(1, sizeof(*s));
    s->lua = esb_lua_vm_new();
    s->pred = esb_pred_scratch_new();
    s->bufcap = ESB_MSG_MAX_VALUE + 1;
    s->buf = esb_malloc(s->bufcap);
    return s;
}

void esb_route_scratch_set_trace(struct esb_route_scratch *s,
                                 void (*fn)(void *ctx, const struct esb_route_trace *t), void *ctx)
{
    s->trace = fn;
    s->trace_ctx = ctx;
}

void esb_route_scratch_free(struct esb_route_scratch *s)
{
    if (!s) return;
    esb_lua_vm_free(s->lua);
    esb_pred_scratch_free(s->pred);
    free(s->buf);
    free(s);
}

void esb_route_result_clear(struct esb_route_result *res)
{
    for (size_t i = 0; i < res->nout; i++) {
        esb_msg_unref(res->out[i].msg);
        free(res->out[i].key);
    }
    free(res->out);
    free(res->dedupe_key);
    esb_msg_unref(res->final);
    memset(res, 0, sizeof(*res));
}

void esb_route_run(const struct esb_route *r, struct esb_route_scratch *s, const struct esb_msg *in,
                   struct esb_route_result *res)
{
    struct esb__run run = {r, s, res, {0}, NULL};
    esb_pred_run_init(&run.pr, s->pred);
    run.pr.lua = s->lua;
    esb_pred_scratch_reserve(s->pred, r->max_captures);
    /* the input is borrowed and never changed: writable() clones it first */
    struct esb__flow f = {esb_msg_ref((struct esb_msg *)in), 0};
    int rc = esb__route_run_steps(&run, &r->steps, &f);
    if (rc == ESB__GO) set_final(&run, f.cur); /* ESB__DONE: a split part set it */
    if (rc == ESB__STOP) res->dropped = 1;
    if (rc == ESB__ERROR || rc == ESB__STOP) {
        esb_msg_unref(res->final);
        res->final = NULL;
    }
    if (rc == ESB__ERROR) {
        for (size_t i = 0; i < res->nout; i++) esb_msg_unref(res->out[i].msg);
        res->nout = 0;
    }
    esb_msg_unref(f.cur);
    esb_pred_run_clear(&run.pr);
}
