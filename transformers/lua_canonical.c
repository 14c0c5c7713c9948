/* lua_canonical.c - esb.canonical: the canonical format, a CloudEvents 1.0
 * event in structured JSON mode.
 *
 * An event is a flat Lua table, the same shape esb.json.decode gives for a
 * structured event: specversion, id, source, type, subject, time,
 * datacontenttype, dataschema, data, plus extension attributes (lowercase
 * letters and digits) at the top level. encode() writes the attributes in a
 * stable order (specversion, id, source, type, subject, time,
 * datacontenttype, dataschema, extensions sorted, data) with data's object
 * keys sorted, so equal events encode to equal bytes. */
#include "config.h"

#include "lua_modules.h"
#include "lua_modules_internal.h"

#include "uuid.h"

#include <stdio.h>
#include <strings.h>

#include <lauxlib.h>

#define CE_CONTENT_TYPE "application/cloudevents+json"

/* Attributes in encoding order; extensions go between the two groups. */
static const char *const head_attrs[] = {"specversion", "id",   "source", "type",
                                         "subject",     "time", NULL};
static const char *const tail_head[] = {"datacontenttype", "dataschema", NULL};
static const char *const data_attrs[] = {"data", "data_base64", NULL};

static int in_list(const char *const *l, const char *k)
{
    for (; *l; l++)
        if (strcmp(*l, k) == 0) return 1;
    return 0;
}

static int is_standard(const char *k)
{
    return in_list(head_attrs, k) || in_list(tail_head, k) || in_list(data_attrs, k);
}

static int valid_ext_name(const char *k)
{
    if (!*k) return 0;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9'))) return 0;
    return 1;
}

/* Check the extension value on top of the stack (named k). */
static void check_ext(lua_State *L, const char *k, const char *who)
{
    if (!valid_ext_name(k))
        esb__lmod_error(L, "%s: extension name '%s' must be lowercase letters and digits", who, k);
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TBOOLEAN && !(t == LUA_TNUMBER && lua_isinteger(L, -1)))
        esb__lmod_error(L, "%s: extension '%s' must be a string, an integer or a boolean", who, k);
}

static void push_now_iso(lua_State *L)
{
    char iso[40];
    if (esb__lmod_time_iso((int64_t)esb_now_ms(), 0, iso)) strcpy(iso, "1970-01-01T00:00:00Z");
    lua_pushstring(L, iso);
}

static void push_uuid(lua_State *L)
{
    esb_uuid_t u;
    char s[ESB_UUID_STRLEN + 1];
    esb_uuid_v7(&u);
    esb_uuid_format(&u, s);
    lua_pushstring(L, s);
}

/* Copy opts[k] (a string, or absent) into the event at ev; required: error
 * when absent or empty. */
static void copy_str(lua_State *L, int opts, int ev, const char *k, int required, const char *who)
{
    int t = lua_getfield(L, opts, k);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        if (required) esb__lmod_error(L, "%s: %s is required (a non-empty string)", who, k);
        return;
    }
    if (t != LUA_TSTRING || (required && lua_rawlen(L, -1) == 0))
        esb__lmod_error(L, "%s: %s must be a%s string", who, k, required ? " non-empty" : "");
    lua_setfield(L, ev, k);
}

/* The attributes event(), from_msg() and message() take. */
static const char *const args[] = {"type",    "source",          "data",       "id",         "time",
                                   "subject", "datacontenttype", "dataschema", "extensions", NULL};

/* Every key of the table at opts must be in args. */
static void check_args(lua_State *L, int opts, const char *who)
{
    lua_pushnil(L);
    while (lua_next(L, opts)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || !in_list(args, lua_tostring(L, -1)))
            esb__lmod_error(L, "%s: unknown attribute '%s' (extensions go in extensions={...})",
                            who, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    }
}

/* Push the event's time from the attribute value at idx (nil: now;
 * integer: ms since the epoch; string: an RFC 3339 time, kept as given). */
static void push_time(lua_State *L, int idx, const char *who)
{
    idx = lua_absindex(L, idx);
    int t = lua_type(L, idx);
    if (t == LUA_TNIL) {
        push_now_iso(L);
    } else if (t == LUA_TNUMBER && lua_isinteger(L, idx)) {
        char iso[40];
        if (esb__lmod_time_iso((int64_t)lua_tointeger(L, idx), 0, iso))
            esb__lmod_error(L, "%s: time is out of range", who);
        lua_pushstring(L, iso);
    } else {
        int64_t ms;
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (t != LUA_TSTRING || esb__lmod_time_parse(s, n, &ms))
            esb__lmod_error(L, "%s: time must be ms since the epoch or an RFC 3339 string", who);
        lua_pushvalue(L, idx);
    }
}

