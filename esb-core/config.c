/* config.c - building an esb_config from the files config_include.c read:
 * the typed top-level elements (<log>, <bus>, <workers>, <admin>) through
 * attribute tables, the connector endpoints through each connector's table,
 * every route through the route compiler, then the checks that span routes.
 * Also the diagnostics list, lookups, and the generated reference
 * (docs/config.md).
 *
 * The public struct esb_config is the first member of a private one that
 * also remembers where each route was defined (for cross-route messages). */
#include "config.h"

#include "conf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxml/tree.h>

#include "conf_attr.h"
#include "config_internal.h"
#include "connector.h"
#include "log.h"
#include "route.h"

/* Longest diagnostic line kept. */
#define DIAG_MAX 1024
/* Endpoint ids: like route ids and queue names in route_compile.c. */
#define ID_MAX_LEN  200
#define WORKERS_MAX 1024

/* ---- diagnostics ---- */

void esb_diag_add(struct esb_diags *d, const char *file, int line, const char *element,
                  const char *fmt, ...)
{
    char msg[DIAG_MAX], pre[DIAG_MAX / 2];
    va_list ap;

    if (!d) return;
    if (d->n > ESB__CONFIG_MAX_DIAGS) return;
    if (d->n == ESB__CONFIG_MAX_DIAGS) {
        snprintf(msg, sizeof(msg), "too many errors (more than %d); stopping the list",
                 ESB__CONFIG_MAX_DIAGS);
    } else {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    /* "FILE:LINE: element <x>: msg"; each part only when known. */
    if (!file)
        pre[0] = '\0';
    else if (line > 0)
        snprintf(pre, sizeof(pre), "%s:%d: ", file, line);
    else
        snprintf(pre, sizeof(pre), "%s: ", file);
    if (element && d->n < ESB__CONFIG_MAX_DIAGS) {
        size_t l = strlen(pre);
        snprintf(pre + l, sizeof(pre) - l, "element <%s>: ", element);
    }
    size_t pl = strlen(pre), ml = strlen(msg);
    char *s = esb_malloc(pl + ml + 1);
    memcpy(s, pre, pl);
    memcpy(s + pl, msg, ml + 1);
    d->msgs = esb_realloc(d->msgs, (d->n + 1) * sizeof(*d->msgs));
    d->msgs[d->n++] = s;
}

void esb_diags_free(struct esb_diags *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) free(d->msgs[i]);
    free(d->msgs);
    d->msgs = NULL;
    d->n = 0;
}

/* An esb_err from a table or a connector check: it already names file:line
 * when it starts with the file; otherwise prefix the element's place. */
static void diag_err(struct esb_diags *d, const char *file, xmlNode *n, const struct esb_err *e)
{
    size_t fl = strlen(file);
    if (strncmp(e->msg, file, fl) == 0 && e->msg[fl] == ':')
        esb_diag_add(d, NULL, 0, NULL, "%s", e->msg);
    else
        esb_diag_add(d, file, esb__config_line(n), (const char *)n->name, "%s",
                     e->msg[0] ? e->msg : esb_strerror(e->code));
}

/* ---- tables of the core elements ---- */

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

struct log_attrs {
    int level;
};

static const struct esb_attr_spec log_spec[] = {
    {"level", ESB_ATTR_ENUM, "info", offsetof(struct log_attrs, level), 0, 0, 0, log_levels,
     "Least severe level logged (to stderr, one line per event)."},
    ESB_ATTR_END,
};

struct bus_attrs {
    char *dir, *fsync;
    uint64_t segment_size, max_disk, disk_low_water, queue_max_entries, queue_max_bytes;
    int preallocate;
};

