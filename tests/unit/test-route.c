/* test-route.c - the router: compile errors with their exact lines, routing
 * by XPath, JSON path, regex and header, filter, choice, multicast,
 * set-header and copy-on-write, and hostile bodies (malformed XML/JSON,
 * billion laughs, external entities, deep nesting, ReDoS) that must give a
 * routing error with a reason, never a crash, a hang or a leaked file.
 *
 * The endpoints are built by hand (struct esb_config is public) with small
 * static connector ops: only element and direction matter to the router. */
#include "config.h"

#include "conf.h"
#include "connector.h"
#include "log.h"
#include "msg.h"
#include "predicate.h"
#include "route.h"
#include "../tap.h"

#include <fcntl.h>
#include <libxml/parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct esb_connector_ops http_in = {.element = "http-in", .dir = ESB_INBOUND};
static const struct esb_connector_ops file_in = {.element = "file-in", .dir = ESB_INBOUND};
static const struct esb_connector_ops file_out = {.element = "file-out", .dir = ESB_OUTBOUND};
static const struct esb_connector_ops http_out = {.element = "http-out", .dir = ESB_OUTBOUND};
static char id_web[] = "web", id_legacy[] = "legacy", id_archive[] = "archive", id_crm[] = "crm";
static struct esb_endpoint ep_web = {.id = id_web, .ops = &http_in};
static struct esb_endpoint ep_legacy = {.id = id_legacy, .ops = &file_in};
static struct esb_endpoint ep_archive = {.id = id_archive, .ops = &file_out};
static struct esb_endpoint ep_crm = {.id = id_crm, .ops = &http_out};
static struct esb_endpoint *eps[] = {&ep_web, &ep_legacy, &ep_archive, &ep_crm};
static struct esb_config cfg = {.endpoints = eps, .nendpoints = 4};

static struct esb_route_scratch *scratch;
static const char *datadir;
static char passwd_line[128]; /* first line of /etc/passwd: must never show up */

/* Compile a route from XML text (line 1 is the first line of xml). */
static struct esb_route *compile(const char *xml, struct esb_diags *d)
{
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "t.xml", NULL, XML_PARSE_NONET);
    if (!doc) bail("test XML does not parse: %s", xml);
    struct esb_route *r = NULL;
    int rc = esb_route_compile(xmlDocGetRootElement(doc), "t.xml", &cfg, &r, d);
    xmlFreeDoc(doc);
    if ((rc == 0) != (r != NULL)) bail("rc %d disagrees with the route", rc);
    return r;
}

static struct esb_route *must_compile(const char *xml)
{
    struct esb_diags d = {0};
    struct esb_route *r = compile(xml, &d);
    if (!r) bail("route does not compile: %s", d.n ? d.msgs[0] : "?");
    esb_diags_free(&d);
    return r;
}

/* The route does not compile and some diagnostic contains want. */
static void compile_fails(const char *xml, const char *want, const char *name)
{
    struct esb_diags d = {0};
    struct esb_route *r = compile(xml, &d);
    int found = 0;
    for (size_t i = 0; i < d.n; i++) found |= strstr(d.msgs[i], want) != NULL;
    if (!ok(!r && found, "compile error: %s", name)) {
        diag("want: %s", want);
        for (size_t i = 0; i < d.n; i++) diag("got:  %s", d.msgs[i]);
    }
    esb_route_free(r);
    esb_diags_free(&d);
}

static struct esb_msg *msg_of(const char *body, const char *ct)
{
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_body(m, body, strlen(body));
    esb_msg_set_content_type(m, ct);
    return m;
}

static struct esb_msg *msg_file(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/data/route/%s", datadir, name);
    FILE *f = fopen(path, "rb");
    if (!f) bail("cannot open %s", path);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return msg_of(buf, strstr(name, ".json") ? "application/json" : "application/xml");
}

/* Run r on m; "bus1 bus2 ..." of the outputs, "DROPPED" or "ERROR: reason". */
static const char *route_str(const struct esb_route *r, const struct esb_msg *m,
                             struct esb_route_result *keep)
{
    static char out[1024];
    struct esb_route_result res = {0};
    esb_route_run(r, scratch, m, &res);
    out[0] = '\0';
    if (res.error) {
        snprintf(out, sizeof(out), "ERROR: %s", res.reason);
    } else if (res.dropped && res.nout == 0) {
        snprintf(out, sizeof(out), "DROPPED");
    } else {
        for (size_t i = 0; i < res.nout; i++) {
            if (i) strcat(out, " ");
            strncat(out, res.out[i].bus_name, sizeof(out) - strlen(out) - 1);
        }
    }
    if (keep)
        *keep = res;
    else
        esb_route_result_clear(&res);
    return out;
}

