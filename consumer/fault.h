/* fault.h: injection points for tests, as PostgreSQL's: compiled in only in
 * builds with -Dtests=true (PGCDC_FAULT_INJECTION), so that a test can drive
 * a path that otherwise only out-of-memory reaches. In such a build
 * PGCDC_TEST_FAULTS="name@offset[,...]" makes cdc_fault(name, offset) true
 * for the record at that offset; in any other build it is always false. */
#ifndef PGCDC_CONSUMER_FAULT_H
#define PGCDC_CONSUMER_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#ifdef PGCDC_FAULT_INJECTION
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline bool cdc_fault(const char *name, int64_t offset)
{
    char want[160];
    snprintf(want, sizeof want, "%s@%" PRId64, name, offset);
    size_t n = strlen(want);
    for (const char *p = getenv("PGCDC_TEST_FAULTS"); p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, want, n) == 0)
            return true;
        p += len + (end != NULL);
    }
    return false;
}
#else
static inline bool cdc_fault(const char *name, int64_t offset)
{
    (void)name;
    (void)offset;
    return false;
}
#endif

#endif
