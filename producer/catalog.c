/* catalog.c: catalog queries over an ordinary libpq connection (see
 * catalog.h). Every query is parameterized or uses quote_ident/regclass on
 * the server, so names from users or the catalog never change a statement. */
#include "catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdc_buf.h"
#include "cdc_lsn.h"
#include "pg_async.h"
#include "pg_error.h"
#include "snapdb.h"

struct catalog {
    PGconn *pg;
    catalog_wait_fn wait;
    void *wait_ctx;
};

/* Bounds every statement of this connection (catalog look-ups, row reads,
 * heartbeats) unless the role's or the database's settings chose a
 * statement_timeout of their own. */
#define STATEMENT_TIMEOUT "30s"

static void session_setup(catalog *cat)
{
    PQclear(pg_async_exec(cat->pg,
        "SET search_path = pg_catalog; "
        "SELECT set_config('statement_timeout', '" STATEMENT_TIMEOUT "', false) "
        "FROM pg_settings WHERE name = 'statement_timeout' AND source = 'default'",
        0, NULL, 0, NULL, NULL, "catalog session setup", NULL, 0));
}

/* One statement, waited for so that the wait function runs meanwhile
 * (pg_async.h). NULL when it asked to give up (a stop is requested: the
 * statement is cancelled, the connection is closed at exit). */
static PGresult *exec_waiting(catalog *cat, const char *sql, int nparams,
                              const char *const *params)
{
    return pg_async_exec(cat->pg, sql, nparams, params, 0, cat->wait, cat->wait_ctx,
                         "catalog query", NULL, 0);
}

/* A dropped catalog connection is re-established once per query. */
static PGresult *query(catalog *cat, const char *sql, int nparams, const char *const *params,
                       ExecStatusType want)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        PGresult *res = exec_waiting(cat, sql, nparams, params);
        if (!res || PQresultStatus(res) == want)
            return res;
        if (PQstatus(cat->pg) == CONNECTION_OK || attempt == 1)
            return res;
        PQclear(res);
        PQreset(cat->pg);
        if (PQstatus(cat->pg) == CONNECTION_OK)
            session_setup(cat);
    }
    return NULL;
}

PGresult *catalog_exec(catalog *cat, const char *sql, int nparams, const char *const *params,
                       ExecStatusType want)
{
    return query(cat, sql, nparams, params, want);
}

PGconn *catalog_conn(catalog *cat)
{
    return cat->pg;
}

/* A failed query's message; res NULL: given up for a stop. */
static int cat_error(catalog *cat, const PGresult *res, const char *what, char *err,
                     size_t errlen)
{
    if (!res) {
        snprintf(err, errlen, "%s: stop requested", what);
        return -1;
    }
    return pg_error_result(cat->pg, res, what, err, errlen);
}

int catalog_error(catalog *cat, const PGresult *res, const char *what, char *err,
                  size_t errlen)
{
    return cat_error(cat, res, what, err, errlen);
}

void catalog_set_wait(catalog *cat, catalog_wait_fn fn, void *ctx)
{
    cat->wait = fn;
    cat->wait_ctx = ctx;
}

int catalog_connect(const char *conninfo, catalog **out, char *err, size_t errlen)
{
    *out = NULL;
    catalog *cat = calloc(1, sizeof *cat);
    if (!cat) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: out of memory");
        return -1;
    }
    /* The walsender's settings (replication.c): values read here by
     * catalog_fetch_row must print exactly as the stream prints them. */
    const char *keys[] = {"dbname", "fallback_application_name", "options", NULL};
    const char *vals[] = {conninfo ? conninfo : "", "pgcdc-producer-catalog",
                          "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 "
                          "-c extra_float_digits=3 -c bytea_output=hex", NULL};
    int rc = pg_connect(keys, vals, "cannot connect to PostgreSQL", &cat->pg, err, errlen);
    if (rc < 0) {
        catalog_close(cat);
        return rc;
    }
    session_setup(cat);
    *out = cat;
    return 0;
}

void catalog_close(catalog *cat)
{
    if (!cat)
        return;
    if (cat->pg)
        PQfinish(cat->pg);
    free(cat);
}

