/* msg.h - the message model: id, ordered headers, refcounted body, content type,
 * and its binary encoding inside log records.
 *
 * A message is refcounted. While the refcount is 1 the owner may change it;
 * once shared (handed to the bus, a multicast, a split) it is treated as
 * immutable. Bodies are refcounted separately, so a copy of a message (for a
 * split child or a multicast branch) shares the body bytes without copying.
 * Any thread may use any message it holds a reference to; a message is not
 * internally locked, so two threads must not modify one message at once. */
#ifndef ESB_MSG_H
#define ESB_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"
#include "uuid.h"

/* Limits that decoding enforces (encoding refuses what decoding would). */
#define ESB_MSG_MAX_HEADERS 1024
#define ESB_MSG_MAX_NAME 1024        /* header name or content type */
#define ESB_MSG_MAX_VALUE (64 * 1024) /* header value */

struct esb_body {
    _Atomic uint32_t refs;
    size_t len;
    uint8_t data[]; /* len bytes, then a NUL that is not part of the body */
};

struct esb_header {
    char *name;
    char *value;
};

struct esb_msg {
    _Atomic uint32_t refs;
    esb_uuid_t id;
    char id_text[ESB_UUID_STRLEN + 1];
    char *content_type;       /* never NULL; "" when unknown */
    struct esb_header *headers; /* in insertion order */
    size_t nheaders, cap_headers;
    struct esb_body *body;    /* never NULL; may be empty */
};

/* Body: a new body holding a copy of n bytes (NUL-terminated beyond len). */
struct esb_body *esb_body_new(const void *data, size_t n);
/* A new body of n uninitialised bytes, for the caller to fill. */
struct esb_body *esb_body_alloc(size_t n);
struct esb_body *esb_body_ref(struct esb_body *b);
void esb_body_unref(struct esb_body *b); /* NULL-safe */

/* A new message with a fresh UUIDv7 id, no headers, an empty body, refs 1. */
struct esb_msg *esb_msg_new(void);
struct esb_msg *esb_msg_ref(struct esb_msg *m);
void esb_msg_unref(struct esb_msg *m); /* NULL-safe */
/* A new message (refs 1) with the same id, headers and content type that
 * shares m's body. Headers are deep-copied, so the copy may be modified. */
struct esb_msg *esb_msg_clone(const struct esb_msg *m);

/* Replace the body: takes ownership of the caller's reference to b. */
void esb_msg_set_body_take(struct esb_msg *m, struct esb_body *b);
/* Replace the body with a copy of n bytes. */
void esb_msg_set_body(struct esb_msg *m, const void *data, size_t n);
void esb_msg_set_content_type(struct esb_msg *m, const char *ct);

/* Headers. Names compare case-insensitively; order of insertion is kept.
 * get returns the first value (borrowed) or NULL. set replaces the first
 * header of that name (and removes later duplicates) or appends. add always
 * appends. remove deletes all headers of that name; returns how many. */
const char *esb_msg_header(const struct esb_msg *m, const char *name);
void esb_msg_set_header(struct esb_msg *m, const char *name, const char *value);
void esb_msg_add_header(struct esb_msg *m, const char *name, const char *value);
size_t esb_msg_remove_header(struct esb_msg *m, const char *name);

/* Encoding:
 *   u8 version(=1) | 16 B id | u16 ctlen | ct | u16 nheaders |
 *   { u16 namelen | name | u32 valuelen | value }* | u32 bodylen | body
 * All integers little-endian. */
/* The exact number of bytes esb_msg_encode will write. */
size_t esb_msg_encoded_size(const struct esb_msg *m);
/* Write the encoding to out (esb_msg_encoded_size bytes); returns bytes written. */
size_t esb_msg_encode(const struct esb_msg *m, uint8_t *out);
/* Decode n bytes; returns a new message (refs 1) or NULL with err set
 * (ESB_ECORRUPT: truncated, oversized field, trailing bytes, bad version). */
struct esb_msg *esb_msg_decode(const uint8_t *p, size_t n, struct esb_err *err);

#endif