#define MB (UINT64_C(1) << 20)
static const struct esb_attr_spec bus_spec[] = {
    {"dir", ESB_ATTR_STRING, "var/bus", offsetof(struct bus_attrs, dir), 0, 0, 0, NULL,
     "Directory of the bus log (created if missing), relative to esbd's working directory."},
    {"fsync", ESB_ATTR_STRING, "always", offsetof(struct bus_attrs, fsync), 0, 0, 0, NULL,
     "When accepted messages are made durable: `always` (fdatasync before every "
     "acknowledgement), `interval:N` (at least every N ms, 1..60000; a power loss can lose "
     "the last N ms) or `never` (only on segment roll and close)."},
    {"segment-size", ESB_ATTR_SIZE, "64MB", offsetof(struct bus_attrs, segment_size), 0, MB,
     MB << 14, NULL, "Size at which the log rolls to a new segment file."},
    {"preallocate", ESB_ATTR_BOOL, "true", offsetof(struct bus_attrs, preallocate), 0, 0, 0, NULL,
     "Roll to segment files that a background thread has filled with zeros beforehand (paced, "
     "one spare segment on disk), so that an fdatasync writes only the data, not the file's "
     "size too: about 1.5x the commit rate on ext4. `false`: segments grow as they are written."},
    {"max-disk", ESB_ATTR_SIZE, "0", offsetof(struct bus_attrs, max_disk), 0, 0, 0, NULL,
     "Most bytes the log may use; above it new input is refused (back-pressure). 0 = no limit."},
    {"disk-low-water", ESB_ATTR_SIZE, "256MB", offsetof(struct bus_attrs, disk_low_water), 0, 0, 0,
     NULL, "Refuse new input when the file system has less free space than this. 0 = no check."},
    {"queue-max-entries", ESB_ATTR_UINT, "1000000", offsetof(struct bus_attrs, queue_max_entries),
     0, 0, 0, NULL, "Most unresolved entries per queue; more is refused. 0 = no limit."},
    {"queue-max-bytes", ESB_ATTR_SIZE, "1GB", offsetof(struct bus_attrs, queue_max_bytes), 0, 0, 0,
     NULL, "Most bytes of unresolved entries per queue; more is refused. 0 = no limit."},
    ESB_ATTR_END,
};

struct workers_attrs {
    uint64_t count;
};

static const struct esb_attr_spec workers_spec[] = {
    {"count", ESB_ATTR_UINT, "0", offsetof(struct workers_attrs, count), 0, 0, WORKERS_MAX, NULL,
     "Worker threads running routes and deliveries. 0 = the number of online CPUs."},
    ESB_ATTR_END,
};

struct admin_attrs {
    char *listen, *token_file;
};

static const struct esb_attr_spec admin_spec[] = {
    {"listen", ESB_ATTR_LISTEN, "127.0.0.1:9090", offsetof(struct admin_attrs, listen), 0, 0, 0,
     NULL,
     "Address the admin API binds to, IP:PORT. Keep it on loopback: another address is "
     "allowed but logged as a warning, and the token then travels in clear text."},
    {"token-file", ESB_ATTR_STRING, "var/admin.token", offsetof(struct admin_attrs, token_file), 0,
     0, 0, NULL,
     "File holding the bearer token every request must send, relative to esbd's working "
     "directory. If missing, esbd creates it (mode 0600) with a random token."},
    ESB_ATTR_END,
};

struct lua_attrs {
    char *dir;
    uint64_t memory, instructions, max_output;
};

static const struct esb_attr_spec lua_spec[] = {
    {"dir", ESB_ATTR_STRING, "lua-scripts", offsetof(struct lua_attrs, dir), 0, 0, 0, NULL,
     "Directory of the Lua scripts, relative to the directory of the file that has `<lua>` "
     "(or of the top file when there is no `<lua>`). `lua=` paths of routes are relative to "
     "it, and `require` finds modules only under it."},
    {"memory", ESB_ATTR_SIZE, "64MB", offsetof(struct lua_attrs, memory), 0, MB, MB << 14, NULL,
     "Most memory one worker's Lua state may hold; an allocation past it fails and the call "
     "ends with \"memory limit exceeded\"."},
    {"instructions", ESB_ATTR_UINT, "10000000", offsetof(struct lua_attrs, instructions), 0, 1000,
     UINT64_C(1000000000000), NULL,
     "Instruction budget of one call (a transform or a predicate on one message); past it the "
     "call ends with \"instruction limit exceeded\"."},
    {"max-output", ESB_ATTR_SIZE, "64MB", offsetof(struct lua_attrs, max_output), 0, 1024, MB << 12,
     NULL, "Most bytes of message bodies one transform call may return."},
    ESB_ATTR_END,
};