static void routes_to(const struct esb_route *r, struct esb_msg *m, const char *want,
                      const char *name)
{
    const char *got = route_str(r, m, NULL);
    if (!ok(strcmp(got, want) == 0, "%s -> %s", name, want)) diag("got: %s", got);
    esb_msg_unref(m);
}

/* The route fails on m with a reason containing each of want1, want2. */
static void route_error(const struct esb_route *r, struct esb_msg *m, const char *want1,
                        const char *want2, const char *name)
{
    struct esb_route_result res = {0};
    esb_route_run(r, scratch, m, &res);
    int good = res.error && res.nout == 0 && strstr(res.reason, want1) &&
               (!want2 || strstr(res.reason, want2)) && !strstr(res.reason, passwd_line);
    if (ok(good, "%s: routing error", name))
        diag("reason: %s", res.reason);
    else
        diag("error=%d reason: %s", res.error, res.reason);
    esb_route_result_clear(&res);
    esb_msg_unref(m);
}

static void test_compile_errors(void)
{
    compile_fails("<route id='r' from='queue:in'>\n"
                  "  <to uri='queue:a'/>\n"
                  "  <enrich with='x'/>\n"
                  "</route>",
                  "t.xml:3: element <enrich>: unknown step (expected one of choice, filter, "
                  "set-header, log, dedupe, multicast, transform, to)",
                  "unknown step, line 3, the message names every step (dedupe too)");
    compile_fails("<route id='r' from='queue:in'>\n<choice>\n"
                  "<when xpath='/a' json='$.a' equals='x'><to uri='queue:a'/></when>\n"
                  "</choice></route>",
                  "t.xml:3: element <when>: <when> has two predicates (xpath= and json=); use "
                  "exactly one",
                  "two predicates on a when");
    compile_fails("<route id='r' from='queue:in'>\n<choice>\n\n\n<when><to uri='queue:a'/></when>\n"
                  "</choice></route>",
                  "t.xml:5: element <when>: <when> needs a predicate: xpath=, json=, regex=, "
                  "header= or lua=",
                  "a when without predicate");
    compile_fails("<route id='r' from='queue:in'>\n<filter xpath='/order[total &gt;'/>\n</route>",
                  "t.xml:2: element <filter>: bad xpath \"/order[total >\"", "bad xpath");
    compile_fails("<route id='r' from='queue:in'>\n\n<filter regex='(unclosed'/>\n</route>",
                  "t.xml:3: element <filter>: bad regex in regex=\"(unclosed\": missing closing "
                  "parenthesis",
                  "bad regex");
    compile_fails("<route id='r' from='queue:in'>\n<filter header='x' matches='a{2,1}'/>\n</route>",
                  "t.xml:2: element <filter>: bad regex in matches=", "bad matches= regex");
    compile_fails("<route id='r' from='queue:in'>\n<choice>\n<when json='$.a[x]' equals='1'/>\n"
                  "</choice></route>",
                  "t.xml:3: element <when>: $.a[x]: expected a number or * at column 5",
                  "bad json path");
    compile_fails("<route id='r' from='queue:in'>\n<to uri='file-out:nope'/>\n</route>",
                  "t.xml:2: element <to>: uri=\"file-out:nope\": unknown endpoint 'nope'",
                  "unknown endpoint in to");
    compile_fails("<route id='r' from='http-in:nope' path='/x'>\n</route>",
                  "t.xml:1: element <route>: from=\"http-in:nope\": unknown endpoint 'nope'",
                  "unknown endpoint in from");
    compile_fails("<route id='r' from='queue:in'>\n\n\n<to uri='http-in:web'/>\n</route>",
                  "t.xml:4: element <to>: uri=\"http-in:web\": <http-in id=\"web\"> is an inbound "
                  "connector; uri= needs an outbound one, queue:NAME or topic:NAME",
                  "to an inbound connector");
    compile_fails("<route id='r' from='file-out:archive'>\n</route>",
                  "t.xml:1: element <route>: from=\"file-out:archive\": <file-out id=\"archive\"> "
                  "is an outbound connector; from= needs an inbound one",
                  "from an outbound connector");
    compile_fails("<route id='r' from='file-in:web'>\n</route>",
                  "from=\"file-in:web\": endpoint 'web' is a <http-in>, not a <file-in>",
                  "scheme that does not match the endpoint");
    compile_fails("<route id='r' from='http-in:web'>\n<to uri='queue:a'/>\n</route>",
                  "t.xml:1: element <route>: attribute 'path': required for an http-in source",
                  "missing path for http-in");
    compile_fails("<route id='r' from='http-in:web' path='orders'/>",
                  "attribute 'path': must start with '/'", "path without a leading /");
    compile_fails("<route id='r' from='file-in:legacy' path='/x'/>",
                  "attribute 'path': only for an http-in source", "path on a non-http source");
    compile_fails("<route id='r' from='ftp'/>", "from=\"ftp\": expected queue:NAME, topic:NAME",
                  "from without a scheme");
    compile_fails("<route id='r' from='queue:a b'/>", "a queue name is 1 to 200", "bad queue name");
    compile_fails("<route id='a/b' from='queue:in'/>", "attribute 'id': 1 to 200 letters",
                  "bad route id");
    compile_fails("<route from='queue:in'/>", "attribute 'id': required but missing", "missing id");
    compile_fails("<route id='r' from='queue:in'>\n<to uri='queue:a' url='x'/>\n</route>",
                  "t.xml:2: element <to>: attribute 'url': unknown attribute", "unknown attribute");
    compile_fails("<route id='r' from='queue:in'>\n<filter json='$.a'/>\n</route>",
                  "t.xml:2: element <filter>: json= needs one of equals=, matches=, gt=, lt= or "
                  "exists=",
                  "json without an operator");
    compile_fails(
        "<route id='r' from='queue:in'>\n<filter json='$.a' equals='1' gt='2'/>\n</route>",
        "json= takes only one of", "json with two operators");
    compile_fails("<route id='r' from='queue:in'>\n<filter json='$.a' gt='many'/>\n</route>",
                  "gt=\"many\" is not a number", "gt that is not a number");
    compile_fails("<route id='r' from='queue:in'>\n<filter header='x' gt='1'/>\n</route>",
                  "header= takes equals=, exists= or matches=, not gt=", "header with gt");
    compile_fails("<route id='r' from='queue:in'>\n<filter xpath='/a' equals='1'/>\n</route>",
                  "xpath= takes no equals=", "xpath with equals");
    compile_fails("<route id='r' from='queue:in'>\n<filter header='x' exists='maybe'/>\n</route>",
                  "exists=\"maybe\" is not true or false", "exists that is not a boolean");
    compile_fails("<route id='r' from='queue:in'>\n<choice>\n<otherwise/>\n"
                  "<when header='x' exists='true'/>\n</choice></route>",
                  "t.xml:4: element <when>: <when> after <otherwise>", "when after otherwise");
    compile_fails("<route id='r' from='queue:in'>\n<choice>\n</choice></route>",
                  "t.xml:2: element <choice>: needs at least one <when>", "empty choice");
    compile_fails("<route id='r' from='queue:in'>\n<choice><when header='x' exists='true'>\n"
                  "<retry/></when></choice></route>",
                  "t.xml:3: element <retry>: belongs directly under <route>", "nested retry");
    compile_fails("<route id='r' from='queue:in'>\n<retry/>\n<retry/>\n</route>",
                  "t.xml:3: element <retry>: a route has at most one <retry>", "two retries");
    compile_fails("<route id='r' from='queue:in'>\n<retry initial-delay='10s' max-delay='1s'/>\n"
                  "</route>",
                  "max-delay is shorter than initial-delay", "retry delays upside down");
    compile_fails("<route id='r' from='queue:in'>\n<retry jitter='1.5'/>\n</route>",
                  "t.xml:2: element <retry>: attribute 'jitter'", "jitter out of range");
    compile_fails("<route id='r' from='queue:in'>\n<set-header name='x' value='{bogus}'/>\n"
                  "</route>",
                  "t.xml:2: element <set-header>: attribute 'value': unknown placeholder {bogus}",
                  "set-header with an unknown placeholder");
    compile_fails("<route id='r' from='queue:in'>\n<set-header name='a b' value='1'/>\n</route>",
                  "attribute 'name': not a header name", "set-header with a bad name");
    compile_fails("<route id='r' from='queue:in'>\n<log message='{id' level='loud'/>\n</route>",
                  "t.xml:2: element <log>: attribute 'level'", "log with a bad level");
    compile_fails("<route id='r' from='queue:in'>\n<to uri='queue:a'><to uri='queue:b'/></to>\n"
                  "</route>",
                  "t.xml:2: element <to>: takes no child elements", "to with children");
    compile_fails("<route id='r' from='queue:in'>\n<multicast/>\n</route>",
                  "t.xml:2: element <multicast>: needs at least one step", "empty multicast");

    /* all the errors of a route in one pass */
    struct esb_diags d = {0};
    struct esb_route *r = compile("<route id='r' from='queue:in'>\n<bogus/>\n<to uri='queue:a'/>\n"
                                  "<to uri='nope:x'/>\n</route>",
                                  &d);
    ok(!r && d.n == 2 && strstr(d.msgs[0], "t.xml:2:") && strstr(d.msgs[1], "t.xml:4:"),
       "every error of a route is reported, each with its line");
    esb_diags_free(&d);
}

