/* template.h - text templates of set-header value=, log message= and
 * file-out name=, compiled once at config load and rendered per message.
 *
 * Syntax: literal text with placeholders
 *   {id}             the message id
 *   {header:NAME}    the first value of header NAME ("" if absent)
 *   {content-type}   the message's content type ("" if unknown)
 *   {date:FMT}       strftime(FMT) of the current time in UTC, e.g. {date:%Y%m%d}
 *   {route}          the id of the route running the template
 *   {{               a literal '{' (a '}' on its own is literal text)
 * An unknown placeholder, an unclosed '{' or a bad FMT is a compile error.
 *
 * File names (ESB_TEMPLATE_FILENAME): literal text may not contain '/', a
 * control character or "..", nor start with '.'. esb_template_render_filename
 * replaces '/' and control characters in substituted values by '_', turns a
 * '.' that starts the name or follows another '.' into '_', and caps the name
 * at ESB_TEMPLATE_NAME_MAX bytes (values are cut, never the literal text), so
 * no message can make a name that leaves the directory.
 *
 * A compiled template is immutable and may be shared by threads; rendering
 * allocates nothing. */
#ifndef ESB_TEMPLATE_H
#define ESB_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct esb_msg;
struct esb_template;

#define ESB_TEMPLATE_FILENAME 1u   /* compile flag: the template makes file names */
#define ESB_TEMPLATE_NAME_MAX 255  /* bytes in a rendered file name (NAME_MAX) */
#define ESB_TEMPLATE_MAX_LEN  4096 /* characters in a template's source */

/* What placeholders read. */
struct esb_template_env {
    const struct esb_msg *msg; /* required */
    const char *route;         /* {route}; NULL renders "" */
    uint64_t now_ms;           /* {date:FMT}: wall ms; 0 = the current time */
};

/* Compile src with flags (0 or ESB_TEMPLATE_FILENAME). Returns 0 and *out, or
 * ESB_EINVAL with err->msg like "unknown placeholder {bogus} at column 3". */
int esb_template_compile(const char *src, unsigned flags, struct esb_template **out,
                         struct esb_err *err) ESB_WUR;
void esb_template_free(struct esb_template *t); /* NULL-safe */

/* The source text (borrowed). */
const char *esb_template_text(const struct esb_template *t);

/* Render into buf (cap >= 1 bytes, NUL included); *len gets the length.
 * Returns 0, or ESB_EFULL when the text needs more than cap - 1 bytes (buf
 * then holds the NUL-terminated prefix that fits). */
int esb_template_render(const struct esb_template *t, const struct esb_template_env *env, char *buf,
                        size_t cap, size_t *len) ESB_WUR;

/* Render a file name (see the header comment) into buf, which must hold
 * ESB_TEMPLATE_NAME_MAX + 1 bytes. Returns 0, or ESB_EINVAL if t was not
 * compiled with ESB_TEMPLATE_FILENAME or the name comes out empty. */
int esb_template_render_filename(const struct esb_template *t, const struct esb_template_env *env,
                                 char buf[ESB_TEMPLATE_NAME_MAX + 1]) ESB_WUR;

#endif
