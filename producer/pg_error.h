/* pg_error.h: libpq errors as one masked line for the caller's buffer, and
 * which of them can never succeed on a retry (a SQLSTATE that says so, a
 * malformed conninfo): the producer stops on those at once with a hint
 * instead of retrying forever. Also the one way the producer connects,
 * which keeps the SQLSTATE of a refused connection and hears SIGTERM. */
#ifndef PGCDC_PG_ERROR_H
#define PGCDC_PG_ERROR_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

/* Returned instead of -1 by the connection and catalog calls when retrying
 * cannot help (the message in err carries a hint). Still < 0. */
#define PG_PERMANENT (-2)

/* "<what>: <libpq's message>" without its trailing newline, with any
 * password that libpq echoed (a conninfo in a message) masked. */
void pg_error_format(PGconn *pg, const char *what, char *err, size_t errlen);

/* Whether an error of this SQLSTATE comes back however often it is tried:
 * unknown database, authentication refused, missing privilege. NULL (no
 * server answer: refused, timed out) and anything else are transient, as
 * are a server starting up or shutting down (57P03, 57P01) and too many
 * connections (53300). */
bool pg_error_permanent(const char *sqlstate);

/* What the user can do about a permanent SQLSTATE, or NULL. */
const char *pg_error_hint(const char *sqlstate);

/* pg_error_format for a failed statement, with the hint of its SQLSTATE
 * appended when it is permanent. Returns PG_PERMANENT or -1. */
int pg_error_result(PGconn *pg, const PGresult *res, const char *what, char *err,
                    size_t errlen);

/* The SQLSTATE in the message of a refused connection. libpq keeps no
 * result for it; in PQERRORS_VERBOSE it writes "FATAL:  3D000: ...". The
 * last one found (the last host tried) goes to state. Pure. */
bool pg_error_message_state(const char *msg, char state[6]);

/* msg with the SQLSTATE after each "FATAL:  "/"ERROR:  " and the
 * "LOCATION:" lines of PQERRORS_VERBOSE removed: the default form. Pure;
 * returns 0, or -1 when memory runs out. */
int pg_error_unverbose(const char *msg, char **out);

/* Connects with keys/vals as PQconnectdbParams(keys, vals, 1) would, the
 * user's conninfo being the value of "dbname": first checks its syntax
 * (PG_PERMANENT when malformed), gives it defaults it may override
 * (connect_timeout 10 s, TCP keepalives, tcp_user_timeout), and waits for
 * the server while listening for SIGTERM (then -1, "stop requested").
 * Returns 0, -1 (transient), or PG_PERMANENT, with err saying what failed
 * and how to fix it. */
int pg_connect(const char *const *keys, const char *const *vals, const char *what,
               PGconn **out, char *err, size_t errlen);

#endif