static void test_compile_ok(void)
{
    struct esb_route *r = must_compile(
        "<route xmlns='urn:esb:config:1' id='orders' from='http-in:web' path='/orders'>\n"
        "  <to uri='queue:a'/>\n"
        "  <choice><when header='x' exists='true'>\n"
        "    <to uri='file-out:archive'/></when></choice>\n"
        "  <to uri='topic:t'/>\n"
        "</route>");
    const struct esb_route_source *s = esb_route_source(r);
    ok(strcmp(esb_route_id(r), "orders") == 0 && s->kind == ESB_URI_INBOUND &&
           strcmp(s->name, "web") == 0 && strcmp(s->path, "/orders") == 0,
       "http-in source with its path (namespaced config)");
    ok(strcmp(esb_route_input(r), "route:orders") == 0, "a connector route consumes route:ID");
    ok(strcmp(esb_route_dlq(r), "dlq.orders") == 0, "the default dead-letter queue is dlq.ID");
    const struct esb_retry_policy *p = esb_route_retry(r);
    ok(p->max_attempts == 5 && p->initial_delay_ms == 1000 && p->multiplier == 2.0 &&
           p->max_delay_ms == 300000 && p->jitter == 0.2,
       "retry defaults: 5 attempts, 1s, x2, 5m, 0.2");
    const char *const *uris;
    const int *lines;
    size_t n = esb_route_targets(r, &uris, &lines);
    ok(n == 3 && strcmp(uris[0], "queue:a") == 0 && lines[0] == 2 &&
           strcmp(uris[1], "file-out:archive") == 0 && lines[1] == 4 &&
           strcmp(uris[2], "topic:t") == 0 && lines[2] == 5,
       "targets in document order with their lines");
    esb_route_free(r);

    r = must_compile("<route id='q' from='queue:big-orders'>\n"
                     "<retry max-attempts='8' initial-delay='500ms' multiplier='3' max-delay='2m' "
                     "jitter='0'/>\n<dead-letter queue='dlq.custom'/>\n</route>");
    p = esb_route_retry(r);
    ok(strcmp(esb_route_input(r), "queue:big-orders") == 0 &&
           strcmp(esb_route_dlq(r), "dlq.custom") == 0 && p->max_attempts == 8 &&
           p->initial_delay_ms == 500 && p->multiplier == 3.0 && p->max_delay_ms == 120000 &&
           p->jitter == 0.0,
       "queue source, <retry> and <dead-letter> values");
    esb_route_free(r);
    r = must_compile("<route id='sub' from='topic:eu-orders'/>");
    ok(strcmp(esb_route_input(r), "topic:eu-orders#sub") == 0 &&
           esb_route_source(r)->kind == ESB_URI_TOPIC,
       "a topic route consumes its subscription topic:NAME#ID");
    esb_route_free(r);
    r = must_compile("<route id='f' from='file-in:legacy'/>");
    ok(esb_route_source(r)->path == NULL && strcmp(esb_route_input(r), "route:f") == 0,
       "file-in source has no path");
    esb_route_free(r);
}

