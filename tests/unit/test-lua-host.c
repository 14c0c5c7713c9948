/* test-lua-host.c - the Lua host: every forbidden facility absent or
 * refused; runaway loops, memory bombs, deep recursion, coroutine bombs and
 * pathological patterns stopped by the limits with a reason, each followed
 * by a correct call on the same VM with bounded memory; changes to shared
 * tables and globals not leaking into the next call; the transform return
 * contract (changed, new, split, drop, bad results); script loading errors
 * with file:line; <transform> and lua= predicates in routes (split parts
 * running the rest of the route). Prints the cost of an identity call.
 * Scripts: tests/data/lua/. */
#include "config.h"

#include "conf.h"
#include "log.h"
#include "lua_host.h"
#include "lua_internal.h"
#include "msg.h"
#include "route.h"
#include "../tap.h"

#include <fcntl.h>
#include <libxml/parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[1024];
static struct esb_lua_vm *vm;
static char reason[1024];
static struct esb_msg **outs;
static size_t nouts;

#define MEM_BOUND (8u << 20) /* a VM after a bomb and one good call */

static struct esb_lua_prog *load_lim(const char *file, const char *fn,
                                     const struct esb_lua_limits *lim)
{
    struct esb_lua_prog *p = NULL;
    struct esb_err err = {0};
    if (esb_lua_prog_load(dir, file, fn, lim, &p, &err) < 0) bail("load %s: %s", file, err.msg);
    return p;
}

static struct esb_lua_prog *load(const char *file, const char *fn)
{
    return load_lim(file, fn, NULL);
}

static struct esb_msg *mk(const char *body)
{
    struct esb_msg *m = esb_msg_new();
    esb_msg_set_body(m, body, strlen(body));
    esb_msg_set_content_type(m, "text/plain");
    return m;
}

static void clear_outs(void)
{
    for (size_t i = 0; i < nouts; i++) esb_msg_unref(outs[i]);
    free(outs);
    outs = NULL;
    nouts = 0;
}

/* Transform a message with body; returns the output count or -1 (reason). */
static int run(const struct esb_lua_prog *p, struct esb_msg *in)
{
    clear_outs();
    return esb_lua_transform(vm, p, in, &outs, &nouts, reason, sizeof(reason)) < 0 ? -1
                                                                                   : (int)nouts;
}

static int run_body(const struct esb_lua_prog *p, const char *body)
{
    struct esb_msg *m = mk(body);
    int n = run(p, m);
    esb_msg_unref(m);
    return n;
}

static int body_is(size_t i, const char *want)
{
    if (i >= nouts) return 0;
    size_t n = strlen(want);
    int same = outs[i]->body->len == n && memcmp(outs[i]->body->data, want, n) == 0;
    if (!same) diag("body: '%.*s' want '%s'", (int)outs[i]->body->len, outs[i]->body->data, want);
    return same;
}

static struct esb_lua_prog *ev;

/* Run a snippet through eval.lua: the result's body equals want. */
static void eval_is(const char *code, const char *want, const char *name)
{
    int n = run_body(ev, code);
    if (!ok(n == 1 && body_is(0, want), "%s", name) && n < 0) diag("reason: %s", reason);
}

/* The snippet fails with a reason containing want. */
static void eval_fails(const char *code, const char *want, const char *name)
{
    int n = run_body(ev, code);
    if (!ok(n < 0 && strstr(reason, want), "%s", name))
        diag("n=%d reason: %s (want '%s')", n, reason, want);
}

/* ---- the sandbox ---- */

