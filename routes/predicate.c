/* predicate.c - compiled predicates and their evaluation (see predicate.h).
 *
 * Body parsing is lazy and cached in the esb_pred_run: the first xpath
 * predicate of a run parses the body as XML, the first json predicate parses
 * it as JSON; a failed parse is cached too, so every later predicate of the
 * run reports the same reason without parsing again. */
#include "config.h"

#include "predicate.h"

#include "jsondepth.h"
#include "jsonpath.h"
#include "lua_host.h"
#include "msg.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>

#include "xmlsafe.h"
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <limits.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>

enum pred_kind { K_XPATH, K_JSON, K_REGEX, K_HEADER, K_LUA };
enum pred_op { OP_NONE, OP_EQUALS, OP_MATCHES, OP_GT, OP_LT, OP_EXISTS };
static const char *const op_names[] = {"", "equals", "matches", "gt", "lt", "exists"};

struct rx {
    pcre2_code *code;
    uint32_t ncap;
};

struct esb_pred {
    enum pred_kind kind;
    enum pred_op op;
    char *desc;
    xmlXPathCompExprPtr xpath;
    struct esb_jsonpath *path;
    char *header;   /* K_HEADER, or K_REGEX on a header */
    char *equals;   /* OP_EQUALS */
    struct rx rx;   /* K_REGEX, OP_MATCHES */
    double num;     /* OP_GT/OP_LT operand */
    long long inum; /* the same when integral (num_is_int) */
    int num_is_int;
    int exists;               /* OP_EXISTS: the expected answer */
    struct esb_lua_prog *lua; /* K_LUA */
};

struct esb_pred_scratch {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    xmlXPathContextPtr xpctx;
    char xp_err[200]; /* the first XPath error of an evaluation */
};

#define S(name, field, doc)                                                                        \
    {                                                                                              \
        name, ESB_ATTR_STRING, NULL, offsetof(struct esb_pred_conf, field), 0, 0, 0, NULL, doc     \
    }
const struct esb_attr_spec esb_pred_attrs[] = {
    S("xpath", xpath,
      "XPath 1.0 expression on an XML body; holds if the result is true, a non-zero number, a "
      "non-empty string or a non-empty node-set."),
    S("json", json,
      "JSON path ($.a.b, $['a'], $.a[0], $.a[*].b) on a JSON body; with one of equals, "
      "matches, gt, lt, exists. With [*] any selected value may satisfy it."),
    S("regex", regex, "PCRE2 pattern (byte mode) searched in the body, or in header's value."),
    S("header", header,
      "A header name: with regex, the header the regex tests; alone, with one of equals, "
      "exists, matches."),
    S("equals", equals,
      "Exact, case-sensitive text; JSON numbers and booleans compare by their text "
      "(2.0 is \"2\", true is \"true\")."),
    S("matches", matches, "PCRE2 pattern searched in the value (JSON strings, numbers, booleans)."),
    S("gt", gt, "A number: holds if the JSON value is a number greater than it."),
    S("lt", lt, "A number: holds if the JSON value is a number less than it."),
    S("exists", exists, "true: the path/header is present; false: it is absent."),
    S("lua", lua,
      "A Lua script (relative to `<lua dir>`) whose function gets the message (a table, see "
      "docs/lua-host.md); holds if it returns a true value (not nil or false). An error or a "
      "limit hit is a routing error."),
    S("function", function, "With lua=: the function to call (default `predicate`)."),
    ESB_ATTR_END,
};
#undef S

/* ---- regexes ---- */

static int rx_compile(struct rx *rx, const char *src, const char *attr, struct esb_err *err)
{
    if (strlen(src) > ESB_PRED_REGEX_MAX_LEN)
        return esb_err_set(err, ESB_EINVAL, "%s= is longer than %d characters", attr,
                           ESB_PRED_REGEX_MAX_LEN);
    int ec;
    PCRE2_SIZE off;
    rx->code =
        pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, PCRE2_NEVER_UTF, &ec, &off, NULL);
    if (!rx->code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        return esb_err_set(err, ESB_EINVAL, "bad regex in %s=\"%.80s\": %s at offset %zu", attr,
                           src, (const char *)msg, (size_t)off);
    }
    (void)pcre2_jit_compile(rx->code, PCRE2_JIT_COMPLETE); /* no JIT: the interpreter runs */
    (void)pcre2_pattern_info(rx->code, PCRE2_INFO_CAPTURECOUNT, &rx->ncap);
    return 0;
}