/* For the reference only: <include> is read by config_include.c. */
struct include_attrs {
    char *href;
};

static const struct esb_attr_spec include_spec[] = {
    {"href", ESB_ATTR_STRING, NULL, offsetof(struct include_attrs, href), 1, 0, 0, NULL,
     "File to include, relative to the including file's directory."},
    ESB_ATTR_END,
};

/* ---- the config object ---- */

struct route_meta {
    const char *file; /* borrowed from config_priv.files */
    int line;
};

struct config_priv {
    struct esb_config pub; /* first: the public pointer is this struct's */
    struct route_meta *rmeta;
    char **files; /* file names the routes' and endpoints' meta points into */
    size_t nfiles;
};

static void endpoint_free(struct esb_endpoint *ep)
{
    if (!ep) return;
    if (ep->ops && ep->ops->destroy) ep->ops->destroy(ep);
    if (ep->ops && ep->conf) esb_attrs_free(ep->ops->attrs, ep->conf);
    free(ep->conf);
    free(ep->id);
    free(ep->file);
    free(ep);
}

static void config_free(struct config_priv *p)
{
    struct esb_config *c = &p->pub;
    for (size_t i = 0; i < c->nroutes; i++) esb_route_free(c->routes[i]);
    free(c->routes);
    for (size_t i = 0; i < c->nendpoints; i++) endpoint_free(c->endpoints[i]);
    free(c->endpoints);
    free(c->bus.dir);
    free(c->log_level);
    free(c->lua.dir);
    free(c->admin.listen);
    free(c->admin.token_file);
    free(c->path);
    for (size_t i = 0; i < p->nfiles; i++) free(p->files[i]);
    free(p->files);
    free(p->rmeta);
    free(p);
}

struct esb_config *esb_config_ref(struct esb_config *c)
{
    if (c) atomic_fetch_add(&c->refs, 1);
    return c;
}

void esb_config_unref(struct esb_config *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1) return;
    config_free((struct config_priv *)(void *)c);
}

struct esb_endpoint *esb_config_endpoint(const struct esb_config *c, const char *id)
{
    for (size_t i = 0; c && id && i < c->nendpoints; i++)
        if (strcmp(c->endpoints[i]->id, id) == 0) return c->endpoints[i];
    return NULL;
}

const struct esb_route *esb_config_route(const struct esb_config *c, const char *id)
{
    for (size_t i = 0; c && id && i < c->nroutes; i++)
        if (strcmp(esb_route_id(c->routes[i]), id) == 0) return c->routes[i];
    return NULL;
}

void esb_config_bus_opts(const struct esb_config *c, struct esb_bus_opts *o)
{
    o->dir = c->bus.dir;
    o->fsync = (enum esb_fsync_policy)c->bus.fsync;
    o->fsync_interval_ms = (unsigned)c->bus.fsync_interval_ms;
    o->segment_size = c->bus.segment_size;
    o->preallocate = c->bus.preallocate;
    o->max_disk = c->bus.max_disk;
    o->disk_low_water = c->bus.disk_low_water;
    o->queue_max_entries = c->bus.queue_max_entries;
    o->queue_max_bytes = c->bus.queue_max_bytes;
}

/* ---- loading ---- */

struct loader {
    struct config_priv *p;
    struct esb_diags *d;
    /* first <log>/<bus>/<workers>/<admin> seen, for "given twice" */
    const struct esb__config_item *seen_log, *seen_bus, *seen_workers, *seen_admin, *seen_lua;
};

/* Keep a copy of file for the config's lifetime; returns the copy. */
static const char *keep_file(struct config_priv *p, const char *file)
{
    for (size_t i = 0; i < p->nfiles; i++)
        if (strcmp(p->files[i], file) == 0) return p->files[i];
    p->files = esb_realloc(p->files, (p->nfiles + 1) * sizeof(*p->files));
    p->files[p->nfiles] = esb_strdup(file);
    return p->files[p->nfiles++];
}

