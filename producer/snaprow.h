/* snaprow.h: the pure part of snapshots (issue 7). A published table as a
 * snapshot reads it, one row of query text turned into the 'r' event and
 * record key a streamed change of that row would carry, the SQL of a
 * key-ordered chunk, the signal-table request parser and the set of chunk
 * keys that streamed changes strike out. No I/O: the queries run elsewhere. */
#ifndef PGCDC_SNAPROW_H
#define PGCDC_SNAPROW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdc_buf.h"
#include "cdc_event.h"
#include "colpolicy.h"
#include "pgvalue.h"

typedef struct snap_column {
    char *name;
    uint32_t type_oid;
    pgvalue_type type;      /* set by the caller (built-in or catalog) before rows are built */
    bool hash;              /* sent as colpolicy_append_hash of its text (snap_table_apply_policy) */
} snap_column;

/* The record key is the one a streamed change has (relcache.h): the replica
 * identity index columns, or the primary key for REPLICA IDENTITY DEFAULT
 * and FULL, in column order; none for NOTHING or a table without a key.
 * Columns are those pgoutput sends: not dropped, not generated, and within
 * the publication's column list. */
typedef struct snap_table {
    uint32_t oid;
    char *schema;
    char *name;
    bool with_children;     /* partitioned: read through its partitions (no ONLY) */
    char *rowfilter;        /* the publication's row filter (SQL), or NULL */
    double reltuples;       /* the planner's row estimate; < 0 when never analyzed */
    size_t ncols;
    snap_column *cols;
    size_t nkey;
    size_t *key;            /* indices into cols */
    void *topic;            /* the runtime's Kafka topic; not owned */
    const colpolicy *policy; /* the hash key of hashed columns; not owned */
    char *types;            /* EVENTS.md "types" of the columns; NULL: none */
    size_t types_len;
} snap_table;

/* NULL when memory runs out. */
snap_table *snap_table_new(uint32_t oid, const char *schema, const char *name);
/* Appends a column; is_key makes it the next key column. Returns 0 or -1. */
int snap_table_add_column(snap_table *t, const char *name, uint32_t type_oid, bool is_key);
int snap_table_set_rowfilter(snap_table *t, const char *sql);
/* Applies the column policy (NULL: none): columns it drops leave t, so no
 * query ever reads them; hashed ones are marked. Returns 0, or -1 with err
 * (the policy drops a key column, memory). */
int snap_table_apply_policy(snap_table *t, const colpolicy *policy, char *err, size_t errlen);
void snap_table_free(snap_table *t);

/* Reusable storage for snap_row_encode: after columns, then key columns. */
typedef pgvalue_row snap_row_builder;

void snap_row_builder_init(snap_row_builder *b);
void snap_row_builder_free(snap_row_builder *b);

/* One row of t as PostgreSQL's text output: vals[i] (lens[i] bytes) is the
 * value of column i, NULL for SQL NULL. Writes the record key into *key
 * (reset first; left empty when t has no key) and, when value is not NULL,
 * the 'r' event into *value (reset first): after = every column, before
 * null, source = *src with schema, table and snapshot = true, ts_ms as
 * given. The values are mapped by pgvalue exactly as change.c maps a
 * streamed tuple, so a sink cannot tell the two apart but by op and lsn.
 * Returns 0, or -1 with err naming the table and column (a NULL key value,
 * a malformed array literal, memory). */
int snap_row_encode(snap_row_builder *b, const snap_table *t, const char *const *vals,
                    const size_t *lens, const cdc_source *src, int64_t ts_ms,
                    cdc_buf *value, cdc_buf *key, char *err, size_t errlen);

/* The values of the row being read, as snap_row_encode takes them, and
 * the key values of the last row a chunk returned, which the next chunk
 * starts after (SNAP_FROM_EXCL): storage a snapshot reader reuses from row
 * to row. Zeroed memory is an empty one. */
typedef struct snap_rowvals {
    const char **vals;      /* point into the query result: not owned */
    size_t *lens;
    cdc_buf last;           /* the kept key values, each followed by a NUL */
    size_t *last_off;       /* where key value k starts in `last` */
    size_t cap;
} snap_rowvals;