/* Build an event from the attribute table at opts; pushes it. */
static void build(lua_State *L, int opts, const char *who)
{
    luaL_checkstack(L, 8, "out of stack space");
    check_args(L, opts, who);
    lua_createtable(L, 0, 10);
    int ev = lua_gettop(L);
    lua_pushliteral(L, "1.0");
    lua_setfield(L, ev, "specversion");
    if (lua_getfield(L, opts, "id") == LUA_TNIL) {
        lua_pop(L, 1);
        push_uuid(L);
        lua_setfield(L, opts, "id");
    } else {
        lua_pop(L, 1);
    }
    copy_str(L, opts, ev, "id", 1, who);
    copy_str(L, opts, ev, "source", 1, who);
    copy_str(L, opts, ev, "type", 1, who);
    copy_str(L, opts, ev, "subject", 0, who);
    lua_getfield(L, opts, "time");
    push_time(L, -1, who);
    lua_setfield(L, ev, "time");
    lua_pop(L, 1);
    if (lua_getfield(L, opts, "datacontenttype") == LUA_TNIL) {
        lua_pushliteral(L, "application/json");
        lua_setfield(L, opts, "datacontenttype");
    }
    lua_pop(L, 1);
    copy_str(L, opts, ev, "datacontenttype", 0, who);
    copy_str(L, opts, ev, "dataschema", 0, who);
    lua_getfield(L, opts, "data");
    lua_setfield(L, ev, "data");
    int t = lua_getfield(L, opts, "extensions");
    if (t == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) != LUA_TSTRING)
                esb__lmod_error(L, "%s: extension names must be strings", who);
            const char *k = lua_tostring(L, -2);
            if (is_standard(k) || strcmp(k, "extensions") == 0)
                esb__lmod_error(L, "%s: '%s' is a CloudEvents attribute, not an extension", who, k);
            check_ext(L, k, who);
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, ev);
        }
    } else if (t != LUA_TNIL) {
        esb__lmod_error(L, "%s: extensions must be a table", who);
    }
    lua_settop(L, ev);
}

static int l_event(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    /* work on a shallow copy: defaults are filled in */
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, 2);
    }
    build(L, 2, "esb.canonical.event");
    return 1;
}

/* Is the content type JSON (application/json, text/json, anything +json)? */
static int json_type(const char *ct)
{
    size_t n = strcspn(ct, "; \t");
    if (n >= 5 && strncmp(ct + n - 5, "+json", 5) == 0) return 1;
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
           (n == 9 && strncasecmp(ct, "text/json", 9) == 0);
}

/* The event of message 1 with attributes 2 (both tables, checked): pushed
 * at 3, the stack cut to 3. */
static void from_msg(lua_State *L, const char *who)
{
    static const struct {
        const char *header, *ext;
    } hx[] = {{"correlation-id", "correlationid"},
              {"traceparent", "traceparent"},
              {"tracestate", "tracestate"}};
    lua_newtable(L); /* 3: the attributes */
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, 3);
    }
    if (lua_getfield(L, 3, "id") == LUA_TNIL && lua_getfield(L, 1, "id") == LUA_TSTRING)
        lua_setfield(L, 3, "id");
    lua_settop(L, 3);
    /* extensions: from headers, then the caller's */
    lua_newtable(L); /* 4 */
    if (lua_getfield(L, 1, "headers") == LUA_TTABLE) {
        for (size_t i = 0; i < ESB_ARRAY_LEN(hx); i++) {
            if (lua_getfield(L, 5, hx[i].header) == LUA_TSTRING)
                lua_setfield(L, 4, hx[i].ext);
            else
                lua_pop(L, 1);
        }
    }
    lua_settop(L, 4);
    if (lua_getfield(L, 3, "extensions") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, 5)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, 4);
        }
    }
    lua_settop(L, 4);
    lua_setfield(L, 3, "extensions");
    /* data: the caller's, else the body (decoded when it is JSON) */
    if (lua_getfield(L, 3, "data") == LUA_TNIL) {
        size_t n;
        lua_getfield(L, 1, "content_type"); /* 5 */
        const char *ct = lua_tostring(L, 5);
        lua_getfield(L, 1, "body"); /* 6 */
        const char *body = lua_tolstring(L, 6, &n);
        if (!body) esb__lmod_error(L, "%s: msg.body must be a string", who);
        if (ct && json_type(ct)) {
            esb__lmod_json_decode(L, body, n, 64, who);
            if (lua_getfield(L, 3, "datacontenttype") == LUA_TNIL) {
                lua_pushliteral(L, "application/json");
                lua_setfield(L, 3, "datacontenttype");
            }
            lua_pop(L, 1);
        } else {
            lua_pushvalue(L, 6);
            if (lua_getfield(L, 3, "datacontenttype") == LUA_TNIL) {
                lua_pushstring(L, ct ? ct : "application/octet-stream");
                lua_setfield(L, 3, "datacontenttype");
            }
            lua_pop(L, 1);
        }
        lua_setfield(L, 3, "data");
    }
    lua_settop(L, 3);
    build(L, 3, who);
    lua_replace(L, 3);
}

