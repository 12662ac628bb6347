/* columns.c: builds the column policy from pgcdc-producer's options and
 * checks it against the catalog (see columns.h). The key file is read here,
 * once, so colpolicy.c stays free of I/O. */
#include "columns.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pg_error.h"

/* Longer keys add nothing to HMAC-SHA256's strength (they are hashed to 32
 * bytes); the bound only keeps a wrong path (a large file) from being read. */
#define KEY_MAX 4096

/* The key is the file's bytes without a final newline (echo adds one).
 * Returns the length, or -1 with err. */
static long read_key(const char *path, unsigned char *key, size_t cap, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "--hash-key-file: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(key, 1, cap, f);
    bool more = n == cap && fgetc(f) != EOF;
    bool bad = ferror(f);
    fclose(f);
    if (bad || more) {
        snprintf(err, errlen, "--hash-key-file: cannot read %s: %s", path,
                 more ? "longer than 4096 bytes" : "read error");
        return -1;
    }
    if (n > 0 && key[n - 1] == '\n')
        n--;
    if (n > 0 && key[n - 1] == '\r')
        n--;
    return (long)n;
}

int columns_policy_new(const cdc_config *cfg, const outbox *ob, colpolicy **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    colpolicy_settings s = {0};
    s.nexclude = cdc_config_list(cfg, "exclude-columns", &s.exclude);
    s.ninclude = cdc_config_list(cfg, "include-columns", &s.include);
    s.nhash = cdc_config_list(cfg, "hash-columns", &s.hash);
    const char *path = cdc_config_str(cfg, "hash-key-file");
    unsigned char key[KEY_MAX];
    if (path && *path) {
        long n = read_key(path, key, sizeof key, err, errlen);
        if (n < 0)
            return -1;
        s.key = key;
        s.keylen = (size_t)n;
    }
    int rc = colpolicy_new(&s, out, err, errlen);
    memset(key, 0, sizeof key);
    if (rc < 0)
        return -1;
    for (size_t i = 0; ob && i < colpolicy_count(*out); i++) {
        const char *schema, *table, *column, *option;
        colpolicy_rule(*out, i, &schema, &table, &column, &option);
        if (outbox_has_table(ob, schema, table)) {
            snprintf(err, errlen, "--%s %s.%s.%s: %s.%s is an outbox table, whose events "
                     "carry the payload the application wrote, not its columns: leave the "
                     "value out of the payload instead", option, schema, table, column,
                     schema, table);
            colpolicy_free(*out);
            *out = NULL;
            return -1;
        }
    }
    return 0;
}

int columns_check(catalog *cat, const colpolicy *p, char *err, size_t errlen)
{
    for (size_t i = 0; i < colpolicy_count(p); i++) {
        const char *schema, *table, *column, *option;
        colpolicy_rule(p, i, &schema, &table, &column, &option);
        int rc = catalog_has_column(cat, schema, table, column, err, errlen);
        if (rc < 0)
            return -1;
        if (rc == 1)
            continue;
        if (rc == 2)
            snprintf(err, errlen, "--%s %s.%s.%s: there is no table %s.%s", option, schema,
                     table, column, schema, table);
        else
            snprintf(err, errlen, "--%s %s.%s.%s: table %s.%s has no column \"%s\"", option,
                     schema, table, column, schema, table, column);
        return PG_PERMANENT;
    }
    return 0;
}