static void test_forbidden(void)
{
    eval_is("return type(os)..type(io)..type(package)..type(debug)..type(dofile)..type(loadfile)"
            "..type(collectgarbage)..type(string.dump)..type(warn)",
            "nilnilnilnilnilnilnilnilnil",
            "os, io, package, debug, dofile, loadfile, collectgarbage, string.dump, warn absent");
    eval_is("return type(print)..type(require)..type(load)..type(pcall)..type(coroutine.wrap)"
            "..type(utf8.char)..type(math.floor)..type(table.sort)..type(esb)",
            "functionfunctionfunctionfunctionfunctionfunctionfunctionfunctiontable",
            "allowed functions and the esb table present");
    eval_is("local f, e = load('\\27Lua\\84\\0\\25\\147\\r\\n\\26\\n') return e",
            "attempt to load a binary chunk (mode is 't')", "load refuses a binary chunk");
    eval_is("local f, e = load('\\27Lua', 'x', 'b') return e",
            "attempt to load a binary chunk (mode is 't')", "load refuses mode 'b'");
    eval_is("return load('return 1 + 1')()", "2", "load of text works");
    eval_is("return type(load('return os')())", "nil", "a loaded chunk runs in the sandbox");
    eval_is("return getmetatable('')", "protected", "the string metatable is protected");
    eval_is("return select(2, pcall(setmetatable, {}, {__gc = function() end}))",
            "__gc metamethods are not allowed in the sandbox", "no __gc finalizers");
    eval_fails("return require('../../../etc/passwd')", "a module name is letters",
               "require with '..' refused");
    eval_fails("return require('/etc/passwd')", "a module name is letters",
               "require of an absolute path refused");
    eval_fails("return require('os')", "cannot open", "require of a library: no such module");
    eval_fails("return require('socket.core')", "cannot open", "require of a C module refused");
    eval_fails("return require('a..b')", "a module name is letters", "require of 'a..b' refused");
    eval_is("return require('lib.helper').shout('hi')", "HI!", "require of DIR/lib/helper.lua");
    eval_is("return getmetatable(string)", "protected", "library tables are protected");
    eval_is("local n = 0 for k, v in pairs(string) do n = n + 1 end return n > 10", "true",
            "pairs() over a library works");
    eval_is("return ('abc'):upper() .. string.format('%d', 7)", "ABC7",
            "string methods and library calls work");
    eval_is("return string.rep('', 2^53) .. string.rep('', 2^53, '')", "",
            "string.rep of empty pieces returns at once");
    eval_is("local t = {} table.insert(t, 'a') table.insert(t, 1, 'b') table.sort(t) "
            "return table.concat(t, ',') .. table.unpack({'!'}) .. #table.move({1,2,3}, 1, 3, 2)",
            "a,b!4", "table functions work");
    eval_is("return string.gsub('hello world', '(o)', '[%1]') .. ('x=1'):match('(%w)=(%d)')",
            "hell[o] w[o]rldx", "patterns work");
}

