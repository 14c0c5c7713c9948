/* config_internal.h - shared by config.c (typed parsing, checks, docs) and
 * config_include.c (reading files: parsing, <include>, ${ENV}, schema).
 * Not part of the public API. */
#ifndef ESB_CONFIG_INTERNAL_H
#define ESB_CONFIG_INTERNAL_H

#include <stddef.h>

#include "util.h"

struct _xmlDoc;
struct _xmlNode;
struct esb_diags;

/* Most diagnostics kept for one load; more are summarised in one line. */
#define ESB__CONFIG_MAX_DIAGS 100
/* Deepest <include> nesting (the top file is depth 0). */
#define ESB__CONFIG_MAX_INCLUDE_DEPTH 8
/* Most files one load may read (includes of includes...). */
#define ESB__CONFIG_MAX_FILES 256
/* Largest config file read. */
#define ESB__CONFIG_MAX_FILE_SIZE (16u * 1024 * 1024)
/* Longest attribute value after ${ENV} substitution. */
#define ESB__CONFIG_MAX_VALUE (64u * 1024)

/* One top-level element of the merged configuration and the file it came
 * from (the file name diagnostics use for it and everything inside it). */
struct esb__config_item {
    struct _xmlNode *node;
    const char *file; /* borrowed from esb__config_src.files */
};

/* Every document read for one load, and their top-level elements in
 * document order with each <include> replaced by the included file's
 * elements. The documents stay alive as long as the items are used. */
struct esb__config_src {
    struct _xmlDoc **docs;
    char **files;
    size_t ndocs;
    struct esb__config_item *items;
    size_t nitems, cap;
};

/* Read path and everything it includes: parse (no DTD, no entities, no
 * network), check the root, substitute ${ENV}, validate against the schema,
 * expand includes. Returns 0, or ESB_EINVAL with diagnostics in d (src is
 * filled as far as it got; free it either way). */
int esb__config_read(const char *path, struct esb__config_src *src, struct esb_diags *d) ESB_WUR;
void esb__config_src_free(struct esb__config_src *src);

/* The schema file used: $ESB_SCHEMA, else the installed one, else the one in
 * the source tree (an uninstalled build). */
const char *esb__config_schema_path(void);

/* The element's line (xmlGetLineNo), 0 if unknown. */
int esb__config_line(const struct _xmlNode *node);

#endif