static const char *xml_route =
    "<route id='xml' from='queue:in'>\n"
    "  <choice>\n"
    "    <when xpath='/order/total &gt; 1000'><to uri='queue:big-orders'/></when>\n"
    "    <when xpath=\"/order/region = 'EU'\"><to uri='topic:eu-orders'/></when>\n"
    "    <otherwise><to uri='file-out:archive'/></otherwise>\n"
    "  </choice>\n"
    "</route>";

static void test_xml(void)
{
    struct esb_route *r = must_compile(xml_route);
    routes_to(r, msg_file("order-big.xml"), "queue:big-orders", "XPath: big order");
    routes_to(r, msg_file("order-eu.xml"), "topic:eu-orders", "XPath: EU order");
    routes_to(r, msg_file("order-us.xml"), "deliver:archive", "XPath: otherwise");
    route_error(r, msg_file("malformed.xml"), "step 1 (choice/when xpath, line 3): body is not XML",
                "line 2", "malformed XML");
    {
        /* libxml2 2.9 checks attributes pairwise: refused before parsing */
        size_t n = 300 * 12 + 16;
        char *big = malloc(n), *p = big;
        p += sprintf(p, "<order");
        for (int i = 0; i < 300; i++) p += sprintf(p, " a%d='1'", i);
        sprintf(p, "/>");
        route_error(r, msg_of(big, "application/xml"),
                    "body is not accepted: line 1: more than 256 attributes", NULL,
                    "300 attributes on one element");
        free(big);
    }
    route_error(r, msg_of("", "application/xml"), "body is not XML: empty document", NULL,
                "empty body");
    route_error(r, msg_of("{\"total\": 5000}", "application/json"), "body is not XML", NULL,
                "JSON body on an xpath predicate");
    route_error(r, msg_file("billion-laughs.xml"), "step 1 (choice/when xpath, line 3)",
                "DOCTYPE not allowed", "billion laughs");
    route_error(r, msg_file("xxe.xml"), "DOCTYPE not allowed", NULL, "external entity");
    route_error(r, msg_file("xxe-param.xml"), "DOCTYPE not allowed", NULL, "external DTD");
    route_error(r, msg_of("<order><total>&ext;</total></order>", "application/xml"),
                "body is not XML", "ext", "undeclared entity");

    /* deep XML: libxml2's own depth limit (no HUGE) */
    size_t depth = 100000;
    char *deep = malloc(depth * 7 + 16);
    char *p = deep;
    for (size_t i = 0; i < depth; i++) p += sprintf(p, "<a>");
    for (size_t i = 0; i < depth; i++) p += sprintf(p, "</a>");
    route_error(r, msg_of(deep, "application/xml"), "body is not XML", NULL,
                "100000 nested elements");
    free(deep);
    esb_route_free(r);

    /* the external entity is never read: nothing of /etc/passwd in any output */
    r = must_compile("<route id='x' from='queue:in'>\n"
                     "<set-header name='region' value='{header:none}'/>\n"
                     "<choice><when xpath=\"contains(/order/region, 'root')\">"
                     "<to uri='queue:leak'/></when>"
                     "<otherwise><to uri='queue:ok'/></otherwise></choice></route>");
    struct esb_route_result res;
    struct esb_msg *xxe = msg_file("xxe.xml");
    const char *got = route_str(r, xxe, &res);
    esb_msg_unref(xxe);
    int leaked = strstr(got, passwd_line) != NULL || strstr(got, "queue:leak") != NULL;
    for (size_t i = 0; i < res.nout; i++)
        for (size_t k = 0; k < res.out[i].msg->nheaders; k++)
            leaked |= strstr(res.out[i].msg->headers[k].value, "root:") != NULL;
    ok(res.error && !leaked, "XXE: an error, and the passwd file appears nowhere");
    esb_route_result_clear(&res);
    esb_route_free(r);
}