static void test_limits(void)
{
    struct esb_lua_prog *h = load("hostile.lua", "transform"); /* the default limits */
    static const struct {
        const char *body, *want, *name;
    } cases[] = {
        {"loop", "instruction limit exceeded", "while true do end"},
        {"rep", "resulting string too large", "string.rep('x', 2^31)"},
        {"rep30", "memory limit exceeded", "string.rep('x', 2^30)"},
        {"tablebomb", "memory limit exceeded", "a table bomb"},
        {"recursion", "limit exceeded", "deep recursion (64 MB: the memory limit comes first)"},
        {"cobomb", "limit exceeded", "a coroutine bomb (live coroutines in a loop)"},
        {"conest", "limit exceeded", "coroutines creating coroutines"},
        {"coloop", "instruction limit exceeded", "an infinite loop inside a coroutine"},
        {"catchloop", "instruction limit exceeded", "a loop that pcalls the limit away"},
        {"pattern", "instruction limit exceeded", "a backtracking pattern"},
        {"error", "hostile.lua:36: refused: bad order", "a script error"},
    };
    for (size_t i = 0; i < ESB_ARRAY_LEN(cases); i++) {
        uint64_t t0 = esb_mono_ns();
        int n = run_body(h, cases[i].body);
        double ms = (double)(esb_mono_ns() - t0) / 1e6;
        if (!ok(n < 0 && strstr(reason, cases[i].want), "%s stops with '%s'", cases[i].name,
                cases[i].want))
            diag("n=%d reason: %s", n, reason);
        ok(strstr(reason, "traceback") || strstr(reason, "memory"), "%s: reason has a traceback",
           cases[i].name);
        diag("%s: %.1f ms: %.200s", cases[i].body, ms, reason);
        n = run_body(h, "good");
        if (!ok(n == 1 && body_is(0, "UPPER:GOOD X!"), "after %s the same VM transforms correctly",
                cases[i].name))
            diag("n=%d reason: %s", n, reason);
        size_t mem = esb__lua_vm_mem(vm);
        if (!ok(mem > 0 && mem < MEM_BOUND, "after %s the VM holds %zu bytes (< %u)", cases[i].name,
                mem, MEM_BOUND))
            diag("mem %zu", mem);
    }
    /* with room for Lua's whole stack (1M slots), deep recursion is a stack overflow */
    struct esb_lua_limits big = {512u << 20, 0, 0};
    struct esb_lua_prog *hb = load_lim("hostile.lua", "transform", &big);
    int n = run_body(hb, "recursion");
    if (!ok(n < 0 && strstr(reason, "stack overflow") && strstr(reason, "traceback"),
            "deep recursion under a 512 MB limit: 'stack overflow' with a traceback"))
        diag("reason: %s", reason);
    n = run_body(hb, "good");
    ok(n == 1 && body_is(0, "UPPER:GOOD X!"), "after a stack overflow the VM works");
    esb_lua_prog_free(hb);
    /* a poisoning call returns normally; the next one sees nothing of it */
    n = run_body(h, "poison");
    ok(n == 1 && body_is(0, "UPPER:POISONED Xpoisoned"),
       "a call that replaces string.upper/rep and sets a global succeeds (sees its own changes)");
    n = run_body(h, "next");
    if (!ok(n == 1 && body_is(0, "UPPER:NEXT X!"),
            "the next call sees the real string.upper, string.rep and no leaked global"))
        diag("n=%d reason: %s", n, reason);
    esb_lua_prog_free(h);

    eval_fails("local x = 0 for i = 1, 1e8 do x = x + i end return x", "instruction limit exceeded",
               "eval: a long loop");
    eval_fails("return table.move({}, 1, 1e15, 2)", "instruction limit exceeded",
               "table.move over 1e15 elements is charged");
    eval_fails("local t = setmetatable({}, {__len = function() return 2^40 end}) "
               "table.insert(t, 1, 'x')",
               "instruction limit exceeded", "table.insert under a huge __len is charged");
    eval_fails("local t = setmetatable({}, {__len = function() return 2^30 end, "
               "__index = type, __newindex = type}) table.sort(t)",
               "instruction limit exceeded", "table.sort under a huge __len is charged");
    eval_fails("local s = string.rep('a', 4e6) return s:find(string.rep('a', 2e6) .. 'b', 1, true)",
               "instruction limit exceeded", "a quadratic plain find is charged");
    eval_fails("return ('a'):rep(3e5):find('.-.-.-b')", "instruction limit exceeded",
               "a backtracking pattern through the string metatable is charged");
    eval_fails("return xpcall(function() error('x') end, function() while true do end end)",
               "instruction limit exceeded", "an xpcall handler that loops");
    eval_fails("return coroutine.resume(coroutine.create(function() while true do end end))",
               "instruction limit exceeded", "coroutine.resume does not swallow the limit");
    eval_fails("local co = coroutine.wrap(function() while true do coroutine.yield() end end) "
               "while true do co() end",
               "instruction limit exceeded", "a loop resuming a coroutine");
    eval_fails("error({})", "(error object is a table value)", "an error object that is a table");
    eval_is("return pcall(error, 'x')", "false", "pcall still catches ordinary errors");
    eval_is("local co = coroutine.wrap(function() coroutine.yield(1) return 2 end) "
            "return co() + co()",
            "3", "coroutines work");
}

