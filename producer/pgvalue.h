/* pgvalue.h: a column's PostgreSQL text value to the JSON of EVENTS.md's
 * "Column values" table, by type. Pure and allocation-free per value: output
 * is appended to a caller's cdc_buf (pgvalue_row: a whole row's). Catalog
 * look-ups for user types are the caller's business (pgvalue_resolve_fn);
 * this file only knows built-ins. */
#ifndef PGCDC_PGVALUE_H
#define PGCDC_PGVALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdc_buf.h"
#include "cdc_event.h"

/* How a scalar's text becomes JSON. */
typedef enum pgvalue_class {
    PGVALUE_TEXT = 0,     /* JSON string of the text form (the default) */
    PGVALUE_BOOL,         /* t/f -> true/false */
    PGVALUE_INT,          /* int2/int4/int8/oid -> number */
    PGVALUE_FLOAT,        /* number; NaN, Infinity, -Infinity -> strings */
    PGVALUE_NUMERIC,      /* exact string */
    PGVALUE_JSON,         /* json/jsonb embedded as is */
    PGVALUE_BYTEA,        /* \x hex -> base64 string */
    PGVALUE_DATE,         /* string as is */
    PGVALUE_TIMESTAMP,    /* "YYYY-MM-DD HH:MM:SS" -> "YYYY-MM-DDTHH:MM:SS" */
    PGVALUE_TIMESTAMPTZ,  /* ... "+00" -> "...Z" */
} pgvalue_class;

/* What pgvalue needs to know about a column's type. For an array, `cls` is
 * the class of its elements (a domain resolved to its base type) and
 * `delim` the element delimiter (pg_type.typdelim of the element type: ','
 * for all built-ins but box, which uses ';'). */
typedef struct pgvalue_type {
    bool is_array;
    pgvalue_class cls;
    char delim;
    uint32_t elem_oid;     /* arrays: the element type (informational) */
} pgvalue_type;

/* Fills *out for a built-in type OID (scalars and arrays of them) and
 * returns true; false for any other OID, which the caller must resolve. */
bool pgvalue_builtin_type(uint32_t oid, pgvalue_type *out);

/* Resolves a type pgvalue_builtin_type does not know, with one catalog
 * look-up (cached by the caller): a domain maps to its base type's mapping,
 * an array (pg_type.typelem set, typlen -1, typsubscript
 * array_subscript_handler) to is_array with its element's class and typdelim,
 * an enum, composite, range or extension type to PGVALUE_TEXT.
 * Returns 0, or -1 with err set. */
typedef int (*pgvalue_resolve_fn)(void *ctx, uint32_t oid, pgvalue_type *out,
                                  char *err, size_t errlen);

/* Appends the JSON for one non-NULL value given as PostgreSQL's text output
 * (text, len; not NUL-terminated). `scratch` is working memory reused
 * across calls (array elements with escapes are unquoted into it).
 *
 * Representation choices, for values JSON has no direct form for:
 * - date/timestamp/timestamptz `infinity` and `-infinity` and BC values
 *   (`0044-03-15 BC`, `0044-03-15 10:00:00 BC`) are kept as PostgreSQL's
 *   text form, as a string: ISO 8601 has no infinity, and its year-0
 *   convention for BC would silently shift years by one for readers that
 *   don't know it.
 * - timestamptz with an offset other than +00 (a session not in UTC) keeps
 *   the offset: "...T10:00:00+05:30".
 * - an int/float/bool text that is not what PostgreSQL prints for those
 *   types, and bytea text that is not hex or escape format, fall back to a
 *   JSON string of the text rather than emitting invalid JSON;
 *   json text that is not valid UTF-8 likewise becomes a string.
 * Returns 0, or -1 with err set when memory runs out or an array literal is
 * malformed. */
int pgvalue_append_json(cdc_buf *out, const pgvalue_type *type,
                        const char *text, size_t len, cdc_buf *scratch,
                        char *err, size_t errlen);

/* Appends s as a JSON string (with quotes). Escapes '"', '\\', every C0
 * control, DEL, every C1 control (U+0080-U+009F) and U+2028/U+2029; each
 * byte that is not part of a well-formed UTF-8 sequence (overlong forms,
 * surrogates, code points above U+10FFFF, truncated sequences) becomes
 * U+FFFD, so the output is always valid UTF-8. Returns 0 or -1 (memory). */
int pgvalue_append_json_string(cdc_buf *out, const char *s, size_t len);

/* The JSON of a row's values (streamed changes and snapshot rows alike),
 * all appended to one buffer. A column's json pointer is set only once the
 * buffer has stopped growing (pgvalue_row_seal), so a row costs no
 * allocation once the buffers have reached their working size. Zeroed
 * memory is an empty one. */
typedef struct pgvalue_row {
    cdc_buf values;
    cdc_buf scratch;        /* pgvalue_append_json's */
    cdc_column *cols;
    size_t *offs;           /* where each column's JSON starts in `values` */
    size_t cap;
} pgvalue_row;

void pgvalue_row_free(pgvalue_row *r);
/* Room for n columns. Returns 0, or -1 when memory runs out. */
int pgvalue_row_reserve(pgvalue_row *r, size_t n);
/* Points cols[0..n) at their JSON, appended in that order: column i runs
 * from offs[i] to offs[i + 1], the last one to the end of `values`. */
void pgvalue_row_seal(pgvalue_row *r, size_t n);

#endif
