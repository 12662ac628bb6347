/* cdc_main.h: the process shell both binaries share: parse options, set up
 * logging and signals, log the configuration, serve metrics when asked,
 * then run the program's work. Exit status: 0 done, 1 runtime failure,
 * 2 usage error. */
#ifndef PGCDC_CDC_MAIN_H
#define PGCDC_CDC_MAIN_H

#include "cdc_config.h"

typedef int (*cdc_run_fn)(const cdc_config *cfg);

/* `options` must have a "metrics-addr" entry. `kafka_guards` are the
 * librdkafka properties -X may not change (cdc_config_check_kafka): a pair
 * that would is a usage error. Each PGCDC_* variable nothing reads is named
 * in a warning, with the option variable it is likely a typo of. Returns
 * the exit status. */
int cdc_main(int argc, char **argv, const cdc_option *options,
             const cdc_kafka_guard *kafka_guards, const char *program, const char *summary,
             cdc_run_fn run);

#endif
