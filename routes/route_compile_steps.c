/* route_compile_steps.c - the step table and the compiler of each step
 * element: choice (with when/otherwise), filter, set-header, log, dedupe,
 * multicast, transform and to. Attributes go through conf_attr tables;
 * predicates, templates and Lua programs are compiled here, once, at config
 * load. The <route> element itself, <retry> and <dead-letter> are compiled by
 * route_compile.c; the steps run in route_run.c. */
#include "config.h"

#include "conf.h"
#include "connector.h"
#include "lua_host.h"
#include "msg.h"
#include "route_compile_internal.h"
#include "route_internal.h"
#include "template.h"

#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct esb__step_ops *find_step(const char *element);

static const struct esb_attr_spec no_attrs[] = {ESB_ATTR_END};

static void note_captures(struct esb__cctx *c, const struct esb_pred *p)
{
    if (esb_pred_captures(p) > c->r->max_captures) c->r->max_captures = esb_pred_captures(p);
}

static int compile_pred(struct esb__cctx *c, xmlNode *n, struct esb_pred **out)
{
    struct esb_pred_conf pc = {0};
    int rc = esb__route_parse_attrs(c, n, esb_pred_attrs, &pc);
    if (rc) return rc;
    if (pc.lua) {
        pc.lua_dir = esb__route_lua_dir(c);
        pc.lua_limits = &c->lua_limits;
    }
    struct esb_err err = {0};
    rc = esb_pred_compile(&pc, (const char *)n->name, out, &err);
    esb_attrs_free(esb_pred_attrs, &pc);
    if (rc) return esb__route_diag(c, n, "%s", err.msg);
    note_captures(c, *out);
    return 0;
}

static int compile_choice(struct esb__cctx *c, xmlNode *node, struct esb__step *st)
{
    char none;
    int rc = esb__route_parse_attrs(c, node, no_attrs, &none);
    char path[300];
    for (xmlNode *k = node->children; k; k = k->next) {
        if (k->type != XML_ELEMENT_NODE) continue;
        const char *name = (const char *)k->name;
        if (strcmp(name, "when") == 0) {
            if (st->u.choice.has_otherwise) rc = esb__route_diag(c, k, "<when> after <otherwise>");
            st->u.choice.whens = esb_realloc(st->u.choice.whens, (st->u.choice.nwhens + 1) *
                                                                     sizeof(*st->u.choice.whens));
            struct esb__when *w = &st->u.choice.whens[st->u.choice.nwhens++];
            memset(w, 0, sizeof(*w));
            w->line = esb__route_line(k);
            if (compile_pred(c, k, &w->pred) == 0)
                w->what = esb__route_fmt("%s/when %s", st->what, esb_pred_describe(w->pred));
            else
                rc = ESB_EINVAL;
            snprintf(path, sizeof(path), "%s/when/", st->what);
            if (esb__route_compile_steps(c, k, path, 0, &w->steps)) rc = ESB_EINVAL;
        } else if (strcmp(name, "otherwise") == 0) {
            if (st->u.choice.has_otherwise)
                rc = esb__route_diag(c, k, "a <choice> has one <otherwise>");

            if (esb__route_parse_attrs(c, k, no_attrs, &none)) rc = ESB_EINVAL;
            st->u.choice.has_otherwise = 1;
            snprintf(path, sizeof(path), "%s/otherwise/", st->what);
            if (esb__route_compile_steps(c, k, path, 0, &st->u.choice.otherwise)) rc = ESB_EINVAL;
        } else {
            rc = esb__route_diag(c, k, "not allowed in <choice> (expected <when> or <otherwise>)");
        }
    }
    if (st->u.choice.nwhens == 0) rc = esb__route_diag(c, node, "needs at least one <when>");
    return rc;
}

static void free_choice(struct esb__step *st);

static int compile_filter(struct esb__cctx *c, xmlNode *node, struct esb__step *st)
{
    int rc = compile_pred(c, node, &st->u.filter);
    if (rc == 0) {
        char *w = esb__route_fmt("%s %s", st->what, esb_pred_describe(st->u.filter));
        free(st->what);
        st->what = w;
    }
    return esb__route_leaf_only(c, node) ? ESB_EINVAL : rc;
}

static void free_filter(struct esb__step *st)
{
    esb_pred_free(st->u.filter);
}

struct set_header_conf {
    char *name, *value;
};
static const struct esb_attr_spec set_header_attrs[] = {
    {"name", ESB_ATTR_STRING, NULL, offsetof(struct set_header_conf, name), 1, 0, 0, NULL,
     "Header name (case-insensitive); \"content-type\" sets the message's content type."},
    {"value", ESB_ATTR_STRING, NULL, offsetof(struct set_header_conf, value), 1, 0, 0, NULL,
     "Template of the value, e.g. \"{header:x-order}-{date:%Y%m%d}\"."},
    ESB_ATTR_END,
};

