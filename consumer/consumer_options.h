/* consumer_options.h: pgcdc-consumer's option table (every flag, its
 * environment variable, default and bounds) and its one-line summary. */
#ifndef PGCDC_CONSUMER_OPTIONS_H
#define PGCDC_CONSUMER_OPTIONS_H

#include "cdc_config.h"

#define CONSUMER_PROGRAM "pgcdc-consumer"

extern const cdc_option consumer_options[];
extern const char consumer_summary[];

#endif
