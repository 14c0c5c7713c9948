/* route_compile.c - compile a <route> element into a step program (see
 * route.h, route_internal.h), and the reference docs of the route elements.
 *
 * Every element's attributes go through a table (conf_attr.h), so an unknown
 * or malformed attribute is reported with file:line like everywhere else.
 * Compilation goes on after an error, so one pass reports every mistake in
 * the route; the route is returned only if there was none. */
#include "config.h"

#include "conf.h"
#include "connector.h"
#include "log.h"
#include "lua_host.h"
#include "msg.h"
#include "route_internal.h"
#include "template.h"

#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define NAME_MAX_LEN 200  /* route ids, queue and topic names */
#define PATH_MAX_LEN 1024 /* http-in path */

struct esb__cctx {
    const char *file;
    const struct esb_config *cfg;
    struct esb_diags *d;
    struct esb_route *r;
    int errors;
    int num;       /* steps numbered so far */
    char *lua_dir; /* Lua script directory (lua_env) */
    struct esb_lua_limits lua_limits;
};

/* ---- diagnostics ---- */

static int line_of(xmlNode *n)
{
    long l = xmlGetLineNo(n);
    return l > 0 && l < INT32_MAX ? (int)l : 0;
}

ESB_PRINTF(3, 4)
static int diag(struct esb__cctx *c, xmlNode *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    esb_diag_add(c->d, c->file, line_of(n), (const char *)n->name, "%s", msg);
    c->errors++;
    return ESB_EINVAL;
}

/* An error esb_attrs_parse formatted whole ("FILE:LINE: element <x>: ..."):
 * add it without repeating the prefix. */
static int diag_attrs(struct esb__cctx *c, xmlNode *n, const struct esb_err *err)
{
    char prefix[512];
    snprintf(prefix, sizeof(prefix), "%s:%d: element <%s>: ", c->file, line_of(n),
             (const char *)n->name);
    size_t pl = strlen(prefix);
    const char *m = strncmp(err->msg, prefix, pl) == 0 ? err->msg + pl : err->msg;
    return diag(c, n, "%s", m);
}

