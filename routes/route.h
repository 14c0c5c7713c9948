/* route.h - the router: a <route> element compiled once into a step
 * program, and its execution on one message.
 *
 * Steps (in document order; a nested list for choice/when/otherwise,
 * filter and multicast branches):
 *   <choice><when PRED>STEPS</when>...<otherwise>STEPS</otherwise></choice>
 *                         first matching when wins; no match and no
 *                         otherwise: the message goes on after the choice
 *   <filter PRED/>        stop here (drop, acked, counted) unless PRED holds
 *   <set-header name="x" value="TEMPLATE"/>
 *   <log message="TEMPLATE" level="info"/>
 *   <multicast>STEPS...</multicast>  every child step list gets its own copy
 *   <transform lua="x.lua" function="transform"/>  a Lua function returns
 *                         the message (changed or new), nil (drop) or a
 *                         list (split: each part runs the rest on its own)
 *   <to uri="queue:NAME | topic:NAME | ELEMENT:ID"/>  emit a copy; go on
 * Predicates (exactly one per when/filter):
 *   xpath="EXPR"          on an XML body: true if the XPath result is a true
 *                         boolean, a non-zero number, a non-empty string or
 *                         node-set
 *   json="PATH" + one of equals="v" | matches="REGEX" | gt="n" | lt="n" |
 *                 exists="true"   on a JSON body; PATH is the documented
 *                         subset: $.a.b, $['a'], $.a[0], $.a[*].b
 *                         (wildcard: any element satisfies)
 *   regex="PCRE2" [header="name"]  on the body, or on a header's value
 *   header="name" + equals="v" | exists="true" | matches="REGEX"
 *   lua="x.lua" [function="predicate"]  a Lua function of the message
 * Templates: {id}, {header:NAME}, {content-type}, {date:%Y%m%d} (strftime, UTC).
 *
 * Errors at run time (body not XML/JSON when a predicate needs it, a regex
 * limit hit) are routing errors: the message is dead-lettered with the
 * reason (not retried).
 *
 * Thread-safety: a compiled route is immutable and shared by all workers;
 * per-thread mutable state (PCRE2 match data, XPath contexts, the Lua
 * state) lives in an esb_route_scratch owned by one worker. */
#ifndef ESB_ROUTE_H
#define ESB_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct _xmlNode;
struct esb_config;
struct esb_diags;
struct esb_msg;
struct esb_route;
struct esb_route_scratch;

enum esb_uri_kind {
    ESB_URI_QUEUE,    /* queue:NAME  (bus queue "queue:NAME") */
    ESB_URI_TOPIC,    /* topic:NAME  (bus topic "topic:NAME") */
    ESB_URI_ENDPOINT, /* an outbound connector id (bus queue "deliver:ID") */
    ESB_URI_INBOUND,  /* an inbound connector id (only valid in from=) */
};

struct esb_route_source {
    enum esb_uri_kind kind;
    char *name;  /* queue/topic name or connector id */
    char *path;  /* http-in: the path attribute ("/orders"); NULL otherwise */
};

/* Compile one <route> element. Needs cfg's endpoints (for uri checks).
 * Diagnostics are added to d (file:line); returns 0 or ESB_EINVAL. */
int esb_route_compile(struct _xmlNode *node, const char *file, const struct esb_config *cfg,
                      struct esb_route **out, struct esb_diags *d) ESB_WUR;
void esb_route_free(struct esb_route *r); /* NULL-safe */

const char *esb_route_id(const struct esb_route *r);
const struct esb_route_source *esb_route_source(const struct esb_route *r);
/* The bus queue this route consumes: "route:ID" for connector sources,
 * "queue:NAME", or "topic:NAME#ID" (its subscription). */
const char *esb_route_input(const struct esb_route *r);
/* Its dead-letter queue: <dead-letter queue="..."/> or "dlq.ID". */
const char *esb_route_dlq(const struct esb_route *r);
/* Every to= target of the route (for semantic checks), in document order. */
size_t esb_route_targets(const struct esb_route *r, const char *const **uris,
                         const int **lines);

