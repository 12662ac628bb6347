/* producer_stub.c: stands in for the replication loop until issue 4 lands;
 * replaced by the real producer_run. */
#include "producer.h"

#include "cdc_log.h"

int producer_run(const cdc_config *cfg)
{
    (void)cfg;
    cdc_log_error("replication to Kafka is not implemented yet");
    return 1;
}
