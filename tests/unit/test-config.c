/* test-config.c - loading configuration files (tests/data/config/): a full
 * good config with includes and ${ENV} (every parsed value and default), and
 * one file per kind of error, each asserting the exact FILE:LINE of its
 * diagnostic; DOCTYPE/XXE/billion-laughs refused unexpanded; include cycles
 * and depth; docs/config.md equal to the generated reference. */
#include "config.h"

#include "conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glob.h>

#include <libxml/parser.h>
#include <libxml/relaxng.h>

#include "conf.h"
#include "../tap.h"
#include "config_internal.h"
#include "connector.h"
#include "file_in.h"
#include "file_out.h"
#include "http_in.h"
#include "route.h"

static char top[4096];     /* the source tree */
static char datadir[4200]; /* tests/data/config */

static char *data_path(const char *name)
{
    static char buf[4400];
    snprintf(buf, sizeof(buf), "%s/%s", datadir, name);
    return buf;
}

/* Load a data file; on failure *d holds the diagnostics. */
static int load(const char *name, struct esb_config **cfg, struct esb_diags *d)
{
    memset(d, 0, sizeof(*d));
    *cfg = (struct esb_config *)d; /* must become NULL on failure */
    int rc = esb_config_load(data_path(name), cfg, d);
    return rc;
}

static void dump(const struct esb_diags *d)
{
    for (size_t i = 0; i < d->n; i++) diag("  %s", d->msgs[i]);
}

/* The file fails to load and some diagnostic begins "FILE:LINE: " (FILE is
 * the data file named rel_file) and contains part. */
