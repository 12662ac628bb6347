/* tap.h: a minimal TAP producer for pgcdc's unit tests.
 * Every check prints one "ok N - name" or "not ok N - name" line; tap_done()
 * prints the plan and returns the exit status meson expects. */
#ifndef PGCDC_TAP_H
#define PGCDC_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_count;
static int tap_failed;

#define TAP_OK(cond, name) tap_ok_at(!!(cond), (name), #cond, __FILE__, __LINE__)

static inline int tap_ok_at(int ok, const char *name, const char *expr,
                            const char *file, int line)
{
    tap_count++;
    printf("%sok %d - %s\n", ok ? "" : "not ", tap_count, name);
    if (!ok) {
        tap_failed++;
        printf("#   failed: %s at %s:%d\n", expr, file, line);
    }
    fflush(stdout);
    return ok;
}

/* String equality with both values shown on failure. */
#define TAP_STREQ(got, want, name) tap_streq_at((got), (want), (name), __FILE__, __LINE__)

static inline int tap_streq_at(const char *got, const char *want, const char *name,
                               const char *file, int line)
{
    int ok = got && want && strcmp(got, want) == 0;
    tap_ok_at(ok, name, "strings equal", file, line);
    if (!ok)
        printf("#   got:  %s\n#   want: %s\n", got ? got : "(null)", want ? want : "(null)");
    return ok;
}

static inline int tap_done(void)
{
    printf("1..%d\n", tap_count);
    return tap_failed ? 1 : 0;
}

#endif