/* An element given twice where once is allowed. */
static int once(struct loader *l, const struct esb__config_item **seen,
                const struct esb__config_item *it)
{
    if (!*seen) {
        *seen = it;
        return 0;
    }
    esb_diag_add(l->d, it->file, esb__config_line(it->node), (const char *)it->node->name,
                 "given twice (first at %s:%d)", (*seen)->file, esb__config_line((*seen)->node));
    return ESB_EINVAL;
}

static void load_log(struct loader *l, const struct esb__config_item *it)
{
    struct log_attrs a = {0};
    struct esb_err err = {0};
    if (once(l, &l->seen_log, it) < 0) return;
    if (esb_attrs_parse(log_spec, it->node, it->file, &a, &err) < 0) {
        diag_err(l->d, it->file, it->node, &err);
        return;
    }
    free(l->p->pub.log_level);
    l->p->pub.log_level = esb_strdup(log_levels[a.level]);
}

static void load_bus(struct loader *l, const struct esb__config_item *it)
{
    struct bus_attrs a = {0};
    struct esb_err err = {0};
    struct esb_config_bus *b = &l->p->pub.bus;
    enum esb_fsync_policy pol = ESB_FSYNC_ALWAYS;
    unsigned ival = 0;
    int line = esb__config_line(it->node);

    if (once(l, &l->seen_bus, it) < 0) return;
    if (esb_attrs_parse(bus_spec, it->node, it->file, &a, &err) < 0) {
        diag_err(l->d, it->file, it->node, &err);
        return;
    }
    if (esb_fsync_parse(a.fsync, &pol, &ival) < 0)
        esb_diag_add(l->d, it->file, line, "bus",
                     "attribute 'fsync': not a sync policy (got '%.60s'; expected always, never "
                     "or interval:N with N in ms, 1..60000)",
                     a.fsync);
    else if (!a.dir[0])
        esb_diag_add(l->d, it->file, line, "bus", "attribute 'dir': must not be empty");
    else if (a.max_disk && a.max_disk < a.segment_size)
        esb_diag_add(l->d, it->file, line, "bus",
                     "attribute 'max-disk': smaller than segment-size (%" PRIu64 " < %" PRIu64
                     " bytes); the log could not hold one segment",
                     a.max_disk, a.segment_size);
    free(b->dir);
    b->dir = a.dir;
    a.dir = NULL;
    b->fsync = (int)pol;
    b->fsync_interval_ms = pol == ESB_FSYNC_INTERVAL ? ival : 0;
    b->segment_size = a.segment_size;
    b->preallocate = a.preallocate;
    b->max_disk = a.max_disk;
    b->disk_low_water = a.disk_low_water;
    b->queue_max_entries = a.queue_max_entries;
    b->queue_max_bytes = a.queue_max_bytes;
    esb_attrs_free(bus_spec, &a);
}

static void load_workers(struct loader *l, const struct esb__config_item *it)
{
    struct workers_attrs a = {0};
    struct esb_err err = {0};
    if (once(l, &l->seen_workers, it) < 0) return;
    if (esb_attrs_parse(workers_spec, it->node, it->file, &a, &err) < 0) {
        diag_err(l->d, it->file, it->node, &err);
        return;
    }
    l->p->pub.workers = a.count;
}

static void load_admin(struct loader *l, const struct esb__config_item *it)
{
    struct admin_attrs a = {0};
    struct esb_err err = {0};
    struct esb_config_admin *ad = &l->p->pub.admin;
    if (once(l, &l->seen_admin, it) < 0) return;
    if (esb_attrs_parse(admin_spec, it->node, it->file, &a, &err) < 0) {
        diag_err(l->d, it->file, it->node, &err);
        return;
    }
    if (!a.token_file[0]) {
        esb_diag_add(l->d, it->file, esb__config_line(it->node), "admin",
                     "attribute 'token-file': must not be empty");
        esb_attrs_free(admin_spec, &a);
        return;
    }
    ad->enabled = 1;
    ad->listen = a.listen;
    ad->token_file = a.token_file;
}

