/* redis_keys.h: the Redis sink's per-table settings (--redis-key,
 * --redis-format, --redis-mode, --redis-ttl) and key templates: parsing,
 * the start-time check that no two tables (and no table and the marker or
 * default key space) can produce the same key, and building a row's key
 * from its Kafka key. No I/O.
 *
 * A template is text with placeholders {column} (a column of the table's
 * replica identity, i.e. a member of the Kafka key) and {schema} {table}.
 * Every key column must appear; placeholders must be separated by text
 * that contains ':'. A value replaces its placeholder as text (a string as
 * it is, a number in its exact text, anything else as compact JSON) with
 * '%' written as %25 and ':' as %3A. So a key has exactly the ':' of its
 * template, and splitting it at ':' gives each value back: two rows of one
 * table never share a key, and two templates can share a key only if they
 * have as many ':' and every ':'-separated segment of one can match the
 * other's; the start-time check refuses that, and any template that could
 * produce a key under "<--redis-prefix>:", where default keys and every
 * marker live. */
#ifndef PGCDC_CONSUMER_REDIS_KEYS_H
#define PGCDC_CONSUMER_REDIS_KEYS_H

#include <stddef.h>

#include <yajl/yajl_tree.h>

#include "cdc_buf.h"

typedef struct redis_key_template redis_key_template;

typedef enum redis_format {
    REDIS_FORMAT_HASH,    /* a hash of the columns, plus _pgcdc_lsn */
    REDIS_FORMAT_JSON,    /* {"_pgcdc_lsn":N,<columns>} */
    REDIS_FORMAT_STRING,  /* {<columns>}, the version in the marker key */
} redis_format;

typedef enum redis_mode {
    REDIS_MODE_WRITE,       /* write-through: the sink writes each change */
    REDIS_MODE_INVALIDATE,  /* a change deletes the key; the application fills it */
} redis_mode;

/* What applies to one table's rows. */
typedef struct redis_table_opts {
    const redis_key_template *key; /* NULL: <prefix>:<schema>.<table>:<id> */
    redis_format format;
    redis_mode mode;
    long long ttl;                 /* seconds, 0: rows do not expire */
} redis_table_opts;

typedef struct redis_tables redis_tables;

/* The items of the four list options, as given ("VALUE" for every table,
 * "SCHEMA.TABLE=VALUE" for one; a later item for the same table wins).
 * Parses and checks every template, and that no two keys can collide.
 * Returns 0 and *out (free with redis_tables_free), or -1 with err set,
 * naming the option and the item. */
int redis_tables_new(const char *prefix,
                     const char *const *keys, size_t nkeys,
                     const char *const *formats, size_t nformats,
                     const char *const *modes, size_t nmodes,
                     const char *const *ttls, size_t nttls,
                     redis_tables **out, char *err, size_t errlen);
void redis_tables_free(redis_tables *t);

/* The settings of schema.table (defaults for a table not named). */
void redis_tables_get(const redis_tables *t, const char *schema, const char *table,
                      redis_table_opts *out);

/* Syntax of one --redis-key item, for the option table (err gets a
 * predicate, e.g. "has an unclosed {"). Returns 0 or -1. */
int redis_key_item_check(const char *item, char *err, size_t errlen);

/* Appends the row key of `key` (the Kafka key object). Returns 0, or -1
 * with err set (a key column the template leaves out, a placeholder that
 * is not a key column, out of memory). */
int redis_key_render(const redis_key_template *t, yajl_val key, cdc_buf *out,
                     char *err, size_t errlen);

/* The SCAN MATCH pattern of the template's keys (placeholders as *,
 * glob characters escaped), appended to out. Returns 0 or -1. */
int redis_key_scan_pattern(const redis_key_template *t, cdc_buf *out);

/* Appends s with the glob characters of SCAN MATCH (* ? [ ] \) escaped.
 * Returns 0 or -1. */
int redis_glob_escape(cdc_buf *out, const char *s);

/* True when key[0..len) is one the template can make (SCAN's * also
 * matches ':', so a pattern finds other templates' keys too). */
int redis_key_matches(const redis_key_template *t, const char *key, size_t len);

/* The template as given, for messages. */
const char *redis_key_text(const redis_key_template *t);

#endif
