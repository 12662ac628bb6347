/* pg_async.h: one statement on a libpq connection, waited for so that
 * SIGTERM and a deadline are heard while the server works on it: how the
 * producer runs its replication commands and catalog queries (a plain
 * PQexec would wait for as long as the server takes, e.g. a
 * CREATE_REPLICATION_SLOT waiting for every running transaction to end). */
#ifndef PGCDC_PG_ASYNC_H
#define PGCDC_PG_ASYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* Called about every 100 ms while the statement runs; true gives up. */
typedef bool (*pg_async_wait_fn)(void *ctx);

/* Sends sql (with the extended protocol and nparams text parameters when
 * params is not NULL, else as a simple query: what a replication
 * connection speaks) and waits for its last result, or its COPY result.
 * Gives up when a stop is requested (SIGTERM), when wait (may be NULL)
 * returns true, or at deadline_ms (cdc_clock_mono_ms; 0: none): then asks
 * the server to cancel the statement and returns NULL with err saying
 * "<what>: stop requested" or "<what>: no answer within N s" (or that
 * it cannot wait on the socket); the
 * connection may still be busy, so the caller closes it. Otherwise returns
 * a result (an empty PGRES_FATAL_ERROR one, with the connection's error,
 * when sending or reading failed); the caller clears it. */
PGresult *pg_async_exec(PGconn *pg, const char *sql, int nparams, const char *const *params,
                        int64_t deadline_ms, pg_async_wait_fn wait, void *ctx,
                        const char *what, char *err, size_t errlen);

#endif
