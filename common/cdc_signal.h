/* cdc_signal.h: SIGTERM/SIGINT request a clean shutdown; SIGPIPE is ignored
 * so a dead socket is an error return, not a death. */
#ifndef PGCDC_CDC_SIGNAL_H
#define PGCDC_CDC_SIGNAL_H

#include <stdbool.h>

/* Installs the handlers (without SA_RESTART, so blocking calls return EINTR)
 * and ignores SIGPIPE. Returns 0, or -1 with errno set. */
int cdc_signal_install(void);
/* True once SIGTERM or SIGINT has arrived. Async-signal-safe to read. */
bool cdc_signal_stop_requested(void);
/* The signal that asked to stop, or 0. */
int cdc_signal_received(void);

/* A descriptor that becomes readable once a stop is requested, for poll()
 * loops that wait on sockets; -1 before cdc_signal_install. Never read it
 * empty on purpose: it stays readable. */
int cdc_signal_fd(void);

/* Requests a stop as SIGTERM would (from a thread that hit a fatal error,
 * or a test). */
void cdc_signal_request_stop(void);

#endif