static void load_lua(struct loader *l, const struct esb__config_item *it)
{
    struct lua_attrs a = {0};
    struct esb_err err = {0};
    struct esb_config_lua *lua = &l->p->pub.lua;
    if (once(l, &l->seen_lua, it) < 0) return;
    if (esb_attrs_parse(lua_spec, it->node, it->file, &a, &err) < 0) {
        diag_err(l->d, it->file, it->node, &err);
        return;
    }
    if (!a.dir[0]) {
        esb_diag_add(l->d, it->file, esb__config_line(it->node), "lua",
                     "attribute 'dir': must not be empty");
    } else {
        /* relative to the directory of the file that says it */
        const char *slash = strrchr(it->file, '/');
        size_t dl = a.dir[0] == '/' || !slash ? 0 : (size_t)(slash - it->file) + 1;
        free(lua->dir);
        lua->dir = esb_malloc(dl + strlen(a.dir) + 1);
        memcpy(lua->dir, it->file, dl);
        strcpy(lua->dir + dl, a.dir);
    }
    lua->memory = a.memory;
    lua->instructions = a.instructions;
    lua->max_output = a.max_output;
    esb_attrs_free(lua_spec, &a);
}

static int valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ID_MAX_LEN) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

/* Names of every registered connector, for "unknown connector" messages. */
static void connector_names(char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; esb_connectors[i] && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s<%s>", i ? ", " : "", esb_connectors[i]->element);
        if (w < 0) break;
        used += (size_t)w;
    }
}

static void load_endpoint(struct loader *l, xmlNode *n, const char *file)
{
    struct esb_config *c = &l->p->pub;
    const char *elem = (const char *)n->name;
    const int line = esb__config_line(n);
    const struct esb_connector_ops *ops = esb_connector_find(elem);
    struct esb_err err = {0};
    xmlChar *id = NULL;

    if (!ops) {
        char names[200];
        connector_names(names, sizeof(names));
        esb_diag_add(l->d, file, line, elem, "unknown connector (known: %s)", names);
        return;
    }
    id = xmlGetNoNsProp(n, (const xmlChar *)"id");
    if (!id) {
        esb_diag_add(l->d, file, line, elem, "attribute 'id': required but missing");
        return;
    }
    if (!valid_id((const char *)id)) {
        esb_diag_add(l->d, file, line, elem,
                     "attribute 'id': must be 1 to %d letters, digits, '.', '_' or '-' (got "
                     "'%.60s')",
                     ID_MAX_LEN, (const char *)id);
        goto out;
    }
    struct esb_endpoint *dup = esb_config_endpoint(c, (const char *)id);
    if (dup) {
        esb_diag_add(l->d, file, line, elem,
                     "duplicate endpoint id '%s' (first defined at %s:%d by <%s>); ids are "
                     "unique across all connectors",
                     (const char *)id, dup->file, dup->line, dup->ops->element);
        goto out;
    }
    struct esb_endpoint *ep = esb_calloc(1, sizeof(*ep));
    ep->id = esb_strdup((const char *)id);
    ep->ops = ops;
    ep->file = esb_strdup(file);
    ep->line = line;
    ep->conf = esb_calloc(1, ops->conf_size ? ops->conf_size : 1);
    /* Kept even when invalid: routes naming it then do not pile up
     * "unknown endpoint" errors on top of the real one. */
    c->endpoints = esb_realloc(c->endpoints, (c->nendpoints + 1) * sizeof(*c->endpoints));
    c->endpoints[c->nendpoints++] = ep;
    if (esb_attrs_parse(ops->attrs, n, file, ep->conf, &err) < 0) {
        diag_err(l->d, file, n, &err);
        goto out;
    }
    if (ops->check && ops->check(ep, &err) < 0) diag_err(l->d, file, n, &err);
out:
    xmlFree(id);
}

static void load_connectors(struct loader *l, const struct esb__config_item *it)
{
    for (xmlNode *n = it->node->children; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE) load_endpoint(l, n, it->file);
}

