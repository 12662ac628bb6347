/* pg_error.h: a libpq error as one masked line for the caller's buffer. */
#ifndef PGCDC_PG_ERROR_H
#define PGCDC_PG_ERROR_H

#include <stddef.h>

#include <libpq-fe.h>

/* "<what>: <libpq's message>" without its trailing newline, with any
 * password that libpq echoed (a conninfo in a message) masked. */
void pg_error_format(PGconn *pg, const char *what, char *err, size_t errlen);

#endif