static void test_xml_parsed_once(void)
{
    /* two xpath predicates on one message share one parsed document */
    struct esb_pred_conf c1 = {.xpath = (char *)"/order/total > 1"};
    struct esb_pred_conf c2 = {.xpath = (char *)"count(//item) = 2"};
    struct esb_pred *p1, *p2;
    struct esb_err err = {0};
    if (esb_pred_compile(&c1, "when", &p1, &err) || esb_pred_compile(&c2, "when", &p2, &err))
        bail("%s", err.msg);
    struct esb_pred_scratch *s = esb_pred_scratch_new();
    struct esb_pred_run run;
    esb_pred_run_init(&run, s);
    struct esb_msg *m = msg_file("order-big.xml");
    int v1 = esb_pred_eval(p1, &run, m, &err);
    void *doc = run.xml;
    int v2 = esb_pred_eval(p2, &run, m, &err);
    ok(v1 == 1 && v2 == 1 && doc && run.xml == doc && run.xml_state == 1,
       "several xpath predicates parse the body once");
    esb_pred_run_clear(&run);
    esb_msg_unref(m);
    esb_pred_scratch_free(s);
    esb_pred_free(p1);
    esb_pred_free(p2);
}

static const char *json_route =
    "<route id='json' from='queue:in'>\n"
    "  <choice>\n"
    "    <when json='$.total' gt='1000'><to uri='queue:big'/></when>\n"
    "    <when json='$.region' equals='EU'><to uri='topic:eu'/></when>\n"
    "    <when json='$.total' lt='10'><to uri='queue:small'/></when>\n"
    "    <when json='$.items[*].sku' matches='^Z-'><to uri='queue:z'/></when>\n"
    "  </choice>\n"
    "  <filter json='$.id' exists='true'/>\n"
    "  <to uri='queue:all'/>\n"
    "</route>";