static int parse_attrs(struct esb__cctx *c, xmlNode *n, const struct esb_attr_spec *specs,
                       void *out)
{
    struct esb_err err = {0};
    if (esb_attrs_parse(specs, n, c->file, out, &err) == 0) return 0;
    return diag_attrs(c, n, &err);
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static char *fmt_dup(const char *fmt, ...) ESB_PRINTF(1, 2);
static char *fmt_dup(const char *fmt, ...)
{
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return esb_strdup(buf);
}

/* The Lua script directory and limits: the config's <lua>; without a
 * config, "lua-scripts" next to the file and the defaults. */
static const char *lua_env(struct esb__cctx *c)
{
    if (c->lua_dir) return c->lua_dir;
    if (c->cfg && c->cfg->lua.dir) {
        c->lua_dir = esb_strdup(c->cfg->lua.dir);
        c->lua_limits = (struct esb_lua_limits){c->cfg->lua.memory, c->cfg->lua.instructions,
                                                c->cfg->lua.max_output};
    } else {
        const char *slash = strrchr(c->file, '/');
        int dl = slash ? (int)(slash - c->file) + 1 : 0;
        c->lua_dir = fmt_dup("%.*slua-scripts", dl, c->file);
    }
    return c->lua_dir;
}

static int has_child_elements(xmlNode *n)
{
    for (xmlNode *k = n->children; k; k = k->next)
        if (k->type == XML_ELEMENT_NODE) return 1;
    return 0;
}

static int leaf_only(struct esb__cctx *c, xmlNode *n)
{
    return has_child_elements(n) ? diag(c, n, "takes no child elements") : 0;
}

/* ---- URIs ---- */

/* Resolve "queue:X", "topic:X" or "ELEMENT:ID" (an endpoint of direction dir).
 * attr names the attribute for messages. */
static int resolve_uri(struct esb__cctx *c, xmlNode *n, const char *attr, const char *uri,
                       enum esb_connector_dir dir, enum esb_uri_kind *kind, const char **name,
                       const struct esb_endpoint **epp)
{
    const char *colon = strchr(uri, ':');
    const char *want = dir == ESB_INBOUND ? "inbound" : "outbound";
    if (!colon || colon == uri || !colon[1])
        return diag(c, n,
                    "%s=\"%.100s\": expected queue:NAME, topic:NAME or CONNECTOR:ID "
                    "(e.g. %s)",
                    attr, uri, dir == ESB_INBOUND ? "http-in:web" : "file-out:archive");
    size_t sl = (size_t)(colon - uri);
    *name = colon + 1;
    *epp = NULL;
    if ((sl == 5 && memcmp(uri, "queue", 5) == 0) || (sl == 5 && memcmp(uri, "topic", 5) == 0)) {
        *kind = uri[0] == 'q' ? ESB_URI_QUEUE : ESB_URI_TOPIC;
        if (!valid_name(*name))
            return diag(c, n,
                        "%s=\"%.100s\": a %s name is 1 to %d letters, digits, '.', '_' or '-'",
                        attr, uri, uri[0] == 'q' ? "queue" : "topic", NAME_MAX_LEN);
        return 0;
    }
    const struct esb_endpoint *ep = c->cfg ? esb_config_endpoint(c->cfg, *name) : NULL;
    if (!ep)
        return diag(c, n, "%s=\"%.100s\": unknown endpoint '%.100s' (no connector has this id)",
                    attr, uri, *name);
    if (strlen(ep->ops->element) != sl || memcmp(ep->ops->element, uri, sl) != 0)
        return diag(c, n, "%s=\"%.100s\": endpoint '%.100s' is a <%s>, not a <%.*s>", attr, uri,
                    *name, ep->ops->element, (int)sl, uri);
    if (ep->ops->dir != dir)
        return diag(c, n,
                    "%s=\"%.100s\": <%s id=\"%.100s\"> is an %s connector; %s= needs an %s "
                    "one%s",
                    attr, uri, ep->ops->element, *name, want[0] == 'i' ? "outbound" : "inbound",
                    attr, want, dir == ESB_OUTBOUND ? ", queue:NAME or topic:NAME" : "");
    *kind = dir == ESB_INBOUND ? ESB_URI_INBOUND : ESB_URI_ENDPOINT;
    *epp = ep;
    return 0;
}

/* ---- steps ---- */

static const struct esb__step_ops *find_step(const char *element);
static const char *step_names(void);

/* Compile the element children of parent into out. path is the container
 * path for reasons ("" at the top, else "choice/when/"); top allows
 * <retry> and <dead-letter>. */
static int compile_steps(struct esb__cctx *c, xmlNode *parent, const char *path, int top,
                         struct esb__steps *out);

static const struct esb_attr_spec no_attrs[] = {ESB_ATTR_END};

static void note_captures(struct esb__cctx *c, const struct esb_pred *p)
{
    if (esb_pred_captures(p) > c->r->max_captures) c->r->max_captures = esb_pred_captures(p);
}

static int compile_pred(struct esb__cctx *c, xmlNode *n, struct esb_pred **out)
{
    struct esb_pred_conf pc = {0};
    int rc = parse_attrs(c, n, esb_pred_attrs, &pc);
    if (rc) return rc;
    if (pc.lua) {
        pc.lua_dir = lua_env(c);
        pc.lua_limits = &c->lua_limits;
    }
    struct esb_err err = {0};
    rc = esb_pred_compile(&pc, (const char *)n->name, out, &err);
    esb_attrs_free(esb_pred_attrs, &pc);
    if (rc) return diag(c, n, "%s", err.msg);
    note_captures(c, *out);
    return 0;
}

static int compile_choice(struct esb__cctx *c, xmlNode *node, struct esb__step *st)
{
    char none;
    int rc = parse_attrs(c, node, no_attrs, &none);
    char path[300];
    for (xmlNode *k = node->children; k; k = k->next) {
        if (k->type != XML_ELEMENT_NODE) continue;
        const char *name = (const char *)k->name;
        if (strcmp(name, "when") == 0) {
            if (st->u.choice.has_otherwise) rc = diag(c, k, "<when> after <otherwise>");
            st->u.choice.whens = esb_realloc(st->u.choice.whens, (st->u.choice.nwhens + 1) *
                                                                     sizeof(*st->u.choice.whens));
            struct esb__when *w = &st->u.choice.whens[st->u.choice.nwhens++];
            memset(w, 0, sizeof(*w));
            w->line = line_of(k);
            if (compile_pred(c, k, &w->pred) == 0)
                w->what = fmt_dup("%s/when %s", st->what, esb_pred_describe(w->pred));
            else
                rc = ESB_EINVAL;
            snprintf(path, sizeof(path), "%s/when/", st->what);
            if (compile_steps(c, k, path, 0, &w->steps)) rc = ESB_EINVAL;
        } else if (strcmp(name, "otherwise") == 0) {
            if (st->u.choice.has_otherwise) rc = diag(c, k, "a <choice> has one <otherwise>");

            if (parse_attrs(c, k, no_attrs, &none)) rc = ESB_EINVAL;
            st->u.choice.has_otherwise = 1;
            snprintf(path, sizeof(path), "%s/otherwise/", st->what);
            if (compile_steps(c, k, path, 0, &st->u.choice.otherwise)) rc = ESB_EINVAL;
        } else {
            rc = diag(c, k, "not allowed in <choice> (expected <when> or <otherwise>)");
        }
    }
    if (st->u.choice.nwhens == 0) rc = diag(c, node, "needs at least one <when>");
    return rc;
}

static void free_choice(struct esb__step *st);

static int compile_filter(struct esb__cctx *c, xmlNode *node, struct esb__step *st)
{
    int rc = compile_pred(c, node, &st->u.filter);
    if (rc == 0) {
        char *w = fmt_dup("%s %s", st->what, esb_pred_describe(st->u.filter));
        free(st->what);
        st->what = w;
    }
    return leaf_only(c, node) ? ESB_EINVAL : rc;
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
    int rc = parse_attrs(c, node, set_header_attrs, &hc);
    if (rc) return rc;
    size_t n = strlen(hc.name);
    int bad = n == 0 || n > ESB_MSG_MAX_NAME;
    for (const char *p = hc.name; *p && !bad; p++)
        bad = !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                strchr("!#$%&'*+-.^_`|~", *p));
    if (bad) rc = diag(c, node, "attribute 'name': not a header name (got '%.60s')", hc.name);
    struct esb_err err = {0};
    if (esb_template_compile(hc.value, 0, &st->u.set_header.value, &err))
        rc = diag(c, node, "attribute 'value': %s", err.msg);
    st->u.set_header.content_type = strcasecmp(hc.name, "content-type") == 0;
    st->u.set_header.name = hc.name;
    free(hc.value);
    return leaf_only(c, node) ? ESB_EINVAL : rc;
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
    int rc = parse_attrs(c, node, dedupe_attrs, &dc);
    if (rc) return rc;
    struct esb_err err = {0};
    if (esb_template_compile(dc.key, 0, &st->u.dedupe.key, &err))
        rc = diag(c, node, "attribute 'key': %s", err.msg);
    st->u.dedupe.window_ms = dc.window;
    st->u.dedupe.max_keys = (uint32_t)dc.max_keys;
    free(dc.key);
    return leaf_only(c, node) ? ESB_EINVAL : rc;
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
    int rc = parse_attrs(c, node, log_attrs, &lc);
    if (rc) return rc;
    struct esb_err err = {0};
    if (esb_template_compile(lc.message, 0, &st->u.log.message, &err))
        rc = diag(c, node, "attribute 'message': %s", err.msg);
    st->u.log.level = lc.level; /* log_levels follows enum esb_log_level */
    free(lc.message);
    return leaf_only(c, node) ? ESB_EINVAL : rc;
}