static int compile_set_header(struct esb__cctx *c, xmlNode *node, struct esb__step *st)
{
    struct set_header_conf hc = {0};
    int rc = esb__route_parse_attrs(c, node, set_header_attrs, &hc);
    if (rc) return rc;
    size_t n = strlen(hc.name);
    int bad = n == 0 || n > ESB_MSG_MAX_NAME;
    for (const char *p = hc.name; *p && !bad; p++)
        bad = !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                strchr("!#$%&'*+-.^_`|~", *p));
    if (bad)
        rc = esb__route_diag(c, node, "attribute 'name': not a header name (got '%.60s')", hc.name);
    if (esb__route_template(c, node, "value", hc.value, &st->u.set_header.value)) rc = ESB_EINVAL;
    st->u.set_header.content_type = strcasecmp(hc.name, "content-type") == 0;
    st->u.set_header.name = hc.name;
    free(hc.value);
    return esb__route_leaf_only(c, node) ? ESB_EINVAL : rc;
}

static void free_set_header(struct esb__step *st)
{
    free(st->u.set_header.name);
    esb_template_free(st->u.set_header.value);
}

struct dedupe_conf {
    char *key;
    uint64_t window;
    uint64_t max_keys;
};

static const struct esb_attr_spec dedupe_attrs[] = {
    {"key", ESB_ATTR_STRING, NULL, offsetof(struct dedupe_conf, key), 1, 0, 0, NULL,
     "Template of the idempotency key, e.g. \"{header:idempotency-key}\" or \"{id}\". A message "
     "whose key renders empty is not deduplicated."},
    {"window", ESB_ATTR_DURATION, "24h", offsetof(struct dedupe_conf, window), 0, 1000,
     366ull * 24 * 3600 * 1000, NULL, "How long a key is remembered (durably, across restarts)."},
    {"max-keys", ESB_ATTR_UINT, "0", offsetof(struct dedupe_conf, max_keys), 0, 0, 100000000, NULL,
     "Most keys the route remembers at once; 0: no limit (only window bounds them). Past it "
     "the oldest keys are forgotten first, so a late duplicate of a forgotten key is "
     "processed again."},
    ESB_ATTR_END,
};

static int compile_dedupe(struct esb__cctx *c, xmlNode *node, struct esb__step *st)
{
    struct dedupe_conf dc = {0};
    int rc = esb__route_parse_attrs(c, node, dedupe_attrs, &dc);
    if (rc) return rc;
    if (esb__route_template(c, node, "key", dc.key, &st->u.dedupe.key)) rc = ESB_EINVAL;
    st->u.dedupe.window_ms = dc.window;
    st->u.dedupe.max_keys = (uint32_t)dc.max_keys;
    free(dc.key);
    return esb__route_leaf_only(c, node) ? ESB_EINVAL : rc;
}

static void free_dedupe(struct esb__step *st)
{
    esb_template_free(st->u.dedupe.key);
}

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
struct log_conf {
    char *message;
    int level;
};
static const struct esb_attr_spec log_attrs[] = {
    {"message", ESB_ATTR_STRING, NULL, offsetof(struct log_conf, message), 1, 0, 0, NULL,
     "Template of the line (never the body), e.g. \"order {id} from {header:esb-source}\"."},
    {"level", ESB_ATTR_ENUM, "info", offsetof(struct log_conf, level), 0, 0, 0, log_levels,
     "Level of the line."},
    ESB_ATTR_END,
};

static int compile_log(struct esb__cctx *c, xmlNode *node, struct esb__step *st)
{
    struct log_conf lc = {0};
    int rc = esb__route_parse_attrs(c, node, log_attrs, &lc);
    if (rc) return rc;
    if (esb__route_template(c, node, "message", lc.message, &st->u.log.message)) rc = ESB_EINVAL;
    st->u.log.level = lc.level; /* log_levels follows enum esb_log_level */
    free(lc.message);
    return esb__route_leaf_only(c, node) ? ESB_EINVAL : rc;
}

static void free_log(struct esb__step *st)
{
    esb_template_free(st->u.log.message);
}

static int compile_multicast(struct esb__cctx *c, xmlNode *node, struct esb__step *st)
{
    char none;
    int rc = esb__route_parse_attrs(c, node, no_attrs, &none);
    char path[300];
    snprintf(path, sizeof(path), "%s/", st->what);
    if (esb__route_compile_steps(c, node, path, 0, &st->u.multicast)) rc = ESB_EINVAL;
    if (!esb__route_has_children(node)) rc = esb__route_diag(c, node, "needs at least one step");
    return rc;
}

