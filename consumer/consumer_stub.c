/* consumer_stub.c: stands in for the consume-and-apply loop until issue 5
 * lands; replaced by the real consumer_run. */
#include "consumer.h"

#include "cdc_log.h"

int consumer_run(const cdc_config *cfg)
{
    (void)cfg;
    cdc_log_error("consuming into Elasticsearch and Redis is not implemented yet");
    return 1;
}