static void expect(const char *name, const char *rel_file, int line, const char *part,
                   const char *what)
{
    struct esb_config *cfg;
    struct esb_diags d;
    char prefix[4600];
    int rc = load(name, &cfg, &d);
    snprintf(prefix, sizeof(prefix), "%s:%d: ", data_path(rel_file), line);
    int found = 0;
    for (size_t i = 0; i < d.n; i++)
        if (strncmp(d.msgs[i], prefix, strlen(prefix)) == 0 && strstr(d.msgs[i], part)) found = 1;
    ok(rc == ESB_EINVAL && cfg == NULL, "%s: refused", what);
    ok(found, "%s: diagnostic at %s:%d says '%s'", what, rel_file, line, part);
    if (!found) dump(&d);
    esb_diags_free(&d);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void test_good_full(void)
{
    struct esb_config *cfg;
    struct esb_diags d;
    int rc = load("good-full.xml", &cfg, &d);
    ok(rc == 0 && cfg && d.n == 0, "good-full.xml loads");
    if (rc != 0) {
        dump(&d);
        esb_diags_free(&d);
        return;
    }
    ok(strcmp(cfg->path, data_path("good-full.xml")) == 0, "path kept");
    ok(cfg->log_level && strcmp(cfg->log_level, "debug") == 0, "<log level>");
    ok(strcmp(cfg->bus.dir, "var/test-bus") == 0, "<bus dir> from ${VAR:-default}");
    ok(cfg->bus.fsync == ESB_FSYNC_INTERVAL && cfg->bus.fsync_interval_ms == 250,
       "<bus fsync=interval:250>");
    ok(cfg->bus.segment_size == 8u << 20, "<bus segment-size=8MB>");
    ok(cfg->bus.max_disk == 1u << 30, "<bus max-disk=1GB>");
    ok(cfg->bus.disk_low_water == 0, "<bus disk-low-water=0>");
    ok(cfg->bus.queue_max_entries == 5000, "<bus queue-max-entries>");
    ok(cfg->bus.queue_max_bytes == 512u << 20, "<bus queue-max-bytes=512MiB>");
    ok(cfg->workers == 3, "<workers count=3>");

    /* Endpoints in file order, the included file's in place of <include>. */
    ok(cfg->nendpoints == 3, "3 endpoints");
    if (cfg->nendpoints == 3) {
        ok(strcmp(cfg->endpoints[0]->id, "web") == 0 &&
               strcmp(cfg->endpoints[1]->id, "legacy") == 0 &&
               strcmp(cfg->endpoints[2]->id, "archive") == 0,
           "endpoint order: web, legacy, archive");
    }
    struct esb_endpoint *web = esb_config_endpoint(cfg, "web");
    ok(web && web->ops == esb_connector_find("http-in") && web->line == 9 &&
           strcmp(web->file, data_path("good-full.xml")) == 0,
       "http-in web: connector, file and line 9");
    if (web) {
        const struct esb_http_in_conf *h = web->conf;
        ok(strcmp(h->listen, "127.0.0.1:18080") == 0, "http-in listen with ${ESB_TEST_PORT}");
        ok(h->max_body == 1u << 20 && h->timeout == 1500, "http-in max-body, timeout=1.5s");
        ok(h->max_connections == 512 && h->per_ip_connections == 256 && h->threads == 2,
           "http-in defaults");
    }
    struct esb_endpoint *legacy = esb_config_endpoint(cfg, "legacy");
    if (legacy) {
        const struct esb_file_in_conf *f = legacy->conf;
        ok(strcmp(f->dir, "var/inbox") == 0 && strcmp(f->pattern, "*.csv") == 0 &&
               f->stable_for == 2000,
           "file-in given values");
        ok(f->poll_interval == 500 && f->max_file_size == 64u << 20 && f->exclude[0] == '\0' &&
               strcmp(f->content_type, "application/octet-stream") == 0,
           "file-in defaults");
    } else {
        ok(0, "file-in legacy found");
    }
    struct esb_endpoint *archive = esb_config_endpoint(cfg, "archive");
    ok(archive && archive->line == 4 && ends_with(archive->file, "/inc/good-endpoints.xml"),
       "an endpoint from an include of an include keeps its own file and line (%s:%d)",
       archive ? archive->file : "-", archive ? archive->line : 0);
    if (archive) {
        const struct esb_file_out_conf *f = archive->conf;
        ok(strcmp(f->name, "price-$-{id}.json") == 0, "$$ is a literal $ (%s)", f->name);
        ok(f->overwrite == 1, "${UNSET:-yes} default used");
    }
    ok(esb_config_endpoint(cfg, "nope") == NULL, "unknown endpoint lookup: NULL");

    /* Routes: the included ones where the <include> was. */
    ok(cfg->nroutes == 4, "4 routes");
    static const char *const order[] = {"big", "eu", "orders", "csv"};
    int in_order = cfg->nroutes == 4;
    for (size_t i = 0; i < cfg->nroutes && in_order; i++)
        in_order = strcmp(esb_route_id(cfg->routes[i]), order[i]) == 0;
    ok(in_order, "route order: big, eu (included), orders, csv");
    const struct esb_route *orders = esb_config_route(cfg, "orders");
    ok(orders && esb_route_source(orders)->kind == ESB_URI_INBOUND &&
           strcmp(esb_route_source(orders)->path, "/orders") == 0,
       "route lookup: orders from http-in with its path");
    ok(orders && esb_route_retry(orders)->max_attempts == 3, "route's <retry> compiled");
    ok(esb_config_route(cfg, "missing") == NULL, "unknown route lookup: NULL");

    struct esb_bus_opts o = {.compact_interval_ms = 77};
    esb_config_bus_opts(cfg, &o);
    ok(o.dir == cfg->bus.dir && o.fsync == ESB_FSYNC_INTERVAL && o.fsync_interval_ms == 250 &&
           o.segment_size == 8u << 20 && o.max_disk == 1u << 30 && o.disk_low_water == 0 &&
           o.queue_max_entries == 5000 && o.queue_max_bytes == 512u << 20,
       "esb_config_bus_opts copies the bus options");
    ok(o.compact_interval_ms == 77, "esb_config_bus_opts leaves other options alone");

    ok(esb_config_ref(cfg) == cfg && cfg->refs == 2, "ref");
    esb_config_unref(cfg);
    ok(cfg->refs == 1, "unref");
    esb_config_unref(cfg);
    esb_config_unref(NULL);
    esb_diags_free(&d);

    /* A set variable wins over the default, and its value is not expanded again. */
    setenv("ESB_TEST_BUS_DIR", "x${HOME}$$", 1);
    rc = load("good-full.xml", &cfg, &d);
    ok(rc == 0 && strcmp(cfg->bus.dir, "x${HOME}$$") == 0,
       "${VAR:-default} with VAR set uses VAR, verbatim");
    if (rc == 0) esb_config_unref(cfg);
    esb_diags_free(&d);
    unsetenv("ESB_TEST_BUS_DIR");
}

static void test_defaults(void)
{
    struct esb_config *cfg;
    struct esb_diags d;
    int rc = load("good-minimal.xml", &cfg, &d);
    ok(rc == 0, "good-minimal.xml (an empty <esb/>) loads");
    if (rc != 0) {
        dump(&d);
        esb_diags_free(&d);
        return;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    ok(strcmp(cfg->log_level, "info") == 0, "default log level info");
    ok(strcmp(cfg->bus.dir, "var/bus") == 0 && cfg->bus.fsync == ESB_FSYNC_ALWAYS &&
           cfg->bus.fsync_interval_ms == 0,
       "default bus dir var/bus, fsync always");
    ok(cfg->bus.segment_size == 64u << 20 && cfg->bus.max_disk == 0 &&
           cfg->bus.disk_low_water == 256u << 20,
       "default segment-size 64MB, max-disk 0, disk-low-water 256MB");
    ok(cfg->bus.queue_max_entries == 1000000 && cfg->bus.queue_max_bytes == 1u << 30,
       "default queue limits 1000000 entries, 1GB");
    ok(cfg->workers == (uint64_t)(cpus > 0 ? cpus : 1), "default workers = online CPUs (%ld)",
       cpus);
    ok(cfg->nendpoints == 0 && cfg->nroutes == 0, "no endpoints, no routes");
    esb_config_unref(cfg);
    esb_diags_free(&d);
}

static void test_errors(void)
{
    expect("bad-malformed.xml", "bad-malformed.xml", 5, "not well-formed XML", "malformed XML");
    expect("bad-root.xml", "bad-root.xml", 3, "root element must be <esb", "wrong root element");
    expect("bad-namespace.xml", "bad-namespace.xml", 2, "namespace is missing or wrong",
           "wrong namespace");
    expect("bad-doctype.xml", "bad-doctype.xml", 2, "DOCTYPE is not allowed", "DOCTYPE");
    expect("bad-entity-no-doctype.xml", "bad-entity-no-doctype.xml", 4,
           "Entity 'undeclared' not defined", "undeclared entity");
    expect("bad-unknown-element.xml", "bad-unknown-element.xml", 4,
           "element <frobnicate>: not allowed here", "unknown element");
    expect("bad-unknown-attribute.xml", "bad-unknown-attribute.xml", 5,
           "element <bus>: attribute 'segment-sise': unknown attribute", "unknown attribute");
    expect("bad-duration.xml", "bad-duration.xml", 5,
           "attribute 'timeout': not a duration (or too large) (got '30 seconds'", "bad duration");
    expect("bad-size.xml", "bad-size.xml", 4, "attribute 'max-disk': not a size", "bad size");
    expect("bad-duplicate-endpoint.xml", "bad-duplicate-endpoint.xml", 6,
           "duplicate endpoint id 'out'", "duplicate endpoint id");
    expect("bad-duplicate-route.xml", "bad-duplicate-route.xml", 6, "duplicate route id 'r'",
           "duplicate route id");
    expect("bad-unknown-endpoint.xml", "bad-unknown-endpoint.xml", 5, "nope",
           "unknown endpoint in to=");
    expect("bad-queue-no-consumer.xml", "bad-queue-no-consumer.xml", 7,
           "queue:lost has no consuming route", "queue with no consumer");
    expect("bad-queue-two-consumers.xml", "bad-queue-two-consumers.xml", 5,
           "queue:in is already consumed by route 'a'", "queue with two consumers");
    expect("bad-http-path-twice.xml", "bad-http-path-twice.xml", 9,
           "path '/orders' is already taken by route 'a'", "two routes on one http-in path");
    expect("bad-include-cycle.xml", "inc/cycle-b.xml", 4, "include cycle", "include cycle");
    expect("bad-include-error.xml", "inc/broken.xml", 5,
           "element <file-out>: attribute 'overwrite': not a boolean",
           "error in an included file names that file");
    expect("bad-include-missing.xml", "bad-include-missing.xml", 4,
           "inc/does-not-exist.xml': No such file or directory", "missing include");
    expect("bad-env-unset.xml", "bad-env-unset.xml", 4,
           "attribute 'listen': environment variable ESB_TEST_UNSET_HOST is not set",
           "unset ${VAR}");
    expect("bad-twice.xml", "inc/another-bus.xml", 3, "given twice", "<bus> twice across files");
    expect("bad-route-no-id.xml", "bad-route-no-id.xml", 4, "element <route>: missing",
           "route without id");
    expect("bad-predicate.xml", "bad-predicate.xml", 5, "attribute 'xpath' is not allowed here",
           "two predicates on one filter");
}

static void test_hostile(void)
{
    struct esb_config *cfg;
    struct esb_diags d;

    /* XXE: refused at the DOCTYPE; the file's content never shows up. */
    int rc = load("bad-xxe.xml", &cfg, &d);
    int leaked = 0, doctype = 0;
    for (size_t i = 0; i < d.n; i++) {
        if (strstr(d.msgs[i], "root:")) leaked = 1;
        if (strstr(d.msgs[i], "bad-xxe.xml:2: a DOCTYPE is not allowed")) doctype = 1;
    }
    ok(rc == ESB_EINVAL && doctype && !leaked,
       "external entity: refused at the DOCTYPE, nothing read");
    esb_diags_free(&d);

    /* Billion laughs: refused at the DOCTYPE, before any entity is declared. */
    uint64_t t0 = esb_mono_ns();
    rc = load("bad-billion-laughs.xml", &cfg, &d);
    uint64_t ms = (esb_mono_ns() - t0) / 1000000;
    ok(rc == ESB_EINVAL && d.n == 1 && strstr(d.msgs[0], "bad-billion-laughs.xml:2: a DOCTYPE"),
       "billion laughs: one diagnostic, at the DOCTYPE");
    ok(ms < 2000, "billion laughs: refused at once (%llu ms)", (unsigned long long)ms);
    esb_diags_free(&d);
}

/* ---- generated files (in a temporary directory) ---- */

static char tmpdir[64];

static char *tmp_path(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof(buf), "%s/%s", tmpdir, name);
    return buf;
}

static void write_tmp(const char *name, const char *fmt, ...) ESB_PRINTF(2, 3);
static void write_tmp(const char *name, const char *fmt, ...)
{
    FILE *f = fopen(tmp_path(name), "w");
    va_list ap;
    if (!f) bail("cannot write %s: %s", tmp_path(name), strerror(errno));
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

static int load_tmp(const char *name, struct esb_config **cfg, struct esb_diags *d)
{
    memset(d, 0, sizeof(*d));
    return esb_config_load(tmp_path(name), cfg, d);
}

/* Some diagnostic equals want exactly. */
static int has_diag(const struct esb_diags *d, const char *want)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->msgs[i], want) == 0) return 1;
    return 0;
}

