/* main.c: pgcdc-consumer's entry point: the shared process shell around
 * consumer_run. */
#include "cdc_main.h"
#include "consumer.h"
#include "consumer_options.h"

int main(int argc, char **argv)
{
    return cdc_main(argc, argv, consumer_options, consumer_kafka_guards, CONSUMER_PROGRAM,
                    consumer_summary, consumer_run);
}
