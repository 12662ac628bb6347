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
#include "cdc_json.h"  /* cdc_json_validate, CDC_JSON_MAX_DEPTH */
#include "cdc_topic.h" /* the topic an event goes to */
#include "cdc_tree.h"  /* cdc_arena */

/* One column of a row: its name and its value as JSON text, already mapped
 * per EVENTS.md ("null", "42", "\"19.90\"", "{\"k\":1}", ...). The JSON text
 * is embedded as is, so it must be valid JSON; json == NULL stands for SQL
 * NULL and is written as null.
 *
 * Every value is checked with cdc_json_validate() before it is embedded, in
 * every build: the check is one allocation-free pass over the bytes (no
 * tree, no copy, no yajl parser handle per value). For a typical 6-column
 * update it costs about 0.1 us of the 0.7 us an event takes to encode
 * (bench/event_encode.c), so trusting the producer's type mapping blindly
 * was not worth the risk of one malformed value (a jsonb text, an array, a
 * mis-escaped string) breaking every consumer of the topic. */
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
    const char *db;        /* NULL: written as null */
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
    /* The "types" object of EVENTS.md (column -> PostgreSQL type text), as
     * cdc_types_encode made it once for the relation; embedded verbatim,
     * omitted when NULL. */
    const char *types;
    size_t types_len;
} cdc_event;

/* Appends the event's JSON value to `out`, compact, fields in the order of
 * EVENTS.md: op, before, after, unchanged_toast (only when n > 0), source
 * {db, schema, table, lsn, commit_lsn, txid, seq, ts_ms, snapshot}, ts_ms,
 * types (only when set).
 * lsn and commit_lsn are written as unsigned 64-bit JSON integers; a NULL db
 * is written as null.
 *
 * Names (columns, schema, table, db, unchanged_toast) are written as JSON
 * strings: '"', '\\' and U+0000..U+001F (JSON's control characters) are
 * escaped by yajl; DEL and C1 controls are valid UTF-8 and stay as they are.
 * A byte sequence that is not valid UTF-8 is replaced by U+FFFD, one per
 * maximal invalid subsequence, so the output is always valid UTF-8.
 *
 * The event must match its op, as cdc_event_decode() requires: after for
 * c/u/r, no after for d/t, no before for c/r/t, schema and table set.
 * Returns 0, or -1 with err set (unknown op, an event that does not match
 * its op, a column value that is not valid JSON, out of memory); on -1 `out`
 * is left as it was. */
int cdc_event_encode(const cdc_event *ev, cdc_buf *out, char *err, size_t errlen);

/* Appends the "types" object of EVENTS.md, {"<name>":"<type text>",...},
 * for columns names[i] of types types[i], with the rules for names above.
 * Made once per relation (not per event) and given to cdc_event_encode as
 * cdc_event.types. Returns 0, or -1 with err set (a NULL name or type, out
 * of memory); on -1 `out` is left as it was. */
int cdc_types_encode(const char *const *names, const char *const *types, size_t n,
                     cdc_buf *out, char *err, size_t errlen);

/* Appends the record key, a JSON object of the given columns in order
 * ({"id":42}), with the same rules for names and values as above. A table
 * without replica identity has a null Kafka key, which is not encoded: key
 * NULL or without columns is an error. On -1 `out` is left as it was. */
int cdc_key_encode(const cdc_row *key, cdc_buf *out, char *err, size_t errlen);

/* A decoded event. Strings and trees point into `root`, which it owns.
 * Numbers in before/after keep their exact text in u.number.r (use it to
 * write numerics and bigints without going through a double). */
typedef struct cdc_decoded_event {
    yajl_val root;
    char op;
    yajl_val before;               /* object, or NULL when null/absent */
    yajl_val after;                /* object, or NULL when null */
    const char **unchanged_toast;  /* owned array of pointers into root */
    size_t n_unchanged_toast;
    const char *db;                /* NULL when null or absent */
    const char *schema;
    const char *table;
    uint64_t lsn;
    uint64_t commit_lsn;
    int64_t txid;
    int64_t seq;
    int64_t source_ts_ms;
    bool snapshot;
    int64_t ts_ms;
    yajl_val types;                /* object of strings, or NULL when null/absent */
    struct cdc_arena *arena;       /* non-NULL: root lives in this arena */
} cdc_decoded_event;

/* Decodes one record value (not NUL-terminated; a tombstone, i.e. a null
 * Kafka value, is the caller's business). Rejects, with a reason in err
 * ("cannot decode event: ..."): text that is not JSON (as cdc_json_validate),
 * a value that is not an object, a missing or unknown op, source missing or
 * not an object, source.schema/table missing or not strings, source.lsn
 * missing or not a non-negative integer that fits in 64 bits, after missing
 * for c/u/r, before/after neither object nor null, after not null for d/t,
 * before not null for c/r/t, unchanged_toast not an array of strings, a
 * known field given twice, and a present but mistyped optional field
 * (source.db string, commit_lsn like lsn, txid/seq/ts_ms integers, snapshot
 * boolean; each may be null or absent, reading as NULL/0/false), types
 * not an object of strings (it may be null or absent, reading as NULL). Unknown
 * fields are ignored, so the format can grow. Returns 0 or -1. On -1 *ev is
 * zeroed and needs no freeing; cdc_decoded_event_free() accepts it anyway. */
int cdc_event_decode(const char *json, size_t len, cdc_decoded_event *ev,
                     char *err, size_t errlen);
void cdc_decoded_event_free(cdc_decoded_event *ev);

/* cdc_event_decode() and cdc_key_decode() with the tree in `arena`: same
 * checks, same trees. cdc_decoded_event_free() then frees only what is not
 * in the arena; a key from cdc_key_decode_in() is never yajl_tree_free'd. */
int cdc_event_decode_in(cdc_arena *arena, const char *json, size_t len, cdc_decoded_event *ev,
                        char *err, size_t errlen);

/* Decodes a record key: it must be a JSON object ("cannot decode key: ...").
 * *key is freed with yajl_tree_free; on -1 it is NULL. */
int cdc_key_decode(const char *json, size_t len, yajl_val *key, char *err, size_t errlen);
int cdc_key_decode_in(cdc_arena *arena, const char *json, size_t len, yajl_val *key, char *err,
                      size_t errlen);

#endif
