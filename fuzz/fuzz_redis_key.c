/* fuzz_redis_key.c: libFuzzer target for Redis key templates
 * (consumer/redis_keys.c). Input: two --redis-key items and a Kafka key
 * object, one per line. On any input no crash and no leak; and when the
 * start-time check accepts both templates, the promise it makes holds: a
 * key made by one template matches that template, never the other one,
 * and never lies under "<prefix>:" (default keys and markers). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "redis_keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Splits "schema.table=..." into schema and table, in a copy of the item
 * (to free); NULL when the item names no table. */
static char *table_of(const char *item, const char **schema, const char **table)
{
    const char *eq = strchr(item, '=');
    char *buf = eq ? strndup(item, (size_t)(eq - item)) : NULL;
    char *dot = buf ? strchr(buf, '.') : NULL;
    if (!dot) {
        free(buf);
        return NULL;
    }
    *dot = '\0';
    *schema = buf;
    *table = dot + 1;
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *items[2] = {text, NULL}, *json = NULL;
    char *nl = strchr(text, '\n');
    if (nl) {
        *nl = '\0';
        items[1] = nl + 1;
        if ((nl = strchr(items[1], '\n'))) {
            *nl = '\0';
            json = nl + 1;
        }
    }
    const char *keys[2] = {items[0], items[1]};
    size_t nkeys = items[1] ? 2 : 1;
    redis_tables *ts = NULL;
    char err[512];
    yajl_val key = json ? yajl_tree_parse(json, NULL, 0) : NULL;
    if (redis_tables_new("pgcdc", keys, nkeys, NULL, 0, NULL, 0, NULL, 0, &ts, err, sizeof err) < 0)
        goto done;
    const char *s[2], *t[2];
    char *names[2] = {NULL, NULL};
    for (size_t i = 0; i < nkeys; i++)
        if (!(names[i] = table_of(items[i], &s[i], &t[i])))
            abort(); /* accepted items name their table */
    redis_table_opts o[2];
    for (size_t i = 0; i < nkeys; i++)
        redis_tables_get(ts, s[i], t[i], &o[i]);
    for (size_t i = 0; key && i < nkeys; i++) {
        cdc_buf k = CDC_BUF_INIT;
        if (o[i].key && redis_key_render(o[i].key, key, &k, err, sizeof err) == 0) {
            if (!redis_key_matches(o[i].key, k.data, k.len))
                abort();
            if (nkeys == 2 && o[1 - i].key && o[1 - i].key != o[i].key &&
                redis_key_matches(o[1 - i].key, k.data, k.len))
                abort(); /* two accepted templates made the same key */
            if (k.len >= 6 && memcmp(k.data, "pgcdc:", 6) == 0)
                abort();
        }
        cdc_buf_free(&k);
    }
    free(names[0]);
    free(names[1]);
done:
    redis_tables_free(ts);
    yajl_tree_free(key);
    free(text);
    return 0;
}
