/* util.h - small shared helpers: the error out-parameter, aborting allocators,
 * monotonic/wall clocks, condition variables that wait on the monotonic one,
 * civil-calendar day numbers, and little-endian packing used by the log
 * format.
 * Thread-safe; no global state. */
#ifndef ESB_UTIL_H
#define ESB_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define ESB_WUR          __attribute__((warn_unused_result))
#define ESB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define ESB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Error out-parameter: no allocation, words a user can act on.
 * code is a negative errno-style or ESB_E* value; 0 means no error. */
struct esb_err {
    int code;
    char msg[256];
};

/* Project error codes beyond errno (all negative, below -4096). */
enum {
    ESB_EFULL = -5001,    /* back-pressure: a limit refuses the input */
    ESB_ECORRUPT = -5002, /* data failed an integrity check */
    ESB_EFAILED = -5003,  /* the component is in a failed (fatal) state */
    ESB_ECLOSED = -5004,  /* the component is shutting down */
    ESB_ENOTFOUND = -5005,
    ESB_EINVAL = -5006,
    ESB_ETIMEDOUT = -5007,
    ESB_EEXIST = -5008, /* a unique key is already taken */
    ESB_EBUSY = -5009,  /* the entry is held by someone else */
};

/* Set err (if non-NULL) to code and a formatted message; returns code. */
int esb_err_set(struct esb_err *err, int code, const char *fmt, ...) ESB_PRINTF(3, 4);
/* Human-readable text for an ESB_E* or negative errno code. */
const char *esb_strerror(int code);

/* Allocators that abort on exhaustion (the durable bus makes a restart lossless). */
void *esb_malloc(size_t n);
void *esb_calloc(size_t n, size_t size);
void *esb_realloc(void *p, size_t n);
char *esb_strdup(const char *s);
char *esb_strndup(const char *s, size_t n);

/* Clocks in milliseconds / nanoseconds. */
uint64_t esb_now_ms(void); /* CLOCK_REALTIME, ms since the epoch */
/* Name the calling thread for ps/top/perf (at most 15 characters are
 * kept). */
void esb_thread_name(const char *fmt, ...) ESB_PRINTF(1, 2);
uint64_t esb_mono_ns(void); /* CLOCK_MONOTONIC */
/* *ts = CLOCK_MONOTONIC now + ms: a deadline for a condition variable made
 * by esb_cond_init_mono. */
void esb_abstime_mono_ms(struct timespec *ts, uint64_t ms);
/* Wall ms as UTC ISO 8601 with milliseconds: "2026-11-23T16:49:39.123Z". */
#define ESB_TIME_ISO_SIZE 32
void esb_time_iso(uint64_t ms, char out[ESB_TIME_ISO_SIZE]);
/* Initialise c as a condition variable whose timed waits take
 * CLOCK_MONOTONIC (esb_mono_ns's clock) deadlines, so a change of the wall
 * clock does not move them. Destroy it with pthread_cond_destroy. */
void esb_cond_init_mono(pthread_cond_t *c);

/* The proleptic Gregorian calendar (H. Hinnant's algorithms): the days
 * since 1970-01-01 of y-m-d (m 1..12, d 1..31, not checked against the
 * month; any year in int range), and the date of such a day number. */
int64_t esb_days_from_civil(int64_t y, int m, int d);
void esb_civil_from_days(int64_t days, int *y, int *m, int *d);

/* Little-endian packing. */
static inline void esb_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void esb_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void esb_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t esb_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t esb_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline uint64_t esb_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A growable byte buffer with a mandatory cap (curl's dynbuf idea). */
struct esb_buf {
    uint8_t *data;
    size_t len, cap, max;
};
void esb_buf_init(struct esb_buf *b, size_t max);
/* Append n bytes; returns 0, or ESB_EFULL when the cap would be exceeded. */
int esb_buf_add(struct esb_buf *b, const void *p, size_t n) ESB_WUR;
/* Make room for n bytes in total (len unchanged); ESB_EFULL over the cap. */
int esb_buf_reserve(struct esb_buf *b, size_t n) ESB_WUR;
void esb_buf_free(struct esb_buf *b);

#endif
