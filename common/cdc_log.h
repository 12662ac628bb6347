/* cdc_log.h: leveled logging to stderr, one line per event, as text or as
 * JSON lines. Every line passes through cdc_mask_secrets so a password in a
 * conninfo string or URL never reaches the log. */
#ifndef PGCDC_CDC_LOG_H
#define PGCDC_CDC_LOG_H

#include <stdbool.h>

typedef enum cdc_log_level {
    CDC_LOG_DEBUG,
    CDC_LOG_INFO,
    CDC_LOG_WARN,
    CDC_LOG_ERROR,
} cdc_log_level;

/* `program` names the binary in each line. Not thread-safe to call while
 * other threads log; call it once at start. */
void cdc_log_setup(const char *program, cdc_log_level level, bool json);
/* "debug", "info", "warn", "error" → 0; anything else → -1. */
int cdc_log_parse_level(const char *name, cdc_log_level *out);

/* Safe from any thread. Text: "2026-11-25T16:51:18.123Z info pgcdc-producer: message".
 * JSON: {"ts":"...","level":"info","program":"pgcdc-producer","msg":"message"}. */
void cdc_log(cdc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define cdc_log_debug(...) cdc_log(CDC_LOG_DEBUG, __VA_ARGS__)
#define cdc_log_info(...)  cdc_log(CDC_LOG_INFO, __VA_ARGS__)
#define cdc_log_warn(...)  cdc_log(CDC_LOG_WARN, __VA_ARGS__)
#define cdc_log_error(...) cdc_log(CDC_LOG_ERROR, __VA_ARGS__)

bool cdc_log_enabled(cdc_log_level level);

#endif