/* 1 match, 0 none, ESB_EINVAL with err on a limit or an error. */
static int rx_match(const struct rx *rx, struct esb_pred_scratch *s, const void *subj, size_t len,
                    struct esb_err *err)
{
    esb_pred_scratch_reserve(s, rx->ncap);
    int rc = pcre2_match(rx->code, (PCRE2_SPTR)subj, len, 0, 0, s->md, s->mctx);
    if (rc >= 0) return 1;
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    const char *what = NULL;
    switch (rc) {
    case PCRE2_ERROR_MATCHLIMIT:
        what = "match limit";
        break;
    case PCRE2_ERROR_DEPTHLIMIT:
        what = "depth limit";
        break;
    case PCRE2_ERROR_HEAPLIMIT:
        what = "heap limit";
        break;
    case PCRE2_ERROR_JIT_STACKLIMIT:
        what = "JIT stack limit";
        break;
    case PCRE2_ERROR_NOMEMORY:
        what = "memory limit";
        break;
    default:
        break;
    }
    if (what) return esb_err_set(err, ESB_EINVAL, "regex limit hit (%s)", what);
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof(msg));
    return esb_err_set(err, ESB_EINVAL, "regex match failed: %s", (const char *)msg);
}

/* ---- scratch and per-run state ---- */

struct esb_pred_scratch *esb_pred_scratch_new(void)
{
    xmlInitParser();
    struct esb_pred_scratch *s = esb_calloc(1, sizeof(*s));
    s->md = pcre2_match_data_create(1, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    s->jit = pcre2_jit_stack_create(32 * 1024, ESB_PRED_JIT_STACK_MAX, NULL);
    s->xpctx = xmlXPathNewContext(NULL);
    if (!s->md || !s->mctx || !s->xpctx) abort();
    pcre2_set_match_limit(s->mctx, ESB_PRED_MATCH_LIMIT);
    pcre2_set_depth_limit(s->mctx, ESB_PRED_DEPTH_LIMIT);
    pcre2_set_heap_limit(s->mctx, ESB_PRED_HEAP_LIMIT_KIB);
    if (s->jit) pcre2_jit_stack_assign(s->mctx, NULL, s->jit);
    return s;
}

void esb_pred_scratch_reserve(struct esb_pred_scratch *s, uint32_t ncap)
{
    if (pcre2_get_ovector_count(s->md) >= ncap + 1) return;
    pcre2_match_data_free(s->md);
    s->md = pcre2_match_data_create(ncap + 1, NULL);
    if (!s->md) abort();
}

void esb_pred_scratch_free(struct esb_pred_scratch *s)
{
    if (!s) return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit);
    xmlXPathFreeContext(s->xpctx);
    free(s);
}

void esb_pred_run_init(struct esb_pred_run *r, struct esb_pred_scratch *s)
{
    memset(r, 0, sizeof(*r));
    r->scratch = s;
}

void esb_pred_run_clear(struct esb_pred_run *r)
{
    if (r->xml) xmlFreeDoc(r->xml);
    if (r->json) json_decref(r->json);
    struct esb_pred_scratch *s = r->scratch;
    struct esb_lua_vm *lua = r->lua;
    esb_pred_run_init(r, s);
    r->lua = lua;
}

/* ---- parsing bodies ---- */

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) s[--n] = '\0';
}

static int parse_xml(struct esb_pred_run *r, const struct esb_body *b)
{
    enum esb_xml_fail fail;
    char msg[sizeof(r->xml_err) - 40];
    r->xml = esb_xml_parse((const char *)b->data, b->len, 0, &fail, msg, sizeof(msg));
    if (r->xml) return 1;
    snprintf(r->xml_err, sizeof(r->xml_err), "body is %s: %s",
             fail == ESB_XML_REFUSED ? "not accepted" : "not XML", msg);
    return -1;
}

static int parse_json(struct esb_pred_run *r, const struct esb_body *b)
{
    long deep = esb_jsondepth_scan(b->data, b->len, ESB_PRED_JSON_MAX_DEPTH, NULL, NULL);
    if (deep >= 0) {
        snprintf(r->json_err, sizeof(r->json_err),
                 "body is not accepted: JSON nested deeper than %d levels at byte %ld",
                 ESB_PRED_JSON_MAX_DEPTH, deep);
        return -1;
    }
    json_error_t je;
    r->json =
        json_loadb((const char *)b->data, b->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!r->json) {
        snprintf(r->json_err, sizeof(r->json_err), "body is not JSON: line %d column %d: %s",
                 je.line, je.column, je.text);
        return -1;
    }
    return 1;
}