int catalog_slot(catalog *cat, const char *slot, uint64_t *confirmed, char *err, size_t errlen)
{
    const char *params[] = {slot};
    PGresult *res = query(cat,
        "SELECT plugin, confirmed_flush_lsn::text FROM pg_replication_slots "
        "WHERE slot_name = $1 AND database = current_database()",
        1, params, PGRES_TUPLES_OK);
    int rc = -1;
    *confirmed = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cat_error(cat, res, "cannot look up the replication slot", err, errlen);
    } else if (PQntuples(res) == 0) {
        rc = 0;
    } else if (strcmp(PQgetvalue(res, 0, 0), "pgoutput") != 0) {
        snprintf(err, errlen, "replication slot %s uses plugin %s, not pgoutput (use another "
                 "--slot)", slot, PQgetvalue(res, 0, 0));
        rc = PG_PERMANENT;
    } else {
        if (!PQgetisnull(res, 0, 1))
            cdc_lsn_parse(PQgetvalue(res, 0, 1), confirmed);
        rc = 1;
    }
    PQclear(res);
    return rc;
}

int catalog_emit_message(catalog *cat, bool transactional, const char *prefix,
                         const char *content, uint64_t *lsn, char *err, size_t errlen)
{
    /* Reconnected once, as query() does. */
    int rc = snapdb_emit_message(cat->pg, transactional, prefix, content, lsn, err, errlen);
    if (rc < 0 && PQstatus(cat->pg) != CONNECTION_OK) {
        PQreset(cat->pg);
        if (PQstatus(cat->pg) == CONNECTION_OK)
            session_setup(cat);
        rc = snapdb_emit_message(cat->pg, transactional, prefix, content, lsn, err, errlen);
    }
    return rc;
}

int catalog_check_publication(catalog *cat, const char *publication, char *err,
                              size_t errlen)
{
    const char *params[] = {publication};
    PGresult *res = query(cat, "SELECT 1 FROM pg_publication WHERE pubname = $1", 1, params,
                          PGRES_TUPLES_OK);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cat_error(cat, res, "cannot look up the publication", err, errlen);
    } else if (PQntuples(res) == 0) {
        snprintf(err, errlen, "publication \"%s\" does not exist in this database (check the "
                 "name of the publication, or use --create-publication)", publication);
        rc = PG_PERMANENT;
    }
    PQclear(res);
    return rc;
}

/* Follows domains to their base type and arrays to their element, each
 * step one query, until a built-in type or a non-container type is met. */
int catalog_resolve_type(void *ctx, uint32_t oid, pgvalue_type *out, char *err, size_t errlen)
{
    catalog *cat = ctx;
    memset(out, 0, sizeof *out);
    out->cls = PGVALUE_TEXT;
    out->delim = ',';
    bool in_array = false;
    for (int depth = 0; depth < 16; depth++) {
        pgvalue_type builtin;
        if (pgvalue_builtin_type(oid, &builtin)) {
            if (in_array) {
                /* An array of a domain over a built-in scalar. */
                out->cls = builtin.cls;
                return 0;
            }
            *out = builtin;
            return 0;
        }
        char oidtext[16];
        snprintf(oidtext, sizeof oidtext, "%u", oid);
        const char *params[] = {oidtext};
        PGresult *res = query(cat,
            "SELECT t.typtype, t.typbasetype, t.typelem, t.typdelim, "
            "       t.typsubscript = 'array_subscript_handler'::regproc "
            "FROM pg_type t WHERE t.oid = $1::oid", 1, params, PGRES_TUPLES_OK);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            cat_error(cat, res, "cannot look up a column type", err, errlen);
            PQclear(res);
            return -1;
        }
        if (PQntuples(res) == 0) {
            PQclear(res);
            return 0; /* dropped meanwhile: its text form as a string */
        }
        char typtype = PQgetvalue(res, 0, 0)[0];
        uint32_t base = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
        uint32_t elem = (uint32_t)strtoul(PQgetvalue(res, 0, 2), NULL, 10);
        char delim = PQgetvalue(res, 0, 3)[0];
        bool is_array = PQgetvalue(res, 0, 4)[0] == 't';
        PQclear(res);
        if (typtype == 'd') {
            oid = base;
            continue;
        }
        if (is_array && elem != 0 && !in_array) {
            in_array = true;
            out->is_array = true;
            out->elem_oid = elem;
            oid = elem;
            /* The delimiter is the element type's: look it up on the next step. */
            char elemtext[16];
            snprintf(elemtext, sizeof elemtext, "%u", elem);
            const char *p2[] = {elemtext};
            PGresult *r2 = query(cat, "SELECT typdelim FROM pg_type WHERE oid = $1::oid", 1, p2,
                                 PGRES_TUPLES_OK);
            if (PQresultStatus(r2) == PGRES_TUPLES_OK && PQntuples(r2) == 1)
                out->delim = PQgetvalue(r2, 0, 0)[0];
            PQclear(r2);
            continue;
        }
        (void)delim;
        /* enum, composite, range, extension base type: text form. */
        out->cls = PGVALUE_TEXT;
        return 0;
    }
    snprintf(err, errlen, "type %u: domain or array nesting deeper than 16", oid);
    return -1;
}

