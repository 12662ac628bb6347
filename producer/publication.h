/* publication.h: the producer's publication: created when missing (a table
 * list, PostgreSQL 15 row filters, and column lists that keep excluded
 * columns inside PostgreSQL), and checked for a row filter or column list
 * that makes PostgreSQL refuse the application's UPDATEs and DELETEs. */
#ifndef PGCDC_PUBLICATION_H
#define PGCDC_PUBLICATION_H

#include <stddef.h>

#include "catalog.h"
#include "cdc_buf.h"
#include "colpolicy.h"

typedef struct publication_spec {
    const char *const *tables;    /* "schema.table"; none: FOR ALL TABLES */
    size_t ntables;
    const char *const *filters;   /* "schema.table=SQL" row filters (--row-filter) */
    size_t nfilters;
    const colpolicy *policy;      /* columns it drops leave the column list; may be NULL */
} publication_spec;

/* The check of one --row-filter item: "schema.table=SQL". */
int publication_check_filter(const char *value, char *err, size_t errlen);

/* Creates the publication when missing. Each listed table gets its row
 * filter and, when the policy drops some of its columns, a column list of
 * the others (PostgreSQL 15 and later; not for REPLICA IDENTITY FULL
 * tables, whose identity is every column). The statement and the check of
 * publication_problems run in one transaction, rolled back when the check
 * finds a table whose UPDATEs and DELETEs PostgreSQL would refuse.
 * Returns 0 when it exists afterwards, -1 on error (retry), PG_PERMANENT
 * when retrying cannot help (err says why: a refused configuration, row
 * filters without --tables or before PostgreSQL 15, a role that may not
 * create it). */
int publication_ensure(catalog *cat, const char *publication, const publication_spec *spec,
                       char *err, size_t errlen);

/* The tables of the publication whose row filter uses a column outside the
 * replica identity, or whose column list leaves out a replica identity
 * column, while it publishes updates or deletes: PostgreSQL refuses every
 * UPDATE and DELETE of such a table. One sentence per table, with the fix,
 * appended to out. Returns the number of such tables (0 before PostgreSQL
 * 15), or -1 with err. */
int publication_problems(catalog *cat, const char *publication, cdc_buf *out, char *err,
                         size_t errlen);

#endif
