/* consumer.h: the entry point of pgcdc-consumer's real work, called by
 * main() once the configuration is parsed, logging set up and signals
 * installed. */
#ifndef PGCDC_CONSUMER_H
#define PGCDC_CONSUMER_H

#include "cdc_config.h"

/* Runs until --until-end is reached, a stop signal or a fatal error.
 * Returns the exit status: 0 after a clean stop, 1 after a runtime failure
 * (logged). */
int consumer_run(const cdc_config *cfg);

#endif
