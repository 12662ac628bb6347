/* colpolicy.h: which columns of a table leave PostgreSQL and how
 * (--exclude-columns, --include-columns, --hash-columns): the per-table
 * rules, the decision for one column, and the keyed hash (HMAC-SHA256)
 * that replaces a hashed column's value. Pure: the key is read elsewhere. */
#ifndef PGCDC_COLPOLICY_H
#define PGCDC_COLPOLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "cdc_buf.h"

typedef enum colpolicy_action {
    COLPOLICY_KEEP = 0,     /* sent as it is */
    COLPOLICY_DROP,         /* never sent: not in any event, key or marker */
    COLPOLICY_HASH,         /* sent as the hex HMAC-SHA256 of its text form */
} colpolicy_action;

/* Shortest hash key accepted: a short key can be guessed, and with it every
 * hashed e-mail address by trying a list of addresses. */
#define COLPOLICY_MIN_KEY 16

typedef struct colpolicy_settings {
    const char *const *exclude;   /* "schema.table.column" items */
    size_t nexclude;
    const char *const *include;
    size_t ninclude;
    const char *const *hash;
    size_t nhash;
    const void *key;              /* HMAC key; needed when nhash > 0 */
    size_t keylen;
} colpolicy_settings;

typedef struct colpolicy colpolicy;

/* *out is NULL when no list names a column (every column is kept). Returns
 * 0, or -1 with err: a malformed item, a column in two lists, a missing or
 * short key, memory. */
int colpolicy_new(const colpolicy_settings *s, colpolicy **out, char *err, size_t errlen);
void colpolicy_free(colpolicy *p);

/* The option table's check of one item: "schema.table.column", split at the
 * first and the last '.' (a schema or column name with a '.' cannot be
 * named). */
int colpolicy_check_item(const char *value, char *err, size_t errlen);

/* What happens to a column (p may be NULL: keep). A table with an include
 * list sends only those columns, its hashed columns and its key columns.
 * is_key: the column is part of the record key, which every sink needs:
 * excluding it is refused (returns -1 with err saying to hash it instead). */
int colpolicy_column(const colpolicy *p, const char *schema, const char *table,
                     const char *column, bool is_key, colpolicy_action *action, char *err,
                     size_t errlen);

/* The type a hashed column has in EVENTS.md's "types": its values are hex
 * digests, whatever the column's own type. */
#define COLPOLICY_HASH_TYPE "hmac-sha256"

/* Replaces *types (EVENTS.md's "types" object of *len bytes, as
 * cdc_types_encode made it for every column; malloc'd) with what the rules
 * leave of it: only the n columns kept, names[i], each hashed[i] one with
 * COLPOLICY_HASH_TYPE, so that no type of an excluded column reaches a
 * topic and a sink maps a hashed one as the text it receives. Returns 0,
 * or -1 with err (*types unchanged). */
int colpolicy_types(char **types, size_t *len, const char *const *names, const bool *hashed,
                    size_t n, char *err, size_t errlen);

/* True when some rule names the table. */
bool colpolicy_has_table(const colpolicy *p, const char *schema, const char *table);

/* Appends the JSON string of the lowercase hex HMAC-SHA256 of text[0..len)
 * (the value's PostgreSQL text form). Returns 0, or -1 when memory runs
 * out. */
int colpolicy_append_hash(const colpolicy *p, const char *text, size_t len, cdc_buf *out);

/* The rules, for checks against the catalog at start: rule i's table and
 * column, and the option that named it ("exclude-columns", ...). */
size_t colpolicy_count(const colpolicy *p);
void colpolicy_rule(const colpolicy *p, size_t i, const char **schema, const char **table,
                    const char **column, const char **option);

#endif
