/* test_log.c: log lines as text and JSON: format, level filter, escaping,
 * masking of secrets, and whole lines under concurrent writers. stderr is
 * redirected to a temporary file and read back. */
#include "cdc_log.h"
#include "tap.h"

#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static FILE *capture_file;
static int saved_stderr = -1;

static void capture_start(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    saved_stderr = dup(2);
    dup2(fileno(capture_file), 2);
}

/* Returns what was written to stderr since capture_start (caller frees). */
static char *capture_end(void)
{
    dup2(saved_stderr, 2);
    close(saved_stderr);
    long len = ftell(capture_file);
    fseek(capture_file, 0, SEEK_END);
    len = ftell(capture_file);
    rewind(capture_file);
    char *out = calloc(1, (size_t)len + 1);
    if (out && fread(out, 1, (size_t)len, capture_file) != (size_t)len)
        out[0] = '\0';
    fclose(capture_file);
    return out;
}

static bool matches(const char *text, const char *pattern)
{
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return false;
    bool ok = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

static void *log_many(void *arg)
{
    for (int k = 0; k < 300; k++)
        cdc_log_info("thread %ld line %d %s", (long)(intptr_t)arg, k,
                     "padding-padding-padding-padding-padding-padding-padding-padding");
    return NULL;
}

int main(void)
{
    cdc_log_level lv = CDC_LOG_ERROR;
    TAP_OK(cdc_log_parse_level("debug", &lv) == 0 && lv == CDC_LOG_DEBUG, "log_parse_level_debug");
    TAP_OK(cdc_log_parse_level("warn", &lv) == 0 && lv == CDC_LOG_WARN, "log_parse_level_warn");
    TAP_OK(cdc_log_parse_level("warning", &lv) == -1 && cdc_log_parse_level(NULL, &lv) == -1,
           "log_parse_level_rejects_unknown");

    /* text */
    cdc_log_setup("pgcdc-test", CDC_LOG_INFO, false);
    capture_start();
    cdc_log_debug("hidden %d", 1);
    cdc_log_info("hello %s", "world");
    cdc_log_warn("conninfo host=db password=secret dbname=x");
    cdc_log_error("two\nlines\r");
    char *out = capture_end();
    TAP_OK(out && !strstr(out, "hidden"), "log_filters_below_level");
    TAP_OK(out && matches(out, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                               "info pgcdc-test: hello world\n"),
           "log_text_line_has_utc_millisecond_timestamp_level_program");
    TAP_OK(out && strstr(out, " warn pgcdc-test: conninfo host=db password=**** dbname=x\n") &&
               !strstr(out, "secret"),
           "log_text_masks_passwords");
    TAP_OK(out && strstr(out, " error pgcdc-test: two\\nlines\\r\n"),
           "log_text_escapes_line_breaks_to_stay_one_line");
    free(out);

    TAP_OK(!cdc_log_enabled(CDC_LOG_DEBUG) && cdc_log_enabled(CDC_LOG_INFO) &&
               cdc_log_enabled(CDC_LOG_ERROR),
           "log_enabled_follows_level");

    /* JSON */
    cdc_log_setup("pgcdc-test", CDC_LOG_DEBUG, true);
    capture_start();
    cdc_log_debug("quote \" backslash \\ tab \t nl \n ctl \x01 del \x7f");
    cdc_log_info("utf8 \xc3\xa9\xf0\x9f\x98\x80 bad \xff\xc3 end");
    cdc_log_info("redis://u:pw@h:6379/0");
    out = capture_end();
    TAP_OK(out && matches(out, "^\\{\"ts\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{3}Z\","
                               "\"level\":\"debug\",\"program\":\"pgcdc-test\",\"msg\":\""),
           "log_json_line_fields_in_order");
    TAP_OK(out && strstr(out, "\"msg\":\"quote \\\" backslash \\\\ tab \\t nl \\n ctl \\u0001 del \\u007f\"}\n"),
           "log_json_escapes_quotes_backslashes_and_controls");
    TAP_OK(out && strstr(out, "\"msg\":\"utf8 \xc3\xa9\xf0\x9f\x98\x80 bad \\ufffd\\ufffd end\"}\n"),
           "log_json_keeps_utf8_and_replaces_invalid_bytes");
    TAP_OK(out && strstr(out, "\"msg\":\"redis://u:****@h:6379/0\"}\n"), "log_json_masks_url_password");
    int lines = 0;
    for (const char *p = out; p && *p; p++)
        lines += *p == '\n';
    TAP_OK(lines == 3, "log_json_one_line_per_event");
    free(out);

    /* concurrent writers: every line complete, none lost */
    cdc_log_setup("pgcdc-test", CDC_LOG_INFO, false);
    capture_start();
    pthread_t th[4];
    for (long t = 0; t < 4; t++)
        pthread_create(&th[t], NULL, log_many, (void *)(intptr_t)t);
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    out = capture_end();
    int good = 0, total = 0;
    char *save = NULL;
    for (char *line = out ? strtok_r(out, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        total++;
        good += matches(line, "^[0-9T:.-]+Z info pgcdc-test: thread [0-3] line [0-9]+ "
                              "(padding-){7}padding$");
    }
    TAP_OK(total == 1200 && good == 1200, "log_lines_from_threads_never_interleave");
    free(out);

    /* a long line is written whole */
    capture_start();
    char *big = malloc(100001);
    memset(big, 'a', 100000);
    big[100000] = '\0';
    cdc_log_info("%s", big);
    out = capture_end();
    TAP_OK(out && strlen(out) > 100000 && strstr(out, big) && out[strlen(out) - 1] == '\n',
           "log_long_line_is_not_truncated");
    free(out);
    free(big);
    return tap_done();
}