static void test_json(void)
{
    struct esb_route *r = must_compile(json_route);
    routes_to(r, msg_file("order-big.json"), "queue:big queue:all", "JSON gt");
    routes_to(r, msg_file("order-eu.json"), "topic:eu queue:all", "JSON equals");
    routes_to(r, msg_file("order-small.json"), "queue:small queue:all", "JSON lt");
    routes_to(r, msg_file("order-strtotal.json"), "queue:z queue:all",
              "JSON matches over a wildcard; a string is not a number for gt");
    routes_to(r, msg_of("{\"total\": 50}", "application/json"), "DROPPED",
              "JSON exists false drops at the filter");
    route_error(r, msg_file("malformed.json"),
                "step 1 (choice/when json gt, line 3): body is not JSON", "line 1",
                "malformed JSON");
    route_error(r, msg_file("duplicate-keys.json"), "body is not JSON", "duplicate",
                "duplicate keys");
    route_error(r, msg_file("order-big.xml"), "body is not JSON", NULL, "XML body on json");

    size_t depth = 100000;
    char *deep = malloc(depth + 1);
    memset(deep, '[', depth);
    deep[depth] = '\0';
    route_error(r, msg_of(deep, "application/json"), "JSON nested deeper than 64 levels", NULL,
                "100000 '[' is an error, not a crash");
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = '\0';
    routes_to(r, msg_of(deep, "application/json"), "DROPPED", "64 levels of nesting are fine");
    free(deep);
    esb_route_free(r);

    r = must_compile("<route id='j2' from='queue:in'>\n"
                     "<filter json='$.items[*].qty' gt='1'/>\n"
                     "<filter json='$.rush' equals='true'/>\n"
                     "<filter json='$.total' equals='1500'/>\n"
                     "<filter json='$.nothing' exists='false'/>\n"
                     "<filter json='$.items[1]' exists='true'/>\n"
                     "<to uri='queue:ok'/></route>");
    routes_to(r, msg_file("order-big.json"), "queue:ok",
              "wildcard gt, booleans and numbers compare as text, exists true/false");
    routes_to(r, msg_file("order-eu.json"), "DROPPED", "no item has qty > 1: dropped");
    esb_route_free(r);
    r = must_compile("<route id='j3' from='queue:in'>\n"
                     "<filter json='$.total' equals='120.5'/><to uri='queue:ok'/></route>");
    routes_to(r, msg_file("order-eu.json"), "queue:ok", "a real equals its shortest text");
    esb_route_free(r);
}

static void test_regex_and_headers(void)
{
    struct esb_route *r =
        must_compile("<route id='txt' from='queue:in'>\n"
                     "<choice>\n"
                     "<when regex='^URGENT'><to uri='queue:urgent'/></when>\n"
                     "<when regex='^EU-' header='subject'><to uri='queue:eu'/>"
                     "</when>\n"
                     "<when header='x-kind' equals='Audit'><to uri='queue:audit'/>"
                     "</when>\n"
                     "<when header='x-prio' matches='^[0-3]$'><to uri='queue:p'/>"
                     "</when>\n"
                     "<otherwise><to uri='queue:other'/></otherwise>\n"
                     "</choice></route>");
    FILE *f;
    char path[512], buf[256];
    snprintf(path, sizeof(path), "%s/tests/data/route/urgent.txt", datadir);
    if (!(f = fopen(path, "r")) || !fgets(buf, sizeof(buf), f)) bail("urgent.txt");
    fclose(f);
    routes_to(r, msg_of(buf, "text/plain"), "queue:urgent", "regex on the body");
    routes_to(r, msg_of("routine: weekly report\nURGENT later\n", "text/plain"), "queue:other",
              "an anchored regex does not match later lines");
    struct esb_msg *m = msg_of("x", "text/plain");
    esb_msg_set_header(m, "Subject", "EU-123");
    routes_to(r, m, "queue:eu", "regex on a header");
    m = msg_of("x", "text/plain");
    esb_msg_set_header(m, "x-kind", "Audit");
    routes_to(r, m, "queue:audit", "header equals");
    m = msg_of("x", "text/plain");
    esb_msg_set_header(m, "x-kind", "audit");
    routes_to(r, m, "queue:other", "header equals is case-sensitive on the value");
    m = msg_of("x", "text/plain");
    esb_msg_set_header(m, "X-Prio", "2");
    routes_to(r, m, "queue:p", "header matches");
    esb_route_free(r);

    /* ReDoS: the match limit stops it, as a routing error */
    r = must_compile("<route id='redos' from='queue:in'>\n\n<filter regex='^(a+)+$'/>\n"
                     "<to uri='queue:a'/></route>");
    route_error(r, msg_of("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", "text/plain"),
                "step 1 (filter regex, line 3): regex limit hit", NULL, "ReDoS pattern");
    esb_route_free(r);
    r = must_compile("<route id='redos2' from='queue:in'>\n"
                     "<filter header='x' matches='^(\\w+\\s?)*$'/><to uri='queue:a'/></route>");
    m = msg_of("", "text/plain");
    esb_msg_set_header(m, "x", "An input string that takes a long time or even makes this regex!");
    route_error(r, m, "regex limit hit", NULL, "ReDoS on a header value");
    esb_route_free(r);
    compile_fails("<route id='utf' from='queue:in'>\n<filter regex='(*UTF)x'/></route>",
                  "UTF is disabled", "regexes stay in byte mode");
}