static void free_log(struct esb__step *st)
{
    esb_template_free(st->u.log.message);
}

static int compile_multicast(struct esb__cctx *c, xmlNode *node, struct esb__step *st)
{
    char none;
    int rc = parse_attrs(c, node, no_attrs, &none);
    char path[300];
    snprintf(path, sizeof(path), "%s/", st->what);
    if (compile_steps(c, node, path, 0, &st->u.multicast)) rc = ESB_EINVAL;
    if (!has_child_elements(node)) rc = diag(c, node, "needs at least one step");
    return rc;
}

static void free_steps(struct esb__steps *s);

static void free_multicast(struct esb__step *st)
{
    free_steps(&st->u.multicast);
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
    int rc = parse_attrs(c, node, to_attrs, &tc);
    if (rc) return rc;
    enum esb_uri_kind kind;
    const char *name;
    const struct esb_endpoint *ep;
    rc = resolve_uri(c, node, "uri", tc.uri, ESB_OUTBOUND, &kind, &name, &ep);
    if (rc == 0) {
        struct esb_route *r = c->r;
        size_t i = r->ntargets++;
        r->target_uris = esb_realloc(r->target_uris, r->ntargets * sizeof(*r->target_uris));
        r->target_lines = esb_realloc(r->target_lines, r->ntargets * sizeof(*r->target_lines));
        r->targets = esb_realloc(r->targets, r->ntargets * sizeof(*r->targets));
        r->target_uris[i] = esb_strdup(tc.uri);
        r->target_lines[i] = line_of(node);
        r->targets[i].kind = kind;
        r->targets[i].bus_name =
            kind == ESB_URI_ENDPOINT ? fmt_dup("deliver:%s", name) : esb_strdup(tc.uri);
        st->u.to = i;
    }
    free(tc.uri);
    return leaf_only(c, node) ? ESB_EINVAL : rc;
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
    int rc = parse_attrs(c, node, transform_attrs, &tc);
    if (rc) return rc;
    struct esb_err err = {0};
    free(st->what);
    st->what = fmt_dup("transform lua=%.200s", tc.lua);
    if (esb_lua_prog_load(lua_env(c), tc.lua, tc.function, &c->lua_limits, &st->u.transform, &err) <
        0)
        rc = diag(c, node, "attribute 'lua': %s", err.msg);
    esb_attrs_free(transform_attrs, &tc);
    return leaf_only(c, node) ? ESB_EINVAL : rc;
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

static const char *step_names(void)
{
    return "choice, filter, set-header, log, multicast, transform, to";
}

static void free_steps(struct esb__steps *s)
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
        free_steps(&st->u.choice.whens[i].steps);
    }
    free(st->u.choice.whens);
    free_steps(&st->u.choice.otherwise);
}

