/* route_compile.c - compile a <route> element into a step program (see
 * route.h, route_internal.h): the route's own attributes (id, from=, path,
 * ordering-key), its policy elements <retry> and <dead-letter>, the
 * diagnostics and URI resolution the step compilers share
 * (route_compile_internal.h), and the reference docs of the route elements.
 * The steps themselves are compiled by route_compile_steps.c.
 *
 * Every element's attributes go through a table (conf_attr.h), so an unknown
 * or malformed attribute is reported with file:line like everywhere else.
 * Compilation goes on after an error, so one pass reports every mistake in
 * the route; the route is returned only if there was none. */
#include "config.h"

#include "conf.h"
#include "connector.h"
#include "lua_host.h"
#include "route_compile_internal.h"
#include "route_internal.h"
#include "template.h"

#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 200  /* route ids, queue and topic names */
#define PATH_MAX_LEN 1024 /* http-in path */

/* ---- diagnostics ---- */

int esb__route_line(xmlNode *n)
{
    long l = xmlGetLineNo(n);
    return l > 0 && l < INT32_MAX ? (int)l : 0;
}

int esb__route_diag(struct esb__cctx *c, xmlNode *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    esb_diag_add(c->d, c->file, esb__route_line(n), (const char *)n->name, "%s", msg);
    c->errors++;
    return ESB_EINVAL;
}

/* An error esb_attrs_parse formatted whole ("FILE:LINE: element <x>: ..."):
 * add it without repeating the prefix. */
static int diag_attrs(struct esb__cctx *c, xmlNode *n, const struct esb_err *err)
{
    char prefix[512];
    snprintf(prefix, sizeof(prefix), "%s:%d: element <%s>: ", c->file, esb__route_line(n),
             (const char *)n->name);
    size_t pl = strlen(prefix);
    const char *m = strncmp(err->msg, prefix, pl) == 0 ? err->msg + pl : err->msg;
    return esb__route_diag(c, n, "%s", m);
}

