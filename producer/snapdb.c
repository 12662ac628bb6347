/* snapdb.c: catalog and control queries of snapshots (see snapdb.h). Every
 * query is parameterized; names reach SQL text only through snap_sql_ident. */
#include "snapdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "cdc_lsn.h"
#include "pg_error.h"

int snapdb_connect(const char *conninfo, const char *appname, PGconn **out,
                   char *err, size_t errlen)
{
    const char *keys[] = {"dbname", "options", "fallback_application_name", NULL};
    const char *vals[] = {conninfo ? conninfo : "",
                          "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 "
                          "-c extra_float_digits=3 -c bytea_output=hex "
                          "-c statement_timeout=0 -c idle_in_transaction_session_timeout=0",
                          appname, NULL};
    return pg_connect(keys, vals, "cannot connect to PostgreSQL for the snapshot", out, err,
                      errlen);
}

void snapdb_free_tables(snap_table **tables, size_t n)
{
    if (!tables)
        return;
    for (size_t i = 0; i < n; i++)
        snap_table_free(tables[i]);
    free(tables);
}

/* Columns as pgoutput sends them (not dropped, not generated, in the
 * publication's column list) and whether each is in the record key: the
 * replica identity index, or the primary key for DEFAULT and FULL (the
 * producer keys FULL tables by primary key too), nothing for NOTHING. */
static const char columns_sql[] =
    "SELECT a.attname, a.atttypid::int8, "
    "       coalesce(a.attnum = ANY ((SELECT i.indkey::int2[] FROM pg_index i "
    "           JOIN pg_class c ON c.oid = i.indrelid WHERE i.indrelid = a.attrelid AND "
    "           CASE c.relreplident WHEN 'i' THEN i.indisreplident WHEN 'n' THEN false "
    "                ELSE i.indisprimary END LIMIT 1)::int2[]), false), "
    "       " CATALOG_TYPE_TEXT_SQL("a.atttypid", "a.atttypmod") " "
    "FROM pg_attribute a "
    "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped "
    "  AND a.attgenerated = '' AND ($2::name[] IS NULL OR a.attname = ANY ($2::name[])) "
    "ORDER BY a.attnum";

static int describe_columns(PGconn *pg, snap_table *t, const char *attnames,
                            char *err, size_t errlen)
{
    char oid[16];
    snprintf(oid, sizeof oid, "%u", t->oid);
    const char *params[] = {oid, attnames};
    PGresult *res = PQexecParams(pg, columns_sql, 2, NULL, params, NULL, NULL, 0);
    const char **names = NULL, **texts = NULL;
    int rc = -1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char what[600];
        snprintf(what, sizeof what, "cannot read the columns of %s.%s", t->schema, t->name);
        pg_error_format(pg, what, err, errlen);
        goto done;
    }
    int nrows = PQntuples(res);
    names = calloc(nrows ? (size_t)nrows : 1, sizeof *names);
    texts = calloc(nrows ? (size_t)nrows : 1, sizeof *texts);
    if (!names || !texts) {
        snprintf(err, errlen, "cannot describe %s.%s: out of memory", t->schema, t->name);
        goto done;
    }
    for (int r = 0; r < nrows; r++) {
        uint32_t type = (uint32_t)strtoul(PQgetvalue(res, r, 1), NULL, 10);
        names[r] = PQgetvalue(res, r, 0);
        texts[r] = PQgetvalue(res, r, 3);
        if (snap_table_add_column(t, PQgetvalue(res, r, 0), type,
                                  PQgetvalue(res, r, 2)[0] == 't') < 0) {
            snprintf(err, errlen, "cannot describe %s.%s: out of memory", t->schema, t->name);
            goto done;
        }
    }
    /* The same "types" a streamed change of the table carries. */
    cdc_buf types = {0};
    if (cdc_types_encode(names, texts, (size_t)nrows, &types, err, errlen) < 0) {
        cdc_buf_free(&types);
        goto done;
    }
    free(t->types);
    t->types = types.data;
    t->types_len = types.len;
    rc = 0;