int catalog_primary_key(catalog *cat, uint32_t relid, char ***names, char *err, size_t errlen)
{
    *names = NULL;
    char oidtext[16];
    snprintf(oidtext, sizeof oidtext, "%u", relid);
    const char *params[] = {oidtext};
    PGresult *res = query(cat,
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY a.attnum",
        1, params, PGRES_TUPLES_OK);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cat_error(cat, res, "cannot look up a primary key", err, errlen);
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res);
    if (n > 0) {
        *names = calloc((size_t)n, sizeof **names);
        for (int i = 0; *names && i < n; i++)
            (*names)[i] = strdup(PQgetvalue(res, i, 0));
        for (int i = 0; *names && i < n; i++) {
            if (!(*names)[i]) {
                catalog_free_names(*names, n);
                *names = NULL;
            }
        }
        if (!*names) {
            PQclear(res);
            snprintf(err, errlen, "cannot look up a primary key: out of memory");
            return -1;
        }
    }
    PQclear(res);
    return n;
}

int catalog_type_texts(catalog *cat, const relcache_rel *rel, char ***texts,
                       char *err, size_t errlen)
{
    *texts = NULL;
    cdc_buf oids = {0}, mods = {0};
    PGresult *res = NULL;
    int rc = -1;
    char num[24];
    if (cdc_buf_append(&oids, "{", 1) < 0 || cdc_buf_append(&mods, "{", 1) < 0)
        goto oom;
    for (uint16_t i = 0; i < rel->ncols; i++) {
        int a = snprintf(num, sizeof num, "%s%u", i ? "," : "", rel->cols[i].type_oid);
        if (cdc_buf_append(&oids, num, (size_t)a) < 0)
            goto oom;
        a = snprintf(num, sizeof num, "%s%d", i ? "," : "", rel->cols[i].typmod);
        if (cdc_buf_append(&mods, num, (size_t)a) < 0)
            goto oom;
    }
    if (cdc_buf_append(&oids, "}", 1) < 0 || cdc_buf_append(&mods, "}", 1) < 0)
        goto oom;
    const char *params[] = {oids.data, mods.data};
    res = query(cat,
        "SELECT " CATALOG_TYPE_TEXT_SQL("a.o", "a.m") " "
        "FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS a(o, m, n) ORDER BY a.n",
        2, params, PGRES_TUPLES_OK);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) != rel->ncols) {
        snprintf(err, errlen, "cannot look up the column types of %s.%s: %d rows for %u "
                 "columns", rel->nspname, rel->relname, PQntuples(res), rel->ncols);
        goto done;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char what[600];
        snprintf(what, sizeof what, "cannot look up the column types of %s.%s",
                 rel->nspname, rel->relname);
        cat_error(cat, res, what, err, errlen);
        goto done;
    }
    *texts = calloc(rel->ncols ? rel->ncols : 1, sizeof **texts);
    for (int i = 0; *texts && i < rel->ncols; i++)
        if (!((*texts)[i] = strdup(PQgetvalue(res, i, 0)))) {
            catalog_free_names(*texts, rel->ncols);
            *texts = NULL;
        }
    if (!*texts)
        goto oom;
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "cannot look up the column types of %s.%s: out of memory",
             rel->nspname, rel->relname);
done:
    PQclear(res);
    cdc_buf_free(&oids);
    cdc_buf_free(&mods);
    return rc;
}

