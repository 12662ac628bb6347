/* columns.h: the runtime side of the column policy (colpolicy.h): built
 * from the options with the hash key read from --hash-key-file, and its
 * rules checked against the catalog at start, so that a misspelt column
 * name stops the producer instead of letting the real column through. */
#ifndef PGCDC_COLUMNS_H
#define PGCDC_COLUMNS_H

#include <stddef.h>

#include "catalog.h"
#include "cdc_config.h"
#include "colpolicy.h"
#include "outbox.h"

/* *out is NULL when no option names a column. Returns 0, or -1 with err (a
 * usage error: bad items, an unreadable or short key file, a rule on an
 * outbox table). */
int columns_policy_new(const cdc_config *cfg, const outbox *ob, colpolicy **out, char *err,
                       size_t errlen);

/* Every rule names an existing table and column. Returns 0, -1 with err
 * (the query failed: retry), or PG_PERMANENT with err naming the rule. */
int columns_check(catalog *cat, const colpolicy *p, char *err, size_t errlen);

#endif