/* ---- <retry> and <dead-letter> ---- */

struct retry_conf {
    uint64_t max_attempts, initial_delay, max_delay;
    double multiplier, jitter;
};
static const struct esb_attr_spec retry_attrs[] = {
    {"max-attempts", ESB_ATTR_UINT, "5", offsetof(struct retry_conf, max_attempts), 0, 1, 1000,
     NULL, "Delivery attempts in all (the first included) before dead-lettering."},
    {"initial-delay", ESB_ATTR_DURATION, "1s", offsetof(struct retry_conf, initial_delay), 0, 1,
     86400000, NULL, "Delay before the second attempt."},
    {"multiplier", ESB_ATTR_DOUBLE, "2", offsetof(struct retry_conf, multiplier), 0, 1, 100, NULL,
     "Each further delay is the previous one times this."},
    {"max-delay", ESB_ATTR_DURATION, "5m", offsetof(struct retry_conf, max_delay), 0, 1,
     7 * 86400000ull, NULL, "Upper bound of a delay."},
    {"jitter", ESB_ATTR_DOUBLE, "0.2", offsetof(struct retry_conf, jitter), 0, 0, 1, NULL,
     "Random spread of each delay, as a fraction (0.2 = +-20%)."},
    ESB_ATTR_END,
};

struct dlq_conf {
    char *queue;
};
static const struct esb_attr_spec dlq_attrs[] = {
    {"queue", ESB_ATTR_STRING, NULL, offsetof(struct dlq_conf, queue), 1, 0, 0, NULL,
     "Dead-letter queue of the route (default without the element: dlq.ROUTE-ID)."},
    ESB_ATTR_END,
};

