/* test-lua-modules.c - the esb.* Lua modules (transformers/lua_*.c).
 *
 * Runs every tests/lua/NAME.lua file in a plain lua_State with the `esb` table
 * built from esb_lua_modules[]; the files report through ok(cond, name)
 * (one TAP line each). Then runs every ```lua block of docs/lua-api.md (one
 * TAP line per block: it must run without error, its asserts hold), so the
 * documented examples are tested. Then C-level checks: the module table,
 * failures under a memory cap and under an instruction hook free every C
 * resource (ASan/LSan) and leave the state usable. */
#include "config.h"

#include "../tap.h"

#include "log.h"
#include "lua_modules.h"
#include "lua_modules_internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <libxml/parser.h>
#include <lua.h>
#include <lualib.h>

static const char *srcdir(void)
{
    const char *d = getenv("top_srcdir");
    return d && *d ? d : ".";
}

/* ---- functions for the Lua tests ---- */

static int l_ok(lua_State *L)
{
    char name[300];
    int c = lua_toboolean(L, 1);
    snprintf(name, sizeof(name), "%s", luaL_optstring(L, 2, "(unnamed)"));
    for (char *p = name; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '#') *p = ' '; /* one TAP line */
    ok(c, "%s", name);
    lua_pushboolean(L, c);
    return 1;
}

static int l_diag(lua_State *L)
{
    diag("%s", luaL_tolstring(L, 1, NULL));
    return 0;
}

/* capture_stderr(fn) -> text written to stderr while fn ran */
static int l_capture_stderr(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    fflush(stderr);
    FILE *tmp = tmpfile();
    if (!tmp) return luaL_error(L, "tmpfile failed");
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    lua_pushvalue(L, 1);
    int st = lua_pcall(L, 0, 0, 0);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[8192];
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof(buf), tmp);
    fclose(tmp);
    if (st != LUA_OK) return lua_error(L);
    lua_pushlstring(L, buf, n);
    return 1;
}

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

static void open_esb(lua_State *L)
{
    lua_newtable(L);
    for (const struct esb_lua_module *m = esb_lua_modules; m->name; m++) {
        m->open(L);
        lua_setfield(L, -2, m->name);
    }
    lua_setglobal(L, "esb");
}

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    if (!L) bail("luaL_newstate");
    luaL_openlibs(L);
    open_esb(L);
    lua_register(L, "ok", l_ok);
    lua_register(L, "diag", l_diag);
    lua_register(L, "capture_stderr", l_capture_stderr);
    lua_pushliteral(L, "test-lua-modules");
    lua_setfield(L, LUA_REGISTRYINDEX, ESB_LUA_REG_SCRIPT);
    /* raises(f, ...) -> the error message, or nil if f did not raise */
    if (luaL_dostring(L, "function raises(f, ...) local good, e = pcall(f, ...) "
                         "if good then return nil end return tostring(e) end"))
        bail("prelude: %s", lua_tostring(L, -1));
    return L;
}

/* Run the chunk on top (in a fresh environment when fresh_env); 0 or the
 * error message in msg. */
static int run_chunk(lua_State *L, int fresh_env, char *msg, size_t n)
{
    if (fresh_env) {
        lua_newtable(L);
        lua_newtable(L);
        lua_pushglobaltable(L);
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, -2);
        if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    }
    lua_pushcfunction(L, traceback);
    lua_insert(L, -2);
    int st = lua_pcall(L, 0, 0, -2);
    if (st != LUA_OK) snprintf(msg, n, "%s", lua_tostring(L, -1));
    lua_settop(L, 0);
    return st;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_lua_files(lua_State *L)
{
    char dir[1024], path[1200], msg[4096];
    char *names[256];
    size_t n = 0;
    snprintf(dir, sizeof(dir), "%s/tests/lua", srcdir());
    DIR *d = opendir(dir);
    if (!d) bail("cannot open %s", dir);
    for (struct dirent *e; (e = readdir(d)) && n < ESB_ARRAY_LEN(names);) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".lua") == 0) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), by_name);
    ok(n >= 7, "tests/lua holds the module test files (%zu)", n);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        int st = luaL_loadfilex(L, path, "t");
        if (st == LUA_OK)
            st = run_chunk(L, 1, msg, sizeof(msg));
        else
            snprintf(msg, sizeof(msg), "%s", lua_tostring(L, -1)), lua_settop(L, 0);
        if (st != LUA_OK) ok(0, "%s ran to the end: %s", names[i], msg);
        free(names[i]);
    }
}

