/* log.h - one-line structured logging to stderr.
 * Each call writes one whole line with a single write(2), so lines from
 * different threads never interleave. The level threshold is process-wide. */
#ifndef ESB_LOG_H
#define ESB_LOG_H

#include "util.h"

enum esb_log_level { ESB_LOG_DEBUG, ESB_LOG_INFO, ESB_LOG_WARN, ESB_LOG_ERROR, ESB_LOG_OFF };

/* Set the threshold; messages below it are dropped. Default: INFO. */
void esb_log_set_level(enum esb_log_level level);
/* Parse "debug", "info", "warn", "error" or "off"; returns -1 if unknown. */
int esb_log_parse_level(const char *s);
enum esb_log_level esb_log_get_level(void);

/* Log "TIMESTAMP LEVEL message" (message should be key=value pairs). */
void esb_log(enum esb_log_level level, const char *fmt, ...) ESB_PRINTF(2, 3);

#define esb_debug(...) esb_log(ESB_LOG_DEBUG, __VA_ARGS__)
#define esb_info(...)  esb_log(ESB_LOG_INFO, __VA_ARGS__)
#define esb_warn(...)  esb_log(ESB_LOG_WARN, __VA_ARGS__)
#define esb_error(...) esb_log(ESB_LOG_ERROR, __VA_ARGS__)

#endif
