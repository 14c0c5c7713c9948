/* lua_modules_internal.h - helpers shared by the esb.* module files
 * (lua_json.c, lua_xml.c, ...), not used outside transformers/lua_*.c.
 *
 * Memory discipline: every module function may be interrupted by a Lua error
 * (a bad argument, the host's memory cap refusing an allocation, the
 * instruction hook firing inside a callback). So:
 *  - output is built in an esb__lmod_buf, whose storage is a Lua userdata
 *    (counted by the host's allocator cap, collected on error);
 *  - a C resource (jansson tree, xmlDoc, ...) that lives across Lua API calls
 *    is held by an esb__lmod_guard, a to-be-closed stack slot that frees it
 *    on return or on error, at once. */
#ifndef ESB_LUA_MODULES_INTERNAL_H
#define ESB_LUA_MODULES_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "util.h"

/* Cap on input strings that modules parse (JSON, XML, CSV text). */
#define ESB_LMOD_MAX_INPUT ((size_t)64 << 20)
/* Cap on strings that modules produce (encode, serialize, gsub, format). */
#define ESB_LMOD_MAX_OUTPUT ((size_t)64 << 20)
/* Registry field (a string) the host sets to the running script's name;
 * esb.log prefixes lines with "[lua:<name>]" ("lua" when unset). */
#define ESB_LUA_REG_SCRIPT "esb.script"

/* Raise a Lua error "<caller position>: <formatted message>". Never returns.
 * Unlike luaL_error, fmt is printf's (%zu, %lld, ...). */
int esb__lmod_error(lua_State *L, const char *fmt, ...) ESB_PRINTF(2, 3) __attribute__((noreturn));

/* ---- growable output buffer on a Lua stack slot ---- */
struct esb__lmod_buf {
    lua_State *L;
    int idx; /* absolute stack index of the storage userdata */
    char *p;
    size_t len, cap, max;
    const char *who; /* "esb.json.encode": names the function in errors */
};
/* Push the storage slot (starts empty) and set b up; max caps the length. */
void esb__lmod_buf_init(lua_State *L, struct esb__lmod_buf *b, size_t max, const char *who);
/* Make room for n more bytes (error "<who>: output larger than N bytes"). */
void esb__lmod_buf_grow(struct esb__lmod_buf *b, size_t n);
static inline void esb__lmod_buf_add(struct esb__lmod_buf *b, const void *p, size_t n)
{
    if (n > b->cap - b->len) esb__lmod_buf_grow(b, n);
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}
static inline void esb__lmod_buf_addc(struct esb__lmod_buf *b, char c)
{
    if (b->len == b->cap) esb__lmod_buf_grow(b, 1);
    b->p[b->len++] = c;
}
static inline void esb__lmod_buf_adds(struct esb__lmod_buf *b, const char *s)
{
    esb__lmod_buf_add(b, s, strlen(s));
}
/* Push the contents as a string; the storage slot stays where it is. */
void esb__lmod_buf_push(struct esb__lmod_buf *b);

/* ---- cleanup of C resources on return or error ---- */
/* Push a to-be-closed slot that will call fn(*slot) once if *slot is not
 * NULL; store the resource in the returned slot after pushing. Set *slot to
 * NULL when ownership moves elsewhere or after freeing it yourself. */
void **esb__lmod_guard(lua_State *L, void (*fn)(void *));
/* Close the guard slot at idx (freeing what it still holds) and remove it
 * from the stack. */
void esb__lmod_guard_drop(lua_State *L, int idx);

/* ---- small helpers ---- */
/* Offset of the first byte that is not part of valid UTF-8 (no overlongs,
 * surrogates or code points above U+10FFFF), or n if all of s is valid. */
size_t esb__lmod_utf8_check(const char *s, size_t n);
/* Field `name` of the options table at idx (idx may be absent or nil). Type
 * errors name who and the option. */
int esb__lmod_opt_bool(lua_State *L, int idx, const char *name, int def, const char *who);
lua_Integer esb__lmod_opt_int(lua_State *L, int idx, const char *name, lua_Integer def,
                              lua_Integer min, lua_Integer max, const char *who);
/* Returns the string (valid while the options table holds it) or def. */
const char *esb__lmod_opt_str(lua_State *L, int idx, const char *name, const char *def, size_t *len,
                              const char *who);
/* A string key by pointer and length, and the qsort comparator that orders
 * such keys bytewise (a prefix first), as esb__lmod_sorted_keys does. */
struct esb__lmod_key {
    const char *s;
    size_t n;
    int slot; /* free for the caller (a stack slot) */
};
int esb__lmod_key_cmp(const void *a, const void *b);
/* Push an array of the keys of the table at t in byte order (O(n log n));
 * returns their number. Keys that are not strings raise
 * "<who>: <what> keys must be strings". */
lua_Integer esb__lmod_sorted_keys(lua_State *L, int t, const char *what, const char *who);
/* Check that idx is nil/none or a table ("<who>: options must be a table"). */
void esb__lmod_check_opts(lua_State *L, int idx, const char *who);

/* ---- shared between modules ---- */
/* esb.num (lua_num.c): the integer in s[0..n) - an optional sign and
 * decimal digits, nothing else - into *out: 0, -1 bad syntax (nothing
 * stored), -2 outside the 64-bit range. */
int esb__lmod_parse_int(const char *s, size_t n, lua_Integer *out);
/* esb.json: the null sentinel (a light userdata) and the array marker. */
void esb__lmod_json_push_null(lua_State *L);
int esb__lmod_json_is_null(lua_State *L, int idx);
struct esb__lmod_json_opts {
    int sort_keys, pretty, max_depth;
};
/* Append the JSON text of the value at idx to b (errors name b->who). */
void esb__lmod_json_encode(lua_State *L, int idx, const struct esb__lmod_json_opts *o,
                           struct esb__lmod_buf *b);
/* Decode s and push the value (errors name who). */
void esb__lmod_json_decode(lua_State *L, const char *s, size_t n, int max_depth, const char *who);

/* esb.xml (lua_xml_tree.c): functions on node tables, and the writer that
 * appends node (a table at that stack index) as XML text to b. */
#define ESB_LMOD_XML_MAX_DEPTH 256 /* libxml2's own limit without HUGE */
int esb__lmod_xml_text(lua_State *L);
int esb__lmod_xml_find(lua_State *L);
int esb__lmod_xml_find_all(lua_State *L);
int esb__lmod_xml_index(lua_State *L);
int esb__lmod_xml_texts(lua_State *L);
int esb__lmod_xml_serialize_fn(lua_State *L);
void esb__lmod_xml_serialize(lua_State *L, int node, int decl, int pretty, struct esb__lmod_buf *b);

/* esb.time: ms since the epoch -> "YYYY-MM-DDTHH:MM:SS.mmmZ" (or +HH:MM for
 * a non-zero offset in minutes). Returns 0, or -1 if out of year 0..9999. */
int esb__lmod_time_iso(int64_t ms, int offset_min, char out[40]);
/* Parse an ISO 8601 / RFC 3339 time (see esb.time.parse); 0 or -1. */
int esb__lmod_time_parse(const char *s, size_t n, int64_t *ms);

#endif