static void free_multicast(struct esb__step *st)
{
    esb__route_free_steps(&st->u.multicast);
}

struct to_conf {
    char *uri;
};
static const struct esb_attr_spec to_attrs[] = {
    {"uri", ESB_ATTR_STRING, NULL, offsetof(struct to_conf, uri), 1, 0, 0, NULL,
     "queue:NAME, topic:NAME, or an outbound connector as ELEMENT:ID (e.g. file-out:archive)."},
    ESB_ATTR_END,
};

static int compile_to(struct esb__cctx *c, xmlNode *node, struct esb__step *st)
{
    struct to_conf tc = {0};
    int rc = esb__route_parse_attrs(c, node, to_attrs, &tc);
    if (rc) return rc;
    enum esb_uri_kind kind;
    const char *name;
    const struct esb_endpoint *ep;
    rc = esb__route_resolve_uri(c, node, "uri", tc.uri, ESB_OUTBOUND, &kind, &name, &ep);
    if (rc == 0) {
        struct esb_route *r = c->r;
        size_t i = r->ntargets++;
        r->target_uris = esb_realloc(r->target_uris, r->ntargets * sizeof(*r->target_uris));
        r->target_lines = esb_realloc(r->target_lines, r->ntargets * sizeof(*r->target_lines));
        r->targets = esb_realloc(r->targets, r->ntargets * sizeof(*r->targets));
        r->target_uris[i] = esb_strdup(tc.uri);
        r->target_lines[i] = esb__route_line(node);
        r->targets[i].kind = kind;
        r->targets[i].bus_name =
            kind == ESB_URI_ENDPOINT ? esb__route_fmt("deliver:%s", name) : esb_strdup(tc.uri);
        st->u.to = i;
    }
    free(tc.uri);
    return esb__route_leaf_only(c, node) ? ESB_EINVAL : rc;
}

struct transform_conf {
    char *lua, *function;
};
static const struct esb_attr_spec transform_attrs[] = {
    {"lua", ESB_ATTR_STRING, NULL, offsetof(struct transform_conf, lua), 1, 0, 0, NULL,
     "The script, relative to `<lua dir>`. Loaded and checked (syntax, top level, the "
     "function) when the config loads."},
    {"function", ESB_ATTR_STRING, "transform", offsetof(struct transform_conf, function), 0, 0, 0,
     NULL, "The function to call with the message."},
    ESB_ATTR_END,
};

static int compile_transform(struct esb__cctx *c, xmlNode *node, struct esb__step *st)
{
    struct transform_conf tc = {0};
    int rc = esb__route_parse_attrs(c, node, transform_attrs, &tc);
    if (rc) return rc;
    struct esb_err err = {0};
    free(st->what);
    st->what = esb__route_fmt("transform lua=%.200s", tc.lua);
    if (esb_lua_prog_load(esb__route_lua_dir(c), tc.lua, tc.function, &c->lua_limits,
                          &st->u.transform, &err) < 0)
        rc = esb__route_diag(c, node, "attribute 'lua': %s", err.msg);
    esb_attrs_free(transform_attrs, &tc);
    return esb__route_leaf_only(c, node) ? ESB_EINVAL : rc;
}

static void free_transform(struct esb__step *st)
{
    esb_lua_prog_free(st->u.transform);
}

static void free_nothing(struct esb__step *st)
{
    (void)st;
}