static void test_isolation(void)
{
    eval_is("string.upper = function() return 'P' end rawset(string, 'lower', nil) "
            "rawset(string, 'len', function() return -1 end) x_global = 1 _G.y_global = 2 "
            "esb.uuid = nil table.concat = nil math.pi = 3 return string.upper('a')",
            "P", "a call changes libraries, esb and globals (seen within the call)");
    eval_is("return ('a'):upper() .. string.upper('b') .. string.len('abc') .. tostring(x_global)"
            " .. tostring(y_global) .. type(esb.uuid) .. type(table.concat) .. (math.pi > 3.1 "
            "and math.pi < 3.2 and 'pi' or 'nopi')",
            "AB3nilniltablefunctionpi", "the next call sees none of it");
    eval_is("local ok = pcall(setmetatable, string, {}) "
            "local ok2 = pcall(function() getmetatable('').__index = {} end) "
            "return tostring(ok) .. tostring(ok2)",
            "falsefalse", "the metatables of strings and libraries cannot be replaced");
    struct esb_lua_prog *r = load("req.lua", "transform");
    int n = run_body(r, "a");
    ok(n == 1 && body_is(0, "A!truenil"),
       "require: module loaded once per VM; its globals are not the script's");
    n = run_body(r, "b");
    ok(n == 1 && body_is(0, "B!truenil"), "require: cached on the next call");
    esb_lua_prog_free(r);
    eval_is("return tostring(helper_global)", "nil", "a module's globals are its own");
}

/* ---- the return contract ---- */

static void test_contract(void)
{
    struct esb_msg *in = mk("body");
    esb_msg_add_header(in, "X-Keep", "k");
    esb_msg_add_header(in, "x-remove", "r");
    esb_msg_add_header(in, "Correlation-Id", "corr-1");

    struct esb_lua_prog *p = load("contract.lua", "same");
    ok(run(p, in) == 1 && outs[0]->body == in->body && !strcmp(outs[0]->id_text, in->id_text) &&
           outs[0]->nheaders == 3 && !strcmp(outs[0]->headers[0].name, "X-Keep"),
       "msg returned as is: same id, body bytes shared, headers kept (order, case)");
    esb_lua_prog_free(p);

    p = load("contract.lua", "modify");
    ok(run(p, in) == 1 && body_is(0, "body!") && !strcmp(outs[0]->id_text, in->id_text) &&
           !strcmp(outs[0]->content_type, "text/x-changed") && esb_msg_header(outs[0], "x-added") &&
           !esb_msg_header(outs[0], "x-remove") && !strcmp(outs[0]->headers[0].name, "x-keep"),
       "msg changed: same id, new body, content type and headers (input order first)");
    esb_lua_prog_free(p);

    p = load("contract.lua", "new");
    ok(run(p, in) == 1 && body_is(0, "new") && strcmp(outs[0]->id_text, in->id_text) != 0 &&
           !strcmp(outs[0]->content_type, "application/json") &&
           !strcmp(esb_msg_header(outs[0], "x-mixed"), "v") &&
           !strcmp(esb_msg_header(outs[0], "n"), "42") &&
           !strcmp(esb_msg_header(outs[0], "f"), "1.5") &&
           !strcmp(esb_msg_header(outs[0], "g"), "2.0") && outs[0]->nheaders == 4 &&
           !strcmp(outs[0]->headers[0].name, "f"),
       "a new table: new id, names lowercased, numbers as text, sorted by name");
    esb_lua_prog_free(p);

    p = load("contract.lua", "keepid");
    ok(run(p, in) == 1 && !strcmp(outs[0]->id_text, in->id_text) && outs[0]->body == in->body,
       "a new table may keep the input's id and body");
    esb_lua_prog_free(p);

    struct esb_msg *csv = mk("a,bb,ccc");
    esb_msg_add_header(csv, "correlation-id", "batch-7");
    p = load("contract.lua", "split");
    int n = run(p, csv);
    int good = n == 3;
    for (int i = 0; good && i < 3; i++) {
        char idx[8];
        snprintf(idx, sizeof(idx), "%d", i + 1);
        good = !strcmp(esb_msg_header(outs[i], "split-index"), idx) &&
               !strcmp(esb_msg_header(outs[i], "split-size"), "3") &&
               !strcmp(esb_msg_header(outs[i], "correlation-id"), "batch-7") &&
               strcmp(outs[i]->id_text, csv->id_text) != 0 &&
               (i == 0 || strcmp(outs[i]->id_text, outs[i - 1]->id_text) != 0);
    }
    ok(good && body_is(0, "a") && body_is(2, "ccc"),
       "a list splits: new ids, correlation-id kept, split-index 1..n, split-size");
    esb_msg_unref(csv);
    csv = mk("x,y");
    n = run(p, csv);
    ok(n == 2 && !strcmp(esb_msg_header(outs[1], "correlation-id"), csv->id_text),
       "split without a correlation-id: the parent's id");
    esb_msg_unref(csv);
    esb_lua_prog_free(p);

    static const struct {
        const char *fn, *want;
        int n;
    } cases[] = {
        {"drop", NULL, 0},
        {"empty", NULL, 0},
        {"badtype",
         "transform result: a transform returns a message table, a list of them, or "
         "nil (got number)",
         -1},
        {"nobody", "neither a message (no body) nor a list", -1},
        {"badbody", "body must be a string (got table)", -1},
        {"badheader", "headers['bad name']: a header name has only", -1},
        {"crlf", "must not contain CR, LF or NUL", -1},
        {"badvalue", "a header value must be a string or a number (got boolean)", -1},
        {"badid", "id must be a UUID", -1},
        {"badlist", "transform result [2]: a list item must be a message table (got string)", -1},
        {"dup", "'x-a' is given twice", -1},
        {"bigsplit", "a list of 100001 messages (at most 100000)", -1},
        {"yields", "attempt to yield from outside a coroutine", -1},
    };
    for (size_t i = 0; i < ESB_ARRAY_LEN(cases); i++) {
        p = load("contract.lua", cases[i].fn);
        n = run(p, in);
        if (!ok(n == cases[i].n && (!cases[i].want || strstr(reason, cases[i].want)), "%s: %s",
                cases[i].fn, cases[i].want ? cases[i].want : "dropped"))
            diag("n=%d reason: %s", n, reason);
        esb_lua_prog_free(p);
    }
    p = load("contract.lua", "ctheader");
    ok(run(p, in) == 1 && !strcmp(outs[0]->content_type, "text/csv") && outs[0]->nheaders == 0,
       "headers['content-type'] sets the content type");
    esb_lua_prog_free(p);
    struct esb_lua_limits lim = {0, 0, 1024};
    p = load_lim("contract.lua", "big", &lim);
    n = run(p, in);
    ok(n < 0 && strstr(reason, "larger than max-output (1024 bytes)"),
       "bodies over max-output refused");
    esb_lua_prog_free(p);

    p = load("contract.lua", "predicate");
    int v = -1;
    ok(esb_lua_predicate(vm, p, in, &v, reason, sizeof(reason)) == 0 && v == 0, "predicate false");
    esb_msg_add_header(in, "X-Pass", "yes");
    ok(esb_lua_predicate(vm, p, in, &v, reason, sizeof(reason)) == 0 && v == 1,
       "predicate true (header names lowercased)");
    esb_lua_prog_free(p);
    p = load("contract.lua", "badpredicate");
    ok(esb_lua_predicate(vm, p, in, &v, reason, sizeof(reason)) < 0 &&
           strstr(reason, "contract.lua:53: predicate failed on purpose") &&
           strstr(reason, "traceback"),
       "a failing predicate: error with line and traceback");
    esb_lua_prog_free(p);
    esb_msg_unref(in);
}

