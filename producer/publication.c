/* publication.c: creates and checks the producer's publication (see
 * publication.h). Names reach statements only through regclass and
 * quote_ident on the server or PQescapeIdentifier; a row filter is SQL the
 * operator wrote, as the publication's own WHERE clause. */
#include "publication.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_error.h"

int publication_check_filter(const char *value, char *err, size_t errlen)
{
    const char *eq = strchr(value, '=');
    const char *dot = strchr(value, '.');
    if (!eq || !dot || dot > eq || dot == value || dot + 1 == eq || eq[1] == '\0') {
        snprintf(err, errlen, "is not SCHEMA.TABLE=SQL");
        return -1;
    }
    return 0;
}

/* Per published table: the columns with their key flags (the replica
 * identity: the primary key for DEFAULT, the index for INDEX, every column
 * for FULL), generated columns left out as pgoutput leaves them out. */
static const char table_sql[] =
    "SELECT c.oid::regclass::text, n.nspname, c.relname, c.relreplident, a.attname, "
    "       c.relreplident = 'f' OR coalesce(a.attnum = ANY ((SELECT i.indkey::int2[] "
    "           FROM pg_index i WHERE i.indrelid = c.oid AND CASE c.relreplident "
    "           WHEN 'i' THEN i.indisreplident WHEN 'd' THEN i.indisprimary ELSE false END "
    "           LIMIT 1)::int2[]), false) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
    "  AND a.attgenerated = '' "
    "WHERE c.oid = $1::regclass ORDER BY a.attnum";

/* The row filter given for schema.relname, or NULL. */
static const char *filter_for(const publication_spec *spec, const char *schema,
                              const char *relname, size_t *used)
{
    size_t sl = strlen(schema), rl = strlen(relname);
    for (size_t i = 0; i < spec->nfilters; i++) {
        const char *f = spec->filters[i];
        if (strncmp(f, schema, sl) == 0 && f[sl] == '.' && strncmp(f + sl + 1, relname, rl) == 0 &&
            f[sl + 1 + rl] == '=') {
            used[i] = 1;
            return f + sl + 1 + rl + 1;
        }
    }
    return NULL;
}

/* Appends ", <table> [(columns)] [WHERE (filter)]" for one --tables entry.
 * Returns 0, -1 (query failed) or PG_PERMANENT with err. */
static int append_table(catalog *cat, const publication_spec *spec, const char *name,
                        bool v15, size_t *used, cdc_buf *sql, char *err, size_t errlen)
{
    const char *params[] = {name};
    PGresult *res = catalog_exec(cat, table_sql, 1, params, PGRES_TUPLES_OK);
    char what[600];
    snprintf(what, sizeof what, "cannot look up --tables entry %s (is it an existing table?)",
             name);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0) {
        int rc = res && PQresultStatus(res) == PGRES_TUPLES_OK ? PG_PERMANENT : -1;
        if (rc == PG_PERMANENT)
            snprintf(err, errlen, "--tables %s: the table has no columns", name);
        else
            rc = catalog_error(cat, res, what, err, errlen);
        PQclear(res);
        return rc;
    }
    const char *schema = PQgetvalue(res, 0, 1), *relname = PQgetvalue(res, 0, 2);
    bool full = PQgetvalue(res, 0, 3)[0] == 'f';
    int rc = 0;
    if (sql->len)
        cdc_buf_puts(sql, ", ");
    cdc_buf_puts(sql, PQgetvalue(res, 0, 0));
    /* A column list must hold the replica identity (PostgreSQL refuses
     * UPDATE and DELETE otherwise): with FULL that is every column, so such
     * a table keeps none and the producer alone leaves columns out. */
    bool drops = false;
    int n = PQntuples(res);
    colpolicy_action *act = calloc((size_t)n, sizeof *act);
    if (!act) {
        snprintf(err, errlen, "cannot create the publication: out of memory");
        rc = -1;
        goto done;
    }
    for (int r = 0; r < n && v15 && !full && colpolicy_has_table(spec->policy, schema, relname);
         r++) {
        if (colpolicy_column(spec->policy, schema, relname, PQgetvalue(res, r, 4),
                             PQgetvalue(res, r, 5)[0] == 't', &act[r], err, errlen) < 0) {
            rc = PG_PERMANENT;
            goto done;
        }
        drops |= act[r] == COLPOLICY_DROP;
    }
    if (drops) {
        cdc_buf_puts(sql, " (");
        bool first = true;
        for (int r = 0; r < n; r++) {
            if (act[r] == COLPOLICY_DROP)
                continue;
            const char *col = PQgetvalue(res, r, 4);
            char *q = PQescapeIdentifier(catalog_conn(cat), col, strlen(col));
            if (!q) {
                pg_error_format(catalog_conn(cat), "cannot quote a column name", err, errlen);
                rc = -1;
                goto done;
            }
            cdc_buf_printf(sql, "%s%s", first ? "" : ", ", q);
            PQfreemem(q);
            first = false;
        }
        cdc_buf_putc(sql, ')');
    }
    const char *filter = filter_for(spec, schema, relname, used);
    if (filter) {
        if (!v15) {
            snprintf(err, errlen, "--row-filter %s.%s: row filters need PostgreSQL 15 or later",
                     schema, relname);
            rc = PG_PERMANENT;
            goto done;
        }
        cdc_buf_printf(sql, " WHERE (%s)", filter);
    }