/* The step table: every step element, in reference-doc order. */
static const struct esb__step_ops step_table[] = {
    {"choice",
     "Content-based routing: `<when PREDICATE>STEPS</when>`... then an optional "
     "`<otherwise>STEPS</otherwise>`. The first `<when>` whose predicate holds runs its steps; "
     "if none holds, `<otherwise>` runs (when present). Then the message goes on after the "
     "`</choice>`, with any header changes the branch made.",
     no_attrs, compile_choice, free_choice, esb__run_choice},
    {"filter",
     "Stops the message here unless the predicate holds (attributes as on `<when>`). A stopped "
     "message is dropped (acknowledged, counted); copies already sent with `<to>` stay sent. "
     "Inside a `<multicast>` branch it stops only that branch.",
     esb_pred_attrs, compile_filter, free_filter, esb__run_filter},
    {"set-header", "Sets a header (replacing the earlier values of that name).", set_header_attrs,
     compile_set_header, free_set_header, esb__run_set_header},
    {"log", "Writes one log line prefixed `[route:ID step:N]`.", log_attrs, compile_log, free_log,
     esb__run_log},
    {"dedupe",
     "Idempotent consumer: a message whose key was already seen by this route within `window` is "
     "a duplicate: it is acknowledged and dropped (logged at info), nothing is sent. The key is "
     "recorded in the same durable bus batch as the route's outputs, so a message that fails is "
     "never marked as seen, and a duplicate arriving while the first is still in flight is caught "
     "too (an atomic check-and-set in the bus). With `max-keys` the route remembers at most that "
     "many keys, the most recent ones: a new key beyond it makes the route forget its oldest key "
     "at once (durably: a restart remembers the same keys), so a duplicate of a forgotten key "
     "arriving later, even within `window`, is processed again. Forgetting is counted (metric "
     "`esb_bus_marks_forgotten_total`) and logged at most once a minute per route.",
     dedupe_attrs, compile_dedupe, free_dedupe, esb__run_dedupe},
    {"multicast",
     "Each child step is a branch that runs on its own copy of the message; the steps after "
     "`</multicast>` then go on with the message as it was before.",
     no_attrs, compile_multicast, free_multicast, esb__run_multicast},
    {"transform",
     "Runs a Lua function on the message (see docs/lua-host.md). It returns a message (the "
     "same table changed, or a new one), which goes on; nil, which drops the message like a "
     "filter; or a list of messages, which splits it: each part gets a new id, "
     "`correlation-id` (the input's, or its id), `split-index` (1-based) and `split-size`, "
     "and runs the rest of the route on its own - the steps after the transform, then those "
     "after each enclosing `<choice>` (inside a `<multicast>` branch, the rest of the branch). "
     "A script error or a limit hit dead-letters the message with the Lua error and "
     "traceback; it is not retried.",
     transform_attrs, compile_transform, free_transform, esb__run_transform},
    {"to",
     "Sends a copy of the message (as it is now) to a queue, a topic or an outbound "
     "connector, and goes on.",
     to_attrs, compile_to, free_nothing, esb__run_to},
};

static const struct esb__step_ops *find_step(const char *element)
{
    for (size_t i = 0; i < ESB_ARRAY_LEN(step_table); i++)
        if (strcmp(step_table[i].element, element) == 0) return &step_table[i];
    return NULL;
}

/* Writes "choice, filter, ..., to" (every element of step_table, in order)
 * into buf, for the unknown-step diagnostic; cut short if size is too small. */
static void step_names(char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < ESB_ARRAY_LEN(step_table); i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", step_table[i].element);
        if (n < 0 || (size_t)n >= size - used) break;
        used += (size_t)n;
    }
}

void esb__route_free_steps(struct esb__steps *s)
{
    for (size_t i = 0; i < s->n; i++) {
        s->v[i].ops->free(&s->v[i]);
        free(s->v[i].what);
    }
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static void free_choice(struct esb__step *st)
{
    for (size_t i = 0; i < st->u.choice.nwhens; i++) {
        esb_pred_free(st->u.choice.whens[i].pred);
        free(st->u.choice.whens[i].what);
        esb__route_free_steps(&st->u.choice.whens[i].steps);
    }
    free(st->u.choice.whens);
    esb__route_free_steps(&st->u.choice.otherwise);
}

int esb__route_compile_steps(struct esb__cctx *c, xmlNode *parent, const char *path, int top,
                             struct esb__steps *out)
{
    int rc = 0;
    for (xmlNode *k = parent->children; k; k = k->next) {
        if (k->type != XML_ELEMENT_NODE) continue;
        const char *name = (const char *)k->name;
        if (strcmp(name, "retry") == 0 || strcmp(name, "dead-letter") == 0) {
            if (!top)
                rc = esb__route_diag(c, k, "belongs directly under <route>, not inside <%s>",
                                     (const char *)parent->name);
            continue; /* compiled by esb_route_compile */
        }
        const struct esb__step_ops *ops = find_step(name);
        if (!ops) {
            char names[256];
            step_names(names, sizeof(names));
            rc = esb__route_diag(c, k, "unknown step (expected one of %s)", names);
            continue;
        }
        out->v = esb_realloc(out->v, (out->n + 1) * sizeof(*out->v));
        struct esb__step *st = &out->v[out->n++];
        memset(st, 0, sizeof(*st));
        st->ops = ops;
        st->line = esb__route_line(k);
        st->num = ++c->num;
        st->what = esb__route_fmt("%s%s", path, name);
        if (ops->compile(c, k, st)) rc = ESB_EINVAL;
    }
    return rc;
}

void esb__route_steps_doc(void (*emit)(void *ctx, const char *text), void *ctx)
{
    for (size_t i = 0; i < ESB_ARRAY_LEN(step_table); i++)
        esb_attrs_doc(step_table[i].element, step_table[i].summary, step_table[i].attrs, emit, ctx);
    esb_attrs_doc("when", "A branch of `<choice>`: exactly one predicate, then steps.",
                  esb_pred_attrs, emit, ctx);
    esb_attrs_doc("otherwise", "The last branch of `<choice>`, taken when no `<when>` holds.",
                  no_attrs, emit, ctx);
}