/* Every ```lua block of docs/lua-api.md runs and its asserts hold. */
static void run_doc_examples(lua_State *L)
{
    char path[1200], msg[4096], line[4096], name[64];
    snprintf(path, sizeof(path), "%s/docs/lua-api.md", srcdir());
    FILE *f = fopen(path, "r");
    if (!f) bail("cannot open %s", path);
    luaL_Buffer b;
    int in = 0, start = 0, lineno = 0, blocks = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (!in && strncmp(line, "```lua", 6) == 0) {
            in = 1;
            start = lineno + 1;
            luaL_buffinit(L, &b);
        } else if (in && strncmp(line, "```", 3) == 0) {
            in = 0;
            blocks++;
            luaL_pushresult(&b);
            size_t len;
            const char *code = lua_tolstring(L, -1, &len);
            snprintf(name, sizeof(name), "=docs/lua-api.md:%d", start);
            int st = luaL_loadbufferx(L, code, len, name, "t");
            lua_remove(L, -2);
            if (st == LUA_OK)
                st = run_chunk(L, 1, msg, sizeof(msg));
            else
                snprintf(msg, sizeof(msg), "%s", lua_tostring(L, -1)), lua_settop(L, 0);
            if (!ok(st == LUA_OK, "docs/lua-api.md example at line %d", start)) diag("%s", msg);
        } else if (in) {
            luaL_addstring(&b, line);
        }
    }
    fclose(f);
    ok(!in, "docs/lua-api.md: every ```lua block is closed");
    ok(blocks >= 30, "docs/lua-api.md has examples for the API (%d blocks)", blocks);
}

/* ---- C-level checks ---- */

/* luaL_dostring, but returning the pcall status (LUA_ERRMEM, ...) */
static int dostring(lua_State *L, const char *code)
{
    int st = luaL_loadstring(L, code);
    return st != LUA_OK ? st : lua_pcall(L, 0, LUA_MULTRET, 0);
}

static void test_table(void)
{
    static const char *const want[] = {"json", "xml",  "re",   "csv", "fixed",
                                       "log",  "uuid", "time", "num", "canonical"};
    size_t n = 0;
    while (esb_lua_modules[n].name) n++;
    ok(n == ESB_ARRAY_LEN(want), "esb_lua_modules lists %zu modules", n);
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    for (size_t i = 0; i < ESB_ARRAY_LEN(want); i++) {
        const struct esb_lua_module *m = esb_lua_modules;
        while (m->name && strcmp(m->name, want[i]) != 0) m++;
        int good = m->name && m->open(L) == 1 && lua_istable(L, -1);
        ok(good, "module %s opens to a table", want[i]);
        lua_settop(L, 0);
    }
    lua_close(L);
}

struct capped {
    size_t used, limit;
};

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct capped *c = ud;
    if (!ptr) osize = 0;
    if (nsize == 0) {
        free(ptr);
        c->used -= osize;
        return NULL;
    }
    if (nsize > osize && c->used + (nsize - osize) > c->limit) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) c->used = c->used - osize + nsize;
    return p;
}

/* Each heavy call fails with a memory error under a tight cap; nothing it
 * allocated in C (jansson trees, xmlDocs, XPath objects) leaks: LSan. */
