/* snapdb.h: the snapshot's catalog and control queries over ordinary libpq
 * connections (issue 7): connections whose text output matches the
 * walsender's, the publication's tables as snap_tables, the marker of an
 * unfinished initial snapshot, logical messages (watermarks), and a row of
 * a chunk's result as snap_row_encode takes it. */
#ifndef PGCDC_SNAPDB_H
#define PGCDC_SNAPDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "pgvalue.h"
#include "snaprow.h"

/* An ordinary connection with the session settings EVENTS.md names
 * (DateStyle, TimeZone, IntervalStyle, extra_float_digits, bytea_output),
 * so a row read here has the same text as the row pgoutput sends, and with
 * statement and idle-in-transaction timeouts off (a snapshot transaction
 * may idle while others read). Returns 0, or -1 with err (password masked). */
int snapdb_connect(const char *conninfo, const char *appname, PGconn **out,
                   char *err, size_t errlen);

/* The tables of the publication, sorted by schema and name, or only those
 * named (`schema` NULL matches any schema) when `name` is given. Each with
 * its published columns, record key, row filter and row estimate; column
 * types are left unresolved (text) for snapdb_resolve_types. Returns the
 * count with *out (snapdb_free_tables), or -1 with err. */
int snapdb_publication_tables(PGconn *pg, const char *publication, const char *schema,
                              const char *name, snap_table ***out, char *err, size_t errlen);
void snapdb_free_tables(snap_table **tables, size_t n);

/* Maps every column's type: built-ins directly, others through resolve
 * (catalog_resolve_type). Returns 0, or -1 with err. */
int snapdb_resolve_types(snap_table *t, pgvalue_resolve_fn resolve, void *ctx,
                         char *err, size_t errlen);

/* The marker of an initial snapshot that has not finished: a physical
 * replication slot "<slot>_snapshot_pending" that reserves no WAL. It is
 * made before the logical slot and dropped once every snapshot record is
 * acknowledged, so a crash in between leaves it for the next start to see. */
void snapdb_marker_name(const char *slot, char *out, size_t outlen);
/* 1 exists, 0 missing, -1 error. */
int snapdb_marker_exists(PGconn *pg, const char *marker, char *err, size_t errlen);
/* Creates it when missing. Returns 0 or -1. */
int snapdb_marker_create(PGconn *pg, const char *marker, char *err, size_t errlen);
/* Drops it when present. Returns 0 or -1. */
int snapdb_marker_drop(PGconn *pg, const char *marker, char *err, size_t errlen);

/* pg_logical_emit_message(transactional, prefix, content) in its own
 * transaction; *lsn (may be NULL) receives what the function returns (the
 * end of the message's WAL record). Returns 0, or -1 with err. */
int snapdb_emit_message(PGconn *pg, bool transactional, const char *prefix,
                        const char *content, uint64_t *lsn, char *err, size_t errlen);

/* Points rv->vals and rv->lens at row `row` of res, one value per column
 * of t (NULL for SQL NULL), valid as long as res is. rv must have room for
 * t->ncols values (snap_rowvals_reserve). */
void snapdb_row_values(const PGresult *res, int row, const snap_table *t, snap_rowvals *rv);

/* The confirmed_flush_lsn of a logical slot (0 when it has none). Returns
 * 1 exists, 0 missing, -1 error. */
int snapdb_slot_confirmed(PGconn *pg, const char *slot, uint64_t *confirmed,
                          char *err, size_t errlen);

#endif