/* Retry policy of deliveries for this route (<retry .../>; defaults when
 * absent): delay of attempt n (n >= 1) is
 * min(initial_delay_ms * multiplier^(n-1), max_delay_ms), spread by +-jitter
 * (a fraction, 0..1); after max_attempts attempts the message is dead-lettered. */
struct esb_retry_policy {
    uint32_t max_attempts;     /* default 5 */
    uint64_t initial_delay_ms; /* default 1000 */
    double multiplier;         /* default 2.0 */
    uint64_t max_delay_ms;     /* default 300000 (5m) */
    double jitter;             /* default 0.2 */
};
const struct esb_retry_policy *esb_route_retry(const struct esb_route *r);

/* Print the markdown reference of <route>, its steps, predicates, templates,
 * <retry> and <dead-letter> (attribute tables and prose) through emit;
 * esb_config_doc calls it. */
void esb_route_doc(void (*emit)(void *ctx, const char *text), void *ctx);

/* ---- execution ---- */

struct esb_route_output {
    enum esb_uri_kind kind;  /* QUEUE, TOPIC or ENDPOINT */
    const char *bus_name;    /* borrowed from the route: "queue:x", "topic:x", "deliver:id" */
    struct esb_msg *msg;     /* owned reference */
    char *key;               /* ordering key (route ordering-key=), owned; NULL for none */
};

struct esb_route_result {
    struct esb_route_output *out;
    size_t nout, cap;
    int dropped;             /* a filter stopped it (copies sent by an earlier <to> stay) */
    int error;               /* routing error: reason below; dead-letter */
    char reason[512];        /* e.g. "step 2 (choice/when xpath, line 14): body is not XML: ..." */
    /* <dedupe>: the idempotency key ("ROUTE:KEY", owned) the runtime must
     * mark uniquely in the hand-off transaction, and for how long; a
     * duplicate key makes the whole message a duplicate (acked, dropped). */
    char *dedupe_key;
    uint64_t dedupe_window_ms;
    uint32_t dedupe_max_keys; /* the route's keys are a set bounded to this (0: no bound) */
    /* The message as it stands at the end of the route's top-level step
     * list (what a request-reply answers with): a reference, freed by
     * esb_route_result_clear; NULL if a filter or transform dropped it or
     * on a routing error. After a split it is the last part that reached
     * the end (parts run in order); a multicast branch never sets it. */
    struct esb_msg *final;
};

struct esb_route_scratch *esb_route_scratch_new(void);
void esb_route_scratch_free(struct esb_route_scratch *s);

/* Run r on in (borrowed). Fills res (caller zero-initialises it and calls
 * esb_route_result_clear after). Never fails for bad input: that is
 * res->error. */
void esb_route_run(const struct esb_route *r, struct esb_route_scratch *s,
                   const struct esb_msg *in, struct esb_route_result *res);
void esb_route_result_clear(struct esb_route_result *res);

/* ---- tracing (dry runs: esbctl test) ---- */

/* What esb_route_run reports to a trace callback, in the order it happens. */
enum esb_route_trace_kind {
    ESB_TRACE_STEP,      /* a step starts on msg */
    ESB_TRACE_BRANCH,    /* a choice decided: branch = the index of the when that holds
                          * (what, line: the when's), -1 otherwise, -2 none (goes on) */
    ESB_TRACE_FILTER,    /* a filter decided: result 1 goes on, 0 stops */
    ESB_TRACE_TRANSFORM, /* a transform returned count messages: one event per message
                          * (index, msg); count 0 and msg NULL: it dropped the message */
    ESB_TRACE_TO,        /* a <to> emitted msg to target (the bus queue name) */
};

struct esb_route_trace {
    enum esb_route_trace_kind kind;
    int step, line;            /* the step's number (as in reasons) and config line */
    const char *what;          /* "choice", "choice/when/to", "transform lua=x.lua", ... */
    const struct esb_msg *msg; /* borrowed for the call */
    int branch, result;
    size_t index, count;
    const char *target;
};

/* Report what esb_route_run does with scratch s to fn(ctx, event); fn NULL
 * turns it off (the default; then it costs one test per step). */
void esb_route_scratch_set_trace(struct esb_route_scratch *s,
                                 void (*fn)(void *ctx, const struct esb_route_trace *t),
                                 void *ctx);

#endif