/* ---- loading ---- */

static void load_fails(const char *file, const char *fn, const char *want, const char *name)
{
    struct esb_lua_prog *p = NULL;
    struct esb_err err = {0};
    int rc = esb_lua_prog_load(dir, file, fn, NULL, &p, &err);
    if (!ok(rc < 0 && !p && strstr(err.msg, want), "load error: %s", name))
        diag("got: %s (want %s)", err.msg, want);
    esb_lua_prog_free(p);
}

static void test_load(void)
{
    load_fails("bad-syntax.lua", "transform", "bad-syntax.lua:3: unexpected symbol near '*'",
               "a syntax error names file:line");
    load_fails("no-fn.lua", "transform", "no-fn.lua does not define function transform",
               "a missing function");
    load_fails("top-loop.lua", "transform", "instruction limit exceeded",
               "a top level that never ends");
    load_fails("missing.lua", "transform", "cannot open", "a missing file");
    load_fails("eval.lua", "no-such-fn", "not a Lua identifier", "a bad function name");
    char tmp[] = "/tmp/esb-lua-XXXXXX";
    if (!mkdtemp(tmp)) bail("mkdtemp");
    char path[200];
    snprintf(path, sizeof(path), "%s/bin.lua", tmp);
    FILE *f = fopen(path, "w");
    fputs("\033Lua\x54\x00 binary", f);
    fclose(f);
    struct esb_lua_prog *p = NULL;
    struct esb_err err = {0};
    ok(esb_lua_prog_load(tmp, "bin.lua", "transform", NULL, &p, &err) < 0 &&
           strstr(err.msg, "attempt to load a binary chunk"),
       "a precompiled (binary) script is refused");
    esb_lua_prog_free(p);
    unlink(path);
    rmdir(tmp);
    p = load("eval.lua", "transform");
    ok(!strcmp(esb_lua_prog_name(p), "eval.lua:transform"), "prog name is path:function");
    esb_lua_prog_free(p);
}