done:
    free(names);
    free(texts);
    PQclear(res);
    return rc;
}

int snapdb_publication_tables(PGconn *pg, const char *publication, const char *schema,
                              const char *name, snap_table ***out, char *err, size_t errlen)
{
    *out = NULL;
    /* Row filters and column lists came with PostgreSQL 15. */
    bool v15 = PQserverVersion(pg) >= 150000;
    char sql[1400];
    snprintf(sql, sizeof sql,
        "SELECT c.oid::int8, n.nspname, c.relname, c.relkind = 'p', "
        "       CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(greatest(c2.reltuples, 0)), -1) "
        "            FROM pg_partition_tree(c.oid) pt2 JOIN pg_class c2 ON c2.oid = pt2.relid "
        "            WHERE pt2.isleaf) ELSE c.reltuples END::float8, "
        "       %s, %s "
        "FROM pg_publication_tables pt "
        "JOIN pg_namespace n ON n.nspname = pt.schemaname "
        "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename "
        "WHERE pt.pubname = $1 AND ($2::text IS NULL OR pt.schemaname = $2) "
        "  AND ($3::text IS NULL OR pt.tablename = $3) "
        "ORDER BY n.nspname, c.relname",
        v15 ? "pt.rowfilter" : "NULL::text", v15 ? "pt.attnames::text" : "NULL::text");
    const char *params[] = {publication, schema, name};
    PGresult *res = PQexecParams(pg, sql, 3, NULL, params, NULL, NULL, 0);
    snap_table **tables = NULL;
    int n = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_error_format(pg, "cannot list the tables of the publication", err, errlen);
        goto fail;
    }
    int rows = PQntuples(res);
    if (rows > 0 && !(tables = calloc((size_t)rows, sizeof *tables))) {
        snprintf(err, errlen, "cannot list the tables of the publication: out of memory");
        goto fail;
    }
    for (int r = 0; r < rows; r++) {
        snap_table *t = snap_table_new((uint32_t)strtoul(PQgetvalue(res, r, 0), NULL, 10),
                                       PQgetvalue(res, r, 1), PQgetvalue(res, r, 2));
        if (!t) {
            snprintf(err, errlen, "cannot list the tables of the publication: out of memory");
            goto fail;
        }
        tables[n++] = t;
        t->with_children = PQgetvalue(res, r, 3)[0] == 't';
        t->reltuples = strtod(PQgetvalue(res, r, 4), NULL);
        if (!PQgetisnull(res, r, 5) && snap_table_set_rowfilter(t, PQgetvalue(res, r, 5)) < 0) {
            snprintf(err, errlen, "cannot list the tables of the publication: out of memory");
            goto fail;
        }
        if (describe_columns(pg, t, PQgetisnull(res, r, 6) ? NULL : PQgetvalue(res, r, 6),
                             err, errlen) < 0)
            goto fail;
    }
    PQclear(res);
    *out = tables;
    return n;
fail:
    PQclear(res);
    snapdb_free_tables(tables, (size_t)n);
    return -1;
}

int snapdb_resolve_types(snap_table *t, pgvalue_resolve_fn resolve, void *ctx,
                         char *err, size_t errlen)
{
    for (size_t i = 0; i < t->ncols; i++) {
        snap_column *c = &t->cols[i];
        if (pgvalue_builtin_type(c->type_oid, &c->type))
            continue;
        c->type = (pgvalue_type){false, PGVALUE_TEXT, ',', 0};
        char rerr[300];
        if (resolve && resolve(ctx, c->type_oid, &c->type, rerr, sizeof rerr) < 0) {
            snprintf(err, errlen, "cannot resolve the type of column \"%s\" of %s.%s: %s",
                     c->name, t->schema, t->name, rerr);
            return -1;
        }
    }
    return 0;
}