static void *body_xml(struct esb_pred_run *r, const struct esb_msg *m, struct esb_err *err)
{
    if (r->body != m->body) {
        esb_pred_run_clear(r);
        r->body = m->body;
    }
    if (r->xml_state == 0) r->xml_state = parse_xml(r, m->body);
    if (r->xml_state < 0) esb_err_set(err, ESB_EINVAL, "%s", r->xml_err);
    return r->xml_state > 0 ? r->xml : NULL;
}

static json_t *body_json(struct esb_pred_run *r, const struct esb_msg *m, struct esb_err *err)
{
    if (r->body != m->body) {
        esb_pred_run_clear(r);
        r->body = m->body;
    }
    if (r->json_state == 0) r->json_state = parse_json(r, m->body);
    if (r->json_state < 0) esb_err_set(err, ESB_EINVAL, "%s", r->json_err);
    return r->json_state > 0 ? r->json : NULL;
}

/* ---- compiling ---- */

static void xp_capture_err(void *ud, xmlErrorPtr e)
{
    char *buf = ud;
    if (buf[0] == '\0' && e && e->message) {
        snprintf(buf, 200, "%s", e->message);
        chomp(buf);
    }
}

static int compile_xpath(struct esb_pred *p, const char *expr, struct esb_err *err)
{
    xmlInitParser();
    char msg[200] = "";
    xmlXPathContextPtr ctx = xmlXPathNewContext(NULL);
    if (!ctx) abort();
    ctx->error = xp_capture_err;
    ctx->userData = msg;
    p->xpath = xmlXPathCtxtCompile(ctx, (const xmlChar *)expr);
    xmlXPathFreeContext(ctx);
    if (!p->xpath)
        return esb_err_set(err, ESB_EINVAL, "bad xpath \"%.100s\": %s", expr,
                           msg[0] ? msg : "invalid expression");
    return 0;
}

static int parse_number(struct esb_pred *p, const char *s, const char *attr, struct esb_err *err)
{
    char *end;
    errno = 0;
    p->num = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(p->num))
        return esb_err_set(err, ESB_EINVAL, "%s=\"%.40s\" is not a number", attr, s);
    errno = 0;
    p->inum = strtoll(s, &end, 10);
    p->num_is_int = (end != s && !*end && !errno);
    return 0;
}