static int l_from_msg(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    from_msg(L, "esb.canonical.from_msg");
    return 1;
}

/* ---- encoding ---- */

static void member(lua_State *L, struct esb__lmod_buf *b, int *first, const char *k, int vi,
                   const struct esb__lmod_json_opts *o)
{
    if (!*first) esb__lmod_buf_addc(b, ',');
    *first = 0;
    /* k is a standard attribute or a checked extension name: [a-z0-9]+ */
    esb__lmod_buf_addc(b, '"');
    esb__lmod_buf_adds(b, k);
    esb__lmod_buf_add(b, "\":", 2);
    esb__lmod_json_encode(L, vi, o, b);
}

/* Push the JSON text of the event at ev. built: ev was just made by
 * build(), whose checks (required and string attributes, RFC 3339 time,
 * extension names and values) need not run again. */
static void encode(lua_State *L, int ev, const char *who, int built)
{
    static const char *const required[] = {"specversion", "id", "source", "type"};
    struct esb__lmod_json_opts o = {.sort_keys = 1, .pretty = 0, .max_depth = 64};
    struct esb__lmod_buf b;
    int first = 1;
    luaL_checkstack(L, 10, "out of stack space");
    ev = lua_absindex(L, ev);
    for (size_t i = 0; !built && i < ESB_ARRAY_LEN(required); i++) {
        int t = lua_getfield(L, ev, required[i]);
        if (t != LUA_TSTRING || lua_rawlen(L, -1) == 0)
            esb__lmod_error(L, "%s: %s is required (a non-empty string)", who, required[i]);
        lua_pop(L, 1);
    }
    /* the other standard attributes are strings; time is RFC 3339 */
    static const char *const opt_strs[] = {"subject", "time", "datacontenttype", "dataschema",
                                           "data_base64"};
    for (size_t i = 0; !built && i < ESB_ARRAY_LEN(opt_strs); i++) {
        int t = lua_getfield(L, ev, opt_strs[i]);
        if (t != LUA_TNIL && t != LUA_TSTRING)
            esb__lmod_error(L, "%s: %s must be a string", who, opt_strs[i]);
        int64_t ms;
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (t == LUA_TSTRING && i == 1 && esb__lmod_time_parse(s, n, &ms))
            esb__lmod_error(L, "%s: time '%.40s' is not an RFC 3339 time", who, s);
        lua_pop(L, 1);
    }
    /* attribute names, sorted; the extensions are the non-standard ones
     * (most events have none: then nothing is sorted) */
    int exts = 0;
    lua_pushnil(L);
    while (lua_next(L, ev)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || !is_standard(lua_tostring(L, -1)) ||
            strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1))
            exts = 1; /* an extension, or a bad name the loop below reports */
    }
    lua_Integer nk = 0;
    if (exts)
        nk = esb__lmod_sorted_keys(L, ev, "attribute", who);
    else
        lua_newtable(L);
    int keys = lua_gettop(L);
    for (lua_Integer i = 1; i <= nk; i++) {
        lua_rawgeti(L, keys, i);
        const char *k = lua_tostring(L, -1);
        if (strlen(k) != lua_rawlen(L, -1))
            esb__lmod_error(L, "%s: attribute names cannot contain NUL", who);
        if (!built && !is_standard(k)) {
            lua_pushvalue(L, -1);
            lua_rawget(L, ev);
            check_ext(L, k, who);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }

    esb__lmod_buf_init(L, &b, ESB_LMOD_MAX_OUTPUT, who);
    esb__lmod_buf_addc(&b, '{');
    const char *const *groups[] = {head_attrs, tail_head};
    for (int g = 0; g < 2; g++) {
        for (const char *const *k = groups[g]; *k; k++) {
            if (lua_getfield(L, ev, *k) != LUA_TNIL) member(L, &b, &first, *k, lua_gettop(L), &o);
            lua_pop(L, 1);
        }
    }
    for (lua_Integer i = 1; i <= nk; i++) {
        lua_rawgeti(L, keys, i);
        const char *k = lua_tostring(L, -1);
        if (!is_standard(k)) {
            lua_pushvalue(L, -1);
            lua_rawget(L, ev);
            member(L, &b, &first, k, lua_gettop(L), &o);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    for (const char *const *k = data_attrs; *k; k++) {
        if (lua_getfield(L, ev, *k) != LUA_TNIL) member(L, &b, &first, *k, lua_gettop(L), &o);
        lua_pop(L, 1);
    }
    esb__lmod_buf_addc(&b, '}');
    esb__lmod_buf_push(&b);
    lua_replace(L, keys);
    lua_settop(L, keys);
}

static int l_encode(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    encode(L, 1, "esb.canonical.encode", 0);
    return 1;
}

static int l_to_msg(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    encode(L, 1, "esb.canonical.to_msg", 0); /* 3 */
    if (lua_isnil(L, 2)) {
        lua_createtable(L, 0, 3);
        lua_newtable(L);
        lua_setfield(L, -2, "headers");
        lua_replace(L, 2);
    }
    lua_pushvalue(L, 3);
    lua_setfield(L, 2, "body");
    lua_pushliteral(L, CE_CONTENT_TYPE);
    lua_setfield(L, 2, "content_type");
    lua_settop(L, 2);
    return 1;
}

/* Push attrs[k] (raw, as from_msg's copy of attrs reads it). */
static int raw_field(lua_State *L, int t, const char *k)
{
    lua_pushstring(L, k);
    return lua_rawget(L, t);
}

/* The string attribute k at idx as copy_str checks it: nil is absent
 * (an error when required), anything but a (non-empty, when required)
 * string an error. */
static void check_str(lua_State *L, int idx, const char *k, int required, const char *who)
{
    int t = lua_type(L, idx);
    if (t == LUA_TNIL && required)
        esb__lmod_error(L, "%s: %s is required (a non-empty string)", who, k);
    if (t != LUA_TNIL && (t != LUA_TSTRING || (required && lua_rawlen(L, idx) == 0)))
        esb__lmod_error(L, "%s: %s must be a%s string", who, k, required ? " non-empty" : "");
}

/* message() in the usual case - attrs give data and no extensions table -
 * encoded straight from msg (1) and attrs (2), without the intermediate
 * tables of from_msg and build: the same checks in the same order, the
 * same messages and bytes (tests/lua/canonical.lua compares both paths).
 * Pushes the event's JSON text and returns 1, or returns 0 with the stack
 * as it was for any other call. */
static int encode_direct(lua_State *L, const char *who)
{
    static const struct {
        const char *header, *ext; /* in extension name order */
    } hx[] = {{"correlation-id", "correlationid"},
              {"traceparent", "traceparent"},
              {"tracestate", "tracestate"}};
    luaL_checkstack(L, 24, "out of stack space");
    int uncommon = raw_field(L, 2, "extensions") != LUA_TNIL || raw_field(L, 2, "data") == LUA_TNIL;
    lua_settop(L, 2);
    if (uncommon) return 0;
    check_args(L, 2, who);
    /* 3 id: attrs.id, else msg.id when a string, else a new UUID */
    if (raw_field(L, 2, "id") == LUA_TNIL) {
        lua_pop(L, 1);
        if (lua_getfield(L, 1, "id") != LUA_TSTRING) {
            lua_pop(L, 1);
            push_uuid(L);
        }
    }
    check_str(L, 3, "id", 1, who);
    raw_field(L, 2, "source"); /* 4 */
    check_str(L, 4, "source", 1, who);
    raw_field(L, 2, "type"); /* 5 */
    check_str(L, 5, "type", 1, who);
    raw_field(L, 2, "subject"); /* 6 */
    check_str(L, 6, "subject", 0, who);
    raw_field(L, 2, "time");
    push_time(L, 7, who);                                 /* 8 */
    lua_replace(L, 7);                                    /* 7 */
    if (raw_field(L, 2, "datacontenttype") == LUA_TNIL) { /* 8 */
        lua_pop(L, 1);
        lua_pushliteral(L, "application/json");
    }
    check_str(L, 8, "datacontenttype", 0, who);
    raw_field(L, 2, "dataschema"); /* 9 */
    check_str(L, 9, "dataschema", 0, who);
    raw_field(L, 2, "data");       /* 10 */
    lua_pushliteral(L, "1.0");     /* 11 */
    lua_getfield(L, 1, "headers"); /* 12 */
    int ext0 = 13, hdrs = lua_type(L, 12) == LUA_TTABLE;
    for (size_t i = 0; i < ESB_ARRAY_LEN(hx); i++) /* 13..15: nil or the header */
        if (!hdrs || lua_getfield(L, 12, hx[i].header) != LUA_TSTRING) {
            if (hdrs) lua_pop(L, 1);
            lua_pushnil(L);
        }

    struct esb__lmod_json_opts o = {.sort_keys = 1, .pretty = 0, .max_depth = 64};
    struct esb__lmod_buf b;
    int first = 1;
    esb__lmod_buf_init(L, &b, ESB_LMOD_MAX_OUTPUT, who);
    esb__lmod_buf_addc(&b, '{');
    member(L, &b, &first, "specversion", 11, &o);
    member(L, &b, &first, "id", 3, &o);
    member(L, &b, &first, "source", 4, &o);
    member(L, &b, &first, "type", 5, &o);
    if (!lua_isnil(L, 6)) member(L, &b, &first, "subject", 6, &o);
    member(L, &b, &first, "time", 7, &o);
    member(L, &b, &first, "datacontenttype", 8, &o);
    if (!lua_isnil(L, 9)) member(L, &b, &first, "dataschema", 9, &o);
    for (int i = 0; i < (int)ESB_ARRAY_LEN(hx); i++)
        if (!lua_isnil(L, ext0 + i)) member(L, &b, &first, hx[i].ext, ext0 + i, &o);
    if (!lua_isnil(L, 10)) member(L, &b, &first, "data", 10, &o);
    esb__lmod_buf_addc(&b, '}');
    esb__lmod_buf_push(&b);
    lua_replace(L, 3);
    lua_settop(L, 3);
    return 1;
}

/* message(msg, attrs): to_msg(from_msg(msg, attrs), {id = msg.id, headers
 * = msg.headers}) without checking the event twice. */
static int l_message(lua_State *L)
{
    const char *who = "esb.canonical.message";
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    if (encode_direct(L, who)) { /* 3: the text */
        lua_pushvalue(L, 3);     /* 4 */
    } else {
        from_msg(L, who);     /* 3 */
        encode(L, 3, who, 1); /* 4 */
    }
    lua_createtable(L, 0, 4); /* 5 */
    lua_getfield(L, 1, "id");
    lua_setfield(L, 5, "id");
    lua_getfield(L, 1, "headers");
    lua_setfield(L, 5, "headers");
    lua_pushvalue(L, 4);
    lua_setfield(L, 5, "body");
    lua_pushliteral(L, CE_CONTENT_TYPE);
    lua_setfield(L, 5, "content_type");
    return 1;
}

static int l_decode(lua_State *L)
{
    const char *who = "esb.canonical.decode";
    static const char *const required[] = {"specversion", "id", "source", "type"};
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_settop(L, 1);
    esb__lmod_json_decode(L, s, n, 64, who);
    if (!lua_istable(L, 2) || lua_getmetatable(L, 2))
        esb__lmod_error(L, "%s: not a CloudEvent (not a JSON object)", who);
    for (size_t i = 0; i < ESB_ARRAY_LEN(required); i++) {
        if (lua_getfield(L, 2, required[i]) != LUA_TSTRING)
            esb__lmod_error(L, "%s: not a CloudEvent (no %s)", who, required[i]);
        lua_pop(L, 1);
    }
    return 1;
}

int esb_luaopen_canonical(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"event", l_event},   {"from_msg", l_from_msg}, {"encode", l_encode},
        {"to_msg", l_to_msg}, {"message", l_message},   {"decode", l_decode},
        {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
