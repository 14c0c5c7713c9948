/* lua_host.c - the Lua 5.4 host (see lua_host.h): programs, per-worker VMs,
 * limits and calls.
 *
 * A VM is one lua_State built lazily at its first call:
 *  - a lua_Alloc that counts every byte (frees included) and refuses to go
 *    over the memory limit (Lua then raises "not enough memory", after an
 *    emergency collection);
 *  - a count hook every ESB_LUA_HOOK_EVERY instructions that takes them off
 *    the call's budget and raises "instruction limit exceeded" when it is
 *    spent. Coroutines inherit the hook from the thread that creates them
 *    (lua_newthread copies it), so a loop inside a coroutine is counted too;
 *    coroutine.create/wrap set it to every ESB_LUA_CO_HOOK_EVERY and charge
 *    that much per coroutine, so swarms of short-lived coroutines (each
 *    would otherwise run its first instructions uncounted) are bounded too;
 *    once the budget is spent the sandbox's pcall, xpcall and
 *    coroutine.resume rethrow, so a script cannot catch the limit;
 *  - the sandbox of lua_sandbox.c: the allowed libraries, one environment
 *    per program whose changes during a call are undone after it.
 *
 * A program is loaded into a VM at its first call there: compiled from the
 * source text kept in the prog (mode "t"), its top level run under the
 * limits, its function kept by registry ref. After any failure (script error, limit hit, bad
 * result) the whole lua_State is closed and rebuilt at the next call, so the garbage of a table
 * bomb or anything a failed call left half-done cannot reach the next message. */
#include "config.h"

#include "lua_internal.h"

#include "log.h"
#include "msg.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FN_MAX 100 /* longest entry function name */
/* Registry field naming the running script for esb.log ("[lua:NAME]");
 * the same name as in lua_modules_internal.h. */
#define ESB_LUA_REG_SCRIPT "esb.script"

static atomic_uint_fast64_t prog_serial;

/* ---- allocator, hook, budget ---- */

/* Small blocks (<= ESB__LUA_SMALL_MAX bytes) are malloc'd rounded up to a
 * multiple of 16 and, when Lua frees them, kept on a per-VM free list of
 * their size class (up to ESB__LUA_POOL_MAX bytes in all) for the next
 * allocation of that class. A transform makes and drops hundreds of small
 * tables and strings per message; glibc keeps only 7 freed blocks per size
 * in its thread cache, the rest go to fastbins that the next large malloc
 * (libxml2's 8 KiB input buffer) consolidates: measured 3-4 us of a 40 us
 * XML order transform. A realloc within one class (a table growing from 3
 * to 4 fields) keeps its block. A VM is used by one thread at a time: no
 * lock. mem_used still counts the sizes Lua asked for; the pool is freed
 * with the state. Off under AddressSanitizer, which should see every
 * free. */
static size_t small_class(size_t n)
{
    return (n + 15) >> 4;
}

static void small_put(struct esb_lua_vm *vm, void *p, size_t size)
{
    size_t c = small_class(size);
    if (vm->pool_bytes + (c << 4) > ESB__LUA_POOL_MAX) {
        free(p);
        return;
    }
    *(void **)p = vm->pool[c - 1];
    vm->pool[c - 1] = p;
    vm->pool_bytes += c << 4;
}

static void *small_get(struct esb_lua_vm *vm, size_t size)
{
    size_t c = small_class(size);
    void *p = vm->pool[c - 1];
    if (!p) return malloc(c << 4);
    vm->pool[c - 1] = *(void **)p;
    vm->pool_bytes -= c << 4;
    return p;
}

static void pool_drain(struct esb_lua_vm *vm)
{
    for (size_t c = 0; c < ESB__LUA_SMALL_MAX / 16; c++) {
        while (vm->pool[c]) {
            void *p = vm->pool[c];
            vm->pool[c] = *(void **)p;
            free(p);
        }
    }
    vm->pool_bytes = 0;
}