static int compile_retry(struct esb__cctx *c, xmlNode *n, int *seen)
{
    if ((*seen)++) return diag(c, n, "a route has at most one <retry>");
    struct retry_conf rc = {0};
    if (parse_attrs(c, n, retry_attrs, &rc)) return ESB_EINVAL;
    if (rc.max_delay < rc.initial_delay)
        return diag(c, n, "max-delay is shorter than initial-delay");
    struct esb_retry_policy *p = &c->r->retry;
    p->max_attempts = (uint32_t)rc.max_attempts;
    p->initial_delay_ms = rc.initial_delay;
    p->multiplier = rc.multiplier;
    p->max_delay_ms = rc.max_delay;
    p->jitter = rc.jitter;
    return leaf_only(c, n);
}

static int compile_dlq(struct esb__cctx *c, xmlNode *n, int *seen)
{
    if ((*seen)++) return diag(c, n, "a route has at most one <dead-letter>");
    struct dlq_conf dc = {0};
    if (parse_attrs(c, n, dlq_attrs, &dc)) return ESB_EINVAL;
    int rc = 0;
    if (!valid_name(dc.queue))
        rc = diag(c, n,
                  "attribute 'queue': a queue name is 1 to %d letters, digits, '.', '_' or "
                  "'-' (got '%.60s')",
                  NAME_MAX_LEN, dc.queue);
    if (rc == 0) {
        free(c->r->dlq);
        c->r->dlq = dc.queue;
    } else {
        free(dc.queue);
    }
    return leaf_only(c, n) ? ESB_EINVAL : rc;
}

static int compile_steps(struct esb__cctx *c, xmlNode *parent, const char *path, int top,
                         struct esb__steps *out)
{
    int rc = 0;
    for (xmlNode *k = parent->children; k; k = k->next) {
        if (k->type != XML_ELEMENT_NODE) continue;
        const char *name = (const char *)k->name;
        if (strcmp(name, "retry") == 0 || strcmp(name, "dead-letter") == 0) {
            if (!top)
                rc = diag(c, k, "belongs directly under <route>, not inside <%s>",
                          (const char *)parent->name);
            continue; /* compiled by esb_route_compile */
        }
        const struct esb__step_ops *ops = find_step(name);
        if (!ops) {
            rc = diag(c, k, "unknown step (expected one of %s)", step_names());
            continue;
        }
        out->v = esb_realloc(out->v, (out->n + 1) * sizeof(*out->v));
        struct esb__step *st = &out->v[out->n++];
        memset(st, 0, sizeof(*st));
        st->ops = ops;
        st->line = line_of(k);
        st->num = ++c->num;
        st->what = fmt_dup("%s%s", path, name);
        if (ops->compile(c, k, st)) rc = ESB_EINVAL;
    }
    return rc;
}

/* ---- the route ---- */

struct route_conf {
    char *id, *from, *path, *ordering_key;
};
static const struct esb_attr_spec route_attrs[] = {
    {"id", ESB_ATTR_STRING, NULL, offsetof(struct route_conf, id), 1, 0, 0, NULL,
     "Unique route id: letters, digits, '.', '_', '-'."},
    {"from", ESB_ATTR_STRING, NULL, offsetof(struct route_conf, from), 1, 0, 0, NULL,
     "Source: an inbound connector as ELEMENT:ID (http-in:web, file-in:legacy), queue:NAME or "
     "topic:NAME."},
    {"path", ESB_ATTR_STRING, NULL, offsetof(struct route_conf, path), 0, 0, 0, NULL,
     "For an http-in source (required there, only there): the request path, e.g. /orders."},
    {"ordering-key", ESB_ATTR_STRING, NULL, offsetof(struct route_conf, ordering_key), 0, 0, 0,
     NULL,
     "Template of an ordering key, e.g. \"{header:customer-id}\": the messages this route sends "
     "with the same key are delivered one at a time in order, even across retries (a key in "
     "retry holds back only that key). Empty result: no ordering."},
    ESB_ATTR_END,
};