#define HEAD "<?xml version=\"1.0\"?>\n<esb xmlns=\"urn:esb:config:1\">\n"

static void test_generated(void)
{
    struct esb_config *cfg;
    struct esb_diags d;
    char want[512];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/esb-test-config-XXXXXX");
    if (!mkdtemp(tmpdir)) bail("mkdtemp: %s", strerror(errno));

    /* Include depth: 8 levels of nesting load, 9 do not. */
    for (int i = 0; i <= 9; i++) {
        char name[32];
        snprintf(name, sizeof(name), "d%d.xml", i);
        if (i < 9)
            write_tmp(name, HEAD "  <include href=\"d%d.xml\"/>\n</esb>\n", i + 1);
        else
            write_tmp(name, HEAD "  <workers count=\"9\"/>\n</esb>\n");
    }
    int rc = load_tmp("d1.xml", &cfg, &d);
    ok(rc == 0 && cfg->workers == 9, "includes nested 8 deep load");
    if (rc == 0) esb_config_unref(cfg);
    esb_diags_free(&d);
    rc = load_tmp("d0.xml", &cfg, &d);
    snprintf(want, sizeof(want),
             "%s/d8.xml:3: element <include>: includes nested deeper than 8 levels (at "
             "'%s/d9.xml')",
             tmpdir, tmpdir);
    ok(rc == ESB_EINVAL && has_diag(&d, want), "includes nested 9 deep: refused at d8.xml:3");
    if (!has_diag(&d, want)) dump(&d);
    esb_diags_free(&d);

    /* ${...} syntax errors name the attribute. */
    write_tmp("env1.xml", HEAD "\n  <bus dir=\"a${UNCLOSED\"/>\n</esb>\n");
    rc = load_tmp("env1.xml", &cfg, &d);
    snprintf(want, sizeof(want),
             "%s/env1.xml:4: element <bus>: attribute 'dir': unterminated '${' (a literal '$' "
             "is written '$$')",
             tmpdir);
    ok(rc == ESB_EINVAL && has_diag(&d, want), "unterminated ${ at line 4");
    if (!has_diag(&d, want)) dump(&d);
    esb_diags_free(&d);
    write_tmp("env2.xml", HEAD "  <bus dir=\"${1BAD}\"/>\n</esb>\n");
    rc = load_tmp("env2.xml", &cfg, &d);
    ok(rc == ESB_EINVAL && d.n == 1 &&
           strstr(d.msgs[0], "env2.xml:3: element <bus>: attribute "
                             "'dir': bad variable reference '${1BAD}'"),
       "bad variable name");
    esb_diags_free(&d);

    /* A self-include is a cycle too. */
    write_tmp("self.xml", HEAD "  <include href=\"self.xml\"/>\n</esb>\n");
    rc = load_tmp("self.xml", &cfg, &d);
    ok(rc == ESB_EINVAL && d.n == 1 &&
           strstr(d.msgs[0], "self.xml:3: element <include>: include cycle"),
       "self-include is a cycle");
    esb_diags_free(&d);

    /* The list of diagnostics is capped. */
    {
        FILE *f = fopen(tmp_path("many.xml"), "w");
        if (!f) bail("cannot write many.xml");
        fprintf(f, HEAD "<connectors>\n");
        for (int i = 0; i < 150; i++) fprintf(f, "<ftp-in id=\"f%d\"/>\n", i);
        fprintf(f, "</connectors>\n</esb>\n");
        fclose(f);
    }
    rc = load_tmp("many.xml", &cfg, &d);
    ok(rc == ESB_EINVAL && d.n == ESB__CONFIG_MAX_DIAGS + 1 &&
           strstr(d.msgs[d.n - 1], "too many errors"),
       "150 errors: %d reported, then 'too many errors'", ESB__CONFIG_MAX_DIAGS);
    esb_diags_free(&d);

    /* Not a file. */
    rc = load_tmp("", &cfg, &d);
    ok(rc == ESB_EINVAL && d.n == 1 && strstr(d.msgs[0], "cannot read"), "a directory: refused");
    esb_diags_free(&d);
    rc = load_tmp("absent.xml", &cfg, &d);
    ok(rc == ESB_EINVAL && d.n == 1 && strstr(d.msgs[0], "absent.xml: cannot read: No such file"),
       "a missing file: refused (%s)", d.n ? d.msgs[0] : "");
    esb_diags_free(&d);

    cfg = (struct esb_config *)&d;
    rc = esb_config_load(tmp_path("absent.xml"), &cfg, NULL);
    ok(rc == ESB_EINVAL && cfg == NULL, "NULL diagnostics list: still fails cleanly");

    /* The schema is found without ESB_SCHEMA (uninstalled build), and a
     * wrong ESB_SCHEMA is reported. */
    char *saved = strdup(getenv("ESB_SCHEMA"));
    unsetenv("ESB_SCHEMA");
    const char *sp = esb__config_schema_path();
    ok(ends_with(sp, "esb-config.rng") && access(sp, R_OK) == 0, "schema found: %s", sp);
    rc = load("good-minimal.xml", &cfg, &d);
    ok(rc == 0, "loads without ESB_SCHEMA");
    if (rc == 0) esb_config_unref(cfg);
    esb_diags_free(&d);
    setenv("ESB_SCHEMA", "/nonexistent/esb-config.rng", 1);
    rc = load("good-minimal.xml", &cfg, &d);
    ok(rc == ESB_EINVAL && d.n == 1 &&
           strstr(d.msgs[0], "/nonexistent/esb-config.rng: cannot "
                             "read the config schema"),
       "a missing schema is reported");
    esb_diags_free(&d);
    setenv("ESB_SCHEMA", saved, 1);
    free(saved);

    static const char *const names[] = {"env1.xml", "env2.xml", "self.xml", "many.xml"};
    for (size_t i = 0; i < ESB_ARRAY_LEN(names); i++) unlink(tmp_path(names[i]));
    for (int i = 0; i <= 9; i++) {
        char name[32];
        snprintf(name, sizeof(name), "d%d.xml", i);
        unlink(tmp_path(name));
    }
    rmdir(tmpdir);
}