/* (re)allocate for Lua: ptr NULL = new block; osize is ptr's exact size */
static void *block_resize(struct esb_lua_vm *vm, void *ptr, size_t osize, size_t nsize)
{
    int osmall = ptr && osize <= ESB__LUA_SMALL_MAX, nsmall = nsize <= ESB__LUA_SMALL_MAX;
    if (!ptr) return nsmall ? small_get(vm, nsize) : malloc(nsize);
    if (!osmall && !nsmall) return realloc(ptr, nsize);
    if (osmall && nsmall && small_class(osize) == small_class(nsize)) return ptr;
    void *np = nsmall ? small_get(vm, nsize) : malloc(nsize);
    if (!np) return NULL;
    memcpy(np, ptr, osize < nsize ? osize : nsize);
    if (osmall)
        small_put(vm, ptr, osize);
    else
        free(ptr);
    return np;
}

static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct esb_lua_vm *vm = ud;
    if (!ptr) osize = 0; /* then osize is a type tag */
    if (nsize == 0) {
        if (ptr && osize <= ESB__LUA_SMALL_MAX)
            small_put(vm, ptr, osize);
        else
            free(ptr);
        vm->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize) {
        size_t add = nsize - osize;
        if (vm->mem_used > vm->mem_limit || add > vm->mem_limit - vm->mem_used) {
            vm->mem_refused = 1;
            return NULL;
        }
    }
    void *np = block_resize(vm, ptr, osize, nsize);
    if (!np) {
        if (nsize <= osize) return ptr; /* a shrink that failed: keep the block */
        vm->mem_refused = 1;
        return NULL;
    }
    vm->mem_used = vm->mem_used - osize + nsize;
    return np;
}

struct esb_lua_vm *esb__lua_vm_of(lua_State *L)
{
    void *ud = NULL;
    return lua_getallocf(L, &ud) == vm_alloc ? ud : NULL;
}

size_t esb__lua_vm_mem(const struct esb_lua_vm *vm)
{
    return vm && vm->L ? vm->mem_used : 0;
}

/* Raise the instruction limit (once formatted, then the same text). level
 * is the stack level to name: 0 in the hook, 1 from a C function. */
