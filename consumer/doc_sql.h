/* doc_sql.h: what the documents sink sends, built from a definition
 * (doc_def.h) with no I/O: the SQL that reads whole documents (json_build_object
 * and json_agg subqueries), the SQL that maps a change of an embedded table
 * to the root keys it affects, and the search index mapping of a document
 * type. Every query takes its keys as one array parameter $1 whose element
 * type PostgreSQL infers from the column it is compared with, so no type
 * is written into the SQL. */
#ifndef PGCDC_CONSUMER_DOC_SQL_H
#define PGCDC_CONSUMER_DOC_SQL_H

#include <stdbool.h>

#include "cdc_buf.h"
#include "doc_def.h"
#include "es_mapping.h"

/* Which documents a read takes. */
typedef enum doc_read_kind {
    DOC_READ_KEYS,     /* root key = ANY($1) */
    DOC_READ_FIRST,    /* the first page, by key: LIMIT $1 */
    DOC_READ_AFTER,    /* the page after key $2, LIMIT $1 */
} doc_read_kind;

/* Appends SELECT <root key>::text, <document>::text FROM <root> WHERE ...
 * Arrays (children, many) are ordered by the embedded table's key; an empty
 * one is [] and a missing parent null. Returns 0 or -1 (memory). */
int doc_sql_read(const doc_type *t, doc_read_kind kind, cdc_buf *out);

/* What the values of a change of node n's table say. */
typedef enum doc_values {
    DOC_VALUES_UP_KEY, /* keys of n->up's rows (n's via, or its link table's via) */
    DOC_VALUES_KEY,    /* n's own keys (a parent's or a many-to-many target's) */
} doc_values;

/* Appends SELECT DISTINCT <root key>::text FROM <root> JOIN ... WHERE ... =
 * ANY($1): the roots whose documents embed the rows the values name. Never
 * joins the changed table itself, whose row may be gone. When the values
 * are root keys already (a root's own change, or a child of the root), sets
 * *direct and appends nothing. Returns 0 or -1 (memory). */
int doc_sql_roots(const doc_node *n, doc_values values, cdc_buf *out, bool *direct);

/* The column type (format_type's text) of schema.table.column, or NULL
 * when the catalog does not know it. */
typedef const char *(*doc_type_fn)(void *ctx, const char *schema, const char *table,
                                   const char *column);

/* Appends the body of PUT /<index>: {"mappings":{"dynamic":false,
 * "properties":{...}}}, a field per column from its PostgreSQL type
 * (es_mapping.h's rules), embedded parents and arrays as objects, counts
 * as long, averages and sums as double. Returns 0, or -1 with err naming
 * a column the catalog does not know. */
int doc_mapping_body(es_engine engine, const doc_type *t, doc_type_fn types, void *ctx,
                     cdc_buf *out, char *err, size_t errlen);

/* Appends s as a PostgreSQL array element, quoted: "a\"b". */
int doc_sql_array_elem(cdc_buf *out, const char *s, size_t len);

#endif
