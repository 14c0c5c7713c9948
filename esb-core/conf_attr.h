/* conf_attr.h - declarative attribute tables for XML config elements
 * (nginx's ngx_command_t / Fluent Bit's config map idea): one row per
 * attribute with its type, default, range and documentation, and the offset
 * of the field it fills. Parsing, validation, error messages (file:line) and
 * the reference docs (esbctl config-doc) all come from these tables.
 * Pure functions; thread-safe. */
#ifndef ESB_CONF_ATTR_H
#define ESB_CONF_ATTR_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct _xmlNode;

enum esb_attr_type {
    ESB_ATTR_STRING,   /* char * (owned, esb_strdup) */
    ESB_ATTR_BOOL,     /* int: true/false/yes/no/1/0 */
    ESB_ATTR_UINT,     /* uint64_t, decimal */
    ESB_ATTR_SIZE,     /* uint64_t bytes: 10MB, 512KiB, 1GB, 4096 (B, KB=KiB=1024...) */
    ESB_ATTR_DURATION, /* uint64_t ms: 500ms, 5s, 2m, 1h, 24h, 1d; a bare number is ms */
    ESB_ATTR_ENUM,     /* int: index into values[] */
    ESB_ATTR_LISTEN,   /* char * "host:port" validated; host must be an IP or localhost */
    ESB_ATTR_DOUBLE,   /* double */
};

struct esb_attr_spec {
    const char *name;
    enum esb_attr_type type;
    const char *def;      /* default as text (NULL: no default) */
    size_t offset;        /* offsetof(struct ..., field) */
    int required;
    uint64_t min, max;    /* for UINT/SIZE/DURATION; max 0 = no limit */
    const char *const *values; /* ENUM: NULL-terminated list */
    const char *doc;      /* one sentence for the reference */
};
#define ESB_ATTR_END {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL}

/* Fill out (a struct laid out per specs) from node's attributes: defaults
 * first, then the values given. An attribute not in specs is an error
 * ("unknown attribute"). Errors read "FILE:LINE: <elem>: attribute 'x': ..."
 * Returns 0 or ESB_EINVAL. Strings in out are owned: esb_attrs_free. */
int esb_attrs_parse(const struct esb_attr_spec *specs, struct _xmlNode *node, const char *file,
                    void *out, struct esb_err *err) ESB_WUR;
/* Free the owned strings of out. */
void esb_attrs_free(const struct esb_attr_spec *specs, void *out);

/* Value parsers (also used by routes for step attributes). 0 or ESB_EINVAL. */
int esb_parse_size(const char *s, uint64_t *out);
int esb_parse_duration_ms(const char *s, uint64_t *out);
int esb_parse_bool(const char *s, int *out);
/* "host:port" or "[v6]:port"; fills host (owned) and port. */
int esb_parse_listen(const char *s, char **host, unsigned *port);

/* Print the markdown reference table of one element's attributes. */
void esb_attrs_doc(const char *element, const char *summary, const struct esb_attr_spec *specs,
                   void (*emit)(void *ctx, const char *text), void *ctx);

#endif