static void test_memory_cap(void)
{
    static const struct {
        const char *name, *code;
    } cases[] = {
        {"json.decode", "return esb.json.decode(BIG_JSON)"},
        {"json.encode", "return esb.json.encode(BIG_TABLE)"},
        {"xml.parse", "return esb.xml.parse(BIG_XML)"},
        {"xml.xpath", "return esb.xml.xpath(BIG_XML, '//i')"},
        {"xml.xpath_nodes", "return esb.xml.xpath_nodes(BIG_XML, '//i')"},
        {"xml.serialize", "return esb.xml.serialize(BIG_NODE)"},
        {"csv.parse", "return esb.csv.parse(BIG_CSV)"},
        {"csv.format", "return esb.csv.format(BIG_ROWS)"},
        {"re.gsub", "return esb.re.gsub(BIG_TEXT, 'a', 'bbbb')"},
        {"re.gmatch", "local t = {} for w in esb.re.gmatch(BIG_TEXT, 'a') do t[#t+1] = w end"},
        {"canonical.encode", "return esb.canonical.encode(BIG_EVENT)"},
    };
    struct capped c = {.limit = SIZE_MAX};
    lua_State *L = lua_newstate(capped_alloc, &c);
    luaL_openlibs(L);
    open_esb(L);
    if (luaL_dostring(
            L, "BIG_JSON = '[' .. string.rep('{\"a\":[1,2.5,\"x\"],\"b\":{\"c\":null}},', 60000) "
               ".. '0]'\n"
               "BIG_TABLE = {} for i = 1, 60000 do BIG_TABLE[i] = {a = i, b = 'xyz'} end\n"
               "BIG_XML = '<r>' .. string.rep('<i a=\"1\">t</i>', 60000) .. '</r>'\n"
               "BIG_NODE = {name = 'r', children = {}}\n"
               "for i = 1, 60000 do BIG_NODE.children[i] = {name = 'i', attrs = {a = '1'}, "
               "children = {'t'}} end\n"
               "BIG_CSV = string.rep('a,b,\"c\"\"d\"\\r\\n', 60000)\n"
               "BIG_ROWS = {} for i = 1, 60000 do BIG_ROWS[i] = {'a', 'b,c', i} end\n"
               "BIG_TEXT = string.rep('a', 1000000)\n"
               "BIG_EVENT = esb.canonical.event{type = 't', source = 's', data = BIG_TABLE}\n"))
        bail("memory cap setup: %s", lua_tostring(L, -1));
    lua_gc(L, LUA_GCCOLLECT);
    for (size_t i = 0; i < ESB_ARRAY_LEN(cases); i++) {
        c.limit = c.used + 512 * 1024;
        int st = dostring(L, cases[i].code);
        c.limit = SIZE_MAX;
        ok(st == LUA_ERRMEM, "%s under a memory cap fails with a memory error (status %d: %s)",
           cases[i].name, st, st ? lua_tostring(L, -1) : "none");
        lua_settop(L, 0);
        lua_gc(L, LUA_GCCOLLECT);
    }
    int st = luaL_dostring(L, "return esb.json.encode(esb.json.decode('[1,{\"a\":2}]'))");
    ok(st == LUA_OK && strcmp(lua_tostring(L, -1), "[1,{\"a\":2}]") == 0,
       "the state works after the memory errors");
    lua_close(L);
}

static void hook_stop(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "instruction limit exceeded");
}

/* A runaway callback inside a module function is stopped by the host's
 * count hook; the module leaks nothing and the state stays usable. */
static void test_hook(void)
{
    static const char *const cases[] = {
        "return esb.re.gsub(string.rep('a', 100), 'a', function() while true do end end)",
        "return esb.re.gsub(string.rep('ab', 100), '(a)(b)', setmetatable({}, {__index = "
        "function() while true do end end}))",
        "return esb.json.encode({a = setmetatable({}, {__index = function() end})}, "
        "{sort_keys = true}), esb.log.info('%s', setmetatable({}, {__tostring = function() "
        "while true do end end}))",
        "return esb.xml.xpath('<a><b>1</b></a>', '//b', setmetatable({}, {__pairs = 1})), "
        "esb.re.gsub(string.rep('x', 10), 'x', function() while true do end end)",
    };
    lua_State *L = new_state();
    esb_log_set_level(ESB_LOG_INFO);
    for (size_t i = 0; i < ESB_ARRAY_LEN(cases); i++) {
        lua_sethook(L, hook_stop, LUA_MASKCOUNT, 100000);
        int st = dostring(L, cases[i]);
        lua_sethook(L, NULL, 0, 0);
        ok(st != LUA_OK && strstr(lua_tostring(L, -1), "instruction limit exceeded"),
           "a runaway callback (case %zu) is stopped by the count hook", i + 1);
        lua_settop(L, 0);
    }
    int st = luaL_dostring(L, "return (esb.re.gsub('abc', 'b', 'X'))");
    ok(st == LUA_OK && strcmp(lua_tostring(L, -1), "aXc") == 0, "the state works afterwards");
    lua_close(L);
}

int main(void)
{
    esb_log_set_level(ESB_LOG_DEBUG);
    lua_State *L = new_state();
    run_lua_files(L);
    run_doc_examples(L);
    lua_close(L);
    test_table();
    test_memory_cap();
    test_hook();
    xmlCleanupParser();
    return tap_done();
}
