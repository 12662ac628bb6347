/* producer_options.h: pgcdc-producer's option table (every flag, its
 * environment variable, default and bounds) and its one-line summary. */
#ifndef PGCDC_PRODUCER_OPTIONS_H
#define PGCDC_PRODUCER_OPTIONS_H

#include "cdc_config.h"

#define PRODUCER_PROGRAM "pgcdc-producer"

extern const cdc_option producer_options[];
extern const char producer_summary[];
/* The librdkafka properties -X may not change, with the guarantee each
 * one keeps. */
extern const cdc_kafka_guard producer_kafka_guards[];

#endif