static void test_steps(void)
{
    struct esb_route *r = must_compile(
        "<route id='steps' from='queue:in'>\n"
        "<filter header='x-kind' exists='true'/>\n"
        "<set-header name='x-seen' value='{header:x-kind}-{route}'/>\n"
        "<to uri='queue:first'/>\n"
        "<set-header name='x-late' value='1'/>\n"
        "<choice>\n"
        "<when header='x-kind' exists='true'><set-header name='x-when' value='1'/></when>\n"
        "<when header='x-kind' exists='true'><to uri='queue:second-when'/></when>\n"
        "</choice>\n"
        "<multicast><to uri='queue:a'/>\n"
        "<choice><when header='x-kind' equals='k'><set-header name='x-branch' value='b'/>\n"
        "<to uri='queue:b'/></when></choice></multicast>\n"
        "<set-header name='content-type' value='text/x-done'/>\n"
        "<to uri='file-out:archive'/>\n"
        "</route>");
    struct esb_msg *m = msg_of("{\"a\": 1}", "application/json");
    routes_to(r, esb_msg_ref(m), "DROPPED", "filter drops a message without the header");
    esb_msg_set_header(m, "x-kind", "k");
    struct esb_route_result res;
    const char *got = route_str(r, m, &res);
    ok(strcmp(got, "queue:first queue:a queue:b deliver:archive") == 0,
       "first matching when wins, multicast emits a copy per branch");
    if (res.nout == 4) {
        struct esb_msg *o1 = res.out[0].msg, *oa = res.out[1].msg, *ob = res.out[2].msg,
                       *od = res.out[3].msg;
        ok(strcmp(esb_msg_header(o1, "x-seen"), "k-steps") == 0, "set-header renders its template");
        ok(!esb_msg_header(o1, "x-late") && !esb_msg_header(o1, "x-when"),
           "a copy sent earlier does not see later changes");
        ok(esb_msg_header(oa, "x-when") && !esb_msg_header(oa, "x-branch") &&
               esb_msg_header(ob, "x-branch"),
           "changes in the when stay; a branch's changes stay in that branch");
        ok(!esb_msg_header(od, "x-branch") && strcmp(od->content_type, "text/x-done") == 0,
           "after the multicast: no branch header; content-type set as the field");
        ok(strcmp(esb_msg_header(od, "esb-route"), "steps") == 0 &&
               !esb_msg_header(o1, "esb-route"),
           "a delivery to an endpoint carries esb-route");
        ok(o1->body == m->body && od->body == m->body && strcmp(o1->id_text, m->id_text) == 0,
           "outputs share the body and keep the id");
        ok(!esb_msg_header(m, "x-seen") && strcmp(m->content_type, "application/json") == 0,
           "the input message is never changed");
    } else {
        diag("got %s", got);
    }
    esb_route_result_clear(&res);
    ok(res.out == NULL && res.nout == 0, "result_clear resets the result");
    esb_msg_unref(m);
    esb_route_free(r);

    /* an error after a to: no outputs, the input goes to the DLQ */
    r = must_compile("<route id='e' from='queue:in'>\n<to uri='queue:a'/>\n"
                     "<filter xpath='/x'/>\n</route>");
    route_error(r, msg_of("not xml", "text/plain"), "step 2 (filter xpath, line 3)", NULL,
                "an error drops the outputs made before it");
    esb_route_free(r);
}

