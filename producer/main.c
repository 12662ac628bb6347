/* main.c: pgcdc-producer's entry point: the shared process shell around
 * producer_run. */
#include "cdc_main.h"
#include "producer.h"
#include "producer_options.h"

int main(int argc, char **argv)
{
    return cdc_main(argc, argv, producer_options, producer_kafka_guards, PRODUCER_PROGRAM,
                    producer_summary, producer_run);
}