static int kill(lua_State *L, struct esb_lua_vm *vm, int level)
{
    if (!vm->killed) {
        lua_Debug ar;
        char where[120] = "";
        if (lua_getstack(L, level, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
            snprintf(where, sizeof(where), "%s:%d: ", ar.short_src, ar.currentline);
        snprintf(vm->kill_msg, sizeof(vm->kill_msg),
                 "%sinstruction limit exceeded (%llu instructions)", where,
                 (unsigned long long)vm->limit);
        vm->killed = 1;
    }
    lua_pushstring(L, vm->kill_msg);
    return lua_error(L);
}

/* Every lua_gethookcount(L) instructions of thread L. */
void esb__lua_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct esb_lua_vm *vm = esb__lua_vm_of(L);
    if (!vm) return;
    vm->left -= lua_gethookcount(L);
    if (vm->left < 0 || vm->killed) kill(L, vm, 0);
}

void esb__lua_charge(lua_State *L, uint64_t n)
{
    struct esb_lua_vm *vm = esb__lua_vm_of(L);
    if (!vm) return;
    if (vm->killed || vm->left < 0 || n > (uint64_t)vm->left) {
        vm->left = -1;
        kill(L, vm, 1);
    }
    vm->left -= (int64_t)n;
}

static int vm_panic(lua_State *L)
{
    esb_error("lua: unprotected error: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    abort();
}

static void vm_close(struct esb_lua_vm *vm)
{
    if (vm->L) {
        vm->killed = 1; /* nothing runs long while closing */
        lua_close(vm->L);
    }
    pool_drain(vm);
    vm->L = NULL;
    for (size_t i = 0; i < vm->nprogs; i++) vm->progs[i].p = NULL;
    vm->nprogs = 0;
    vm->ndirty = 0;
    vm->named = NULL;
    vm->broken = 0;
}

static int vm_open(struct esb_lua_vm *vm, char *reason, size_t reason_len)
{
    vm->mem_used = 0;
    vm->killed = 0;
    vm->left = (int64_t)vm->limit;
    lua_State *L = lua_newstate(vm_alloc, vm);
    if (!L) {
        snprintf(reason, reason_len, "memory limit exceeded: %zu bytes are too few for a Lua state",
                 vm->mem_limit);
        return -1;
    }
    vm->L = L;
    lua_atpanic(L, vm_panic);
    /* Transforms make many short-lived tables per message: generational
     * collection costs less here (measured -7% on the XML order transform). */
    lua_gc(L, LUA_GCGEN, 0, 0);
    lua_sethook(L, esb__lua_hook, LUA_MASKCOUNT, ESB_LUA_HOOK_EVERY);
    lua_pushcfunction(L, esb__lua_open_libs);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        snprintf(reason, reason_len, "cannot build the Lua state: %s (memory limit %zu bytes)",
                 lua_tostring(L, -1) ? lua_tostring(L, -1) : "error", vm->mem_limit);
        vm_close(vm);
        return -1;
    }
    return 0;
}

struct esb_lua_vm *esb_lua_vm_new(void)
{
    return esb_calloc(1, sizeof(struct esb_lua_vm));
}

void esb_lua_vm_free(struct esb_lua_vm *vm)
{
    if (!vm) return;
    vm_close(vm);
    free(vm->progs);
    free(vm);
}

/* ---- calls ---- */

enum call_kind { CALL_LOAD, CALL_TRANSFORM, CALL_PREDICATE };

struct call {
    struct esb_lua_vm *vm;
    const struct esb_lua_prog *p;
    enum call_kind kind;
    const struct esb_msg *in;
    int result;
    struct esb__lua_out out;
    int failed;
    char *reason;
    size_t reason_len;
};

/* The message handler: error text + traceback. */
static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    struct esb_lua_vm *vm = esb__lua_vm_of(L);
    if (!msg) {
        if (!(vm && vm->killed) && luaL_callmeta(L, 1, "__tostring") &&
            lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Copy text into the reason, one line: newlines become "; ", other control
 * characters '?'. */
static void set_reason(struct call *c, const char *prefix, const char *text)
{
    size_t n = 0, cap = c->reason_len;
    if (!cap) return;
    c->failed = 1;
    for (int part = 0; part < 2; part++) {
        const char *s = part ? text : prefix;
        for (; s && *s && n + 1 < cap; s++) {
            unsigned char ch = (unsigned char)*s;
            if (ch == '\n') {
                if (n + 3 >= cap) break;
                c->reason[n++] = ';';
                c->reason[n++] = ' ';
            } else if (ch == '\t') {
                continue;
            } else {
                c->reason[n++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
            }
        }
    }
    c->reason[n] = '\0';
}

/* The reason of a failed lua_pcall (status st, error value on top). */
static void set_error(struct call *c, lua_State *L, int st, const char *prefix)
{
    struct esb_lua_vm *vm = c->vm;
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    char buf[300];
    if (vm->killed) { /* the first place the limit hit, and the traceback if any */
        const char *tb = msg ? strstr(msg, "\nstack traceback:") : NULL;
        snprintf(buf, sizeof(buf), "%s%s", prefix, vm->kill_msg);
        set_reason(c, buf, tb);
    } else if (st == LUA_ERRMEM || (vm->mem_refused && (st == LUA_ERRERR || !msg ||
                                                        strstr(msg, "not enough memory")))) {
        snprintf(buf, sizeof(buf), "memory limit exceeded (%zu bytes): %s", vm->mem_limit,
                 msg ? msg : "not enough memory");
        set_reason(c, prefix, buf);
    } else {
        set_reason(c, prefix, msg ? msg : "error (no message)");
    }
}

/* Load c->p into the VM (compile, run its top level, find the function);
 * push the function. The handler is at index 1. 0, or -1 with the reason. */
static int push_prog_fn(lua_State *L, struct call *c)
{
    struct esb_lua_vm *vm = c->vm;
    const struct esb_lua_prog *p = c->p;
    for (size_t i = 0; i < vm->nprogs; i++) {
        if (vm->progs[i].p == p && vm->progs[i].serial == p->serial) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, vm->progs[i].fn_ref);
            return 0;
        }
    }
    int st = luaL_loadbufferx(L, p->src, p->srclen, p->chunkname, "t");
    if (st != LUA_OK) {
        set_error(c, L, st, "");
        return -1;
    }
    int chunk = lua_gettop(L);
    esb__lua_build_env(L, vm);
    int e = lua_gettop(L);
    lua_pushvalue(L, e);
    lua_setupvalue(L, chunk, 1);
    lua_pushvalue(L, chunk);
    st = lua_pcall(L, 0, 0, 1);
    if (st != LUA_OK) {
        set_error(c, L, st, "");
        return -1;
    }
    esb__lua_end_loading(L, e);
    lua_getfield(L, e, p->fn);
    if (lua_type(L, -1) != LUA_TFUNCTION) {
        char buf[300];
        snprintf(buf, sizeof(buf), "%s does not define function %s (got %s)", p->path, p->fn,
                 luaL_typename(L, -1));
        set_reason(c, "", buf);
        return -1;
    }
    lua_pushvalue(L, -1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_replace(L, chunk);
    lua_settop(L, chunk);
    vm->progs = esb_realloc(vm->progs, (vm->nprogs + 1) * sizeof(*vm->progs));
    vm->progs[vm->nprogs++] = (struct esb__lua_vm_prog){p, p->serial, ref};
    return 0;
}

static int call_body(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_pushcfunction(L, msghandler); /* 1 */
    if (c->vm->named != c->p || c->vm->named_serial != c->p->serial) {
        lua_pushstring(L, c->p->path); /* esb.log's "[lua:NAME]" */
        lua_setfield(L, LUA_REGISTRYINDEX, ESB_LUA_REG_SCRIPT);
        c->vm->named = c->p;
        c->vm->named_serial = c->p->serial;
    }
    if (push_prog_fn(L, c) < 0) return 0; /* 2: fn */
    if (c->kind == CALL_LOAD) return 0;
    struct esb__lua_pushed pushed;
    esb__lua_push_msg(L, c->in, &pushed); /* 3: msg */
    lua_getfield(L, 3, "body");           /* 4: keeps the pushed body alive */
    lua_rotate(L, 2, -1);                 /* 2: msg, 3: body, 4: fn */
    pushed.table = 2;
    lua_pushvalue(L, 2);
    int st = lua_pcall(L, 1, 1, 1); /* 4: result */
    if (st != LUA_OK) {
        set_error(c, L, st, "");
        esb__lua_clear_dirty(L, c->vm);
        return 0;
    }
    if (c->kind == CALL_PREDICATE) {
        c->result = lua_toboolean(L, 4);
    } else if (esb__lua_to_msgs(L, 4, c->in, &pushed, c->p->limits.max_output, &c->out, c->reason,
                                c->reason_len) < 0) {
        c->failed = 1;
    }
    esb__lua_clear_dirty(L, c->vm);
    return 0;
}

static int run_call(struct call *c)
{
    struct esb_lua_vm *vm = c->vm;
    const struct esb_lua_prog *p = c->p;
    if (c->reason_len) c->reason[0] = '\0';
    if (vm->broken) vm_close(vm);
    vm->mem_limit = (size_t)p->limits.memory;
    vm->limit = p->limits.instructions;
    if (!vm->L && vm_open(vm, c->reason, c->reason_len) < 0) return -1;
    lua_State *L = vm->L;
    if (vm->mem_used > vm->mem_limit / 2) lua_gc(L, LUA_GCCOLLECT);
    vm->left = (int64_t)vm->limit;
    vm->killed = 0;
    vm->mem_refused = 0;
    vm->cur = p;
    lua_pushcfunction(L, call_body);
    lua_pushlightuserdata(L, c);
    int st = lua_pcall(L, 1, 0, 0);
    if (st != LUA_OK) set_error(c, L, st, "");
    vm->cur = NULL;
    lua_settop(L, 0);
    if (c->failed) {
        vm->broken = 1;
        esb__lua_out_free(&c->out);
        return -1;
    }
    return 0;
}

int esb_lua_transform(struct esb_lua_vm *vm, const struct esb_lua_prog *p, const struct esb_msg *in,
                      struct esb_msg ***out, size_t *nout, char *reason, size_t reason_len)
{
    struct call c = {.vm = vm,
                     .p = p,
                     .kind = CALL_TRANSFORM,
                     .in = in,
                     .reason = reason,
                     .reason_len = reason_len};
    *out = NULL;
    *nout = 0;
    if (run_call(&c) < 0) return ESB_EINVAL;
    *out = c.out.v;
    *nout = c.out.n;
    return 0;
}

int esb_lua_predicate(struct esb_lua_vm *vm, const struct esb_lua_prog *p, const struct esb_msg *in,
                      int *result, char *reason, size_t reason_len)
{
    struct call c = {.vm = vm,
                     .p = p,
                     .kind = CALL_PREDICATE,
                     .in = in,
                     .reason = reason,
                     .reason_len = reason_len};
    *result = 0;
    if (run_call(&c) < 0) return ESB_EINVAL;
    *result = c.result;
    return 0;
}

/* ---- programs ---- */

static int valid_fn(const char *fn)
{
    size_t n = strlen(fn);
    if (n == 0 || n > FN_MAX || (fn[0] >= '0' && fn[0] <= '9')) return 0;
    for (; *fn; fn++)
        if (!((*fn >= 'a' && *fn <= 'z') || (*fn >= 'A' && *fn <= 'Z') ||
              (*fn >= '0' && *fn <= '9') || *fn == '_'))
            return 0;
    return 1;
}

int esb_lua_prog_load(const char *script_dir, const char *path, const char *fn,
                      const struct esb_lua_limits *limits, struct esb_lua_prog **out,
                      struct esb_err *err)
{
    *out = NULL;
    if (!valid_fn(fn))
        return esb_err_set(err, ESB_EINVAL, "function '%.60s' is not a Lua identifier", fn);
    if (!path[0]) return esb_err_set(err, ESB_EINVAL, "empty script path");
    struct esb_lua_prog *p = esb_calloc(1, sizeof(*p));
    p->path = esb_strdup(path);
    p->fn = esb_strdup(fn);
    p->dir = esb_strdup(script_dir && script_dir[0] ? script_dir : ".");
    size_t dl = strlen(p->dir);
    while (dl > 1 && p->dir[dl - 1] == '/') p->dir[--dl] = '\0';
    size_t nl = strlen(path) + strlen(fn) + 2;
    p->name = esb_malloc(nl);
    snprintf(p->name, nl, "%s:%s", path, fn);
    p->chunkname = esb_malloc(strlen(path) + 2);
    snprintf(p->chunkname, strlen(path) + 2, "@%s", path);
    p->limits.memory = limits && limits->memory ? limits->memory : ESB_LUA_DEF_MEMORY;
    p->limits.instructions =
        limits && limits->instructions ? limits->instructions : ESB_LUA_DEF_INSTRUCTIONS;
    p->limits.max_output =
        limits && limits->max_output ? limits->max_output : ESB_LUA_DEF_MAX_OUTPUT;
    if (p->limits.instructions > INT64_MAX / 2) p->limits.instructions = INT64_MAX / 2;
    p->serial = atomic_fetch_add(&prog_serial, 1) + 1;

    char full[4096], why[400];
    if (path[0] == '/')
        snprintf(full, sizeof(full), "%s", path);
    else
        snprintf(full, sizeof(full), "%s/%s", p->dir, path);
    if (esb__lua_read_file(full, &p->src, &p->srclen, why, sizeof(why)) < 0) {
        esb_err_set(err, ESB_EINVAL, "lua script: %s", why);
        goto fail;
    }
    /* Compile and run the top level once in a scratch VM: syntax errors
     * with their line, errors of the top level, a missing function. */
    struct esb_lua_vm *vm = esb_lua_vm_new();
    struct call c = {.vm = vm, .p = p, .kind = CALL_LOAD, .reason = why, .reason_len = sizeof(why)};
    int rc = run_call(&c);
    esb_lua_vm_free(vm);
    if (rc < 0) {
        esb_err_set(err, ESB_EINVAL, "lua script %s", why);
        goto fail;
    }
    *out = p;
    return 0;
fail:
    esb_lua_prog_free(p);
    return ESB_EINVAL;
}

void esb_lua_prog_free(struct esb_lua_prog *p)
{
    if (!p) return;
    free(p->path);
    free(p->fn);
    free(p->name);
    free(p->dir);
    free(p->chunkname);
    free(p->src);
    free(p);
}

const char *esb_lua_prog_name(const struct esb_lua_prog *p)
{
    return p->name;
}
