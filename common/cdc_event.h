/* cdc_event.h: the event format of shared/design/EVENTS.md, both ways.
 * The producer encodes a change whose column values are already mapped to
 * JSON text; the consumer decodes a record into a tree it can walk.
 * Neither direction does any I/O. */
#ifndef PGCDC_CDC_EVENT_H
#define PGCDC_CDC_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_tree.h>

#include "cdc_buf.h"

/* One column of a row: its name and its value as JSON text, already mapped
 * per EVENTS.md ("null", "42", "\"19.90\"", "{\"k\":1}", ...). The JSON text
 * is embedded as is, so it must be valid JSON. */
typedef struct cdc_column {
    const char *name;
    const char *json;
    size_t json_len;
} cdc_column;

typedef struct cdc_row {
    const cdc_column *columns;
    size_t ncolumns;
} cdc_row;

typedef struct cdc_source {
    const char *db;
    const char *schema;
    const char *table;
    uint64_t lsn;          /* the row's version */
    uint64_t commit_lsn;
    int64_t txid;
    int64_t seq;           /* position of the change in its transaction, from 0 */
    int64_t ts_ms;         /* commit time */
    bool snapshot;
} cdc_source;

typedef struct cdc_event {
    char op;                            /* 'c' 'u' 'd' 'r' 't' */
    const cdc_row *before;              /* NULL: JSON null */
    const cdc_row *after;               /* NULL: JSON null */
    const char *const *unchanged_toast; /* omitted from the JSON when n == 0 */
    size_t n_unchanged_toast;
    cdc_source source;
    int64_t ts_ms;                      /* when the event was made */
} cdc_event;

/* Appends the event's JSON value to `out`. Returns 0, or -1 with err set
 * (unknown op, a column value that is not valid JSON, out of memory). */
int cdc_event_encode(const cdc_event *ev, cdc_buf *out, char *err, size_t errlen);

/* Appends the record key, a JSON object of the given columns in order
 * ({"id":42}). */
int cdc_key_encode(const cdc_row *key, cdc_buf *out, char *err, size_t errlen);

/* A decoded event. Strings and trees point into `root`, which it owns. */
typedef struct cdc_decoded_event {
    yajl_val root;
    char op;
    yajl_val before;               /* object, or NULL when null/absent */
    yajl_val after;                /* object, or NULL when null */
    const char **unchanged_toast;  /* owned array of pointers into root */
    size_t n_unchanged_toast;
    const char *db;
    const char *schema;
    const char *table;
    uint64_t lsn;
    uint64_t commit_lsn;
    int64_t txid;
    int64_t seq;
    int64_t source_ts_ms;
    bool snapshot;
    int64_t ts_ms;
} cdc_decoded_event;

/* Decodes one record value (not NUL-terminated). Rejects, with a reason in
 * err: text that is not JSON, a value that is not an object, an unknown op,
 * a missing or mistyped field that the op needs (source.schema/table/lsn,
 * after for c/u/r). Returns 0 or -1. On -1 *ev needs no freeing. */
int cdc_event_decode(const char *json, size_t len, cdc_decoded_event *ev,
                     char *err, size_t errlen);
void cdc_decoded_event_free(cdc_decoded_event *ev);

/* Decodes a record key: it must be a JSON object. *key is freed with
 * yajl_tree_free. */
int cdc_key_decode(const char *json, size_t len, yajl_val *key, char *err, size_t errlen);

/* The topic of a table: "<prefix>.<schema>.<table>", every character outside
 * [a-zA-Z0-9._-] replaced by '_', cut to Kafka's 249 characters. Sets
 * *changed when the name had to be altered (callers log that once). */
int cdc_topic_name(const char *prefix, const char *schema, const char *table,
                   cdc_buf *out, bool *changed);

#endif