static void test_log(void)
{
    struct esb_route *r =
        must_compile("<route id='lg' from='queue:in'>\n<log message='order {header:x-order} seen' "
                     "level='warn'/>\n<log message='quiet' level='debug'/>\n</route>");
    char path[] = "/tmp/test-route-log-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) bail("mkstemp");
    int saved = dup(2);
    dup2(fd, 2);
    struct esb_msg *m = msg_of("SECRET-BODY", "text/plain");
    esb_msg_set_header(m, "x-order", "7\nforged line");
    const char *got = route_str(r, m, NULL);
    dup2(saved, 2);
    close(saved);
    char buf[4096] = "";
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    ok(strcmp(got, "") == 0 && strstr(buf, " warn [route:lg step:1] order 7?forged line seen\n"),
       "log writes one line with the [route:ID step:N] prefix");
    ok(!strstr(buf, "SECRET-BODY") && !strstr(buf, "quiet") && !strstr(buf, "\nforged"),
       "never the body, no line below the level, no forged lines");
    esb_msg_unref(m);
    esb_route_free(r);
}

static void emit_doc(void *ctx, const char *text)
{
    size_t *n = ctx;
    *n += strlen(text);
    if (strstr(text, "### `<")) n[1]++;
}

/* <dedupe> hands the runtime a route-scoped key and window; ordering-key
 * gives every output its key. */
static void test_dedupe_and_ordering(void)
{
    struct esb_route *r =
        must_compile("<route id='d' from='queue:in' ordering-key='{header:customer}'>"
                     "<dedupe key='{header:idempotency-key}' window='2h'/><to uri='http-out:crm'/>"
                     "<to uri='queue:audit'/></route>");
    struct esb_msg *m = msg_of("x", "text/plain");
    esb_msg_set_header(m, "idempotency-key", "abc-1");
    esb_msg_set_header(m, "customer", "c42");
    struct esb_route_result res = {0};
    esb_route_run(r, scratch, m, &res);
    ok(!res.error && res.dedupe_key && strcmp(res.dedupe_key, "d:abc-1") == 0 &&
           res.dedupe_window_ms == 2 * 3600 * 1000 && res.dedupe_max_keys == 0,
       "dedupe: key scoped to the route, window 2h, no max-keys");
    ok(res.nout == 2 && res.out[0].key && strcmp(res.out[0].key, "c42") == 0 && res.out[1].key &&
           strcmp(res.out[1].key, "c42") == 0,
       "ordering-key: every output carries the customer key");
    esb_route_result_clear(&res);
    esb_msg_remove_header(m, "idempotency-key");
    esb_msg_remove_header(m, "customer");
    esb_route_run(r, scratch, m, &res);
    ok(!res.error && !res.dedupe_key && res.nout == 2 && !res.out[0].key,
       "no key header: neither deduplicated nor ordered");
    esb_route_result_clear(&res);
    esb_msg_unref(m);
    esb_route_free(r);
    compile_fails("<route id='d' from='queue:in'><dedupe key='{nope}'/><to uri='queue:a'/></route>",
                  "attribute 'key'", "dedupe with a bad template");
    compile_fails("<route id='d' from='queue:in'><dedupe key='{id}' window='1ms'/></route>",
                  "window", "dedupe window below 1s");
    compile_fails("<route id='d' from='queue:in'><dedupe key='{id}' max-keys='many'/></route>",
                  "max-keys", "dedupe max-keys not a number");
    r = must_compile("<route id='d' from='queue:in'><dedupe key='{id}' max-keys='3'/>"
                     "<to uri='queue:a'/></route>");
    m = msg_of("x", "text/plain");
    esb_route_run(r, scratch, m, &res);
    ok(!res.error && res.dedupe_key && res.dedupe_max_keys == 3,
       "dedupe max-keys='3' reaches the runtime with the key");
    esb_route_result_clear(&res);
    esb_msg_unref(m);
    esb_route_free(r);
    compile_fails(
        "<route id='d' from='queue:in' ordering-key='{bogus}'><to uri='queue:a'/></route>",
        "attribute 'ordering-key'", "ordering-key with a bad template");
}

int main(void)
{
    datadir = getenv("top_srcdir") ? getenv("top_srcdir") : ".";
    FILE *pw = fopen("/etc/passwd", "r");
    if (!pw || !fgets(passwd_line, sizeof(passwd_line), pw)) bail("/etc/passwd");
    fclose(pw);
    passwd_line[strcspn(passwd_line, "\n")] = '\0';
    esb_log_set_level(ESB_LOG_INFO);
    scratch = esb_route_scratch_new();

    test_compile_errors();
    test_compile_ok();
    test_xml();
    test_xml_parsed_once();
    test_json();
    test_regex_and_headers();
    test_steps();
    test_log();
    test_dedupe_and_ordering();

    size_t doc[2] = {0, 0};
    esb_route_doc(emit_doc, doc);
    ok(doc[0] > 2000 && doc[1] >= 11, "esb_route_doc prints the reference of every element");

    esb_route_scratch_free(scratch);
    xmlCleanupParser();
    return tap_done();
}