void catalog_free_names(char **names, int n)
{
    if (!names)
        return;
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int catalog_fetch_row(catalog *cat, const char *nspname, const char *relname,
                      const char *const *keycols, const char *const *keyvals, size_t nkey,
                      const char *const *cols, size_t ncols, uint32_t xid, char **values,
                      char *err, size_t errlen)
{
    for (size_t j = 0; j < ncols; j++)
        values[j] = NULL;
    cdc_buf sql = CDC_BUF_INIT;
    int rc = -1;
    PGresult *res = NULL;
    const char **params = calloc(nkey + 1, sizeof *params);
    char xidtext[16];
    if (!params) {
        snprintf(err, errlen, "cannot read a row of %s.%s: out of memory", nspname, relname);
        return -1;
    }
    /* The stream can deliver a transaction a moment before its commit is
     * visible to other sessions (the commit record is flushed first, the
     * transaction leaves the running list after). One statement, one
     * snapshot: it says whether the transaction is visible in it (its
     * 32-bit xid widened with the epoch of the snapshot's xmax), and
     * reads the row; the caller is asked to wait while it is not. */
    cdc_buf_printf(&sql,
        "WITH s AS (SELECT pg_current_snapshot() AS snap, "
        "pg_snapshot_xmax(pg_current_snapshot())::text::int8 AS nx), "
        "v AS (SELECT pg_visible_in_snapshot((((nx >> 32) - "
        "CASE WHEN $%zu::int8 > (nx & 4294967295) THEN 1 ELSE 0 END) << 32 | $%zu::int8)"
        "::text::xid8, snap) AS visible FROM s) "
        "SELECT v.visible, r.* FROM v LEFT JOIN (SELECT true", nkey + 1, nkey + 1);
    /* Every name is quoted by libpq: a name can never change the statement. */
    char *q = NULL;
    for (size_t j = 0; j < ncols; j++) {
        if (!(q = PQescapeIdentifier(cat->pg, cols[j], strlen(cols[j]))))
            goto escape;
        cdc_buf_printf(&sql, ", %s", q);
        PQfreemem(q);
    }
    cdc_buf_puts(&sql, " FROM ");
    if (!(q = PQescapeIdentifier(cat->pg, nspname, strlen(nspname))))
        goto escape;
    cdc_buf_printf(&sql, "%s.", q);
    PQfreemem(q);
    if (!(q = PQescapeIdentifier(cat->pg, relname, strlen(relname))))
        goto escape;
    cdc_buf_printf(&sql, "%s WHERE ", q);
    PQfreemem(q);
    for (size_t k = 0; k < nkey; k++) {
        if (!(q = PQescapeIdentifier(cat->pg, keycols[k], strlen(keycols[k]))))
            goto escape;
        /* An untyped parameter takes the key column's type. */
        cdc_buf_printf(&sql, "%s%s = $%zu", k ? " AND " : "", q, k + 1);
        PQfreemem(q);
        params[k] = keyvals[k];
    }
    cdc_buf_puts(&sql, ") r ON true");
    if (!sql.data) {
        snprintf(err, errlen, "cannot read a row of %s.%s: out of memory", nspname, relname);
        goto done;
    }
    snprintf(xidtext, sizeof xidtext, "%u", xid);
    params[nkey] = xidtext;
    res = query(cat, sql.data, (int)nkey + 1, params, PGRES_TUPLES_OK);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQnfields(res) != (int)ncols + 2) {
        char what[600];
        snprintf(what, sizeof what, "cannot read a row of %s.%s by its key", nspname, relname);
        cat_error(cat, res, what, err, errlen);
        goto done;
    }
    if (PQgetvalue(res, 0, 0)[0] != 't') {
        rc = 2;
        goto done;
    }
    if (PQgetisnull(res, 0, 1)) {
        rc = 0;
        goto done;
    }
    for (size_t j = 0; j < ncols; j++) {
        if (PQgetisnull(res, 0, (int)j + 2))
            continue;
        if (!(values[j] = strdup(PQgetvalue(res, 0, (int)j + 2)))) {
            for (size_t i = 0; i < j; i++) {
                free(values[i]);
                values[i] = NULL;
            }
            snprintf(err, errlen, "cannot read a row of %s.%s: out of memory", nspname, relname);
            goto done;
        }
    }
    rc = 1;
    goto done;
escape:
    pg_error_format(cat->pg, "cannot quote a name", err, errlen);
done:
    PQclear(res);
    cdc_buf_free(&sql);
    free(params);
    return rc;
}

int catalog_has_column(catalog *cat, const char *schema, const char *table,
                       const char *column, char *err, size_t errlen)
{
    const char *params[] = {schema, table, column};
    PGresult *res = query(cat,
        "SELECT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid "
        "  AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
        3, params, PGRES_TUPLES_OK);
    int rc;
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = cat_error(cat, res, "cannot look up a column", err, errlen);
    else if (PQntuples(res) == 0)
        rc = 2;
    else
        rc = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return rc;
}