int esb_pred_compile(const struct esb_pred_conf *c, const char *element, struct esb_pred **out,
                     struct esb_err *err)
{
    *out = NULL;
    const char *kinds[4];
    int nk = 0;
    if (c->xpath) kinds[nk++] = "xpath=";
    if (c->json) kinds[nk++] = "json=";
    if (c->regex) kinds[nk++] = "regex=";
    if (c->header && !c->regex) kinds[nk++] = "header=";
    if (c->lua && nk < 4) kinds[nk++] = "lua=";
    if (nk == 0)
        return esb_err_set(
            err, ESB_EINVAL,
            "<%s> needs a predicate: xpath=, json=, regex=, header= or lua=", element);
    if (nk > 1)
        return esb_err_set(err, ESB_EINVAL, "<%s> has two predicates (%s and %s); use exactly one",
                           element, kinds[0], kinds[1]);
    if (c->function && !c->lua)
        return esb_err_set(err, ESB_EINVAL, "function= goes with lua= only");
    const char *const opv[] = {NULL, c->equals, c->matches, c->gt, c->lt, c->exists};
    enum pred_op op = OP_NONE, op2 = OP_NONE;
    for (int i = OP_EQUALS; i <= OP_EXISTS; i++) {
        if (!opv[i]) continue;
        if (op == OP_NONE)
            op = (enum pred_op)i;
        else if (op2 == OP_NONE)
            op2 = (enum pred_op)i;
    }
    struct esb_pred *p = esb_calloc(1, sizeof(*p));
    int rc = 0;
    char desc[160];
    if (c->lua) {
        if (op != OP_NONE) {
            rc = esb_err_set(err, ESB_EINVAL, "lua= takes no %s= (the function decides)",
                             op_names[op]);
            goto out;
        }
        p->kind = K_LUA;
        const char *fn = c->function ? c->function : "predicate";
        rc = esb_lua_prog_load(c->lua_dir ? c->lua_dir : ".", c->lua, fn, c->lua_limits, &p->lua,
                               err);
        snprintf(desc, sizeof(desc), "lua=%.100s%s%.40s", c->lua, c->function ? ":" : "",
                 c->function ? c->function : "");
        goto out;
    }
    if (c->xpath || c->regex) {
        if (op != OP_NONE) {
            rc = esb_err_set(err, ESB_EINVAL, "%s takes no %s= (that is for json= or header=)",
                             kinds[0], op_names[op]);
            goto out;
        }
        if (c->xpath) {
            p->kind = K_XPATH;
            rc = compile_xpath(p, c->xpath, err);
            snprintf(desc, sizeof(desc), "xpath");
        } else {
            p->kind = K_REGEX;
            rc = rx_compile(&p->rx, c->regex, "regex", err);
            if (c->header) p->header = esb_strdup(c->header);
            snprintf(desc, sizeof(desc), "regex%s%.100s", c->header ? " on header " : "",
                     c->header ? c->header : "");
        }
        goto out;
    }
    p->kind = c->json ? K_JSON : K_HEADER;
    const char *ops_doc =
        c->json ? "equals=, matches=, gt=, lt= or exists=" : "equals=, exists= or matches=";
    if (op == OP_NONE || op2 != OP_NONE) {
        rc = op == OP_NONE
                 ? esb_err_set(err, ESB_EINVAL, "%s needs one of %s", kinds[0], ops_doc)
                 : esb_err_set(err, ESB_EINVAL, "%s takes only one of %s (got %s= and %s=)",
                               kinds[0], ops_doc, op_names[op], op_names[op2]);
        goto out;
    }
    if (p->kind == K_HEADER && (op == OP_GT || op == OP_LT)) {
        rc = esb_err_set(err, ESB_EINVAL, "header= takes %s, not %s=", ops_doc, op_names[op]);
        goto out;
    }
    p->op = op;
    if (p->kind == K_JSON) {
        rc = esb_jsonpath_compile(c->json, &p->path, err);
        if (rc) goto out;
        snprintf(desc, sizeof(desc), "json %s", op_names[op]);
    } else {
        p->header = esb_strdup(c->header);
        snprintf(desc, sizeof(desc), "header %s", op_names[op]);
    }
    switch (op) {
    case OP_EQUALS:
        p->equals = esb_strdup(c->equals);
        break;
    case OP_MATCHES:
        rc = rx_compile(&p->rx, c->matches, "matches", err);
        break;
    case OP_GT:
    case OP_LT:
        rc = parse_number(p, opv[op], op_names[op], err);
        break;
    case OP_EXISTS:
        if (esb_parse_bool(c->exists, &p->exists) != 0)
            rc = esb_err_set(err, ESB_EINVAL, "exists=\"%.40s\" is not true or false", c->exists);
        break;
    case OP_NONE:
        break;
    }
out:
    if (rc) {
        esb_pred_free(p);
        return rc;
    }
    p->desc = esb_strdup(desc);
    *out = p;
    return 0;
}

void esb_pred_free(struct esb_pred *p)
{
    if (!p) return;
    if (p->xpath) xmlXPathFreeCompExpr(p->xpath);
    esb_jsonpath_free(p->path);
    pcre2_code_free(p->rx.code);
    free(p->header);
    free(p->equals);
    free(p->desc);
    esb_lua_prog_free(p->lua);
    free(p);
}

const char *esb_pred_describe(const struct esb_pred *p)
{
    return p->desc;
}

uint32_t esb_pred_captures(const struct esb_pred *p)
{
    return p->rx.code ? p->rx.ncap : 0;
}

/* ---- evaluating ---- */

static int eval_xpath(const struct esb_pred *p, struct esb_pred_run *r, const struct esb_msg *m,
                      struct esb_err *err)
{
    xmlDocPtr doc = body_xml(r, m, err);
    if (!doc) return ESB_EINVAL;
    struct esb_pred_scratch *s = r->scratch;
    xmlXPathContextPtr x = s->xpctx;
    s->xp_err[0] = '\0';
    x->doc = doc;
    x->node = (xmlNodePtr)doc;
    x->error = xp_capture_err;
    x->userData = s->xp_err;
    x->opLimit = ESB_PRED_XPATH_OP_LIMIT;
    x->opCount = 0;
    xmlXPathObjectPtr res = xmlXPathCompiledEval(p->xpath, x);
    x->doc = NULL;
    x->node = NULL;
    if (!res)
        return esb_err_set(err, ESB_EINVAL, "xpath evaluation failed: %s",
                           s->xp_err[0] ? s->xp_err : "error");
    int v = xmlXPathCastToBoolean(res);
    xmlXPathFreeObject(res);
    return v ? 1 : 0;
}

