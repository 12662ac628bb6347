/* main.c: pgcdc-consumer's process shell: options, logging, signals, then
 * consumer_run. Exit status: 0 done, 1 runtime failure, 2 usage error. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cdc_config.h"
#include "cdc_log.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"
#include "consumer.h"
#include "consumer_options.h"

int main(int argc, char **argv)
{
    char err[512];
    cdc_config *cfg = NULL;
    int rc = cdc_config_parse(consumer_options, CONSUMER_PROGRAM, consumer_summary, argc, argv,
                              &cfg, err, sizeof err);
    if (rc == CDC_CONFIG_EXIT)
        return 0;
    if (rc != CDC_CONFIG_OK) {
        fprintf(stderr, "%s: %s\n", CONSUMER_PROGRAM, err);
        return 2;
    }

    cdc_config_setup_log(cfg);
    int status = 1;
    if (cdc_signal_install() < 0) {
        cdc_log_error("cannot install signal handlers: %s", strerror(errno));
        goto done;
    }
    cdc_config_log(cfg);
    const char *metrics_addr = cdc_config_str(cfg, "metrics-addr");
    if (metrics_addr && cdc_metrics_serve(metrics_addr, NULL, err, sizeof err) < 0) {
        cdc_log_error("%s", err);
        goto done;
    }
    if (metrics_addr)
        cdc_log_info("serving /metrics, /healthz and /readyz on %s", metrics_addr);
    status = consumer_run(cfg);
done:
    cdc_metrics_shutdown();
    cdc_config_free(cfg);
    return status;
}
