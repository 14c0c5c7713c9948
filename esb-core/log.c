/* log.c - see log.h. */
#include "config.h"

#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static _Atomic int threshold = ESB_LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error", "off"};

void esb_log_set_level(enum esb_log_level level)
{
    atomic_store(&threshold, (int)level);
}

enum esb_log_level esb_log_get_level(void)
{
    return (enum esb_log_level)atomic_load(&threshold);
}

int esb_log_parse_level(const char *s)
{
    for (size_t i = 0; i < ESB_ARRAY_LEN(names); i++)
        if (strcmp(s, names[i]) == 0) return (int)i;
    return -1;
}

void esb_log(enum esb_log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load(&threshold)) return;
    char line[2048], when[ESB_TIME_ISO_SIZE];
    esb_time_iso(esb_now_ms(), when);
    int n = snprintf(line, sizeof(line), "%s %s ", when, names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2) len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