/* The text of a JSON scalar for equals/matches; NULL for objects/arrays. */
static const char *json_text(json_t *v, char buf[64], size_t *len)
{
    const char *t = NULL;
    switch (json_typeof(v)) {
    case JSON_STRING:
        *len = json_string_length(v);
        return json_string_value(v);
    case JSON_INTEGER:
        *len = (size_t)snprintf(buf, 64, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    case JSON_REAL: {
        double d = json_real_value(v);
        for (int prec = 1; prec <= 17; prec++) { /* the shortest text that reads back as d */
            *len = (size_t)snprintf(buf, 64, "%.*g", prec, d);
            if (strtod(buf, NULL) == d) break;
        }
        return buf;
    }
    case JSON_TRUE:
        t = "true";
        break;
    case JSON_FALSE:
        t = "false";
        break;
    case JSON_NULL:
        t = "null";
        break;
    default:
        return NULL;
    }
    *len = strlen(t);
    return t;
}

struct json_eval {
    const struct esb_pred *p;
    struct esb_pred_scratch *s;
    struct esb_err *err;
};

/* Per selected value: 1 holds (stop), 0 go on, ESB_EINVAL error (stop). */
static int json_one(void *ctx, json_t *v)
{
    struct json_eval *je = ctx;
    const struct esb_pred *p = je->p;
    char buf[64];
    size_t len;
    const char *t;
    switch (p->op) {
    case OP_EXISTS:
        return 1;
    case OP_EQUALS:
        t = json_text(v, buf, &len);
        return t && len == strlen(p->equals) && memcmp(t, p->equals, len) == 0;
    case OP_MATCHES:
        t = json_text(v, buf, &len);
        return t ? rx_match(&p->rx, je->s, t, len, je->err) : 0;
    case OP_GT:
    case OP_LT: {
        if (!json_is_number(v)) return 0;
        int cmp;
        if (json_is_integer(v) && p->num_is_int) {
            json_int_t a = json_integer_value(v);
            cmp = a > p->inum ? 1 : a < p->inum ? -1 : 0;
        } else {
            double a = json_number_value(v);
            cmp = a > p->num ? 1 : a < p->num ? -1 : 0;
        }
        return p->op == OP_GT ? cmp > 0 : cmp < 0;
    }
    case OP_NONE:
        break;
    }
    return 0;
}

static int eval_json(const struct esb_pred *p, struct esb_pred_run *r, const struct esb_msg *m,
                     struct esb_err *err)
{
    json_t *root = body_json(r, m, err);
    if (!root) return ESB_EINVAL;
    struct json_eval je = {p, r->scratch, err};
    int v = esb_jsonpath_eval(p->path, root, json_one, &je);
    if (v < 0) return v;
    if (p->op == OP_EXISTS) return v == p->exists;
    return v;
}

static int eval_header(const struct esb_pred *p, struct esb_pred_run *r, const struct esb_msg *m,
                       struct esb_err *err)
{
    const char *v = esb_msg_header(m, p->header);
    switch (p->op) {
    case OP_EXISTS:
        return (v != NULL) == (p->exists != 0);
    case OP_EQUALS:
        return v && strcmp(v, p->equals) == 0;
    case OP_MATCHES:
        return v ? rx_match(&p->rx, r->scratch, v, strlen(v), err) : 0;
    default:
        return 0;
    }
}

int esb_pred_eval(const struct esb_pred *p, struct esb_pred_run *r, const struct esb_msg *m,
                  struct esb_err *err)
{
    switch (p->kind) {
    case K_XPATH:
        return eval_xpath(p, r, m, err);
    case K_JSON:
        return eval_json(p, r, m, err);
    case K_HEADER:
        return eval_header(p, r, m, err);
    case K_LUA: {
        int v;
        char reason[sizeof(err->msg)];
        if (!r->lua) return esb_err_set(err, ESB_EINVAL, "no Lua state for lua= (internal)");
        if (esb_lua_predicate(r->lua, p->lua, m, &v, reason, sizeof(reason)) < 0)
            return esb_err_set(err, ESB_EINVAL, "%s", reason);
        return v;
    }
    case K_REGEX:
        if (p->header) {
            const char *v = esb_msg_header(m, p->header);
            return v ? rx_match(&p->rx, r->scratch, v, strlen(v), err) : 0;
        }
        return rx_match(&p->rx, r->scratch, m->body->data, m->body->len, err);
    }
    return 0;
}
