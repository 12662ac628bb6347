/* fixture.h: loads the pgoutput fixtures written by capture_fixtures.sh
 * ("<lsn>\t<xid>\t<hex>" a line, '#' comments) for the producer's tests. */
#ifndef PGCDC_TEST_FIXTURE_H
#define PGCDC_TEST_FIXTURE_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#ifndef FIXTURES_DIR
#error "FIXTURES_DIR must name producer/tests/fixtures"
#endif

typedef struct fixture_msg {
    uint64_t lsn;
    uint32_t xid;
    uint8_t *data;
    size_t len;
} fixture_msg;

typedef struct fixture {
    fixture_msg *msgs;
    size_t n;
} fixture;

static inline void fixture_free(fixture *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->msgs[i].data);
    free(f->msgs);
    f->msgs = NULL;
    f->n = 0;
}

static inline int fixture_hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Loads FIXTURES_DIR/<name>.txt. Returns 0, or -1 (and prints why). */
static inline int fixture_load(const char *name, fixture *f)
{
    char path[512];
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    memset(f, 0, sizeof *f);
    snprintf(path, sizeof path, "%s/%s.txt", FIXTURES_DIR, name);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        printf("# cannot open %s\n", path);
        return -1;
    }
    while ((got = getline(&line, &cap, fp)) > 0) {
        unsigned hi, lo, xid;
        int off = 0;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%X/%X\t%u\t%n", &hi, &lo, &xid, &off) != 3 || off == 0)
            goto bad;
        const char *hex = line + off;
        size_t hl = strcspn(hex, "\r\n");
        if (hl % 2)
            goto bad;
        fixture_msg *m = realloc(f->msgs, (f->n + 1) * sizeof *m);
        if (!m)
            goto bad;
        f->msgs = m;
        m = &f->msgs[f->n];
        m->lsn = (uint64_t)hi << 32 | lo;
        m->xid = xid;
        m->len = hl / 2;
        m->data = malloc(m->len ? m->len : 1);
        if (!m->data)
            goto bad;
        f->n++;
        for (size_t i = 0; i < m->len; i++) {
            int a = fixture_hexval(hex[2 * i]), b = fixture_hexval(hex[2 * i + 1]);
            if (a < 0 || b < 0)
                goto bad;
            m->data[i] = (uint8_t)(a << 4 | b);
        }
    }
    free(line);
    fclose(fp);
    return 0;
bad:
    printf("# malformed fixture line in %s: %s", path, line);
    free(line);
    fclose(fp);
    fixture_free(f);
    return -1;
}

#endif
