/* cdc_log.c: formats each log event into one buffer, masks secrets, and
 * writes it with a single write(2) under a mutex, so lines from several
 * threads never interleave. */
#include "cdc_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cdc_buf.h"
#include "cdc_mask.h"

/* A copy: the caller's string (often inside a cdc_config) may be freed first. */
static char log_program[64] = "pgcdc";
static cdc_log_level log_level = CDC_LOG_INFO;
static bool log_json;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cdc_log_setup(const char *program, cdc_log_level level, bool json)
{
    snprintf(log_program, sizeof log_program, "%s", program ? program : "pgcdc");
    log_level = level;
    log_json = json;
}

int cdc_log_parse_level(const char *name, cdc_log_level *out)
{
    for (int k = 0; name && k < 4; k++)
        if (strcmp(name, level_names[k]) == 0) {
            *out = (cdc_log_level)k;
            return 0;
        }
    return -1;
}

bool cdc_log_enabled(cdc_log_level level)
{
    return level >= log_level;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, min = 0x10000;
    else
        return 0;
    unsigned cp = c & (0x3F >> (n - 1));
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* JSON string body: quotes, backslashes and control characters escaped;
 * bytes that are not UTF-8 become U+FFFD so every line stays valid JSON. */
static int put_json_string(cdc_buf *b, const char *s)
{
    int rc = cdc_buf_putc(b, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p && rc == 0) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            rc |= cdc_buf_putc(b, '\\');
            rc |= cdc_buf_putc(b, (char)c);
            p++;
        } else if (c < 0x20 || c == 0x7F) {
            switch (c) {
            case '\n': rc |= cdc_buf_puts(b, "\\n"); break;
            case '\r': rc |= cdc_buf_puts(b, "\\r"); break;
            case '\t': rc |= cdc_buf_puts(b, "\\t"); break;
            default: rc |= cdc_buf_printf(b, "\\u%04x", c); break;
            }
            p++;
        } else {
            size_t n = utf8_len(p);
            if (n == 0) {
                rc |= cdc_buf_puts(b, "\\ufffd");
                p++;
            } else {
                rc |= cdc_buf_append(b, p, n);
                p += n;
            }
        }
    }
    rc |= cdc_buf_putc(b, '"');
    return rc;
}

/* Text lines: a message must not start a second line, so line breaks are
 * written as \n and other control characters dropped to '?'. */
static int put_text(cdc_buf *b, const char *s)
{
    int rc = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && rc == 0; p++) {
        if (*p == '\n')
            rc |= cdc_buf_puts(b, "\\n");
        else if (*p == '\r')
            rc |= cdc_buf_puts(b, "\\r");
        else if (*p < 0x20 && *p != '\t')
            rc |= cdc_buf_putc(b, '?');
        else
            rc |= cdc_buf_putc(b, (char)*p);
    }
    return rc;
}

static void write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        data += w;
        len -= (size_t)w;
    }
}

void cdc_log(cdc_log_level level, const char *fmt, ...)
{
    if (level < log_level)
        return;
    if (level > CDC_LOG_ERROR)
        level = CDC_LOG_ERROR;

    char stamp[40];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t sl = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + sl, sizeof stamp - sl, ".%03ldZ", ts.tv_nsec / 1000000);

    cdc_buf msg = CDC_BUF_INIT, masked = CDC_BUF_INIT, line = CDC_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    int rc = cdc_buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    if (rc == 0)
        rc = cdc_mask_secrets(msg.data ? msg.data : "", &masked);
    if (rc == 0) {
        if (log_json) {
            rc |= cdc_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"program\":", stamp,
                                 level_names[level]);
            rc |= put_json_string(&line, log_program);
            rc |= cdc_buf_puts(&line, ",\"msg\":");
            rc |= put_json_string(&line, masked.data);
            rc |= cdc_buf_puts(&line, "}\n");
        } else {
            rc |= cdc_buf_printf(&line, "%s %s %s: ", stamp, level_names[level], log_program);
            rc |= put_text(&line, masked.data);
            rc |= cdc_buf_putc(&line, '\n');
        }
    }

    pthread_mutex_lock(&log_lock);
    if (rc == 0) {
        write_all(STDERR_FILENO, line.data, line.len);
    } else {
        /* Out of memory: say so rather than drop the event silently, and
         * without the message, which was never masked. */
        static const char oom[] = "pgcdc: log line dropped: out of memory\n";
        write_all(STDERR_FILENO, oom, sizeof oom - 1);
    }
    pthread_mutex_unlock(&log_lock);

    cdc_buf_free(&msg);
    cdc_buf_free(&masked);
    cdc_buf_free(&line);
}
