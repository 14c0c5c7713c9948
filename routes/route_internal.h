/* route_internal.h - the compiled form of a route, shared by the compiler
 * (route_compile.c, route_compile_steps.c) and the interpreter (route_run.c).
 * Not for other modules.
 *
 * A route is a tree of step lists. Every step points at its entry in the step
 * table (step_table, route_compile_steps.c): element name, attribute table,
 * compile and run functions. Adding a step = one row there, a compile
 * function and a run function; nothing else changes. */
#ifndef ESB_ROUTE_INTERNAL_H
#define ESB_ROUTE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "predicate.h"
#include "route.h"

struct _xmlNode;
struct esb_lua_prog;
struct esb_lua_vm;
struct esb_template;
struct esb__cctx;
struct esb__step;
struct esb__run;
struct esb__flow;

struct esb__steps {
    struct esb__step *v;
    size_t n;
};

struct esb__when {
    struct esb_pred *pred;
    int line;
    char *what; /* "choice/when xpath" */
    struct esb__steps steps;
};

/* Results of running a step or a step list. ESB__DONE: a step split the
 * message and already ran the rest of the flow (esb__run.k) once per part,
 * so the enclosing lists stop without running more. */
enum { ESB__GO = 0, ESB__STOP = 1, ESB__DONE = 2, ESB__ERROR = -1 };

struct esb__step_ops {
    const char *element;
    const char *summary; /* one paragraph for the reference */
    const struct esb_attr_spec *attrs;
    /* Fill st from node (route_compile_steps.c); errors go to the diagnostics and
     * return ESB_EINVAL. st may be half-filled then: free must cope. */
    int (*compile)(struct esb__cctx *c, struct _xmlNode *node, struct esb__step *st);
    void (*free)(struct esb__step *st);
    /* ESB__GO: go on; ESB__STOP: a filter stopped the flow; ESB__ERROR:
     * routing error, run->res->reason set. */
    int (*run)(struct esb__run *run, const struct esb__step *st, struct esb__flow *f);
};

struct esb__step {
    const struct esb__step_ops *ops;
    int line;
    int num;    /* 1-based, document order over the whole route */
    char *what; /* "filter json equals", "multicast/to", ... for reasons */
    union {
        struct {
            struct esb__when *whens;
            size_t nwhens;
            int has_otherwise;
            struct esb__steps otherwise;
        } choice;
        struct esb_pred *filter;
        struct {
            char *name;
            int content_type; /* name is "content-type": set the field */
            struct esb_template *value;
        } set_header;
        struct {
            struct esb_template *message;
            int level; /* enum esb_log_level */
        } log;
        struct esb__steps multicast; /* each child step is a branch */
        size_t to;                   /* index into the route's targets */
        struct esb_lua_prog *transform;
        struct {
            struct esb_template *key;
            uint64_t window_ms;
            uint32_t max_keys; /* 0: no limit */
        } dedupe;
    } u;
};

struct esb__target {
    enum esb_uri_kind kind;
    char *bus_name; /* "queue:x", "topic:x", "deliver:id" */
};

struct esb_route {
    char *id;
    char *file;
    int line;
    struct esb_route_source src;
    char *input; /* bus queue consumed */
    char *dlq;
    struct esb_retry_policy retry;
    struct esb_template *ordering_key; /* ordering-key=, or NULL */
    struct esb__steps steps;
    size_t ntargets;
    char **target_uris; /* as written, for esb_route_targets */
    int *target_lines;
    struct esb__target *targets;
    uint32_t max_captures; /* largest regex capture count (match data size) */
};

/* Per worker thread. */
struct esb_route_scratch {
    struct esb_pred_scratch *pred;
    char *buf; /* template rendering: ESB_MSG_MAX_VALUE + 1 bytes */
    size_t bufcap;
    struct esb_lua_vm *lua; /* transforms and lua= predicates (built at first use) */
    void (*trace)(void *ctx, const struct esb_route_trace *t); /* dry runs; NULL: off */
    void *trace_ctx;
};

/* The message flowing through a step list: a reference we hold; priv set
 * when it is our own clone that nobody else has seen (then it may change). */
struct esb__flow {
    struct esb_msg *cur;
    int priv;
};

/* The continuation of the step running now: the rest of its list, then
 * the rest of each enclosing list (NULL: nothing; a multicast branch ends
 * at its own end). A transform that returns several messages runs it once
 * per message. */
struct esb__cont {
    const struct esb__steps *steps;
    size_t next; /* index in steps of what runs next */
    const struct esb__cont *up;
};

/* One run of a route on one message. */
struct esb__run {
    const struct esb_route *r;
    struct esb_route_scratch *s;
    struct esb_route_result *res;
    struct esb_pred_run pr;
    const struct esb__cont *k; /* set around every step by esb__route_run_steps */
};

/* Run a step list on f; returns ESB__GO, ESB__STOP, ESB__DONE or
 * ESB__ERROR. The list's continuation is run->k at the call. */
int esb__route_run_steps(struct esb__run *run, const struct esb__steps *steps, struct esb__flow *f);

/* Run functions of the step table (route_run.c). */
int esb__run_choice(struct esb__run *run, const struct esb__step *st, struct esb__flow *f);
int esb__run_filter(struct esb__run *run, const struct esb__step *st, struct esb__flow *f);
int esb__run_set_header(struct esb__run *run, const struct esb__step *st, struct esb__flow *f);
int esb__run_log(struct esb__run *run, const struct esb__step *st, struct esb__flow *f);
int esb__run_multicast(struct esb__run *run, const struct esb__step *st, struct esb__flow *f);
int esb__run_to(struct esb__run *run, const struct esb__step *st, struct esb__flow *f);
int esb__run_transform(struct esb__run *run, const struct esb__step *st, struct esb__flow *f);
int esb__run_dedupe(struct esb__run *run, const struct esb__step *st, struct esb__flow *f);

#endif