/* ---- the shipped examples and the vocabulary ---- */

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    struct esb_buf b;
    char chunk[4096];
    size_t n;
    if (!f) return NULL;
    esb_buf_init(&b, 1u << 20);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (esb_buf_add(&b, chunk, n) < 0) break;
    fclose(f);
    if (esb_buf_add(&b, "", 1) < 0) {
        esb_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

static void test_examples(void)
{
    char pat[4300];
    glob_t g;
    snprintf(pat, sizeof(pat), "%s/examples/*.xml", top);
    int n = glob(pat, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
    ok(n > 0, "examples/*.xml found (%d)", n);
    for (int i = 0; i < n; i++) {
        struct esb_config *cfg;
        struct esb_diags d = {0};
        int rc = esb_config_load(g.gl_pathv[i], &cfg, &d);
        ok(rc == 0, "example %s loads", strrchr(g.gl_pathv[i], '/') + 1);
        if (rc == 0) esb_config_unref(cfg);
        dump(&d);
        esb_diags_free(&d);
    }
    if (n > 0) globfree(&g);

    /* The example in docs/config-vocabulary.md matches the schema. */
    char path[4300];
    snprintf(path, sizeof(path), "%s/docs/config-vocabulary.md", top);
    char *md = read_text(path);
    char *start = md ? strstr(md, "```xml\n") : NULL;
    char *end = start ? strstr(start + 7, "```") : NULL;
    xmlDoc *doc = NULL;
    if (end)
        doc = xmlReadMemory(start + 7, (int)(end - start - 7), "vocabulary.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlRelaxNGParserCtxtPtr pc = xmlRelaxNGNewParserCtxt(getenv("ESB_SCHEMA"));
    xmlRelaxNGPtr schema = pc ? xmlRelaxNGParse(pc) : NULL;
    xmlRelaxNGValidCtxtPtr vc = schema ? xmlRelaxNGNewValidCtxt(schema) : NULL;
    ok(doc && vc && xmlRelaxNGValidateDoc(vc, doc) == 0,
       "the docs/config-vocabulary.md example matches the schema");
    if (vc) xmlRelaxNGFreeValidCtxt(vc);
    if (schema) xmlRelaxNGFree(schema);
    if (pc) xmlRelaxNGFreeParserCtxt(pc);
    if (doc) xmlFreeDoc(doc);
    free(md);
}

/* ---- docs/config.md is the generated reference ---- */

static void collect(void *ctx, const char *text)
{
    struct esb_buf *b = ctx;
    if (esb_buf_add(b, text, strlen(text)) < 0) bail("reference larger than 1 MiB");
}

static void test_doc(void)
{
    struct esb_buf gen;
    char path[4200];
    esb_buf_init(&gen, 1u << 20);
    esb_config_doc(collect, &gen);
    if (esb_buf_add(&gen, "", 1) < 0) bail("reference too large");
    const char *g = (const char *)gen.data;

    ok(strstr(g, "### `<bus>`") && strstr(g, "| `segment-size` | size | `64MB` |"),
       "reference has the <bus> table");
    int all = 1;
    for (size_t i = 0; esb_connectors[i]; i++) {
        char h[100];
        snprintf(h, sizeof(h), "### `<%s>`", esb_connectors[i]->element);
        if (!strstr(g, h)) all = 0;
    }
    ok(all, "reference has every registered connector");
    ok(strstr(g, "<route") != NULL, "reference has the route vocabulary");

    snprintf(path, sizeof(path), "%s/docs/config.md", top);
    FILE *f = fopen(path, "r");
    struct esb_buf file;
    esb_buf_init(&file, 1u << 20);
    if (f) {
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            if (esb_buf_add(&file, chunk, n) < 0) break;
        fclose(f);
    }
    int same = file.len == gen.len - 1 && memcmp(file.data, gen.data, file.len) == 0;
    ok(same, "docs/config.md is exactly the output of `esbctl config-doc`");
    if (!same) {
        size_t line = 1, i = 0;
        while (i < file.len && i < gen.len - 1 && file.data[i] == gen.data[i])
            if (file.data[i++] == '\n') line++;
        diag("docs/config.md differs from the generated reference at line %zu; regenerate it:",
             line);
        diag("  ./esbctl config-doc > docs/config.md");
    }
    esb_buf_free(&file);
    esb_buf_free(&gen);
}

int main(void)
{
    const char *t = getenv("top_srcdir");
    snprintf(top, sizeof(top), "%s", t && *t ? t : ESB_SRCDIR);
    snprintf(datadir, sizeof(datadir), "%s/tests/data/config", top);
    char schema[4300];
    snprintf(schema, sizeof(schema), "%s/routes/esb-config.rng", top);
    setenv("ESB_SCHEMA", schema, 1);
    setenv("ESB_TEST_PORT", "18080", 1);
    unsetenv("ESB_TEST_BUS_DIR");
    unsetenv("ESB_TEST_UNSET_OW");
    unsetenv("ESB_TEST_UNSET_HOST");

    test_good_full();
    test_defaults();
    test_errors();
    test_hostile();
    test_generated();
    test_examples();
    test_doc();
    xmlCleanupParser();
    return tap_done();
}
