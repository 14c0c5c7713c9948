/* util.c - see util.h. */
#include "config.h"

#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int esb_err_set(struct esb_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *esb_strerror(int code)
{
    switch (code) {
    case 0:
        return "ok";
    case ESB_EFULL:
        return "full (back-pressure limit reached)";
    case ESB_ECORRUPT:
        return "corrupt data";
    case ESB_EFAILED:
        return "failed state after a fatal I/O error";
    case ESB_ECLOSED:
        return "closed";
    case ESB_ENOTFOUND:
        return "not found";
    case ESB_EINVAL:
        return "invalid argument";
    case ESB_EEXIST:
        return "already exists";
    case ESB_EBUSY:
        return "busy (held elsewhere)";
    case ESB_ETIMEDOUT:
        return "timed out";
    default:
        break;
    }
    if (code < 0 && code > -4096) return strerror(-code);
    return "unknown error";
}

static void oom(size_t n)
{
    fprintf(stderr, "esb: out of memory allocating %zu bytes\n", n);
    abort();
}

void *esb_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *esb_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *esb_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *esb_strdup(const char *s)
{
    return esb_strndup(s, strlen(s));
}

char *esb_strndup(const char *s, size_t n)
{
    char *p = esb_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

uint64_t esb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void esb_thread_name(const char *fmt, ...)
{
    char name[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    (void)pthread_setname_np(pthread_self(), name);
}

void esb_time_iso(uint64_t ms, char out[ESB_TIME_ISO_SIZE])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) memset(&tm, 0, sizeof(tm));
    size_t n = strftime(out, ESB_TIME_ISO_SIZE - 6, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, ESB_TIME_ISO_SIZE - n, ".%03uZ", (unsigned)(ms % 1000));
}

void esb_abstime_mono_ms(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

uint64_t esb_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void esb_cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

int64_t esb_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void esb_civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

void esb_buf_init(struct esb_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

int esb_buf_reserve(struct esb_buf *b, size_t n)
{
    if (n > b->max) return ESB_EFULL;
    if (n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < n) cap *= 2;
        if (cap > b->max) cap = b->max;
        b->data = esb_realloc(b->data, cap);
        b->cap = cap;
    }
    return 0;
}

int esb_buf_add(struct esb_buf *b, const void *p, size_t n)
{
    if (n > b->max - b->len) return ESB_EFULL;
    if (esb_buf_reserve(b, b->len + n) != 0) return ESB_EFULL;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void esb_buf_free(struct esb_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
