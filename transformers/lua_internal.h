/* lua_internal.h - shared by the Lua host's files (lua_host.c: VMs, limits,
 * calls; lua_sandbox.c: what scripts see; lua_msg.c: message <-> table;
 * lua_safelib.c: bounded library functions) and by the host's unit test.
 * esb__lua_charge may also serve the esb.* modules for long C loops.
 *
 * Every lua_State the host creates has the host's allocator with the
 * esb_lua_vm as its userdata (lua_getallocf), so C functions and the count
 * hook find the VM's budget with esb__lua_vm_of(L) - from any coroutine,
 * and safely answer NULL for a state the host did not make. */
#ifndef ESB_LUA_INTERNAL_H
#define ESB_LUA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "lua_host.h"

/* Defaults of struct esb_lua_limits (a 0 field means the default). */
#define ESB_LUA_DEF_MEMORY       (64ull << 20)
#define ESB_LUA_DEF_INSTRUCTIONS 10000000ull
#define ESB_LUA_DEF_MAX_OUTPUT   (64ull << 20)
/* Largest script or required module read from disk. */
#define ESB_LUA_MAX_SCRIPT (4u << 20)
/* Most messages one transform may return (a split). */
#define ESB_LUA_MAX_SPLIT 100000
/* The count hook runs every this many VM instructions. */
#define ESB_LUA_HOOK_EVERY 1000
/* ... and every this many in a coroutine; each coroutine made costs as much. */
#define ESB_LUA_CO_HOOK_EVERY 100

/* lua_host.c: a program (immutable once loaded). */
struct esb_lua_prog {
    char *path, *fn, *name, *dir, *chunkname;
    char *src;
    size_t srclen;
    struct esb_lua_limits limits;
    uint64_t serial;
};

/* A program loaded into a VM. */
struct esb__lua_vm_prog {
    const struct esb_lua_prog *p;
    uint64_t serial;
    int fn_ref;
};

/* lua_host.c: one worker's state. */
/* lua_host.c's allocator keeps freed blocks of up to ESB__LUA_SMALL_MAX
 * bytes for reuse, at most ESB__LUA_POOL_MAX bytes per VM. */
#define ESB__LUA_SMALL_MAX 256
#if defined(__SANITIZE_ADDRESS__)
#define ESB__LUA_POOL_MAX 0
#else
#define ESB__LUA_POOL_MAX (1024 * 1024)
#endif

struct esb_lua_vm {
    lua_State *L;
    void *pool[ESB__LUA_SMALL_MAX / 16]; /* free blocks by size class (16, 32, ... bytes) */
    size_t pool_bytes;
    size_t mem_used, mem_limit;
    int mem_refused; /* the allocator said no since the call began */
    int64_t left;    /* instructions left in this call */
    uint64_t limit;  /* the call's instruction budget */
    int killed;      /* the budget is spent: everything rethrows */
    int broken;      /* rebuild the state before the next call */
    char kill_msg[200];
    const struct esb_lua_prog *cur;
    const struct esb_lua_prog *named; /* registry "esb.script" names it */
    uint64_t named_serial;
    struct esb__lua_vm_prog *progs;
    size_t nprogs;
    int ref_libs, ref_dirty, ref_loaded;
    int ndirty;
};

/* The VM of a host-made state (NULL for a state the host did not make). */
struct esb_lua_vm *esb__lua_vm_of(struct lua_State *L);
/* Charge n instructions of work done in C to the call's budget; raises
 * "instruction limit exceeded" when it is spent. No-op outside the host. */
void esb__lua_charge(struct lua_State *L, uint64_t n);
/* Bytes the VM's allocator holds now (0 before its first call). */
size_t esb__lua_vm_mem(const struct esb_lua_vm *vm);

/* lua_host.c: the count hook (every lua_gethookcount(L) instructions). */
void esb__lua_hook(lua_State *L, lua_Debug *ar);

/* ---- lua_sandbox.c ---- */

/* Open the libraries and modules into vm->L, keep them and the dirty list
 * and require cache in the registry (a lua_CFunction: call it protected). */
int esb__lua_open_libs(lua_State *L);
/* Push a new environment E for a chunk, in loading mode. */
void esb__lua_build_env(lua_State *L, struct esb_lua_vm *vm);
/* The top level of the environment at idx has run (see lua_sandbox.c). */
void esb__lua_end_loading(lua_State *L, int idx);
/* Empty the proxies written during the call. Allocates nothing. */
void esb__lua_clear_dirty(lua_State *L, struct esb_lua_vm *vm);
/* Read a script file (regular, at most ESB_LUA_MAX_SCRIPT bytes) into *out
 * (malloc'd, NUL-terminated). 0, or -1 with why. */
int esb__lua_read_file(const char *path, char **out, size_t *len, char *why, size_t whylen);

/* lua_safelib.c: replace, in the string and table library tables at the
 * top of the stack (string at -2, table at -1), the functions whose C
 * loops the count hook cannot see: find/match/gmatch/gsub (a pattern
 * matcher that charges its steps), rep (empty pieces), and table
 * insert/remove/move/concat/unpack/sort (charged by element count). */
void esb__lua_safelib(struct lua_State *L);

/* ---- lua_msg.c ---- */

/* What esb__lua_push_msg pushed, to spot an unchanged body. */
struct esb__lua_pushed {
    const char *body; /* the Lua string's bytes (stable while it lives) */
    int table;        /* absolute stack index of the msg table */
    int dups;         /* the input has a header name twice */
};

/* Push msg as a table {id, content_type, body, headers = {name = value}}
 * (names lowercased; the first of duplicate names wins). May raise a Lua
 * memory error: call it in protected mode. */
void esb__lua_push_msg(struct lua_State *L, const struct esb_msg *m, struct esb__lua_pushed *p);

/* Messages made from a transform's return value so far; on failure the
 * caller frees them (also after a Lua error unwound the conversion). */
struct esb__lua_out {
    struct esb_msg **v;
    size_t n, cap;
    uint64_t bytes; /* body bytes so far, against max_output */
};
void esb__lua_out_free(struct esb__lua_out *o);

/* Convert the value at idx (the transform's first result) into messages in
 * o: nil = none; a message table; a list of message tables (a split: new
 * ids, correlation-id, split-index, split-size). in is the input message.
 * Returns 0, or -1 with reason ("transform returned ...: ..."). Uses raw
 * access only (no metamethods run); may raise a Lua memory error. */
int esb__lua_to_msgs(struct lua_State *L, int idx, const struct esb_msg *in,
                     const struct esb__lua_pushed *p, uint64_t max_output, struct esb__lua_out *o,
                     char *reason, size_t reason_len);

#endif
