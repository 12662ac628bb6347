/* fixture_file.h: reads a captured response body for the consumer's unit
 * tests (the directory comes from meson as argv[1]). */
#ifndef PGCDC_CONSUMER_FIXTURE_FILE_H
#define PGCDC_CONSUMER_FIXTURE_FILE_H

#include <stdio.h>
#include <stdlib.h>

/* The whole file dir/name, NUL-terminated, to free(); NULL when unreadable. */
static inline char *fixture_read(const char *dir, const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

#endif
