/* lua_host.h - the Lua 5.4 host: sandboxed per-worker states that run user
 * transforms and predicates.
 *
 * Two objects:
 *  - esb_lua_prog: one script + entry function, loaded and syntax-checked at
 *    config load (compile errors name file:line), immutable, shared by all
 *    workers of a config generation.
 *  - esb_lua_vm: one lua_State per worker thread, never shared. Each prog is
 *    loaded into a VM lazily on first use (chunk compiled once per VM, kept
 *    by registry ref) — scripts are reloaded with the config because a new
 *    generation gets new VMs.
 *
 * Sandbox: scripts run with an allow-list environment: base functions
 * without dofile/loadfile/collectgarbage/print-to-stdout (print goes to the
 * log), load() of text chunks only, string (no string.dump), table, math,
 * utf8, coroutine; no os, io, package, debug; `require` resolves only
 * modules under the configured script directory (source only, same
 * sandbox). The string metatable is protected (__metatable) so a script
 * cannot change behaviour seen by the next message.
 * Limits per call: an instruction budget (count hook) and a memory cap (the
 * lua_Alloc refuses past it). A limit hit, a script error or a bad return
 * value is not retryable: the caller dead-letters the message with the
 * reason (error + traceback). After a limit hit or error the VM's state for
 * that prog is rebuilt so one bad message cannot poison the next.
 *
 * The message seen by Lua (`msg`) is a table:
 *   msg.id, msg.content_type, msg.body (string), msg.headers (table of
 *   lowercase name -> value).
 * transform(msg) may return: a message table (the same, modified, or a new
 * one: a table with at least `body`), an array of message tables (each
 * becomes its own message, like a split; children get fresh ids and the
 * header correlation-id = parent id), or nil (drop).
 * A predicate function returns a truthy/falsy value.
 *
 * The `esb` global holds the helper modules in C (lua_modules.h):
 * esb.json, esb.xml, esb.re, esb.csv, esb.fixed, esb.log, esb.uuid, esb.time,
 * esb.canonical. */
#ifndef ESB_LUA_HOST_H
#define ESB_LUA_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct esb_msg;
struct esb_lua_prog;
struct esb_lua_vm;

struct esb_lua_limits {
    uint64_t memory;       /* bytes per VM; default 64 MiB */
    uint64_t instructions; /* per call; default 10,000,000 */
    uint64_t max_output;   /* bytes of all returned bodies per call; default 64 MiB */
};

/* Load path (relative paths are relative to script_dir) and check that it
 * compiles and defines function fn. script_dir also bounds `require`.
 * Errors (compile error with line, missing function) go to err. */
int esb_lua_prog_load(const char *script_dir, const char *path, const char *fn,
                      const struct esb_lua_limits *limits, struct esb_lua_prog **out,
                      struct esb_err *err) ESB_WUR;
void esb_lua_prog_free(struct esb_lua_prog *p); /* NULL-safe */
const char *esb_lua_prog_name(const struct esb_lua_prog *p); /* "path:function" */

struct esb_lua_vm *esb_lua_vm_new(void);
void esb_lua_vm_free(struct esb_lua_vm *vm); /* NULL-safe */

/* Run the transform on in (borrowed). On success returns 0 with *out an
 * array of *nout new messages (owned; 0 = dropped). On failure returns
 * negative with reason (including the Lua traceback, or "instruction limit
 * exceeded", "memory limit exceeded") and *nout 0. */
int esb_lua_transform(struct esb_lua_vm *vm, const struct esb_lua_prog *p,
                      const struct esb_msg *in, struct esb_msg ***out, size_t *nout,
                      char *reason, size_t reason_len) ESB_WUR;

/* Run a predicate; *result 0/1. Failure as above. */
int esb_lua_predicate(struct esb_lua_vm *vm, const struct esb_lua_prog *p,
                      const struct esb_msg *in, int *result, char *reason,
                      size_t reason_len) ESB_WUR;

#endif