/* ---- routes ---- */

static struct esb_route *compile(const char *xml, struct esb_diags *d)
{
    static struct esb_config cfg;
    cfg.lua.dir = dir;
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "t.xml", NULL, XML_PARSE_NONET);
    if (!doc) bail("test XML does not parse");
    struct esb_route *r = NULL;
    if (esb_route_compile(xmlDocGetRootElement(doc), "t.xml", &cfg, &r, d) < 0) r = NULL;
    xmlFreeDoc(doc);
    return r;
}

static void test_routes(void)
{
    struct esb_diags d = {0};
    struct esb_route *r = compile("<route id='r' from='queue:in'>\n"
                                  "  <choice>\n"
                                  "    <when lua='contract.lua' function='predicate'>\n"
                                  "      <transform lua='contract.lua' function='split'/>\n"
                                  "      <set-header name='x-after' value='{header:x-part}'/>\n"
                                  "    </when>\n"
                                  "  </choice>\n"
                                  "  <to uri='queue:out'/>\n"
                                  "  <transform lua='contract.lua' function='drop'/>\n"
                                  "  <to uri='queue:never'/>\n"
                                  "</route>",
                                  &d);
    if (!r) bail("route does not compile: %s", d.n ? d.msgs[0] : "?");
    struct esb_route_scratch *s = esb_route_scratch_new();
    struct esb_msg *m = mk("a,b,c");
    esb_msg_add_header(m, "x-pass", "yes");
    struct esb_route_result res = {0};
    esb_route_run(r, s, m, &res);
    int good = !res.error && res.nout == 3 && res.dropped;
    for (size_t i = 0; good && i < 3; i++)
        good =
            !strcmp(res.out[i].bus_name, "queue:out") &&
            !strcmp(esb_msg_header(res.out[i].msg, "x-after"), (const char *[]){"a", "b", "c"}[i]);
    if (!ok(good, "a split in a <when>: each part runs the rest of the when and of the route"))
        diag("error=%d nout=%zu reason=%s", res.error, res.nout, res.reason);
    esb_route_result_clear(&res);
    esb_msg_unref(m);
    m = mk("a,b");
    esb_route_run(r, s, m, &res);
    ok(!res.error && res.nout == 1 && res.out[0].msg == m && res.dropped,
       "the lua predicate false: the message goes on unchanged, then a transform drops it");
    esb_route_result_clear(&res);
    esb_msg_unref(m);
    esb_route_free(r);

    r = compile("<route id='r' from='queue:in'>\n"
                "  <filter lua='eval.lua'/>\n"
                "  <transform lua='hostile.lua'/>\n"
                "  <to uri='queue:out'/>\n"
                "</route>",
                &d);
    if (!r) bail("route 2 does not compile: %s", d.n ? d.msgs[0] : "?");
    m = mk("loop");
    esb_msg_add_header(m, "x-pass", "yes");
    esb_route_run(r, s, m, &res);
    if (!ok(res.error && res.nout == 0 &&
                !strncmp(res.reason,
                         "step 2 (transform lua=hostile.lua, line 3): hostile.lua:", 56) &&
                strstr(res.reason, "instruction limit exceeded"),
            "a limit hit is a routing error naming the step, its line and the script line"))
        diag("reason: %s", res.reason);
    esb_route_result_clear(&res);
    esb_msg_unref(m);
    m = mk("ok");
    esb_msg_add_header(m, "x-pass", "yes");
    esb_route_run(r, s, m, &res);
    ok(!res.error && res.nout == 1 && !memcmp(res.out[0].msg->body->data, "UPPER:OK X!", 11),
       "the next message through the same scratch is transformed");
    esb_route_result_clear(&res);
    esb_msg_unref(m);
    esb_route_free(r);
    esb_route_scratch_free(s);

    static const struct {
        const char *xml, *want, *name;
    } bad[] = {
        {"<route id='r' from='queue:in'>\n<transform lua='bad-syntax.lua'/>\n"
         "<to uri='queue:o'/></route>",
         "t.xml:2: element <transform>: attribute 'lua': lua script bad-syntax.lua:3:",
         "a transform with a syntax error: config file:line and script file:line"},
        {"<route id='r' from='queue:in'>\n<transform/>\n</route>", "attribute 'lua'",
         "a transform without lua="},
        {"<route id='r' from='queue:in'>\n<filter lua='contract.lua' function='nope'/>\n</route>",
         "t.xml:2: element <filter>: lua script contract.lua does not define function nope",
         "a lua predicate naming a missing function"},
        {"<route id='r' from='queue:in'>\n<filter lua='contract.lua' equals='x'/>\n</route>",
         "lua= takes no equals=", "lua= with an operand"},
        {"<route id='r' from='queue:in'>\n<filter header='x' exists='true' function='f'/>\n"
         "</route>",
         "function= goes with lua= only", "function= without lua="},
    };
    for (size_t i = 0; i < ESB_ARRAY_LEN(bad); i++) {
        struct esb_diags dd = {0};
        struct esb_route *br = compile(bad[i].xml, &dd);
        int found = 0;
        for (size_t k = 0; k < dd.n; k++) found |= strstr(dd.msgs[k], bad[i].want) != NULL;
        if (!ok(!br && found, "compile error: %s", bad[i].name))
            for (size_t k = 0; k < dd.n; k++) diag("got: %s", dd.msgs[k]);
        esb_route_free(br);
        esb_diags_free(&dd);
    }
    esb_diags_free(&d);
}

