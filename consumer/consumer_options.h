/* consumer_options.h: pgcdc-consumer's option table (every flag, its
 * environment variable, default and bounds) and its one-line summary. */
#ifndef PGCDC_CONSUMER_OPTIONS_H
#define PGCDC_CONSUMER_OPTIONS_H

#include "cdc_config.h"

#define CONSUMER_PROGRAM "pgcdc-consumer"

extern const cdc_option consumer_options[];
extern const char consumer_summary[];
/* The librdkafka properties -X may not change (the consumer's and its
 * dead-letter producer's), with the guarantee each one keeps. */
extern const cdc_kafka_guard consumer_kafka_guards[];

#endif
