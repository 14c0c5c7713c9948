/* http_out_internal.h - shared by the files of the http-out connector:
 * the endpoint's compiled configuration (URL template split into literal
 * text and placeholders, fixed headers, forward-header globs, the retry
 * status table) and the pure helpers that render requests and describe
 * results. Everything here is immutable once compiled and thread-safe. */
#ifndef ESB_HTTP_OUT_INTERNAL_H
#define ESB_HTTP_OUT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "connector.h"
#include "msg.h"

struct esb_template;

#define ESB__HTTP_OUT_URL_MAX     8192                    /* bytes in a rendered URL */
#define ESB__HTTP_OUT_VALUE_MAX   (ESB_MSG_MAX_VALUE + 1) /* one rendered placeholder */
#define ESB__HTTP_OUT_STATIC_MAX  64                      /* headers in headers= */
#define ESB__HTTP_OUT_GLOBS_MAX   64                      /* patterns in forward-headers= */
#define ESB__HTTP_OUT_RETRY_MAX_S 3600                    /* Retry-After is capped at one hour */
#define ESB__HTTP_OUT_REASON_URL  100                     /* URL characters quoted in a reason */

/* The methods, indexed by esb_http_out_conf.method. */
extern const char *const esb__http_out_methods[];

struct esb__http_out_url_part {
    char *text;               /* literal text, or NULL */
    struct esb_template *tpl; /* one placeholder, or NULL */
};

struct esb__http_out_compiled {
    struct esb__http_out_url_part *parts;
    size_t nparts;
    char **fixed; /* "Name: value" lines of headers= */
    size_t nfixed;
    int fixed_ct; /* headers= sets Content-Type */
    char **globs; /* forward-headers patterns */
    size_t nglobs;
    uint8_t retry[600 / 8]; /* bit per status that means RETRY */
};

/* Compile and check ep->conf (an esb_http_out_conf) into c. Returns 0, or
 * ESB_EINVAL with "FILE:LINE: http-out 'ID': attribute 'x': ..." in err
 * (c is then empty). */
int esb__http_out_compile(const struct esb_endpoint *ep, struct esb__http_out_compiled *c,
                          struct esb_err *err) ESB_WUR;
void esb__http_out_compiled_free(struct esb__http_out_compiled *c);

/* Render the URL for m into out (ESB__HTTP_OUT_URL_MAX + 1 bytes), every
 * substituted value percent-encoded (a value of only dots entirely, so it
 * is never a "." or ".." segment); scratch holds ESB__HTTP_OUT_VALUE_MAX
 * bytes. Returns 0, or ESB_EFULL when the URL would be too long. */
int esb__http_out_render_url(const struct esb__http_out_compiled *c, const struct esb_msg *m,
                             char *scratch, char *out) ESB_WUR;

/* Header helpers: an RFC 9110 token; a value without control characters
 * (HTAB allowed); a name the connector sets itself or that describes the
 * connection (never taken from headers= or the message). */
int esb__http_out_is_token(const char *s, size_t n);
int esb__http_out_value_ok(const char *v);
int esb__http_out_managed(const char *name);
/* Move *s forward and *e back over spaces and tabs. */
void esb__http_out_trim(const char **s, const char **e);
/* Does a forward-headers glob match name? Does headers= set name? */
int esb__http_out_forwarded(const struct esb__http_out_compiled *c, const char *name);
int esb__http_out_fixed_has(const struct esb__http_out_compiled *c, const char *name);
/* Is status (300-599) in the retry-status table? */
int esb__http_out_retry_status(const struct esb__http_out_compiled *c, long status);

/* url for a reason text: without user info, query or fragment, cut. */
void esb__http_out_safe_url(const char *url, char *out, size_t cap);
/* ms from a Retry-After value (delay-seconds or HTTP-date), capped at
 * ESB__HTTP_OUT_RETRY_MAX_S; 0 if empty, invalid or in the past. */
uint64_t esb__http_out_retry_after_ms(const char *v);

#endif