/* ---- cost ---- */

static void test_speed(void)
{
    struct esb_lua_prog *p = load("contract.lua", "same");
    struct esb_msg *m = mk("<order><id>1</id><total>12.50</total></order>");
    esb_msg_add_header(m, "content-length", "48");
    esb_msg_add_header(m, "esb-source", "web");
    esb_msg_add_header(m, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    const int N = 200000;
    int fails = 0;
    uint64_t t0 = esb_mono_ns();
    for (int i = 0; i < N; i++) fails += run(p, m) != 1;
    double us = (double)(esb_mono_ns() - t0) / 1e3 / N;
    ok(fails == 0, "identity transform %d times", N);
    diag("identity transform: %.2f us per call (3 headers, 48-byte body)", us);
    esb_lua_prog_free(p);
    p = load("contract.lua", "modify");
    t0 = esb_mono_ns();
    for (int i = 0; i < N; i++) fails += run(p, m) != 1;
    us = (double)(esb_mono_ns() - t0) / 1e3 / N;
    ok(fails == 0, "modifying transform %d times", N);
    diag("modifying transform (body, content type, headers): %.2f us per call", us);
    size_t mem = esb__lua_vm_mem(vm);
    ok(mem < MEM_BOUND, "memory after %d calls: %zu bytes", 2 * N, mem);
    esb_lua_prog_free(p);
    esb_msg_unref(m);
}

int main(void)
{
    const char *top = getenv("top_srcdir");
    snprintf(dir, sizeof(dir), "%s/tests/data/lua", top ? top : ESB_SRCDIR);
    esb_log_set_level(ESB_LOG_WARN);
    vm = esb_lua_vm_new();
    ev = load("eval.lua", "transform");
    test_forbidden();
    test_limits();
    test_isolation();
    test_contract();
    test_load();
    test_routes();
    test_speed();
    clear_outs();
    esb_lua_prog_free(ev);
    esb_lua_vm_free(vm);
    xmlCleanupParser();
    return tap_done();
}