static void load_route(struct loader *l, const struct esb__config_item *it)
{
    struct config_priv *p = l->p;
    struct esb_config *c = &p->pub;
    struct esb_route *r = NULL;
    size_t before = l->d->n;
    const int line = esb__config_line(it->node);

    if (esb_route_compile(it->node, it->file, c, &r, l->d) < 0 || !r) {
        if (l->d->n == before)
            esb_diag_add(l->d, it->file, line, "route", "route does not compile");
        esb_route_free(r);
        return;
    }
    for (size_t i = 0; i < c->nroutes; i++) {
        if (strcmp(esb_route_id(c->routes[i]), esb_route_id(r)) != 0) continue;
        esb_diag_add(l->d, it->file, line, "route", "duplicate route id '%s' (first at %s:%d)",
                     esb_route_id(r), p->rmeta[i].file, p->rmeta[i].line);
        esb_route_free(r);
        return;
    }
    c->routes = esb_realloc(c->routes, (c->nroutes + 1) * sizeof(*c->routes));
    p->rmeta = esb_realloc(p->rmeta, (c->nroutes + 1) * sizeof(*p->rmeta));
    p->rmeta[c->nroutes] = (struct route_meta){.file = keep_file(p, it->file), .line = line};
    c->routes[c->nroutes++] = r;
}

static int streq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Checks across routes: one consumer per inbound endpoint (and path) and per
 * queue, and every queue sent to has a consumer. */
static void check_routes(struct loader *l)
{
    struct config_priv *p = l->p;
    struct esb_config *c = &p->pub;

    for (size_t i = 0; i < c->nroutes; i++) {
        const struct esb_route_source *s = esb_route_source(c->routes[i]);
        if (s->kind == ESB_URI_TOPIC) continue; /* every subscriber gets a copy */
        for (size_t j = 0; j < i; j++) {
            const struct esb_route_source *o = esb_route_source(c->routes[j]);
            if (o->kind != s->kind || !streq(o->name, s->name) || !streq(o->path, s->path))
                continue;
            const char *rid = esb_route_id(c->routes[j]);
            if (s->kind == ESB_URI_QUEUE)
                esb_diag_add(l->d, p->rmeta[i].file, p->rmeta[i].line, "route",
                             "queue:%s is already consumed by route '%s' (%s:%d); a queue has "
                             "one consuming route (use topic:%s for several)",
                             s->name, rid, p->rmeta[j].file, p->rmeta[j].line, s->name);
            else if (s->path)
                esb_diag_add(l->d, p->rmeta[i].file, p->rmeta[i].line, "route",
                             "endpoint '%s' path '%s' is already taken by route '%s' (%s:%d)",
                             s->name, s->path, rid, p->rmeta[j].file, p->rmeta[j].line);
            else
                esb_diag_add(l->d, p->rmeta[i].file, p->rmeta[i].line, "route",
                             "endpoint '%s' is already consumed by route '%s' (%s:%d)", s->name,
                             rid, p->rmeta[j].file, p->rmeta[j].line);
            break;
        }
    }

    for (size_t i = 0; i < c->nroutes; i++) {
        const char *const *uris;
        const int *lines;
        size_t n = esb_route_targets(c->routes[i], &uris, &lines);
        for (size_t k = 0; k < n; k++) {
            if (strncmp(uris[k], "queue:", 6) != 0) continue;
            const char *q = uris[k] + 6;
            int consumed = 0, reported = 0;
            for (size_t j = 0; j < c->nroutes && !consumed; j++) {
                const struct esb_route_source *s = esb_route_source(c->routes[j]);
                consumed = s->kind == ESB_URI_QUEUE && streq(s->name, q);
            }
            if (consumed) continue;
            /* Once per queue name: the first place that sends to it. */
            for (size_t i2 = 0; i2 <= i && !reported; i2++) {
                const char *const *u2;
                const int *l2;
                size_t n2 = esb_route_targets(c->routes[i2], &u2, &l2);
                for (size_t k2 = 0; k2 < (i2 == i ? k : n2) && !reported; k2++)
                    reported = strcmp(u2[k2], uris[k]) == 0;
            }
            if (reported) continue;
            esb_diag_add(l->d, p->rmeta[i].file, lines[k], "to",
                         "%s has no consuming route (add <route from=\"%s\">, or send to "
                         "topic:%s if nobody needs to consume it)",
                         uris[k], uris[k], q);
        }
    }
}