static int compile_source(struct esb__cctx *c, xmlNode *n, struct route_conf *rc)
{
    struct esb_route *r = c->r;
    const char *name;
    const struct esb_endpoint *ep;
    if (resolve_uri(c, n, "from", rc->from, ESB_INBOUND, &r->src.kind, &name, &ep)) return -1;
    r->src.name = esb_strdup(name);
    if (r->src.kind == ESB_URI_QUEUE)
        r->input = fmt_dup("queue:%s", name);
    else if (r->src.kind == ESB_URI_TOPIC)
        r->input = fmt_dup("topic:%s#%s", name, r->id);
    else
        r->input = fmt_dup("route:%s", r->id);
    int http = ep && strcmp(ep->ops->element, "http-in") == 0;
    if (http && !rc->path)
        return diag(c, n, "attribute 'path': required for an http-in source (e.g. path=\"/%s\")",
                    r->id);
    if (!http && rc->path) return diag(c, n, "attribute 'path': only for an http-in source");
    if (!rc->path) return 0;
    int bad = rc->path[0] != '/' || strlen(rc->path) > PATH_MAX_LEN;
    for (const char *p = rc->path; *p && !bad; p++)
        bad = (unsigned char)*p <= 0x20 || *p == 0x7f || *p == '?' || *p == '#';
    if (bad)
        return diag(c, n,
                    "attribute 'path': must start with '/' and have no spaces, control "
                    "characters, '?' or '#' (got '%.60s')",
                    rc->path);
    r->src.path = esb_strdup(rc->path);
    return 0;
}

int esb_route_compile(struct _xmlNode *node, const char *file, const struct esb_config *cfg,
                      struct esb_route **out, struct esb_diags *d)
{
    *out = NULL;
    struct esb_route *r = esb_calloc(1, sizeof(*r));
    struct esb__cctx c = {file ? file : "?", cfg, d, r, 0, 0, NULL, {0, 0, 0}};
    r->file = esb_strdup(c.file);
    r->line = line_of(node);
    r->retry = (struct esb_retry_policy){5, 1000, 2.0, 300000, 0.2};
    struct route_conf rc = {0};
    if (parse_attrs(&c, node, route_attrs, &rc)) goto out;
    if (!valid_name(rc.id)) {
        diag(&c, node, "attribute 'id': 1 to %d letters, digits, '.', '_' or '-' (got '%.60s')",
             NAME_MAX_LEN, rc.id);
        goto out;
    }
    r->id = esb_strdup(rc.id);
    (void)compile_source(&c, node, &rc);
    if (rc.ordering_key) {
        struct esb_err err = {0};
        if (esb_template_compile(rc.ordering_key, 0, &r->ordering_key, &err))
            diag(&c, node, "attribute 'ordering-key': %s", err.msg);
    }
    int retry_seen = 0, dlq_seen = 0;
    for (xmlNode *k = node->children; k; k = k->next) {
        if (k->type != XML_ELEMENT_NODE) continue;
        if (strcmp((const char *)k->name, "retry") == 0) (void)compile_retry(&c, k, &retry_seen);
        if (strcmp((const char *)k->name, "dead-letter") == 0) (void)compile_dlq(&c, k, &dlq_seen);
    }
    if (!r->dlq) r->dlq = fmt_dup("dlq.%s", r->id);
    (void)compile_steps(&c, node, "", 1, &r->steps);
out:
    esb_attrs_free(route_attrs, &rc);
    free(c.lua_dir);
    if (c.errors) {
        esb_route_free(r);
        return ESB_EINVAL;
    }
    *out = r;
    return 0;
}

void esb_route_free(struct esb_route *r)
{
    if (!r) return;
    free_steps(&r->steps);
    for (size_t i = 0; i < r->ntargets; i++) {
        free(r->target_uris[i]);
        free(r->targets[i].bus_name);
    }
    free(r->target_uris);
    free(r->target_lines);
    free(r->targets);
    free(r->src.name);
    free(r->src.path);
    free(r->input);
    free(r->dlq);
    free(r->id);
    free(r->file);
    esb_template_free(r->ordering_key);
    free(r);
}

const char *esb_route_id(const struct esb_route *r)
{
    return r->id;
}

const struct esb_route_source *esb_route_source(const struct esb_route *r)
{
    return &r->src;
}

const char *esb_route_input(const struct esb_route *r)
{
    return r->input;
}

const char *esb_route_dlq(const struct esb_route *r)
{
    return r->dlq;
}

size_t esb_route_targets(const struct esb_route *r, const char *const **uris, const int **lines)
{
    if (uris) *uris = (const char *const *)r->target_uris;
    if (lines) *lines = r->target_lines;
    return r->ntargets;
}