done:
    free(act);
    PQclear(res);
    return rc;
}

/* One statement that must succeed; rc as append_table. */
static int run(catalog *cat, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = catalog_exec(cat, sql, 0, NULL, PGRES_COMMAND_OK);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = catalog_error(cat, res, what, err, errlen);
    PQclear(res);
    return rc;
}

int publication_ensure(catalog *cat, const char *publication, const publication_spec *spec,
                       char *err, size_t errlen)
{
    const char *params[] = {publication};
    PGresult *res = catalog_exec(cat, "SELECT 1 FROM pg_publication WHERE pubname = $1", 1,
                                 params, PGRES_TUPLES_OK);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = catalog_error(cat, res, "cannot look up the publication", err, errlen);
        PQclear(res);
        return rc;
    }
    int exists = PQntuples(res) > 0;
    PQclear(res);
    if (exists)
        return 0;
    if (spec->nfilters > 0 && spec->ntables == 0) {
        snprintf(err, errlen, "--row-filter needs --tables (a FOR ALL TABLES publication "
                 "takes no row filters)");
        return PG_PERMANENT;
    }

    bool v15 = PQserverVersion(catalog_conn(cat)) >= 150000;
    cdc_buf list = CDC_BUF_INIT, sql = CDC_BUF_INIT, problems = CDC_BUF_INIT;
    size_t *used = calloc(spec->nfilters + 1, sizeof *used);
    int rc = 0;
    char *pub = PQescapeIdentifier(catalog_conn(cat), publication, strlen(publication));
    if (!used || !pub) {
        snprintf(err, errlen, "cannot create publication: out of memory");
        rc = -1;
        goto done;
    }
    for (size_t i = 0; i < spec->ntables && rc == 0; i++)
        rc = append_table(cat, spec, spec->tables[i], v15, used, &list, err, errlen);
    if (rc < 0)
        goto done;
    for (size_t i = 0; i < spec->nfilters; i++) {
        if (!used[i]) {
            snprintf(err, errlen, "--row-filter %s: the table is not in --tables",
                     spec->filters[i]);
            rc = PG_PERMANENT;
            goto done;
        }
    }
    cdc_buf_printf(&sql, "CREATE PUBLICATION %s %s%s", pub,
                   spec->ntables ? "FOR TABLE " : "FOR ALL TABLES", list.data ? list.data : "");
    if (!sql.data) {
        snprintf(err, errlen, "cannot create publication: out of memory");
        rc = -1;
        goto done;
    }

    /* Made and checked in one transaction: what PostgreSQL would refuse
     * later, on the application's writes, is refused here instead. */
    if ((rc = run(cat, "BEGIN", "cannot create publication", err, errlen)) < 0)
        goto done;
    res = catalog_exec(cat, sql.data, 0, NULL, PGRES_COMMAND_OK);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "42501") == 0 && spec->ntables == 0) {
            /* FOR ALL TABLES needs a superuser; a table list only ownership. */
            pg_error_format(catalog_conn(cat), "cannot create publication", err, errlen);
            size_t len = strlen(err);
            snprintf(err + len, errlen - len, " (use --tables to publish only these tables, "
                     "or have a superuser create publication %s)", publication);
            rc = PG_PERMANENT;
        } else if (state && strcmp(state, "42710") == 0) { /* made meanwhile */
            rc = 0;
        } else {
            rc = catalog_error(cat, res, "cannot create publication", err, errlen);
        }
        PQclear(res);
        char ignored[8];
        run(cat, "ROLLBACK", "cannot roll back", ignored, sizeof ignored);
        goto done;
    }
    PQclear(res);
    int n = publication_problems(cat, publication, &problems, err, errlen);
    if (n != 0) {
        if (n > 0) {
            snprintf(err, errlen, "refusing to create publication %s: %s", publication,
                     problems.data);
            rc = PG_PERMANENT;
        } else {
            rc = -1;
        }
        char ignored[8];
        run(cat, "ROLLBACK", "cannot roll back", ignored, sizeof ignored);
        goto done;
    }
    rc = run(cat, "COMMIT", "cannot create publication", err, errlen);
done:
    PQfreemem(pub);
    free(used);
    cdc_buf_free(&list);
    cdc_buf_free(&sql);
    cdc_buf_free(&problems);
    return rc;
}

