/* producer.h: the entry point of pgcdc-producer's real work, called by
 * main() once the configuration is parsed, logging set up and signals
 * installed. */
#ifndef PGCDC_PRODUCER_H
#define PGCDC_PRODUCER_H

#include "cdc_config.h"

/* Runs until --endpos, a stop signal or a fatal error. Returns the exit
 * status: 0 after a clean stop, 1 after a runtime failure (logged). */
int producer_run(const cdc_config *cfg);

#endif
