/* predicate.h - the predicates of <when> and <filter>: compiled once at
 * config load (XPath, JSON path, PCRE2), evaluated per message.
 *
 * Kinds (exactly one per element; see route.h for the user's view):
 *   xpath="EXPR"                                  XML body
 *   json="PATH" + equals|matches|gt|lt|exists      JSON body
 *   regex="PCRE2" [header="NAME"]                 body bytes or a header value
 *   header="NAME" + equals|exists|matches         a header
 *   lua="PATH" [function="predicate"]            a Lua function of the message
 *                                                 (lua_host.h): truthy holds
 *
 * Safety: XML bodies are parsed with XML_PARSE_NONET and without entity
 * substitution, DTD loading or HUGE; a DOCTYPE stops the parse ("DOCTYPE not
 * allowed"). JSON bodies are parsed with duplicate keys rejected and nesting
 * capped at ESB_PRED_JSON_MAX_DEPTH. Regexes run in byte mode with a match
 * limit, a depth limit, a heap limit and a bounded JIT stack; hitting one is
 * a routing error ("regex limit hit"), never a hang.
 *
 * Threads: a compiled predicate is immutable and shared. An esb_pred_scratch
 * (match data, JIT stack, XPath context) belongs to one thread; an
 * esb_pred_run (the parsed body of one message) to one route run. */
#ifndef ESB_PREDICATE_H
#define ESB_PREDICATE_H

#include <stddef.h>
#include <stdint.h>

#include "conf_attr.h"
#include "util.h"

struct esb_body;
struct esb_lua_limits;
struct esb_lua_vm;
struct esb_msg;
struct esb_pred;
struct esb_pred_scratch;

#define ESB_PRED_JSON_MAX_DEPTH 64
#define ESB_PRED_REGEX_MAX_LEN  4096
#define ESB_PRED_MATCH_LIMIT    100000
#define ESB_PRED_DEPTH_LIMIT    100000
#define ESB_PRED_HEAP_LIMIT_KIB 8192
#define ESB_PRED_JIT_STACK_MAX  (256 * 1024)
#define ESB_PRED_XPATH_OP_LIMIT 10000000

/* The predicate attributes of <when> and <filter>, as esb_attrs_parse fills
 * them from esb_pred_attrs (every field an owned string or NULL). */
struct esb_pred_conf {
    char *xpath, *json, *regex, *header;
    char *equals, *matches, *gt, *lt, *exists;
    char *lua, *function;
    /* Not attributes: set by the caller for lua= (NULL: "." and defaults). */
    const char *lua_dir;
    const struct esb_lua_limits *lua_limits;
};
extern const struct esb_attr_spec esb_pred_attrs[];

/* Compile the predicate c describes (element names the element for
 * messages: "when", "filter"). Returns 0 and *out, or ESB_EINVAL with
 * err->msg saying what is wrong (no kind, two kinds, a missing or extra
 * operand, a bad XPath/JSON path/regex/number, a Lua script that does not
 * load), without file:line. */
int esb_pred_compile(const struct esb_pred_conf *c, const char *element, struct esb_pred **out,
                     struct esb_err *err) ESB_WUR;
void esb_pred_free(struct esb_pred *p); /* NULL-safe */

/* A short description for reasons and logs: "xpath", "json equals",
 * "regex on header subject", "header exists", ... (borrowed). */
const char *esb_pred_describe(const struct esb_pred *p);
/* The largest capture count of the predicate's regexes (0 if none). */
uint32_t esb_pred_captures(const struct esb_pred *p);

/* Per-thread state. _new aborts on allocation failure. */
struct esb_pred_scratch *esb_pred_scratch_new(void);
void esb_pred_scratch_free(struct esb_pred_scratch *s); /* NULL-safe */
/* Size the match data for patterns with up to ncap capture groups (grows
 * only, so a worker allocates it once for its largest route). */
void esb_pred_scratch_reserve(struct esb_pred_scratch *s, uint32_t ncap);

/* The bodies parsed for one route run: each format at most once per body. */
struct esb_pred_run {
    struct esb_pred_scratch *scratch;
    const struct esb_body *body; /* the body the caches below belong to */
    void *xml;                   /* xmlDoc *, when xml_state == 1 */
    void *json;                  /* json_t *, when json_state == 1 */
    int xml_state, json_state;   /* 0 not parsed yet, 1 parsed, -1 failed (reason below) */
    char xml_err[200], json_err[200];
    struct esb_lua_vm *lua; /* for lua= predicates: the worker's VM (set by the caller;
                               kept by clear) */
};
void esb_pred_run_init(struct esb_pred_run *r, struct esb_pred_scratch *s);
void esb_pred_run_clear(struct esb_pred_run *r); /* frees the parsed bodies */

/* Evaluate p on m (headers, and m->body through r's caches; lua= in r->lua).
 * Returns 1 (holds), 0 (does not), or ESB_EINVAL: a routing error, err->msg
 * says why ("body is not XML: ...", "DOCTYPE not allowed", "regex limit hit:
 * ...", a Lua error with its traceback). */
int esb_pred_eval(const struct esb_pred *p, struct esb_pred_run *r, const struct esb_msg *m,
                  struct esb_err *err) ESB_WUR;

#endif
