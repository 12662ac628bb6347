/* pg_async.c: a statement sent with PQsendQuery and waited for on its
 * socket and the stop descriptor, cancelled on the server when given up
 * (see pg_async.h). */
#include "pg_async.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "cdc_clock.h"
#include "cdc_signal.h"

/* Without a cancel the server would go on (a slot creation would finish
 * and leave a slot nobody asked for any more) until it next writes to the
 * closed connection. */
static void cancel_statement(PGconn *pg)
{
    PGcancel *c = PQgetCancel(pg);
    if (!c)
        return;
    char buf[256];
    (void)PQcancel(c, buf, sizeof buf); /* best effort: the connection is closed anyway */
    PQfreeCancel(c);
}

static bool is_copy(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COPY_BOTH || st == PGRES_COPY_OUT || st == PGRES_COPY_IN;
}

/* Waits until the connection has a result ready. Returns 0, or -1 when it
 * gave up (err says why; the statement is cancelled). */
static int wait_result(PGconn *pg, int64_t started, int64_t deadline_ms, pg_async_wait_fn wait,
                       void *ctx, const char *what, char *err, size_t errlen)
{
    while (PQisBusy(pg)) {
        if (cdc_signal_stop_requested() || (wait && wait(ctx))) {
            cancel_statement(pg);
            snprintf(err, errlen, "%s: stop requested", what);
            return -1;
        }
        int64_t now = cdc_clock_mono_ms();
        if (deadline_ms > 0 && now >= deadline_ms) {
            cancel_statement(pg);
            snprintf(err, errlen, "%s: no answer within %" PRId64 " s", what,
                     (deadline_ms - started + 999) / 1000);
            return -1;
        }
        int step = deadline_ms > 0 && deadline_ms - now < 100 ? (int)(deadline_ms - now) : 100;
        struct pollfd pfd[2] = {{.fd = PQsocket(pg), .events = POLLIN},
                                {.fd = cdc_signal_fd(), .events = POLLIN}};
        int pr = poll(pfd, pfd[1].fd >= 0 ? 2 : 1, step);
        if (pr < 0 && errno != EINTR) {
            cancel_statement(pg);
            snprintf(err, errlen, "%s: cannot wait for the server: %s", what, strerror(errno));
            return -1;
        }
        if (pr > 0 && pfd[0].revents && !PQconsumeInput(pg))
            return 0; /* a broken connection: PQgetResult reports it at once */
    }
    return 0;
}

PGresult *pg_async_exec(PGconn *pg, const char *sql, int nparams, const char *const *params,
                        int64_t deadline_ms, pg_async_wait_fn wait, void *ctx,
                        const char *what, char *err, size_t errlen)
{
    int sent = params ? PQsendQueryParams(pg, sql, nparams, NULL, params, NULL, NULL, 0)
                      : PQsendQuery(pg, sql);
    if (!sent)
        return PQmakeEmptyPGresult(pg, PGRES_FATAL_ERROR);
    int64_t started = cdc_clock_mono_ms();
    /* The last result of the statement(s), each waited for; a COPY result
     * is the last one until the copy ends (PQgetResult would repeat it). */
    PGresult *res = NULL, *r;
    for (;;) {
        if (wait_result(pg, started, deadline_ms, wait, ctx, what, err, errlen) < 0) {
            PQclear(res);
            return NULL;
        }
        if (!(r = PQgetResult(pg)))
            break;
        PQclear(res);
        res = r;
        if (is_copy(res))
            break;
    }
    return res ? res : PQmakeEmptyPGresult(pg, PGRES_FATAL_ERROR);
}
