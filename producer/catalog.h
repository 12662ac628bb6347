/* catalog.h: the producer's ordinary (non-replication) connection: slot and
 * publication management, user type look-ups for pgvalue, and the primary
 * key of REPLICA IDENTITY FULL tables. */
#ifndef PGCDC_CATALOG_H
#define PGCDC_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "pgvalue.h"
#include "relcache.h"

/* SQL of the type text of EVENTS.md's "types" for a type OID and typmod
 * (SQL expressions): format_type's text ("numeric(10,2)", "character
 * varying(40)", "integer[]"), a domain's base type in place of the domain,
 * "enum " before an enum or an array of one, "unknown" for a dropped type. */
#define CATALOG_TYPE_TEXT_SQL(oid, typmod)                                                 \
    "coalesce((SELECT CASE WHEN coalesce(e.typtype, t.typtype) = 'e' THEN 'enum ' ELSE '' END" \
    " || CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)"            \
    "    ELSE format_type(t.oid, " typmod ") END"                                           \
    " FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typlen = -1"            \
    " WHERE t.oid = " oid "), 'unknown')"

typedef struct catalog catalog;

/* Connects (pg_connect: a malformed conninfo, an unknown database or a
 * refused login return PG_PERMANENT). Statements time out after 30 s
 * unless the role's or database's settings say otherwise. */
int catalog_connect(const char *conninfo, catalog **out, char *err, size_t errlen);
void catalog_close(catalog *cat);

/* Called about every 100 ms while a query waits for the server (to send
 * replication status updates meanwhile). A query also gives up when a stop
 * is requested (SIGTERM) or when fn returns true: it then fails with a
 * NULL result, the server's statement is abandoned. */
typedef bool (*catalog_wait_fn)(void *ctx);
void catalog_set_wait(catalog *cat, catalog_wait_fn fn, void *ctx);

/* Whether the slot exists; its confirmed_flush_lsn in *confirmed (0 when
 * it has none yet). Returns 1 exists, 0 missing, -1 error, PG_PERMANENT
 * (the slot has another plugin). */
int catalog_slot(catalog *cat, const char *slot, uint64_t *confirmed, char *err, size_t errlen);

/* pg_logical_emit_message(transactional, prefix, content) in a transaction
 * of its own; *lsn (may be NULL) receives the position the function
 * returns. Returns 0, or -1 with err. */
int catalog_emit_message(catalog *cat, bool transactional, const char *prefix,
                         const char *content, uint64_t *lsn, char *err, size_t errlen);

/* Returns 0 when the publication exists, PG_PERMANENT with err naming it
 * when it does not, -1 when it cannot be looked up. Checked before
 * streaming: PostgreSQL 18's walsender only warns about a missing one
 * ("skipped loading publication") and streams nothing; before 18 the
 * error came only with the first change decoded. */
int catalog_check_publication(catalog *cat, const char *publication, char *err,
                              size_t errlen);

/* pgvalue_resolve_fn with a catalog as ctx: one query per type; domains and
 * array elements are followed to a built-in or to text. */
int catalog_resolve_type(void *ctx, uint32_t oid, pgvalue_type *out, char *err, size_t errlen);

/* The type texts (CATALOG_TYPE_TEXT_SQL) of the columns of `rel`, as its
 * Relation message gave their types, with one query. *texts has
 * rel->ncols strings, freed with catalog_free_names(*texts, rel->ncols).
 * Returns 0, or -1 with err. */
int catalog_type_texts(catalog *cat, const relcache_rel *rel, char ***texts,
                       char *err, size_t errlen);

/* The primary key column names of relation `relid`, in column order.
 * *names is an array of strings to free with catalog_free_names.
 * Returns the count (0 when the table has no primary key), or -1. */
int catalog_primary_key(catalog *cat, uint32_t relid, char ***names, char *err, size_t errlen);
void catalog_free_names(char **names, int n);

/* The current values of columns cols[0..ncols) of the row of
 * nspname.relname (a partitioned table's rows included) whose columns
 * keycols have the text values keyvals (compared as the columns' types),
 * printed with the walsender's settings, read in a snapshot that is asked
 * whether transaction `xid` (just streamed) is visible in it. values[j]
 * receives a malloc'd copy of each value's text, NULL for SQL NULL. Names
 * are quoted by libpq. Returns 1 found, 0 no such row, 2 the transaction
 * is not visible yet (nothing read: ask again in a moment), -1 with err. */
int catalog_fetch_row(catalog *cat, const char *nspname, const char *relname,
                      const char *const *keycols, const char *const *keyvals, size_t nkey,
                      const char *const *cols, size_t ncols, uint32_t xid, char **values,
                      char *err, size_t errlen);

/* For the modules that run their own catalog statements (publication.c):
 * one statement, waited for with the wait function and retried once on a
 * dropped connection; NULL when it gave up for a stop (catalog_error says
 * so). */
PGresult *catalog_exec(catalog *cat, const char *sql, int nparams, const char *const *params,
                       ExecStatusType want);
/* err from a failed catalog_exec (res may be NULL). Returns PG_PERMANENT or -1. */
int catalog_error(catalog *cat, const PGresult *res, const char *what, char *err,
                  size_t errlen);
PGconn *catalog_conn(catalog *cat);

/* Whether table schema.table has a column `column` (not dropped). Returns
 * 1 yes, 0 no column, 2 no such table, -1 with err. */
int catalog_has_column(catalog *cat, const char *schema, const char *table,
                       const char *column, char *err, size_t errlen);

#endif