void snap_rowvals_free(snap_rowvals *rv);
/* Room for n values (and n key values). Returns 0, or -1 when memory runs
 * out. */
int snap_rowvals_reserve(snap_rowvals *rv, size_t n);
/* Copies the key values of t out of vals/lens into `last` (a NULL value as
 * empty text). Returns 0, or -1 when memory runs out. */
int snap_rowvals_keep_last(snap_rowvals *rv, const snap_table *t);
/* Key value k of the row kept last, NUL-terminated. */
const char *snap_rowvals_last(const snap_rowvals *rv, size_t k);

/* Appends name as a double-quoted SQL identifier. Returns 0 or -1. */
int snap_sql_ident(cdc_buf *out, const char *name);

/* Where a chunk starts: at the table's first key, at the key given as the
 * first nkey parameters, or just after it. */
typedef enum snap_lower {
    SNAP_FROM_START,
    SNAP_FROM_INCL,
    SNAP_FROM_EXCL,
} snap_lower;

/* The query of one chunk, appended to out:
 *   SELECT "c1", ... FROM [ONLY] "s"."t"
 *   WHERE (<rowfilter>) AND ("k1", "k2") > ($1, $2) AND ("k1", "k2") < ($3, $4)
 *   ORDER BY "k1", "k2" LIMIT <limit>
 * The lower bound takes parameters $1..$nkey, the upper bound (when
 * has_upper) the next nkey. limit 0 leaves LIMIT out. A keyless table has
 * no bounds and no ORDER BY (it is read in one pass). The parameters are
 * sent with the key columns' type OIDs, so comparison and ORDER BY use the
 * same (default btree) ordering as the primary key index. Returns 0 or -1. */
int snap_sql_chunk(const snap_table *t, snap_lower lower, bool has_upper, long limit,
                   cdc_buf *out);

/* SELECT DISTINCT "k1", ... FROM ONLY "s"."t" TABLESAMPLE SYSTEM (<percent>)
 * ORDER BY "k1", ...: a cheap sample of keys from which a table is split
 * into ranges for parallel workers. Returns 0, or -1 (no key, memory). */
int snap_sql_sample(const snap_table *t, double percent, cdc_buf *out);

/* "schema.table" into its parts (split at the first '.'); *schema is NULL
 * for a bare "table". Returns 0, or -1 (empty part, memory). */
int snap_parse_table_name(const char *s, char **schema, char **table);

/* A re-snapshot request: the tables to read again, as written. */
typedef struct snap_request {
    char **tables;
    size_t ntables;
} snap_request;

/* The new row of an insert into the signal table. Columns (by name):
 * "type", a string; "data", a JSON object (json/jsonb, or text holding
 * JSON). A "snapshot" (or Debezium's "execute-snapshot") signal names its
 * tables in data.tables (or data."data-collections"): an array of
 * "schema.table" strings.
 * Returns 1 with *out filled (snap_request_free it), 0 when the row is
 * some other kind of signal, or -1 with err saying what is malformed. */
int snap_signal_parse(const cdc_row *after, snap_request *out, char *err, size_t errlen);
void snap_request_free(snap_request *r);

/* The keys of a chunk's rows, each mapped to its row index: a streamed
 * change of a key removes it. Open addressing; keys are copied. */
typedef struct snap_keyset {
    struct snap_keyslot *slots;
    size_t nslots;          /* a power of two, or 0 */
    size_t used;            /* live keys */
    size_t filled;          /* live and removed slots */
    cdc_buf arena;          /* the keys' bytes */
} snap_keyset;

void snap_keyset_init(snap_keyset *ks);
void snap_keyset_free(snap_keyset *ks);
/* Empties the set, keeping its memory. */
void snap_keyset_clear(snap_keyset *ks);
/* Returns 0, or -1 when memory runs out. A key added twice keeps the
 * second row. */
int snap_keyset_add(snap_keyset *ks, const char *key, size_t len, size_t row);
/* Removes the key; returns true (and its row in *row, if given) when it
 * was there. */
bool snap_keyset_remove(snap_keyset *ks, const char *key, size_t len, size_t *row);
bool snap_keyset_contains(const snap_keyset *ks, const char *key, size_t len);

#endif