int esb_config_load(const char *path, struct esb_config **out, struct esb_diags *d)
{
    struct esb__config_src src = {0};
    struct esb_diags none = {0};
    if (!d) d = &none; /* the caller does not want the messages */
    struct config_priv *p = esb_calloc(1, sizeof(*p));
    struct loader l = {.p = p, .d = d};
    struct esb_config *c = &p->pub;
    size_t before = d->n;
    int rc;

    *out = NULL;
    atomic_init(&c->refs, 1);
    c->path = esb_strdup(path);
    c->log_level = esb_strdup("info");

    rc = esb__config_read(path, &src, d);
    if (rc < 0) goto out;

    /* Defaults: the tables' defaults, as if each element were empty. */
    xmlNode *empty = xmlNewNode(NULL, (const xmlChar *)"bus");
    struct esb__config_item def = {.node = empty, .file = path};
    load_bus(&l, &def);
    xmlNodeSetName(empty, (const xmlChar *)"workers");
    load_workers(&l, &def);
    xmlNodeSetName(empty, (const xmlChar *)"lua");
    load_lua(&l, &def);
    xmlFreeNode(empty);
    l.seen_bus = l.seen_workers = l.seen_lua = NULL;

    for (size_t i = 0; i < src.nitems; i++) {
        const struct esb__config_item *it = &src.items[i];
        const char *name = (const char *)it->node->name;
        if (strcmp(name, "log") == 0)
            load_log(&l, it);
        else if (strcmp(name, "bus") == 0)
            load_bus(&l, it);
        else if (strcmp(name, "workers") == 0)
            load_workers(&l, it);
        else if (strcmp(name, "lua") == 0)
            load_lua(&l, it);
        else if (strcmp(name, "admin") == 0)
            load_admin(&l, it);
        else if (strcmp(name, "connectors") == 0)
            load_connectors(&l, it);
        else if (strcmp(name, "route") != 0)
            esb_diag_add(d, it->file, esb__config_line(it->node), name, "unknown element");
    }
    if (c->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n > 0 ? (uint64_t)(n > WORKERS_MAX ? WORKERS_MAX : n) : 1;
    }
    /* Routes after every endpoint is known (a route may precede them). */
    for (size_t i = 0; i < src.nitems; i++)
        if (strcmp((const char *)src.items[i].node->name, "route") == 0)
            load_route(&l, &src.items[i]);
    if (d->n == before) check_routes(&l);
out:
    esb__config_src_free(&src);
    if (d->n > before || rc < 0) {
        if (d->n == before) esb_diag_add(d, path, 0, NULL, "cannot load the configuration");
        config_free(p);
        esb_diags_free(&none);
        return ESB_EINVAL;
    }
    *out = c;
    return 0;
}

/* ---- the reference (docs/config.md) ---- */