const struct esb_retry_policy *esb_route_retry(const struct esb_route *r)
{
    return &r->retry;
}

/* ---- reference docs ---- */

void esb_route_doc(void (*emit)(void *ctx, const char *text), void *ctx)
{
    emit(ctx, "## Routes\n\n"
              "A `<route>` takes messages from one source and runs its steps on each, in "
              "document order. Its bus input is `route:ID` for a connector source, "
              "`queue:NAME` for a queue, `topic:NAME#ID` for a topic subscription. A routing "
              "error (a body that is not XML/JSON when a predicate needs it, a DOCTYPE, a "
              "regex limit) dead-letters the message with the reason; it is not retried.\n\n");
    esb_attrs_doc("route", "A route: source, steps, `<retry>`, `<dead-letter>`.", route_attrs, emit,
                  ctx);
    for (size_t i = 0; i < ESB_ARRAY_LEN(step_table); i++)
        esb_attrs_doc(step_table[i].element, step_table[i].summary, step_table[i].attrs, emit, ctx);
    esb_attrs_doc("when", "A branch of `<choice>`: exactly one predicate, then steps.",
                  esb_pred_attrs, emit, ctx);
    esb_attrs_doc("otherwise", "The last branch of `<choice>`, taken when no `<when>` holds.",
                  no_attrs, emit, ctx);
    esb_attrs_doc("retry",
                  "Retry policy of the route's deliveries to outbound connectors: the delay "
                  "before attempt n+1 is min(initial-delay * multiplier^(n-1), max-delay), "
                  "spread by jitter.",
                  retry_attrs, emit, ctx);
    esb_attrs_doc("dead-letter", "Where messages that fail for good go.", dlq_attrs, emit, ctx);
    emit(ctx,
         "### Predicates\n\n"
         "`<when>` and `<filter>` take exactly one predicate:\n\n"
         "* `xpath=\"EXPR\"` - XPath 1.0 on an XML body. Holds if the result is true, a "
         "non-zero number, a non-empty string or a non-empty node-set. Elements in a default "
         "namespace need `*[local-name()='x']`.\n"
         "* `json=\"PATH\"` with one of `equals`, `matches`, `gt`, `lt`, `exists` - on a JSON "
         "body. With `[*]`, the predicate holds if any selected value satisfies it. `gt`/`lt` "
         "hold only for JSON numbers (the string \"12\" is not a number).\n"
         "* `regex=\"PCRE2\"`, optionally with `header=\"NAME\"` - searched in the body bytes "
         "or in the header's first value (no header: false).\n"
         "* `header=\"NAME\"` with one of `equals` (case-sensitive), `exists`, `matches`.\n"
         "* `lua=\"PATH\"`, optionally with `function=\"NAME\"` (default `predicate`) - a Lua "
         "function of the message; holds if it returns a value other than nil and false. Its "
         "errors and limit hits are routing errors (docs/lua-host.md).\n\n"
         "JSON paths: `$` then any chain of `.name`, `['name']`, `[N]` (N >= 0), `[*]`.\n\n"
         "Message bodies are untrusted: XML is parsed without network access, entity "
         "expansion or DTD loading, and a body with a DOCTYPE is refused; JSON nested deeper "
         "than 64 levels or with duplicate keys is refused; a regex runs under a match limit "
         "(100000), a heap limit (8 MB) and a 256 KB JIT stack, and hitting one is the "
         "routing error \"regex limit hit\". Each body is parsed at most once per message.\n\n"
         "### Templates\n\n"
         "`value` of `<set-header>`, `message` of `<log>` and `name` of `<file-out>` are "
         "templates: literal text with `{id}`, `{header:NAME}` (\"\" if absent), "
         "`{content-type}`, `{date:FMT}` (strftime on the current UTC time, e.g. "
         "`{date:%Y%m%d}`) and `{route}`. `{{` is a literal `{`. An unknown placeholder is a "
         "config error. In file names, substituted values have `/` and control characters "
         "replaced by `_`, a leading `.` or a `.` after another `.` becomes `_`, and the name is "
         "cut to 255 bytes.\n\n");
}