void snapdb_marker_name(const char *slot, char *out, size_t outlen)
{
    static const char suffix[] = "_snapshot_pending";
    size_t n = strlen(slot);
    if (n + sizeof suffix - 1 <= 63) {
        snprintf(out, outlen, "%s%s", slot, suffix);
        return;
    }
    /* Slot names have at most 63 characters: keep a prefix and a hash. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)slot[i]) * 16777619u;
    snprintf(out, outlen, "%.37s_%08x%s", slot, h, suffix);
}

static int slot_query(PGconn *pg, const char *sql, const char *slot, const char *what,
                      PGresult **out, char *err, size_t errlen)
{
    const char *params[] = {slot};
    *out = PQexecParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(*out) != PGRES_TUPLES_OK) {
        char msg[200];
        snprintf(msg, sizeof msg, "cannot %s replication slot %s", what, slot);
        pg_error_format(pg, msg, err, errlen);
        PQclear(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int snapdb_marker_exists(PGconn *pg, const char *marker, char *err, size_t errlen)
{
    PGresult *res;
    if (slot_query(pg, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", marker,
                   "look up", &res, err, errlen) < 0)
        return -1;
    int n = PQntuples(res);
    PQclear(res);
    return n > 0;
}

int snapdb_marker_create(PGconn *pg, const char *marker, char *err, size_t errlen)
{
    PGresult *res;
    /* immediately_reserve false: the marker holds back no WAL. */
    if (slot_query(pg, "SELECT pg_create_physical_replication_slot($1, false, false) "
                       "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                   marker, "create", &res, err, errlen) < 0)
        return -1;
    PQclear(res);
    return 0;
}

int snapdb_marker_drop(PGconn *pg, const char *marker, char *err, size_t errlen)
{
    PGresult *res;
    if (slot_query(pg, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                       "WHERE slot_name = $1", marker, "drop", &res, err, errlen) < 0)
        return -1;
    PQclear(res);
    return 0;
}

int snapdb_slot_confirmed(PGconn *pg, const char *slot, uint64_t *confirmed,
                          char *err, size_t errlen)
{
    PGresult *res;
    *confirmed = 0;
    if (slot_query(pg, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                       "WHERE slot_name = $1 AND database = current_database()",
                   slot, "look up", &res, err, errlen) < 0)
        return -1;
    int n = PQntuples(res);
    if (n > 0 && !PQgetisnull(res, 0, 0))
        cdc_lsn_parse(PQgetvalue(res, 0, 0), confirmed);
    PQclear(res);
    return n > 0;
}

int snapdb_emit_message(PGconn *pg, bool transactional, const char *prefix,
                        const char *content, uint64_t *lsn, char *err, size_t errlen)
{
    const char *params[] = {transactional ? "true" : "false", prefix, content};
    PGresult *res = PQexecParams(pg, "SELECT pg_logical_emit_message($1::bool, $2, $3)::text",
                                 3, NULL, params, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        char what[200];
        snprintf(what, sizeof what, "cannot write the logical message %s", prefix);
        pg_error_format(pg, what, err, errlen);
    } else if (lsn && cdc_lsn_parse(PQgetvalue(res, 0, 0), lsn) < 0) {
        snprintf(err, errlen, "pg_logical_emit_message returned \"%s\", not an LSN",
                 PQgetvalue(res, 0, 0));
    } else {
        rc = 0;
    }
    PQclear(res);
    return rc;
}

void snapdb_row_values(const PGresult *res, int row, const snap_table *t, snap_rowvals *rv)
{
    for (size_t i = 0; i < t->ncols; i++) {
        rv->vals[i] = PQgetisnull(res, row, (int)i) ? NULL : PQgetvalue(res, row, (int)i);
        rv->lens[i] = (size_t)PQgetlength(res, row, (int)i);
    }
}