static const char doc_intro[] =
    "<!-- Generated by `esbctl config-doc` from the attribute tables; do not edit "
    "(tests/unit/test-config checks this file against them). -->\n"
    "# Configuration reference\n"
    "\n"
    "esbd reads one XML file (more with `<include>`) in the namespace `urn:esb:config:1`. "
    "Check a file without running it with `esbctl check FILE` (or `esbd --check FILE`); a "
    "reload (SIGHUP) that fails keeps the running configuration.\n"
    "\n"
    "Loading runs in this order, and every error names `FILE:LINE` and the element:\n"
    "\n"
    "1. Parse. No DTDs, no entities, no network: a file with a `<!DOCTYPE>` is refused.\n"
    "2. Expand `<include href=\"...\"/>` (top level only) in place; errors inside an "
    "included file name that file.\n"
    "3. Substitute `${NAME}` and `${NAME:-default}` from the environment in every attribute "
    "value. An unset variable without a default is an error. `$$` is a literal `$`; a `$` "
    "before anything else stays as it is (`json=\"$.a\"`).\n"
    "4. Validate the structure against the RelaxNG schema `esb-config.rng` (installed in "
    "the package data directory; `ESB_SCHEMA` overrides its path).\n"
    "5. Check and convert every attribute through the tables below: unknown attributes, "
    "missing required ones, malformed values and values out of range are errors.\n"
    "6. Compile every route, then check across routes: duplicate ids, unknown endpoints, "
    "`from=` an outbound or `to=` an inbound connector, a `queue:NAME` sent to but consumed "
    "by no route (or consumed by two), two routes on one http-in path.\n"
    "\n"
    "Value syntax:\n"
    "\n"
    "| type | syntax |\n"
    "|---|---|\n"
    "| size | bytes: `4096`, `512KB`, `10MB`, `1GB`, `1TB` (also `B`, `KiB`, `MiB`, `GiB`; "
    "1024-based, case-insensitive; decimals like `1.5MB` allowed) |\n"
    "| duration | `500ms`, `5s`, `2m`, `1h`, `1d`; a bare number is milliseconds; decimals "
    "like `1.5s` allowed if the result is whole milliseconds |\n"
    "| bool | `true`/`false`, `yes`/`no`, `1`/`0` |\n"
    "| host:port | `127.0.0.1:8080`, `localhost:8080`, `[::1]:8080`; an IP address or "
    "`localhost` (no name lookups), port 1..65535 |\n"
    "| integer | decimal digits |\n"
    "\n"
    "## Top-level elements\n"
    "\n"
    "### `<esb>`\n"
    "\n"
    "The root: `<esb xmlns=\"urn:esb:config:1\">`. Children in any order: `<include>`, "
    "`<log>`, `<bus>`, `<workers>`, `<lua>`, `<admin>` (each at most once over all files), "
    "`<connectors>` (any number) and `<route>` (any number). An included file has the same "
    "root.\n"
    "\n";

static void doc_connectors(void (*emit)(void *ctx, const char *text), void *ctx)
{
    emit(ctx, "## Connectors\n"
              "\n"
              "`<connectors>` holds one element per endpoint; the element names the connector. "
              "Every endpoint has an `id`, unique across all connectors; routes name it as "
              "`ELEMENT:ID` (`from=\"http-in:web\"`, `uri=\"file-out:archive\"`).\n"
              "\n");
    for (size_t i = 0; esb_connectors[i]; i++) {
        const struct esb_connector_ops *ops = esb_connectors[i];
        char summary[1024];
        snprintf(summary, sizeof(summary), "%s connector. %s",
                 ops->dir == ESB_INBOUND ? "Inbound (use in `from=`)"
                                         : "Outbound (use in `<to uri>`)",
                 ops->summary ? ops->summary : "");
        /* The loader requires id whatever the connector's table says. */
        size_t n = 0;
        while (ops->attrs && ops->attrs[n].name) n++;
        struct esb_attr_spec *specs = esb_calloc(n + 1, sizeof(*specs));
        for (size_t k = 0; k < n; k++) {
            specs[k] = ops->attrs[k];
            if (strcmp(specs[k].name, "id") == 0) specs[k].required = 1;
        }
        esb_attrs_doc(ops->element, summary, specs, emit, ctx);
        free(specs);
    }
}

void esb_config_doc(void (*emit)(void *ctx, const char *text), void *ctx)
{
    emit(ctx, doc_intro);
    esb_attrs_doc("include", "Splices the top-level elements of another config file in here.",
                  include_spec, emit, ctx);
    esb_attrs_doc("log", "Logging of esbd itself.", log_spec, emit, ctx);
    esb_attrs_doc("bus", "The durable bus: where accepted messages are kept until delivered.",
                  bus_spec, emit, ctx);
    esb_attrs_doc("workers", "The worker pool that runs routes and deliveries.", workers_spec, emit,
                  ctx);
    esb_attrs_doc("lua",
                  "Lua scripts (`<transform lua>`, `lua=` predicates): their directory and the "
                  "limits of each call, per worker. See docs/lua-host.md.",
                  lua_spec, emit, ctx);
    esb_attrs_doc("admin",
                  "The admin API (HTTP+JSON, bearer token; see admin-api.md) that `esbctl` "
                  "talks to. Without this element esbd serves no admin API.",
                  admin_spec, emit, ctx);
    doc_connectors(emit, ctx);
    esb_route_doc(emit, ctx);
}
