/* cdc_signal.h: SIGTERM/SIGINT request a clean shutdown; SIGPIPE is ignored
 * so a dead socket is an error return, not a death. */
#ifndef PGCDC_CDC_SIGNAL_H
#define PGCDC_CDC_SIGNAL_H

#include <stdbool.h>

int cdc_signal_install(void);
/* True once SIGTERM or SIGINT has arrived. Async-signal-safe to read. */
bool cdc_signal_stop_requested(void);
/* The signal that asked to stop, or 0. */
int cdc_signal_received(void);

#endif