/* Per table of the publication with a row filter or column list, while it
 * publishes updates or deletes: the filter's columns outside the replica
 * identity, the identity columns the column list leaves out, and the
 * identity. A filter's columns are the Vars of its stored node tree. */
static const char problems_sql[] =
    "WITH r AS ("
    "  SELECT c.oid, n.nspname, c.relname, c.relreplident, pr.prqual, "
    "         pr.prattrs::int2[] AS cols "
    "  FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid "
    "  JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "  WHERE p.pubname = $1 AND (p.pubupdate OR p.pubdelete) "
    "    AND (pr.prqual IS NOT NULL OR pr.prattrs IS NOT NULL)), "
    "ident AS ("
    "  SELECT r.oid, a.attnum FROM r JOIN pg_attribute a ON a.attrelid = r.oid "
    "    AND a.attnum > 0 AND NOT a.attisdropped "
    "  WHERE r.relreplident = 'f' OR a.attnum = ANY (coalesce(("
    "    SELECT i.indkey::int2[] FROM pg_index i WHERE i.indrelid = r.oid AND "
    "      CASE r.relreplident WHEN 'i' THEN i.indisreplident WHEN 'd' THEN i.indisprimary "
    "      ELSE false END LIMIT 1), '{}'))) "
    "SELECT quote_ident(r.nspname) || '.' || quote_ident(r.relname), r.relreplident, "
    "  (SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM pg_attribute a "
    "   WHERE a.attrelid = r.oid AND a.attnum IN ("
    "     SELECT m[1]::int2 FROM regexp_matches(r.prqual::text, ':varattno (\\d+)', 'g') m) "
    "     AND a.attnum NOT IN (SELECT attnum FROM ident WHERE ident.oid = r.oid)), "
    "  (SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM ident "
    "   JOIN pg_attribute a ON a.attrelid = ident.oid AND a.attnum = ident.attnum "
    "   WHERE ident.oid = r.oid AND r.cols IS NOT NULL AND NOT (ident.attnum = ANY (r.cols))), "
    "  (SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM ident "
    "   JOIN pg_attribute a ON a.attrelid = ident.oid AND a.attnum = ident.attnum "
    "   WHERE ident.oid = r.oid) "
    "FROM r ORDER BY 1";

static const char *identity_name(char replident)
{
    switch (replident) {
    case 'd': return "REPLICA IDENTITY DEFAULT, the primary key";
    case 'i': return "REPLICA IDENTITY USING INDEX";
    case 'f': return "REPLICA IDENTITY FULL";
    default: return "REPLICA IDENTITY NOTHING";
    }
}

int publication_problems(catalog *cat, const char *publication, cdc_buf *out, char *err,
                         size_t errlen)
{
    if (PQserverVersion(catalog_conn(cat)) < 150000)
        return 0; /* no row filters or column lists before 15 */
    const char *params[] = {publication};
    PGresult *res = catalog_exec(cat, problems_sql, 1, params, PGRES_TUPLES_OK);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        catalog_error(cat, res, "cannot check the publication's row filters and column lists",
                      err, errlen);
        PQclear(res);
        return -1;
    }
    int n = 0;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *table = PQgetvalue(res, r, 0);
        char replident = PQgetvalue(res, r, 1)[0];
        bool bad_filter = !PQgetisnull(res, r, 2), bad_list = !PQgetisnull(res, r, 3);
        if (!bad_filter && !bad_list)
            continue;
        const char *ident = PQgetisnull(res, r, 4) ? "none" : PQgetvalue(res, r, 4);
        if (n++)
            cdc_buf_puts(out, "; ");
        cdc_buf_printf(out, "table %s: ", table);
        if (bad_filter)
            cdc_buf_printf(out, "its row filter uses %s, not part of its replica identity "
                           "(%s: %s)", PQgetvalue(res, r, 2), identity_name(replident), ident);
        if (bad_list)
            cdc_buf_printf(out, "%sits column list leaves out %s, part of its replica identity "
                           "(%s)", bad_filter ? ", and " : "", PQgetvalue(res, r, 3),
                           identity_name(replident));
        cdc_buf_puts(out, ", so PostgreSQL refuses every UPDATE and DELETE of the table "
                          "(\"cannot update table\"); fix: ");
        if (bad_filter)
            cdc_buf_printf(out, "a row filter on replica identity columns only, or ALTER TABLE "
                           "%s REPLICA IDENTITY FULL%s", table, bad_list ? "; and " : "");
        if (bad_list)
            cdc_buf_puts(out, "a column list that includes the replica identity columns");
    }
    PQclear(res);
    if (n > 0 && !out->data) {
        snprintf(err, errlen, "cannot check the publication: out of memory");
        return -1;
    }
    return n;
}