int esb__route_parse_attrs(struct esb__cctx *c, xmlNode *n, const struct esb_attr_spec *specs,
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

char *esb__route_fmt(const char *fmt, ...)
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
const char *esb__route_lua_dir(struct esb__cctx *c)
{
    if (c->lua_dir) return c->lua_dir;
    if (c->cfg && c->cfg->lua.dir) {
        c->lua_dir = esb_strdup(c->cfg->lua.dir);
        c->lua_limits = (struct esb_lua_limits){c->cfg->lua.memory, c->cfg->lua.instructions,
                                                c->cfg->lua.max_output};
    } else {
        const char *slash = strrchr(c->file, '/');
        int dl = slash ? (int)(slash - c->file) + 1 : 0;
        c->lua_dir = esb__route_fmt("%.*slua-scripts", dl, c->file);
    }
    return c->lua_dir;
}

int esb__route_template(struct esb__cctx *c, xmlNode *n, const char *attr, const char *src,
                        struct esb_template **out)
{
    struct esb_err err = {0};
    if (esb_template_compile(src, 0, out, &err) == 0) return 0;
    return esb__route_diag(c, n, "attribute '%s': %s", attr, err.msg);
}

int esb__route_has_children(xmlNode *n)
{
    for (xmlNode *k = n->children; k; k = k->next)
        if (k->type == XML_ELEMENT_NODE) return 1;
    return 0;
}

int esb__route_leaf_only(struct esb__cctx *c, xmlNode *n)
{
    return esb__route_has_children(n) ? esb__route_diag(c, n, "takes no child elements") : 0;
}

/* ---- URIs ---- */

/* Resolve "queue:X", "topic:X" or "ELEMENT:ID" (an endpoint of direction dir).
 * attr names the attribute for messages. */
int esb__route_resolve_uri(struct esb__cctx *c, xmlNode *n, const char *attr, const char *uri,
                           enum esb_connector_dir dir, enum esb_uri_kind *kind, const char **name,
                           const struct esb_endpoint **epp)
{
    const char *colon = strchr(uri, ':');
    const char *want = dir == ESB_INBOUND ? "inbound" : "outbound";
    if (!colon || colon == uri || !colon[1])
        return esb__route_diag(c, n,
                               "%s=\"%.100s\": expected queue:NAME, topic:NAME or CONNECTOR:ID "
                               "(e.g. %s)",
                               attr, uri, dir == ESB_INBOUND ? "http-in:web" : "file-out:archive");
    size_t sl = (size_t)(colon - uri);
    *name = colon + 1;
    *epp = NULL;
    if ((sl == 5 && memcmp(uri, "queue", 5) == 0) || (sl == 5 && memcmp(uri, "topic", 5) == 0)) {
        *kind = uri[0] == 'q' ? ESB_URI_QUEUE : ESB_URI_TOPIC;
        if (!valid_name(*name))
            return esb__route_diag(
                c, n, "%s=\"%.100s\": a %s name is 1 to %d letters, digits, '.', '_' or '-'", attr,
                uri, uri[0] == 'q' ? "queue" : "topic", NAME_MAX_LEN);
        return 0;
    }
    const struct esb_endpoint *ep = c->cfg ? esb_config_endpoint(c->cfg, *name) : NULL;
    if (!ep)
        return esb__route_diag(
            c, n, "%s=\"%.100s\": unknown endpoint '%.100s' (no connector has this id)", attr, uri,
            *name);
    if (strlen(ep->ops->element) != sl || memcmp(ep->ops->element, uri, sl) != 0)
        return esb__route_diag(c, n, "%s=\"%.100s\": endpoint '%.100s' is a <%s>, not a <%.*s>",
                               attr, uri, *name, ep->ops->element, (int)sl, uri);
    if (ep->ops->dir != dir)
        return esb__route_diag(
            c, n,
            "%s=\"%.100s\": <%s id=\"%.100s\"> is an %s connector; %s= needs an %s "
            "one%s",
            attr, uri, ep->ops->element, *name, want[0] == 'i' ? "outbound" : "inbound", attr, want,
            dir == ESB_OUTBOUND ? ", queue:NAME or topic:NAME" : "");
    *kind = dir == ESB_INBOUND ? ESB_URI_INBOUND : ESB_URI_ENDPOINT;
    *epp = ep;
    return 0;
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
    if ((*seen)++) return esb__route_diag(c, n, "a route has at most one <retry>");
    struct retry_conf rc = {0};
    if (esb__route_parse_attrs(c, n, retry_attrs, &rc)) return ESB_EINVAL;
    if (rc.max_delay < rc.initial_delay)
        return esb__route_diag(c, n, "max-delay is shorter than initial-delay");
    struct esb_retry_policy *p = &c->r->retry;
    p->max_attempts = (uint32_t)rc.max_attempts;
    p->initial_delay_ms = rc.initial_delay;
    p->multiplier = rc.multiplier;
    p->max_delay_ms = rc.max_delay;
    p->jitter = rc.jitter;
    return esb__route_leaf_only(c, n);
}

static int compile_dlq(struct esb__cctx *c, xmlNode *n, int *seen)
{
    if ((*seen)++) return esb__route_diag(c, n, "a route has at most one <dead-letter>");
    struct dlq_conf dc = {0};
    if (esb__route_parse_attrs(c, n, dlq_attrs, &dc)) return ESB_EINVAL;
    int rc = 0;
    if (!valid_name(dc.queue))
        rc = esb__route_diag(
            c, n,
            "attribute 'queue': a queue name is 1 to %d letters, digits, '.', '_' or "
            "'-' (got '%.60s')",
            NAME_MAX_LEN, dc.queue);
    if (rc == 0) {
        free(c->r->dlq);
        c->r->dlq = dc.queue;
    } else {
        free(dc.queue);
    }
    return esb__route_leaf_only(c, n) ? ESB_EINVAL : rc;
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
    if (esb__route_resolve_uri(c, n, "from", rc->from, ESB_INBOUND, &r->src.kind, &name, &ep))
        return -1;
    r->src.name = esb_strdup(name);
    if (r->src.kind == ESB_URI_QUEUE)
        r->input = esb__route_fmt("queue:%s", name);
    else if (r->src.kind == ESB_URI_TOPIC)
        r->input = esb__route_fmt("topic:%s#%s", name, r->id);
    else
        r->input = esb__route_fmt("route:%s", r->id);
    int http = ep && strcmp(ep->ops->element, "http-in") == 0;
    if (http && !rc->path)
        return esb__route_diag(
            c, n, "attribute 'path': required for an http-in source (e.g. path=\"/%s\")", r->id);
    if (!http && rc->path)
        return esb__route_diag(c, n, "attribute 'path': only for an http-in source");
    if (!rc->path) return 0;
    int bad = rc->path[0] != '/' || strlen(rc->path) > PATH_MAX_LEN;
    for (const char *p = rc->path; *p && !bad; p++)
        bad = (unsigned char)*p <= 0x20 || *p == 0x7f || *p == '?' || *p == '#';
    if (bad)
        return esb__route_diag(c, n,
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
    r->line = esb__route_line(node);
    r->retry = (struct esb_retry_policy){5, 1000, 2.0, 300000, 0.2};
    struct route_conf rc = {0};
    if (esb__route_parse_attrs(&c, node, route_attrs, &rc)) goto out;
    if (!valid_name(rc.id)) {
        esb__route_diag(&c, node,
                        "attribute 'id': 1 to %d letters, digits, '.', '_' or '-' (got '%.60s')",
                        NAME_MAX_LEN, rc.id);
        goto out;
    }
    r->id = esb_strdup(rc.id);
    (void)compile_source(&c, node, &rc);
    if (rc.ordering_key)
        (void)esb__route_template(&c, node, "ordering-key", rc.ordering_key, &r->ordering_key);
    int retry_seen = 0, dlq_seen = 0;
    for (xmlNode *k = node->children; k; k = k->next) {
        if (k->type != XML_ELEMENT_NODE) continue;
        if (strcmp((const char *)k->name, "retry") == 0) (void)compile_retry(&c, k, &retry_seen);
        if (strcmp((const char *)k->name, "dead-letter") == 0) (void)compile_dlq(&c, k, &dlq_seen);
    }
    if (!r->dlq) r->dlq = esb__route_fmt("dlq.%s", r->id);
    (void)esb__route_compile_steps(&c, node, "", 1, &r->steps);
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
    esb__route_free_steps(&r->steps);
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
    esb__route_steps_doc(emit, ctx);
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
